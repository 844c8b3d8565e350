/*
 * The mesh relay's forwarding loop: tagged WireGuard messages between nodes
 * associated over UDP, in batches, without Python (docs/relay.md).
 *
 * Theory of operation
 * -------------------
 * A relay forwards sealed WireGuard messages between mesh nodes by their
 * 24-bit ids, carried in the three reserved bytes after a message's type
 * (pywg.relayed): the destination's on the way in, the source's on the way
 * out. One loop, on a thread started from Python (cffi releases the GIL for
 * the whole call), owns the relay's UDP socket for reading:
 *
 *   recvmmsg up to PYWG_RELAY_BATCH datagrams (split where UDP GRO coalesced
 *   them) → a WireGuard message of a valid size (whitepaper §5.4: 148, 92 and
 *   64 bytes for types 1-3, at least 32 for type 4) from an address associated
 *   with node S, tagged with node D associated over UDP → retag it S → one
 *   sendmmsg for the batch, a run of same-size datagrams to one node as one
 *   UDP GSO send (UDP_SEGMENT), as a coalesced receive brought them.
 *
 * The work per datagram is bounded and done before anything else: a type
 * and size check and two hash lookups. A WireGuard message from an address
 * no node is associated with is dropped here and counted, and so is anything
 * that is neither that nor a STUN request (first byte 0). The rest (STUN and
 * association requests, messages for a node not associated over UDP: on
 * TCP, or on another relay, or nowhere) goes up to Python through
 * a datagram socketpair (`hand_fd`) in runs: one message carries the
 * datagrams of one receive batch for Python (up to PYWG_RELAY_RUN_MAX of them
 * and PYWG_RELAY_RUN_BYTES), sent when the batch is done, so a stream for a
 * node on TCP costs one message and one wake-up of Python a batch rather than
 * one a datagram. The kernel bounds that socket's buffer, and a run that does
 * not fit is dropped and its datagrams counted, so a flood costs Python at
 * most a buffer.
 *
 * Python owns the associations (pywg_relay_set_node, after it has checked a
 * node's signed association request) and sends what it forwards itself
 * (from TCP clients, other relays) on the same UDP socket.
 *
 * Locking: one mutex guards the tables; the loop holds it for a batch's
 * lookups, pywg_relay_set_node for a change.
 */
#ifndef PYWG_FAST_RELAY_H
#define PYWG_FAST_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "wg_constants.h"

/* cdef-begin */
#define PYWG_RELAY_BATCH 64
#define PYWG_RELAY_RUN_MAX 256      /* datagrams one hand-up message carries at most */
#define PYWG_RELAY_RUN_BYTES 131072 /* ... and bytes, headers included: Python's receive size */
#define PYWG_RELAY_UP_SAME 65535    /* pywg_relay_up.addrlen: the previous datagram's source */

struct pywg_relay;

struct pywg_relay_stats {
    uint64_t forwarded;       /* WireGuard messages sent on to a node associated over UDP */
    uint64_t forwarded_bytes; /* ... their bytes */
    uint64_t handed_up;       /* datagrams handed to Python */
    uint64_t up_drops;        /* ... that did not fit in the hand-off socket's buffer */
    uint64_t unassociated;    /* WireGuard messages from no associated address: dropped */
    uint64_t malformed;       /* WireGuard types of no valid size, or untagged: dropped */
    uint64_t not_relay;       /* neither a STUN request nor a WireGuard type: dropped */
    uint64_t send_errors;     /* forwarded messages the kernel refused */
    uint64_t nodes;           /* associations held */
};

/* A message on `hand_fd`, a run: this header, then `count` datagrams in the order they
 * arrived, each as a struct pywg_relay_up, its source's address bytes (a struct sockaddr
 * as recvfrom gives it: `addrlen` bytes, none for PYWG_RELAY_UP_SAME) and its `len`
 * bytes. Native byte order, no padding. */
struct pywg_relay_run {
    uint32_t count;
};

struct pywg_relay_up {
    uint16_t len;     /* the datagram's bytes */
    uint16_t addrlen; /* the address bytes that follow; PYWG_RELAY_UP_SAME: none, it came
                         from where the run's previous datagram came from */
};

/* A relay on a bound UDP socket and the writing end of a SOCK_DGRAM socketpair;
 * `gro`: ask for coalesced receives and send runs with UDP GSO. NULL if out of memory. */
struct pywg_relay *pywg_relay_new(int udp_fd, int hand_fd, int gro);
void pywg_relay_free(struct pywg_relay *r);
/* The loop; returns 0 once pywg_relay_stop has been called. */
int pywg_relay_run(struct pywg_relay *r);
void pywg_relay_stop(struct pywg_relay *r);
/* Node `id` (1..PYWG_MAX_RELAY_NODE_ID) is associated with addr (a sockaddr of the
 * socket's family; addrlen 0: no longer). `deliver` 0: what it sends is forwarded, but
 * messages for it go up to Python (it is reached another way, e.g. over TCP). 0, or -1
 * (bad id or address, no memory). */
int pywg_relay_set_node(struct pywg_relay *r, uint32_t id, const uint8_t *addr,
                        uint32_t addrlen, int deliver);
void pywg_relay_stats(struct pywg_relay *r, struct pywg_relay_stats *out);
/* cdef-end */

#endif
