/*
 * The native data plane: the per-packet work of established sessions.
 *
 * Theory of operation
 * -------------------
 * Two long-running loops, each on its own thread started from Python (cffi
 * releases the GIL for the whole call), own the fds:
 *
 *   TX: read up to PYWG_PLANE_BATCH packets from the TUN → allowed-IPs lookup
 *       of the destination → the peer's current keypair → counter → pad →
 *       ChaCha20-Poly1305 seal in place → one sendmmsg for the batch.
 *   RX: recvmmsg up to PYWG_PLANE_BATCH datagrams → transport messages: index
 *       lookup → open in place → replay window → roaming → inner source
 *       checked against allowed-IPs → write to the TUN.
 *
 * Whatever the loops cannot handle goes up to Python through a bounded queue
 * and an eventfd (pywg_plane_event_fd): handshake and cookie messages (those
 * of a valid size and, for initiations and responses, a valid mac1: the rest
 * is dropped here, pywg_plane_set_mac1_key),
 * transport messages for an index the plane does not own (or owns with
 * rx_native off, e.g. a responder's unconfirmed session), and TUN packets
 * for a peer without a usable sending keypair. The queue is bounded in items
 * (PYWG_PLANE_QUEUE) and bytes (PYWG_PLANE_QUEUE_BYTES): a flood of garbage
 * costs at most 8 MiB, and what does not fit is dropped and counted. Python keeps the protocol:
 * it installs keypairs (pywg_kp_new), says which one a peer sends with
 * (pywg_peer_set_current), retires them (pywg_kp_free), and mirrors the
 * allowed-IPs table. A keypair's send counter and replay window live here
 * only; Python seals and opens through pywg_kp_seal / pywg_kp_open (with
 * their own contexts), so a counter is never used twice.
 *
 * Timers stay in Python: per peer the plane keeps byte counters and the
 * times of the last data sent and received (CLOCK_MONOTONIC, the clock of
 * Python's event loop), read with pywg_peer_stats, and the endpoint it last
 * saw (roaming), with a version number that changes when it does.
 *
 * Locking: tx_lock guards what the TX loop reads (peers' current keypairs
 * and endpoints); rx_lock guards the index table the RX loop reads; the
 * allowed-IPs table has a rwlock shared by both loops. Each loop holds its
 * lock for one batch. Python's changes take the locks they touch, so a
 * keypair is never freed under a loop using it.
 */
#ifndef PYWG_FAST_PLANE_H
#define PYWG_FAST_PLANE_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h" /* struct pywg_filter, for pywg_plane_set_filter */
#include "lpm.h" /* struct pywg_lpm, for pywg_plane_routes_load */
#include "wg_constants.h"

/* cdef-begin */
#define PYWG_PLANE_BATCH 64
#define PYWG_PLANE_QUEUE 4096
#define PYWG_PLANE_QUEUE_BYTES 8388608

struct pywg_plane;
struct pywg_peer;
struct pywg_kp;

struct pywg_peer_stats {
    uint64_t rx_bytes;          /* transport messages received (whole datagrams) */
    uint64_t tx_bytes;          /* transport messages sent (whole datagrams) */
    double last_sent;           /* monotonic time of the last data sent, 0 never */
    double last_received;       /* of the last authenticated message received, 0 never */
    double last_data_received;  /* of the last one carrying data (not a keepalive) */
    uint64_t endpoint_version;  /* changes each time the RX loop moves the endpoint */
};

struct pywg_plane_stats {
    uint64_t tx_packets, rx_packets;     /* handled natively */
    uint64_t up_datagrams, up_packets;   /* handed to Python */
    uint64_t queue_drops;                /* handed up but the queue was full */
    uint64_t rx_rejected;                /* bad tag, replayed, expired */
    uint64_t rx_bad_source;              /* inner source not allowed for the peer */
    uint64_t tx_no_route;                /* no allowed-IPs entry for the destination */
    uint64_t send_retries;               /* sendmmsg had to wait for buffer space */
    uint64_t tx_malformed;               /* TUN packets that could not be split or finished */
    uint64_t rx_junk;                    /* datagrams of no message type or size: dropped */
    uint64_t rx_bad_mac1;                /* initiations/responses with a wrong mac1: dropped */
    uint64_t rx_unknown_index;           /* transport messages for no keypair: dropped */
    uint64_t rx_cookie_replies;          /* cookie replies sent from C under load */
    uint64_t rx_cookie_limited;          /* ... not sent: that source had its share */
    uint64_t tx_no_relay;                /* for a relayed endpoint whose relay is not set */
    uint64_t rx_filtered;                /* decrypted, then dropped by the packet filter */
};

#define PYWG_PLANE_VNET_HDR 1 /* the TUN was opened with IFF_VNET_HDR (+ TSO), offload.h */
#define PYWG_PLANE_UDP_OFFLOAD 2 /* use UDP GSO sends and GRO receives where the kernel can */

/* tun_fd and udp_fd stay owned by the caller (close them after pywg_plane_free). */
struct pywg_plane *pywg_plane_new(int tun_fd, int udp_fd, uint32_t mtu, int flags);
void pywg_plane_free(struct pywg_plane *p);
void pywg_plane_set_mtu(struct pywg_plane *p, uint32_t mtu);
/* A new UDP socket (after a listen-port change); the loops pick it up at once. */
void pywg_plane_set_udp(struct pywg_plane *p, int udp_fd);
/* Loops: each returns 0 after pywg_plane_stop, -1 on a fatal error (errno kept). */
int pywg_plane_run_tx(struct pywg_plane *p);
int pywg_plane_run_rx(struct pywg_plane *p);
void pywg_plane_stop(struct pywg_plane *p);
int pywg_plane_event_fd(struct pywg_plane *p);
/* Take one item for Python: its length (0: none). kind gets PYWG_PLANE_ITEM_*, and
 * for a datagram, addr/addrlen its source (a struct sockaddr_in6 or _in) and
 * local/local_len the PKTINFO data (struct in6_pktinfo on an AF_INET6 socket, else
 * in_pktinfo; up to 20 bytes; length 0: none) that sends from the address it came to. */
int pywg_plane_pop(struct pywg_plane *p, uint8_t *buf, size_t cap, int *kind, uint8_t *addr,
                   uint32_t *addrlen, uint8_t *local, uint32_t *local_len);
void pywg_plane_stats(struct pywg_plane *p, struct pywg_plane_stats *out);
/* Our identity's mac1 and cookie keys (HASH(LABEL_MAC1 ‖ Spub), HASH(LABEL_COOKIE
 * ‖ Spub), 32 bytes each, whitepaper §5.4.4/§5.4.7), or NULLs while the device
 * has no private key. With them, initiations and responses whose mac1 does not
 * verify, and datagrams of no message type or size, are dropped in C. */
void pywg_plane_set_identity(struct pywg_plane *p, const uint8_t *mac1_key,
                             const uint8_t *cookie_key);
/* The mac1 key of the identity the device rotated away from and still answers
 * for a while (NULL: none): handshake messages whose mac1 verifies with it go
 * up to the core too, which checks them again and does the under-load part. */
void pywg_plane_set_retired_identity(struct pywg_plane *p, const uint8_t *mac1_key);
/* The core's cookie secret Rm (32 bytes; NULL: none). With it, under load (more
 * than the load threshold of handshake messages within PYWG_UNDER_LOAD_WINDOW,
 * as the core decides) the plane answers handshake messages without a valid
 * mac2 with cookie replies itself. */
void pywg_plane_set_cookie_secret(struct pywg_plane *p, const uint8_t *secret);
/* The device's under-load threshold (Device.under_load_threshold); a new plane
 * starts with PYWG_UNDER_LOAD_THRESHOLD. */
void pywg_plane_set_load_threshold(struct pywg_plane *p, uint32_t threshold);

/* Mesh relay `number` (1..PYWG_MAX_RELAY_INDEX) is at addr (a sockaddr of the socket's
 * family; addrlen 0: no longer). A peer whose endpoint is the relayed endpoint
 * [100::ID]:number (pywg.relayed) is sent to it, tagged ID, and a datagram from it
 * tagged ID comes from that endpoint, untagged. */
void pywg_plane_set_relay(struct pywg_plane *p, uint32_t number, const uint8_t *addr,
                          uint32_t addrlen);

/* The packet filter (filter.h; NULL: none, the default, which costs nothing). The RX
 * loop asks it about every decrypted packet before the TUN write and drops what it
 * refuses (counted in rx_filtered); the TX loop tells it every packet read from the
 * TUN. The caller owns f; it must outlive the plane's loops (free it after
 * pywg_plane_free), and its rules change through pywg_filter_set_rules at any time. */
void pywg_plane_set_filter(struct pywg_plane *p, struct pywg_filter *f);

/* Peers. id is the caller's; the allowed-IPs table stores peers by id. */
struct pywg_peer *pywg_peer_new(struct pywg_plane *p, uint32_t id);
void pywg_peer_free(struct pywg_plane *p, struct pywg_peer *peer);
void pywg_peer_set_endpoint(struct pywg_plane *p, struct pywg_peer *peer, const uint8_t *addr,
                            uint32_t addrlen);
/* The source the peer's datagrams leave from: a PKTINFO control message's level, type
 * and data, as pywg_plane_pop gives them (len 0: the kernel's choice). The plane
 * also learns it from each authenticated datagram, and forgets it when the kernel
 * refuses it (the address is gone from the host). */
void pywg_peer_set_source(struct pywg_plane *p, struct pywg_peer *peer, int level, int type,
                          const uint8_t *data, uint32_t len);
/* Copies the current endpoint; returns its length (0: none). */
uint32_t pywg_peer_endpoint(struct pywg_plane *p, struct pywg_peer *peer, uint8_t *addr);
void pywg_peer_stats(struct pywg_plane *p, struct pywg_peer *peer, struct pywg_peer_stats *out);
void pywg_peer_set_current(struct pywg_plane *p, struct pywg_peer *peer, struct pywg_kp *kp);

/* Allowed IPs, mirrored from Python: the plane's table becomes a copy of `src` with
 * each value v (the core's id of a peer) replaced by map[v] (the plane's peer id;
 * see pywg_lpm_clone). The copy is made before the routes lock is taken and swapped
 * in under it, so the loops keep forwarding meanwhile and see the old table or the
 * new one, never a mix. 0 ok, -1 ENOMEM (the old table stays). */
int pywg_plane_routes_load(struct pywg_plane *p, const struct pywg_lpm *src, const uint32_t *map,
                           size_t nmap);
/* The peer id the loops route family (4 or 6) address addr to, -1 for none (under the
 * routes lock, as the loops read it; for tests of the mirror). */
int64_t pywg_plane_route_lookup(struct pywg_plane *p, int family, const uint8_t *addr);

/* Keypairs. The replay window starts as a copy of *replay (may be NULL: empty). */
struct pywg_kp *pywg_kp_new(struct pywg_plane *p, struct pywg_peer *peer, const uint8_t *send_key,
                            const uint8_t *receive_key, uint32_t local_index,
                            uint32_t remote_index, double created, uint64_t send_counter,
                            const uint8_t *replay, size_t replay_size);
/* rx_native 0: its transport messages go up to Python (an unconfirmed session). */
void pywg_kp_set_rx_native(struct pywg_plane *p, struct pywg_kp *kp, int rx_native);
void pywg_kp_free(struct pywg_plane *p, struct pywg_kp *kp);
uint64_t pywg_kp_send_counter(struct pywg_kp *kp);
/* Python's path. seal: out gets the whole transport message (16-byte header,
 * ciphertext, tag); returns its length, -1 if the counter is exhausted. open:
 * ciphertext is a transport message's payload (ciphertext and tag, len >= 16);
 * out gets the plaintext; returns its length, -1 forged, -2 replayed or out
 * of the window. */
int64_t pywg_kp_seal(struct pywg_kp *kp, const uint8_t *padded, size_t len, uint8_t *out);
int64_t pywg_kp_open(struct pywg_kp *kp, uint64_t counter, const uint8_t *ciphertext, size_t len,
                     uint8_t *out);
/* cdef-end */

#endif /* PYWG_FAST_PLANE_H */
