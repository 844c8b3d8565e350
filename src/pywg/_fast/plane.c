/* The native data plane. See plane.h for the theory of operation. */
#define _GNU_SOURCE
#include "plane.h"

#include "blake2s.h"
#include "datagram.h"
#include "filter.h"
#include "xaead.h"
#include "aead.h"
#include "lpm.h"
#include "offload.h"
#include "replay.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The protocol's numbers (PYWG_REJECT_AFTER_TIME, PYWG_TRANSPORT_HEADER_SIZE,
 * message sizes and field offsets, ...) come from pywg/constants.py through the
 * generated wg_constants.h (included by plane.h); the ones below are this
 * plane's own. */
#define TX_SEGMENTS 512 /* packets (or TSO segments) sealed per TX round */
#define TX_ROOM 256     /* free slots before each read: a 64 KiB super-packet, MSS >= 256 */
/* A slot: header, one packet, its padding and the tag (whitepaper §5.4.6). Slots
 * are at least TX_SLOT_PACKET bytes of packet apart, more at a larger MTU (tx_stride),
 * so that a jumbo packet or TSO segment is sealed in place like any other. */
#define TX_SLOT_EXTRA (PYWG_TRANSPORT_HEADER_SIZE + PYWG_PADDING_MULTIPLE + PYWG_AEAD_TAG_SIZE)
#define TX_SLOT_PACKET 16384
#define TX_STRIDE_MAX ((TX_SLOT_EXTRA + PYWG_MAX_IP_PACKET_SIZE + 63) / 64 * 64)
#define RX_SLOT 65536
#define INDEX_BUCKETS 4096
/* Fairness for the hand-off queue under a handshake flood: at most
 * SOURCE_QUEUE_MAX handshake messages from one source address (hashed into
 * SOURCE_BUCKETS) wait at once, so a flood from a few addresses cannot fill
 * the queue and starve a legitimate peer's initiation. */
#define SOURCE_BUCKETS 4096
#define SOURCE_QUEUE_MAX 32
/* Cookie replies are limited per source address and port (hashed into
 * COOKIE_BUCKETS): COOKIE_RATE a second, bursts of COOKIE_BURST. A peer asks
 * once per REKEY_TIMEOUT and always gets its reply, a flood from many
 * sources costs at most COOKIE_BUCKETS * COOKIE_RATE replies a second, and
 * the RX loop keeps reading (and the peer's data keeps flowing) instead of
 * spending its core on replies nobody needs. Keyed on the port as well, so
 * that a flood spoofing a peer's address from other ports does not use up
 * that peer's replies. */
#define COOKIE_BUCKETS 4096
#define COOKIE_RATE 5.0
#define COOKIE_BURST 5.0

struct pywg_kp {
    struct pywg_kp *next_in_bucket; /* rx_lock */
    struct pywg_peer *peer;
    uint32_t local_index, remote_index;
    double created;
    _Atomic uint64_t send_counter;
    struct pywg_aead *tx, *rx;       /* the loops' contexts */
    struct pywg_aead *py_tx, *py_rx; /* Python's (it holds the GIL around them) */
    pthread_spinlock_t replay_lock;
    struct pywg_replay replay;
    _Atomic int rx_native;
};

/* Our address a peer wrote to, as the PKTINFO control message that sends from it
 * (in6_pktinfo on the dual-stack socket, in_pktinfo on an IPv4-only one); len 0:
 * the kernel's choice. */
struct source {
    int level, type;
    socklen_t len;
    uint8_t data[sizeof(struct in6_pktinfo)];
};

struct pywg_peer {
    uint32_t id;
    struct pywg_kp *current; /* tx_lock */
    struct sockaddr_storage endpoint; /* tx_lock */
    socklen_t endpoint_len;
    struct source src; /* tx_lock: replies leave from the address the peer wrote to */
    _Atomic uint64_t rx_bytes, tx_bytes, endpoint_version;
    _Atomic double last_sent, last_received, last_data_received;
};

struct item {
    int kind;
    int bucket; /* the per-source count it is charged to, or -1 */
    uint32_t len, addrlen;
    struct sockaddr_storage addr;
    struct source local; /* the destination a datagram came to */
    uint8_t data[];
};

struct pywg_plane {
    _Atomic int tun_fd, udp_fd;
    int vnet;         /* the TUN was opened with IFF_VNET_HDR */
    _Atomic int gso;  /* UDP GSO sends (cleared if the kernel refuses them) */
    int udp_offload;      /* GSO/GRO allowed */
    _Atomic int udp_gro; /* UDP GRO receives */
    struct pywg_gro *gro; /* the RX loop's TCP coalescer for TUN writes (vnet only) */
    struct pywg_filter *_Atomic filter; /* the packet filter, NULL: none (filter.h) */
    _Atomic uint32_t mtu;
    int wake_fd[2], event_fd; /* wake_fd: 0 the TX loop, 1 the RX loop */
    _Atomic int stopping;
    pthread_mutex_t tx_lock, rx_lock, queue_lock;
    pthread_rwlock_t routes_lock;
    struct pywg_lpm *routes;
    struct pywg_peer **peers; /* by id; rx_lock + tx_lock to change */
    uint32_t npeers;
    struct pywg_kp *index[INDEX_BUCKETS]; /* rx_lock */
    struct item *queue[PYWG_PLANE_QUEUE]; /* queue_lock */
    size_t queue_head, queue_count, queue_bytes;
    uint16_t queued_from[SOURCE_BUCKETS]; /* handshake items queued per source (hashed) */
    uint8_t mac1_key[PYWG_KEY_SIZE]; /* rx_lock: HASH(LABEL_MAC1 ‖ our public key), §5.4.4 */
    uint8_t cookie_key[PYWG_KEY_SIZE]; /* rx_lock: HASH(LABEL_COOKIE ‖ our public key), §5.4.7 */
    int mac1_set;         /* rx_lock: 0 while the device has no private key */
    uint8_t retired_mac1_key[PYWG_KEY_SIZE]; /* rx_lock: of the identity rotated away from */
    int retired_mac1_set; /* rx_lock: 0 without one */
    uint8_t cookie_secret[PYWG_COOKIE_SECRET_SIZE]; /* rx_lock: Rm, the core's, rotated by it */
    int cookie_set;
    double load_window, under_load_until; /* rx_lock: the load tracking of §5.3 */
    uint32_t load_count, load_threshold;
    /* rx_lock + tx_lock: mesh relays by number (pywg.relayed); len 0: not set */
    struct sockaddr_storage relays[PYWG_MAX_RELAY_INDEX + 1];
    socklen_t relay_len[PYWG_MAX_RELAY_INDEX + 1];
    int nrelays;
    float cookie_tokens[COOKIE_BUCKETS]; /* rx_lock: the cookie replies' token buckets */
    double cookie_refilled[COOKIE_BUCKETS];
    struct {
        _Atomic uint64_t tx_packets, rx_packets, up_datagrams, up_packets, queue_drops;
        _Atomic uint64_t rx_rejected, rx_bad_source, tx_no_route, send_retries, tx_malformed;
        _Atomic uint64_t rx_junk, rx_bad_mac1, rx_unknown_index, rx_cookie_replies;
        _Atomic uint64_t rx_cookie_limited, tx_no_relay, rx_filtered;
    } stats;
};

/* Lock order, everywhere: rx_lock, routes_lock, tx_lock. */

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b)
{
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

static void put_le32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* len rounded up to a multiple of PYWG_PADDING_MULTIPLE (a power of two). */
static size_t round_up_to_padding(size_t len)
{
    return (len + PYWG_PADDING_MULTIPLE - 1) & ~(size_t)(PYWG_PADDING_MULTIPLE - 1);
}

/* Padding (whitepaper §5.4.6), as messages.padded_length: to PYWG_PADDING_MULTIPLE,
 * capped at the MTU. */
static size_t padded_length(size_t len, uint32_t mtu)
{
    size_t last, rounded;
    if (mtu == 0)
        return round_up_to_padding(len);
    last = len > mtu ? len % mtu : len;
    rounded = round_up_to_padding(last);
    return len - last + (rounded < mtu ? rounded : mtu);
}

/* ------------------------------------------------------------------ queue to Python */

/* The source bucket of a handshake message (types 1-3), or -1 for anything else. */
static int source_bucket(int kind, const uint8_t *data, size_t len,
                         const struct sockaddr_storage *addr)
{
    const uint8_t *host;
    size_t n;
    uint32_t h = 2166136261u; /* FNV-1a over the source address, port left out */
    if (kind != PYWG_PLANE_ITEM_DATAGRAM || addr == NULL || len < PYWG_MESSAGE_TYPE_SIZE ||
        data[0] < PYWG_MESSAGE_INITIATION || data[0] > PYWG_MESSAGE_COOKIE_REPLY)
        return -1;
    if (addr->ss_family == AF_INET6) {
        host = (const uint8_t *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
        n = 16;
    } else if (addr->ss_family == AF_INET) {
        host = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
        n = 4;
    } else {
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ host[i]) * 16777619u;
    return (int)(h % SOURCE_BUCKETS);
}

static void push_up(struct pywg_plane *p, int kind, const uint8_t *data, size_t len,
                    const struct sockaddr_storage *addr, socklen_t addrlen,
                    const struct source *local)
{
    int bucket = source_bucket(kind, data, len, addr);
    struct item *it = malloc(sizeof(*it) + len);
    bool wake = false;
    if (it == NULL) {
        atomic_fetch_add(&p->stats.queue_drops, 1);
        return;
    }
    it->kind = kind;
    it->bucket = bucket;
    it->len = (uint32_t)len;
    it->addrlen = addr != NULL ? (uint32_t)addrlen : 0;
    if (addr != NULL)
        memcpy(&it->addr, addr, addrlen);
    it->local.len = 0;
    if (local != NULL)
        it->local = *local;
    memcpy(it->data, data, len);
    pthread_mutex_lock(&p->queue_lock);
    if (p->queue_count == PYWG_PLANE_QUEUE || p->queue_bytes + len > PYWG_PLANE_QUEUE_BYTES ||
        (bucket >= 0 && p->queued_from[bucket] >= SOURCE_QUEUE_MAX)) {
        pthread_mutex_unlock(&p->queue_lock);
        free(it);
        atomic_fetch_add(&p->stats.queue_drops, 1);
        return;
    }
    p->queue[(p->queue_head + p->queue_count) % PYWG_PLANE_QUEUE] = it;
    wake = p->queue_count++ == 0;
    p->queue_bytes += len;
    if (bucket >= 0)
        p->queued_from[bucket]++;
    pthread_mutex_unlock(&p->queue_lock);
    atomic_fetch_add(
        kind == PYWG_PLANE_ITEM_DATAGRAM ? &p->stats.up_datagrams : &p->stats.up_packets, 1);
    if (wake) {
        uint64_t one = 1;
        ssize_t ignored = write(p->event_fd, &one, sizeof(one));
        (void)ignored;
    }
}

int pywg_plane_pop(struct pywg_plane *p, uint8_t *buf, size_t cap, int *kind, uint8_t *addr,
                   uint32_t *addrlen, uint8_t *local, uint32_t *local_len)
{
    struct item *it = NULL;
    int len;
    pthread_mutex_lock(&p->queue_lock);
    if (p->queue_count > 0) {
        it = p->queue[p->queue_head];
        p->queue_head = (p->queue_head + 1) % PYWG_PLANE_QUEUE;
        p->queue_count--;
        p->queue_bytes -= it->len;
        if (it->bucket >= 0)
            p->queued_from[it->bucket]--;
    } else {
        /* Empty: clear the wake-up while holding the lock. A push that makes the
         * queue non-empty writes the eventfd after this, so no wake-up is lost
         * (clearing it after unlocking could swallow a push's, and Python would
         * never be woken again). */
        uint64_t drain;
        ssize_t ignored = read(p->event_fd, &drain, sizeof(drain));
        (void)ignored;
    }
    pthread_mutex_unlock(&p->queue_lock);
    if (it == NULL)
        return 0;
    len = (int)(it->len < cap ? it->len : cap);
    memcpy(buf, it->data, (size_t)len);
    *kind = it->kind;
    *addrlen = it->addrlen;
    if (it->addrlen)
        memcpy(addr, &it->addr, it->addrlen);
    *local_len = it->local.len;
    memcpy(local, it->local.data, it->local.len);
    free(it);
    return len;
}

/* ------------------------------------------------------------------ lifecycle */

/* Ask for coalesced receives (UDP_GRO); whether the kernel agreed. */
static int enable_gro(int udp_fd)
{
    int one = 1;
    return setsockopt(udp_fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
}

struct pywg_plane *pywg_plane_new(int tun_fd, int udp_fd, uint32_t mtu, int flags)
{
    struct pywg_plane *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->tun_fd = tun_fd;
    p->udp_fd = udp_fd;
    p->mtu = mtu;
    p->vnet = (flags & PYWG_PLANE_VNET_HDR) != 0;
    p->udp_offload = (flags & PYWG_PLANE_UDP_OFFLOAD) != 0;
    p->gso = p->udp_offload;
    p->load_threshold = PYWG_UNDER_LOAD_THRESHOLD;
    p->udp_gro = p->udp_offload && enable_gro(udp_fd);
    p->wake_fd[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->wake_fd[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->routes = pywg_lpm_new();
    if (p->wake_fd[0] < 0 || p->wake_fd[1] < 0 || p->event_fd < 0 || p->routes == NULL) {
        pywg_plane_free(p);
        return NULL;
    }
    pthread_mutex_init(&p->tx_lock, NULL);
    pthread_mutex_init(&p->rx_lock, NULL);
    pthread_mutex_init(&p->queue_lock, NULL);
    pthread_rwlock_init(&p->routes_lock, NULL);
    return p;
}

static void kp_destroy(struct pywg_kp *kp)
{
    pywg_aead_free(kp->tx);
    pywg_aead_free(kp->rx);
    pywg_aead_free(kp->py_tx);
    pywg_aead_free(kp->py_rx);
    pthread_spin_destroy(&kp->replay_lock);
    memset(kp, 0, sizeof(*kp));
    free(kp);
}

void pywg_plane_free(struct pywg_plane *p)
{
    if (p == NULL)
        return;
    for (size_t b = 0; b < INDEX_BUCKETS; b++) {
        struct pywg_kp *kp = p->index[b];
        while (kp != NULL) {
            struct pywg_kp *next = kp->next_in_bucket;
            kp_destroy(kp);
            kp = next;
        }
    }
    for (uint32_t i = 0; i < p->npeers; i++)
        free(p->peers[i]);
    free(p->peers);
    while (p->queue_count > 0) {
        free(p->queue[p->queue_head]);
        p->queue_head = (p->queue_head + 1) % PYWG_PLANE_QUEUE;
        p->queue_count--;
    }
    if (p->routes != NULL)
        pywg_lpm_free(p->routes);
    pywg_gro_free(p->gro);
    for (int i = 0; i < 2; i++)
        if (p->wake_fd[i] >= 0)
            close(p->wake_fd[i]);
    if (p->event_fd >= 0)
        close(p->event_fd);
    free(p);
}

void pywg_plane_set_mtu(struct pywg_plane *p, uint32_t mtu) { p->mtu = mtu; }

void pywg_plane_set_filter(struct pywg_plane *p, struct pywg_filter *f) { p->filter = f; }

void pywg_plane_set_udp(struct pywg_plane *p, int udp_fd)
{
    uint64_t one = 1;
    ssize_t ignored;
    p->udp_gro = p->udp_offload && enable_gro(udp_fd);
    p->udp_fd = udp_fd;
    ignored = write(p->wake_fd[1], &one, sizeof(one)); /* the RX loop polls the old one */
    (void)ignored;
}

void pywg_plane_stop(struct pywg_plane *p)
{
    uint64_t one = 1;
    ssize_t ignored;
    p->stopping = 1;
    for (int i = 0; i < 2; i++)
        ignored = write(p->wake_fd[i], &one, sizeof(one));
    (void)ignored;
}

int pywg_plane_event_fd(struct pywg_plane *p) { return p->event_fd; }

void pywg_plane_stats(struct pywg_plane *p, struct pywg_plane_stats *out)
{
    out->tx_packets = p->stats.tx_packets;
    out->rx_packets = p->stats.rx_packets;
    out->up_datagrams = p->stats.up_datagrams;
    out->up_packets = p->stats.up_packets;
    out->queue_drops = p->stats.queue_drops;
    out->rx_rejected = p->stats.rx_rejected;
    out->rx_bad_source = p->stats.rx_bad_source;
    out->rx_filtered = p->stats.rx_filtered;
    out->tx_no_route = p->stats.tx_no_route;
    out->send_retries = p->stats.send_retries;
    out->tx_malformed = p->stats.tx_malformed;
    out->rx_junk = p->stats.rx_junk;
    out->rx_bad_mac1 = p->stats.rx_bad_mac1;
    out->rx_unknown_index = p->stats.rx_unknown_index;
    out->rx_cookie_replies = p->stats.rx_cookie_replies;
    out->rx_cookie_limited = p->stats.rx_cookie_limited;
    out->tx_no_relay = p->stats.tx_no_relay;
}

void pywg_plane_set_identity(struct pywg_plane *p, const uint8_t *mac1_key,
                             const uint8_t *cookie_key)
{
    pthread_mutex_lock(&p->rx_lock);
    p->mac1_set = mac1_key != NULL && cookie_key != NULL;
    if (p->mac1_set) {
        memcpy(p->mac1_key, mac1_key, sizeof(p->mac1_key));
        memcpy(p->cookie_key, cookie_key, sizeof(p->cookie_key));
    } else {
        OPENSSL_cleanse(p->mac1_key, sizeof(p->mac1_key));
        OPENSSL_cleanse(p->cookie_key, sizeof(p->cookie_key));
    }
    pthread_mutex_unlock(&p->rx_lock);
}

void pywg_plane_set_retired_identity(struct pywg_plane *p, const uint8_t *mac1_key)
{
    pthread_mutex_lock(&p->rx_lock);
    p->retired_mac1_set = mac1_key != NULL;
    if (mac1_key != NULL)
        memcpy(p->retired_mac1_key, mac1_key, sizeof(p->retired_mac1_key));
    else
        OPENSSL_cleanse(p->retired_mac1_key, sizeof(p->retired_mac1_key));
    pthread_mutex_unlock(&p->rx_lock);
}

void pywg_plane_set_cookie_secret(struct pywg_plane *p, const uint8_t *secret)
{
    pthread_mutex_lock(&p->rx_lock);
    p->cookie_set = secret != NULL;
    if (secret != NULL)
        memcpy(p->cookie_secret, secret, sizeof(p->cookie_secret));
    else
        OPENSSL_cleanse(p->cookie_secret, sizeof(p->cookie_secret));
    pthread_mutex_unlock(&p->rx_lock);
}

void pywg_plane_set_load_threshold(struct pywg_plane *p, uint32_t threshold)
{
    pthread_mutex_lock(&p->rx_lock);
    p->load_threshold = threshold;
    pthread_mutex_unlock(&p->rx_lock);
}

/* ------------------------------------------------------------------ peers */

struct pywg_peer *pywg_peer_new(struct pywg_plane *p, uint32_t id)
{
    struct pywg_peer *peer = calloc(1, sizeof(*peer));
    if (peer == NULL)
        return NULL;
    peer->id = id;
    pthread_mutex_lock(&p->rx_lock);
    pthread_mutex_lock(&p->tx_lock);
    if (id >= p->npeers) {
        uint32_t n = p->npeers ? p->npeers : 16;
        struct pywg_peer **grown;
        while (n <= id)
            n *= 2;
        grown = realloc(p->peers, n * sizeof(*grown));
        if (grown == NULL) {
            pthread_mutex_unlock(&p->tx_lock);
            pthread_mutex_unlock(&p->rx_lock);
            free(peer);
            return NULL;
        }
        memset(grown + p->npeers, 0, (n - p->npeers) * sizeof(*grown));
        p->peers = grown;
        p->npeers = n;
    }
    if (p->peers[id] != NULL) { /* the caller reuses ids only after freeing */
        pthread_mutex_unlock(&p->tx_lock);
        pthread_mutex_unlock(&p->rx_lock);
        free(peer);
        return NULL;
    }
    p->peers[id] = peer;
    pthread_mutex_unlock(&p->tx_lock);
    pthread_mutex_unlock(&p->rx_lock);
    return peer;
}

/* The caller frees the peer's keypairs first. */
void pywg_peer_free(struct pywg_plane *p, struct pywg_peer *peer)
{
    pthread_mutex_lock(&p->rx_lock);
    pthread_rwlock_wrlock(&p->routes_lock);
    pthread_mutex_lock(&p->tx_lock);
    pywg_lpm_remove_value(p->routes, peer->id);
    if (peer->id < p->npeers && p->peers[peer->id] == peer)
        p->peers[peer->id] = NULL;
    pthread_mutex_unlock(&p->tx_lock);
    pthread_rwlock_unlock(&p->routes_lock);
    pthread_mutex_unlock(&p->rx_lock);
    free(peer);
}

void pywg_peer_set_endpoint(struct pywg_plane *p, struct pywg_peer *peer, const uint8_t *addr,
                            uint32_t addrlen)
{
    if (addrlen > sizeof(peer->endpoint))
        return;
    pthread_mutex_lock(&p->tx_lock);
    memset(&peer->endpoint, 0, sizeof(peer->endpoint));
    if (addrlen)
        memcpy(&peer->endpoint, addr, addrlen);
    peer->endpoint_len = addrlen;
    pthread_mutex_unlock(&p->tx_lock);
}

void pywg_peer_set_source(struct pywg_plane *p, struct pywg_peer *peer, int level, int type,
                          const uint8_t *data, uint32_t len)
{
    if (len > sizeof(peer->src.data))
        return;
    pthread_mutex_lock(&p->tx_lock);
    peer->src.level = level;
    peer->src.type = type;
    memcpy(peer->src.data, data, len);
    peer->src.len = len;
    pthread_mutex_unlock(&p->tx_lock);
}

uint32_t pywg_peer_endpoint(struct pywg_plane *p, struct pywg_peer *peer, uint8_t *addr)
{
    uint32_t len;
    pthread_mutex_lock(&p->tx_lock);
    len = peer->endpoint_len;
    memcpy(addr, &peer->endpoint, len);
    pthread_mutex_unlock(&p->tx_lock);
    return len;
}

void pywg_peer_stats(struct pywg_plane *p, struct pywg_peer *peer, struct pywg_peer_stats *out)
{
    (void)p;
    out->rx_bytes = peer->rx_bytes;
    out->tx_bytes = peer->tx_bytes;
    out->last_sent = peer->last_sent;
    out->last_received = peer->last_received;
    out->last_data_received = peer->last_data_received;
    out->endpoint_version = peer->endpoint_version;
}

void pywg_peer_set_current(struct pywg_plane *p, struct pywg_peer *peer, struct pywg_kp *kp)
{
    pthread_mutex_lock(&p->tx_lock);
    peer->current = kp;
    pthread_mutex_unlock(&p->tx_lock);
}

/* ------------------------------------------------------------------ routes */

int pywg_plane_routes_load(struct pywg_plane *p, const struct pywg_lpm *src, const uint32_t *map,
                           size_t nmap)
{
    struct pywg_lpm *fresh = pywg_lpm_clone(src, map, nmap), *old;

    if (fresh == NULL)
        return -1;
    pthread_rwlock_wrlock(&p->routes_lock);
    old = p->routes;
    p->routes = fresh;
    pthread_rwlock_unlock(&p->routes_lock);
    pywg_lpm_free(old);
    return 0;
}

int64_t pywg_plane_route_lookup(struct pywg_plane *p, int family, const uint8_t *addr)
{
    int64_t id;

    pthread_rwlock_rdlock(&p->routes_lock);
    id = pywg_lpm_lookup(p->routes, family, addr);
    pthread_rwlock_unlock(&p->routes_lock);
    return id;
}

/* ------------------------------------------------------------------ keypairs */

static struct pywg_kp *index_get(struct pywg_plane *p, uint32_t index)
{
    struct pywg_kp *kp = p->index[index % INDEX_BUCKETS];
    while (kp != NULL && kp->local_index != index)
        kp = kp->next_in_bucket;
    return kp;
}

struct pywg_kp *pywg_kp_new(struct pywg_plane *p, struct pywg_peer *peer, const uint8_t *send_key,
                            const uint8_t *receive_key, uint32_t local_index,
                            uint32_t remote_index, double created, uint64_t send_counter,
                            const uint8_t *replay, size_t replay_size)
{
    struct pywg_kp *kp = calloc(1, sizeof(*kp));
    if (kp == NULL)
        return NULL;
    kp->peer = peer;
    kp->local_index = local_index;
    kp->remote_index = remote_index;
    kp->created = created;
    kp->send_counter = send_counter;
    kp->tx = pywg_aead_new(send_key, 1);
    kp->rx = pywg_aead_new(receive_key, 0);
    kp->py_tx = pywg_aead_new(send_key, 1);
    kp->py_rx = pywg_aead_new(receive_key, 0);
    pthread_spin_init(&kp->replay_lock, PTHREAD_PROCESS_PRIVATE);
    if (replay != NULL && replay_size == sizeof(kp->replay))
        memcpy(&kp->replay, replay, sizeof(kp->replay));
    else
        pywg_replay_init(&kp->replay, PYWG_REJECT_AFTER_MESSAGES);
    if (kp->tx == NULL || kp->rx == NULL || kp->py_tx == NULL || kp->py_rx == NULL) {
        kp_destroy(kp);
        return NULL;
    }
    pthread_mutex_lock(&p->rx_lock);
    if (index_get(p, local_index) != NULL) { /* indices are unique per device */
        pthread_mutex_unlock(&p->rx_lock);
        kp_destroy(kp);
        return NULL;
    }
    kp->next_in_bucket = p->index[local_index % INDEX_BUCKETS];
    p->index[local_index % INDEX_BUCKETS] = kp;
    pthread_mutex_unlock(&p->rx_lock);
    return kp;
}

void pywg_kp_set_rx_native(struct pywg_plane *p, struct pywg_kp *kp, int rx_native)
{
    pthread_mutex_lock(&p->rx_lock);
    kp->rx_native = rx_native;
    pthread_mutex_unlock(&p->rx_lock);
}

void pywg_kp_free(struct pywg_plane *p, struct pywg_kp *kp)
{
    struct pywg_kp **link;
    pthread_mutex_lock(&p->rx_lock);
    pthread_mutex_lock(&p->tx_lock);
    link = &p->index[kp->local_index % INDEX_BUCKETS];
    while (*link != NULL && *link != kp)
        link = &(*link)->next_in_bucket;
    if (*link == kp)
        *link = kp->next_in_bucket;
    if (kp->peer != NULL && kp->peer->current == kp)
        kp->peer->current = NULL;
    pthread_mutex_unlock(&p->tx_lock);
    pthread_mutex_unlock(&p->rx_lock);
    kp_destroy(kp);
}

uint64_t pywg_kp_send_counter(struct pywg_kp *kp) { return kp->send_counter; }

static void write_header(uint8_t *out, uint32_t receiver, uint64_t counter)
{
    out[0] = PYWG_MESSAGE_TRANSPORT;
    out[1] = out[2] = out[3] = 0;
    put_le32(out + PYWG_RECEIVER_INDEX_OFFSET, receiver);
    put_le64(out + PYWG_TRANSPORT_COUNTER_OFFSET, counter);
}

int64_t pywg_kp_seal(struct pywg_kp *kp, const uint8_t *padded, size_t len, uint8_t *out)
{
    uint64_t counter = atomic_fetch_add(&kp->send_counter, 1);
    if (counter >= PYWG_REJECT_AFTER_MESSAGES)
        return -1;
    write_header(out, kp->remote_index, counter);
    if (pywg_aead_seal(kp->py_tx, counter, padded, len, out + PYWG_TRANSPORT_HEADER_SIZE) != 0)
        return -1;
    return (int64_t)(PYWG_TRANSPORT_HEADER_SIZE + len + PYWG_AEAD_TAG_SIZE);
}

static bool replay_would_accept(struct pywg_kp *kp, uint64_t counter)
{
    bool ok;
    pthread_spin_lock(&kp->replay_lock);
    ok = pywg_replay_would_accept(&kp->replay, counter);
    pthread_spin_unlock(&kp->replay_lock);
    return ok;
}

static bool replay_check(struct pywg_kp *kp, uint64_t counter)
{
    bool ok;
    pthread_spin_lock(&kp->replay_lock);
    ok = pywg_replay_check(&kp->replay, counter);
    pthread_spin_unlock(&kp->replay_lock);
    return ok;
}

int64_t pywg_kp_open(struct pywg_kp *kp, uint64_t counter, const uint8_t *ciphertext, size_t len,
                     uint8_t *out)
{
    if (len < PYWG_AEAD_TAG_SIZE)
        return -1;
    if (!replay_would_accept(kp, counter))
        return -2;
    if (pywg_aead_open(kp->py_rx, counter, ciphertext, len, out) != 0)
        return -1;
    if (!replay_check(kp, counter)) /* RFC 6479: mark only after authentication */
        return -2;
    return (int64_t)(len - PYWG_AEAD_TAG_SIZE);
}

/* ------------------------------------------------------------------ the loops */

/* Wait for fd (events) or a wake-up of loop `who` (0 TX, 1 RX); false when stopping. */
static bool wait_ready(struct pywg_plane *p, int who, int fd, short events, int timeout_ms)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = events},
                            {.fd = p->wake_fd[who], .events = POLLIN}};
    if (p->stopping)
        return false;
    if (poll(pfd, 2, timeout_ms) < 0 && errno != EINTR)
        return !p->stopping;
    if (pfd[1].revents & POLLIN) {
        uint64_t drain;
        ssize_t ignored;
        if (p->stopping)
            return false;
        ignored = read(p->wake_fd[who], &drain, sizeof(drain)); /* a set_udp wake-up */
        (void)ignored;
    }
    return !p->stopping;
}

void pywg_plane_set_relay(struct pywg_plane *p, uint32_t number, const uint8_t *addr,
                          uint32_t addrlen)
{
    if (number < 1 || number > PYWG_MAX_RELAY_INDEX || addrlen > sizeof(p->relays[0]))
        return;
    pthread_mutex_lock(&p->rx_lock);
    pthread_mutex_lock(&p->tx_lock);
    p->nrelays += (addrlen != 0) - (p->relay_len[number] != 0);
    memset(&p->relays[number], 0, sizeof(p->relays[number]));
    memcpy(&p->relays[number], addr, addrlen);
    p->relay_len[number] = addrlen;
    pthread_mutex_unlock(&p->tx_lock);
    pthread_mutex_unlock(&p->rx_lock);
}

/* A relayed endpoint, [100::ID]:R in the discard-only prefix (pywg.relayed): its relay
 * number R and node id; 0 for any other address. */
static uint32_t relayed_node(const struct sockaddr_storage *a, socklen_t len, uint32_t *relay)
{
    const struct sockaddr_in6 *in6 = (const void *)a;
    const uint8_t *b = in6->sin6_addr.s6_addr;
    uint32_t node;
    if (len < sizeof(*in6) || a->ss_family != AF_INET6 ||
        b[0] != (PYWG_RELAYED_PREFIX_HIGH >> 8) || b[1] != (PYWG_RELAYED_PREFIX_HIGH & 0xff))
        return 0;
    for (int i = 2; i < 13; i++) /* the rest of the /64, and the id's 32-bit field's top */
        if (b[i] != 0)
            return 0;
    node = (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
    *relay = ntohs(in6->sin6_port);
    return *relay >= 1 && *relay <= PYWG_MAX_RELAY_INDEX ? node : 0;
}

/* Where a datagram to `to` goes: `to` itself, or for a relayed endpoint its relay, with
 * the node id to tag the datagram with (0: none). False: a relay that is not set. */
static bool carrier(const struct pywg_plane *p, const struct sockaddr_storage *to,
                    socklen_t tolen, const struct sockaddr_storage **via, socklen_t *vialen,
                    uint32_t *node)
{
    uint32_t relay;
    *via = to;
    *vialen = tolen;
    *node = p->nrelays != 0 ? relayed_node(to, tolen, &relay) : 0;
    if (*node == 0)
        return true;
    *via = &p->relays[relay];
    *vialen = p->relay_len[relay];
    return *vialen != 0;
}

/* A WireGuard message's reserved bytes set to the node id, for the relay. */
static void put_tag(uint8_t *message, uint32_t node)
{
    message[PYWG_RELAY_TAG_OFFSET] = (uint8_t)(node >> 16);
    message[PYWG_RELAY_TAG_OFFSET + 1] = (uint8_t)(node >> 8);
    message[PYWG_RELAY_TAG_OFFSET + 2] = (uint8_t)node;
}

/* A datagram from a relay, tagged with the node it comes from: its reserved bytes
 * zeroed, and `out` set to that node's relayed endpoint. False: not one. */
static bool from_relay(const struct pywg_plane *p, uint8_t *d, size_t len,
                       const struct sockaddr_storage *src, socklen_t srclen,
                       struct sockaddr_in6 *out)
{
    uint32_t node;
    if (len < PYWG_MESSAGE_TYPE_SIZE || d[0] < PYWG_MESSAGE_INITIATION ||
        d[0] > PYWG_MESSAGE_TRANSPORT || (d[1] | d[2] | d[3]) == 0)
        return false;
    for (uint32_t r = 1; r <= PYWG_MAX_RELAY_INDEX; r++) {
        if (p->relay_len[r] == 0 || !pywg_same_address(src, srclen, &p->relays[r], p->relay_len[r]))
            continue;
        node = (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        memset(d + PYWG_RELAY_TAG_OFFSET, 0, PYWG_RELAY_TAG_SIZE);
        memset(out, 0, sizeof(*out));
        out->sin6_family = AF_INET6;
        out->sin6_port = htons((uint16_t)r);
        out->sin6_addr.s6_addr[0] = PYWG_RELAYED_PREFIX_HIGH >> 8;
        out->sin6_addr.s6_addr[1] = PYWG_RELAYED_PREFIX_HIGH & 0xff;
        out->sin6_addr.s6_addr[13] = (uint8_t)(node >> 16);
        out->sin6_addr.s6_addr[14] = (uint8_t)(node >> 8);
        out->sin6_addr.s6_addr[15] = (uint8_t)node;
        return true;
    }
    return false;
}

#define GSO_SPACE CMSG_SPACE(sizeof(uint16_t))
#define TX_CONTROL (GSO_SPACE + CMSG_SPACE(sizeof(struct in6_pktinfo)))

/* A send's control messages: UDP_SEGMENT for a GSO group of `seg`-byte datagrams
 * (seg 0: one datagram), then the PKTINFO naming the source, if the peer has one. */
static void set_control(struct msghdr *m, uint8_t *buf, uint16_t seg, const struct source *src)
{
    struct cmsghdr *c;
    size_t used = 0;
    if (seg == 0 && src->len == 0)
        return;
    memset(buf, 0, TX_CONTROL);
    m->msg_control = buf;
    m->msg_controllen = TX_CONTROL;
    c = CMSG_FIRSTHDR(m);
    if (seg != 0) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        used += GSO_SPACE;
        c = (struct cmsghdr *)(buf + used);
    }
    if (src->len != 0) {
        c->cmsg_level = src->level;
        c->cmsg_type = src->type;
        c->cmsg_len = CMSG_LEN(src->len);
        memcpy(CMSG_DATA(c), src->data, src->len);
        used += CMSG_SPACE(src->len);
    }
    m->msg_controllen = used;
}

/* Whether a send carries a PKTINFO source after its UDP_SEGMENT, if any. */
static bool has_source(const struct msghdr *m)
{
    return m->msg_controllen > (m->msg_iovlen > 1 ? GSO_SPACE : 0);
}

/* Whether a failed send that carried a PKTINFO source failed because of it: the
 * address is no longer ours (IPv6: EINVAL; IPv4: ENETUNREACH from the route lookup
 * for a non-local source; EADDRNOTAVAIL). */
static bool source_refused(const struct msghdr *m, int err)
{
    return has_source(m) && (err == EINVAL || err == EADDRNOTAVAIL || err == ENETUNREACH);
}

/* The address a send named is gone from the host (IPv6: EINVAL; IPv4: ENETUNREACH from
 * the route lookup for a non-local source): forget it for this peer, unless it has
 * learned another meanwhile, and send with the kernel's choice from now on. */
static void drop_source(struct pywg_plane *p, uint32_t id, struct msghdr *m)
{
    const struct cmsghdr *c =
        (const struct cmsghdr *)((uint8_t *)m->msg_control + (m->msg_iovlen > 1 ? GSO_SPACE : 0));
    pthread_mutex_lock(&p->tx_lock);
    if (id < p->npeers && p->peers[id] != NULL) {
        struct source *src = &p->peers[id]->src;
        if (src->len != 0 && memcmp(CMSG_DATA(c), src->data, src->len) == 0)
            src->len = 0;
    }
    pthread_mutex_unlock(&p->tx_lock);
    m->msg_controllen -= CMSG_SPACE(c->cmsg_len - CMSG_LEN(0));
    if (m->msg_controllen == 0)
        m->msg_control = NULL;
}

/* Send one GSO group's datagrams one by one (the kernel refused UDP_SEGMENT). */
static void send_singly(struct pywg_plane *p, struct msghdr *m)
{
    for (size_t i = 0; i < m->msg_iovlen; i++) {
        /* the PKTINFO source, if any, follows the refused UDP_SEGMENT */
        struct msghdr one = {.msg_name = m->msg_name, .msg_namelen = m->msg_namelen,
                             .msg_iov = &m->msg_iov[i], .msg_iovlen = 1};
        if (has_source(m)) {
            one.msg_control = (uint8_t *)m->msg_control + GSO_SPACE;
            one.msg_controllen = m->msg_controllen - GSO_SPACE;
        }
        for (int tries = 0; tries < 1000; tries++) {
            if (sendmsg(p->udp_fd, &one, 0) >= 0 || (errno != EAGAIN && errno != ENOBUFS))
                break;
            wait_ready(p, 0, p->udp_fd, POLLOUT, 100);
        }
    }
}

static void send_all(struct pywg_plane *p, struct mmsghdr *msgs, const uint32_t *ids,
                     unsigned count)
{
    unsigned done = 0;
    int spins = 0;
    while (done < count && !p->stopping) {
        int r = sendmmsg(p->udp_fd, msgs + done, count - done, 0);
        if (r > 0) {
            done += (unsigned)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
            /* the socket buffer is full: wait for room rather than drop */
            atomic_fetch_add(&p->stats.send_retries, 1);
            wait_ready(p, 0, p->udp_fd, POLLOUT, 100);
            if (++spins > 1000)
                done++;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (source_refused(&msgs[done].msg_hdr, errno)) {
            drop_source(p, ids[done], &msgs[done].msg_hdr);
            continue; /* the same datagrams again, from the kernel's choice */
        }
        if (msgs[done].msg_hdr.msg_iovlen > 1 && (errno == EIO || errno == EINVAL)) {
            p->gso = 0; /* the kernel refuses UDP GSO on this path (EIO): stop using it */
            send_singly(p, &msgs[done].msg_hdr);
        }
        done++; /* otherwise this datagram cannot go (no route, firewall): skip it, as UDP would */
    }
}

/* The distance between TX slots for packets (and TSO segments) of up to mtu
 * bytes: TX_SLOT_PACKET, or the MTU where it is larger, plus the slot's extra
 * bytes, in whole cache lines. */
static size_t tx_stride(uint32_t mtu)
{
    size_t packet = mtu > TX_SLOT_PACKET ? mtu : TX_SLOT_PACKET;
    size_t stride = (TX_SLOT_EXTRA + packet + 63) / 64 * 64;
    return stride < TX_STRIDE_MAX ? stride : TX_STRIDE_MAX;
}

/* One packet read from the TUN into slots (vnet header already taken off), at
 * the first slot's packet place, into segment slots `stride` bytes apart. */
static unsigned take_packet(struct pywg_plane *p, const struct pywg_vnet_hdr *h, uint8_t *pkt,
                            size_t len, uint8_t *slots, size_t stride, size_t *lens,
                            unsigned room)
{
    int gso = h != NULL ? h->gso_type & ~PYWG_VNET_GSO_ECN : PYWG_VNET_GSO_NONE;
    if (gso == PYWG_VNET_GSO_TCPV4 || gso == PYWG_VNET_GSO_TCPV6) {
        int n = pywg_tso_split(h, pkt, len, slots + PYWG_TRANSPORT_HEADER_SIZE, stride, lens,
                               (int)room);
        if (n < 0) {
            atomic_fetch_add(&p->stats.tx_malformed, 1); /* unsplittable: dropped */
            return 0;
        }
        return (unsigned)n;
    }
    if (gso != PYWG_VNET_GSO_NONE ||  /* UDP segmentation was not offered to the kernel */
        (h != NULL && (h->flags & PYWG_VNET_F_NEEDS_CSUM) && pywg_csum_finish(h, pkt, len) != 0)) {
        atomic_fetch_add(&p->stats.tx_malformed, 1);
        return 0;
    }
    if (TX_SLOT_EXTRA + len > stride) {
        /* larger than the MTU the round was sized for (it changed meanwhile): Python's path */
        push_up(p, PYWG_PLANE_ITEM_PACKET, pkt, len, NULL, 0, NULL);
        return 0;
    }
    lens[0] = len; /* read in place */
    return 1;
}

int pywg_plane_run_tx(struct pywg_plane *p)
{
    uint8_t *slots = malloc((size_t)TX_SEGMENTS * TX_STRIDE_MAX); /* touched as used */
    static __thread struct mmsghdr msgs[TX_SEGMENTS];
    static __thread struct iovec iov[TX_SEGMENTS];
    static __thread struct sockaddr_storage addrs[TX_SEGMENTS];
    static __thread uint8_t cmsgs[TX_SEGMENTS][TX_CONTROL];
    size_t lens[TX_SEGMENTS];
    struct pywg_peer *owner[TX_SEGMENTS];
    uint32_t ids[TX_SEGMENTS];
    int status = 0;
    if (slots == NULL)
        return -1;
    while (wait_ready(p, 0, p->tun_fd, POLLIN, -1)) {
        unsigned n = 0, out = 0, sealed = 0;
        double now;
        uint32_t mtu = p->mtu;
        size_t stride = tx_stride(mtu);
        int vnet = p->vnet, gso = p->gso;
        struct pywg_filter *filter = p->filter;
        double read_at = filter != NULL ? monotonic_now() : 0;
        for (int reads = 0; reads < PYWG_PLANE_BATCH && n + TX_ROOM <= TX_SEGMENTS; reads++) {
            struct pywg_vnet_hdr h;
            /* straight into the next slot's packet place (the vnet header into its
             * transport header's), so a packet is not copied again; a super-packet
             * spills over the free slots after it (TX_ROOM of them) and is split there */
            uint8_t *slot = slots + (size_t)n * stride, *pkt = slot + PYWG_TRANSPORT_HEADER_SIZE;
            uint8_t *into = vnet ? pkt - PYWG_VNET_HDR_LEN : pkt;
            ssize_t r = read(p->tun_fd, into, PYWG_VNET_HDR_LEN + PYWG_MAX_IP_PACKET_SIZE);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno != EAGAIN) {
                status = -1; /* EBADFD: the interface was deleted */
                goto done;
            }
            if (r <= 0)
                break;
            if (vnet && r < PYWG_VNET_HDR_LEN)
                continue;
            if (filter != NULL) /* conntrack: the flows this node opens (filter.h) */
                pywg_filter_outbound(filter, pkt, (size_t)r - (vnet ? PYWG_VNET_HDR_LEN : 0),
                                     read_at);
            if (!vnet) {
                n += take_packet(p, NULL, pkt, (size_t)r, slot, stride, lens + n, TX_SEGMENTS - n);
                continue;
            }
            memcpy(&h, into, sizeof(h));
            n += take_packet(p, &h, pkt, (size_t)r - PYWG_VNET_HDR_LEN,
                             slots + (size_t)n * stride, stride, lens + n, TX_SEGMENTS - n);
        }
        if (n == 0)
            continue;
        now = monotonic_now();
        pthread_rwlock_rdlock(&p->routes_lock);
        pthread_mutex_lock(&p->tx_lock);
        for (unsigned i = 0; i < n; i++) {
            uint8_t *packet = slots + (size_t)i * stride + PYWG_TRANSPORT_HEADER_SIZE;
            size_t len = lens[i], padded;
            int64_t id = pywg_lpm_lookup_packet(p->routes, packet, len, 1);
            struct pywg_peer *peer;
            struct pywg_kp *kp;
            uint64_t counter;
            if (id < 0 || (uint64_t)id >= p->npeers || p->peers[id] == NULL) {
                atomic_fetch_add(&p->stats.tx_no_route, 1);
                continue;
            }
            peer = p->peers[id];
            kp = peer->current;
            if (kp == NULL || peer->endpoint_len == 0 ||
                now - kp->created >= PYWG_REJECT_AFTER_TIME) {
                push_up(p, PYWG_PLANE_ITEM_PACKET, packet, len, NULL, 0, NULL); /* Python stages it */
                continue;
            }
            counter = atomic_fetch_add(&kp->send_counter, 1);
            if (counter >= PYWG_REJECT_AFTER_MESSAGES) {
                push_up(p, PYWG_PLANE_ITEM_PACKET, packet, len, NULL, 0, NULL);
                continue;
            }
            padded = padded_length(len, mtu);
            memset(packet + len, 0, padded - len);
            write_header(packet - PYWG_TRANSPORT_HEADER_SIZE, kp->remote_index, counter);
            if (pywg_aead_seal(kp->tx, counter, packet, padded, packet) != 0)
                continue;
            iov[sealed].iov_base = packet - PYWG_TRANSPORT_HEADER_SIZE;
            iov[sealed].iov_len = PYWG_TRANSPORT_HEADER_SIZE + padded + PYWG_AEAD_TAG_SIZE;
            owner[sealed] = peer;
            atomic_fetch_add(&peer->tx_bytes, iov[sealed].iov_len);
            peer->last_sent = now;
            sealed++;
        }
        /* Group runs of same-size datagrams to one peer into UDP GSO sends (the last
         * of a run may be shorter); each group is one msghdr of several iovecs. */
        for (unsigned i = 0; i < sealed;) {
            struct pywg_peer *peer = owner[i];
            size_t seg = iov[i].iov_len, total = seg;
            const struct sockaddr_storage *via;
            socklen_t vialen;
            uint32_t node;
            unsigned k = 1;
            struct msghdr *m = &msgs[out].msg_hdr;
            while (gso && i + k < sealed && k < 64 && owner[i + k] == peer &&
                   iov[i + k - 1].iov_len == seg && iov[i + k].iov_len <= seg &&
                   total + iov[i + k].iov_len <= 65000) {
                total += iov[i + k].iov_len;
                k++;
            }
            if (!carrier(p, &peer->endpoint, peer->endpoint_len, &via, &vialen, &node)) {
                atomic_fetch_add(&p->stats.tx_no_relay, k);
                i += k;
                continue;
            }
            for (unsigned j = 0; node != 0 && j < k; j++)
                put_tag(iov[i + j].iov_base, node);
            memset(&msgs[out], 0, sizeof(msgs[out]));
            memcpy(&addrs[out], via, vialen);
            m->msg_name = &addrs[out];
            m->msg_namelen = vialen;
            m->msg_iov = &iov[i];
            m->msg_iovlen = k;
            set_control(m, cmsgs[out], k > 1 ? (uint16_t)seg : 0, &peer->src);
            ids[out] = peer->id;
            out++;
            i += k;
        }
        pthread_mutex_unlock(&p->tx_lock);
        pthread_rwlock_unlock(&p->routes_lock);
        atomic_fetch_add(&p->stats.tx_packets, sealed);
        send_all(p, msgs, ids, out);
    }
done:
    free(slots);
    return status;
}

/* The inner packet's length from its IP header, or 0 if malformed. */
static size_t inner_length(const uint8_t *pkt, size_t len)
{
    size_t total;
    if (len >= 20 && pkt[0] >> 4 == 4)
        total = (size_t)pkt[2] << 8 | pkt[3];
    else if (len >= 40 && pkt[0] >> 4 == 6)
        total = 40 + ((size_t)pkt[4] << 8 | pkt[5]);
    else
        return 0;
    return total <= len ? total : 0;
}

static void write_tun(struct pywg_plane *p, const uint8_t *pkt, size_t len)
{
    for (int tries = 0; tries < 100; tries++) {
        ssize_t r = write(p->tun_fd, pkt, len);
        if (r >= 0 || (errno != EAGAIN && errno != EINTR))
            return;
        if (errno == EAGAIN && !wait_ready(p, 1, p->tun_fd, POLLOUT, 10))
            return;
    }
}

/* Whether a datagram the loop does not handle itself is worth Python's time.
 * Every message type has a fixed size, transport messages a minimum one
 * (whitepaper §5.4.2-§5.4.7), and initiations and responses must carry a
 * valid mac1 (§5.4.4, checked first by any responder, under load or not), so
 * garbage and forged handshakes are dropped here for the cost of one BLAKE2s,
 * never queued. Called under rx_lock. */
/* A STUN message (RFC 8489 §5): two zero bits, the magic cookie at bytes 4-7,
 * a length that is a multiple of 4 and fills the datagram. No WireGuard
 * message looks like one (its bytes 1-3 are zero, a STUN type's are not or
 * its byte 0 is). */
/* The cookie's input (§5.4.7, as cookie.source_bytes): the source address ‖ port
 * (big-endian), an IPv4-mapped IPv6 address as IPv4. Its length, 0 if unknown. */
static size_t source_bytes(const struct sockaddr_storage *src, uint8_t out[18])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (src->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)src;
        memcpy(out, &in->sin_addr, 4);
        memcpy(out + 4, &in->sin_port, 2);
        return 6;
    }
    if (src->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)src;
        const uint8_t *a = (const uint8_t *)&in6->sin6_addr;
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            memcpy(out, a + 12, 4);
            memcpy(out + 4, &in6->sin6_port, 2);
            return 6;
        }
        memcpy(out, a, 16);
        memcpy(out + 16, &in6->sin6_port, 2);
        return 18;
    }
    return 0;
}

/* Whether the source (address ‖ port) may have another cookie reply now. */
static bool cookie_reply_allowed(struct pywg_plane *p, const uint8_t *source, size_t n, double now)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    double tokens;
    size_t b;
    for (size_t i = 0; i < n; i++)
        h = (h ^ source[i]) * 16777619u;
    b = h % COOKIE_BUCKETS;
    tokens = p->cookie_tokens[b] + (now - p->cookie_refilled[b]) * COOKIE_RATE;
    p->cookie_refilled[b] = now;
    if (tokens > COOKIE_BURST)
        tokens = COOKIE_BURST;
    if (tokens < 1.0) {
        p->cookie_tokens[b] = (float)tokens;
        return false;
    }
    p->cookie_tokens[b] = (float)(tokens - 1.0);
    return true;
}

/* §5.3: count a handshake message with a valid mac1, as the core does (Device):
 * more than load_threshold of them within PYWG_UNDER_LOAD_WINDOW put the plane
 * under load for PYWG_UNDER_LOAD_AFTER_TIME. Under load, one without
 * a valid mac2 is answered here with a cookie reply (§5.4.7) and goes no
 * further. One with a valid mac2 proves its source and goes up, where the
 * core checks it again with the same Rm and applies its per-source rate
 * limit (as Linux does, only to messages whose mac2 is valid). */
/* One datagram back to `to`, from the address it came to (`local`), or from the
 * kernel's choice if that address is gone; whether it went. */
static bool send_back(struct pywg_plane *p, uint8_t *data, size_t len,
                      const struct sockaddr_storage *to, socklen_t tolen,
                      const struct source *local)
{
    struct iovec iov = {.iov_base = data, .iov_len = len};
    uint8_t control[TX_CONTROL];
    const struct sockaddr_storage *via;
    socklen_t vialen;
    uint32_t node;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (!carrier(p, to, tolen, &via, &vialen, &node))
        return false;
    if (node != 0)
        put_tag(data, node);
    m.msg_name = (void *)via;
    m.msg_namelen = vialen;
    set_control(&m, control, 0, local);
    if (sendmsg(p->udp_fd, &m, MSG_DONTWAIT) == (ssize_t)len)
        return true;
    if (!source_refused(&m, errno))
        return false;
    m.msg_control = NULL;
    m.msg_controllen = 0;
    return sendmsg(p->udp_fd, &m, MSG_DONTWAIT) == (ssize_t)len;
}

static bool answered_with_cookie(struct pywg_plane *p, const uint8_t *d, size_t mac1_at,
                                 size_t mac2_at, const struct sockaddr_storage *src,
                                 socklen_t srclen, const struct source *local, double now)
{
    uint8_t source[18], cookie[PYWG_COOKIE_SIZE], mac2[PYWG_MAC_SIZE];
    uint8_t reply[PYWG_COOKIE_REPLY_SIZE];
    size_t n;
    if (now - p->load_window >= PYWG_UNDER_LOAD_WINDOW) {
        p->load_window = now;
        p->load_count = 0;
    }
    if (++p->load_count > p->load_threshold)
        p->under_load_until = now + PYWG_UNDER_LOAD_AFTER_TIME;
    if (now >= p->under_load_until || !p->cookie_set || (n = source_bytes(src, source)) == 0)
        return false;
    pywg_blake2s(cookie, sizeof(cookie), p->cookie_secret, sizeof(p->cookie_secret), source, n);
    pywg_blake2s(mac2, sizeof(mac2), cookie, sizeof(cookie), d, mac2_at);
    if (CRYPTO_memcmp(mac2, d + mac2_at, sizeof(mac2)) == 0)
        return false;
    if (!cookie_reply_allowed(p, source, n, now)) {
        atomic_fetch_add(&p->stats.rx_cookie_limited, 1);
        OPENSSL_cleanse(cookie, sizeof(cookie));
        return true;
    }
    /* type 3, receiver = the sender index of what we answer, nonce, XAEAD(cookie) */
    memset(reply, 0, PYWG_MESSAGE_TYPE_SIZE);
    reply[0] = PYWG_MESSAGE_COOKIE_REPLY;
    memcpy(reply + PYWG_RECEIVER_INDEX_OFFSET, d + PYWG_SENDER_INDEX_OFFSET, PYWG_INDEX_SIZE);
    if (RAND_bytes(reply + PYWG_COOKIE_REPLY_NONCE_OFFSET, PYWG_COOKIE_NONCE_SIZE) == 1 &&
        pywg_xaead_seal(reply + PYWG_COOKIE_REPLY_COOKIE_OFFSET, p->cookie_key,
                        reply + PYWG_COOKIE_REPLY_NONCE_OFFSET, cookie, sizeof(cookie),
                        d + mac1_at, PYWG_MAC_SIZE) == 0 &&
        send_back(p, reply, sizeof(reply), src, srclen, local))
        atomic_fetch_add(&p->stats.rx_cookie_replies, 1);
    OPENSSL_cleanse(cookie, sizeof(cookie));
    return true;
}

static bool worth_handing_up(struct pywg_plane *p, const struct pywg_kp *kp, const uint8_t *d,
                             size_t len, const struct sockaddr_storage *src, socklen_t srclen,
                             const struct source *local, double now)
{
    uint8_t mac[PYWG_MAC_SIZE];
    size_t at, mac2_at;
    if (pywg_is_stun(d, len))
        return true; /* endpoint discovery on this socket: Python's (pywg.stun) */
    if (len < PYWG_MESSAGE_TYPE_SIZE || (d[1] | d[2] | d[3]) != 0)
        goto junk;
    switch (d[0]) {
    case PYWG_MESSAGE_INITIATION:
        if (len != PYWG_INITIATION_SIZE)
            goto junk;
        at = PYWG_INITIATION_MAC1_OFFSET;
        mac2_at = PYWG_INITIATION_MAC2_OFFSET;
        break;
    case PYWG_MESSAGE_RESPONSE:
        if (len != PYWG_RESPONSE_SIZE)
            goto junk;
        at = PYWG_RESPONSE_MAC1_OFFSET;
        mac2_at = PYWG_RESPONSE_MAC2_OFFSET;
        break;
    case PYWG_MESSAGE_COOKIE_REPLY:
        if (len != PYWG_COOKIE_REPLY_SIZE)
            goto junk;
        return true;
    case PYWG_MESSAGE_TRANSPORT:
        if (len < PYWG_TRANSPORT_MIN_SIZE)
            goto junk;
        if (kp == NULL) {
            /* Every keypair Python holds is mirrored here before its first
             * message can arrive (sync runs before the response or first
             * data goes out), so an index we do not know is nobody's. */
            atomic_fetch_add(&p->stats.rx_unknown_index, 1);
            return false;
        }
        return true; /* a session Python still confirms (rx_native off) */
    default:
        goto junk;
    }
    if (!p->mac1_set)
        return true; /* no private key yet: the core drops it and counts why */
    pywg_blake2s(mac, sizeof(mac), p->mac1_key, sizeof(p->mac1_key), d, at);
    if (CRYPTO_memcmp(mac, d + at, sizeof(mac)) != 0) {
        if (p->retired_mac1_set) { /* addressed to the key rotated away from: the core's */
            pywg_blake2s(mac, sizeof(mac), p->retired_mac1_key, sizeof(p->retired_mac1_key),
                         d, at);
            if (CRYPTO_memcmp(mac, d + at, sizeof(mac)) == 0)
                return true;
        }
        atomic_fetch_add(&p->stats.rx_bad_mac1, 1);
        return false;
    }
    return !answered_with_cookie(p, d, at, mac2_at, src, srclen, local, now);
junk:
    atomic_fetch_add(&p->stats.rx_junk, 1);
    return false;
}

static bool same_source(const struct source *a, const struct source *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void receive_one(struct pywg_plane *p, uint8_t *d, size_t len,
                        const struct sockaddr_storage *src, socklen_t srclen,
                        const struct source *local, double now)
{
    struct pywg_kp *kp = NULL;
    struct pywg_peer *peer;
    struct pywg_filter *filter;
    uint8_t *body = d + PYWG_TRANSPORT_HEADER_SIZE; /* of a transport message */
    uint64_t counter;
    size_t plain, inner;
    struct sockaddr_storage relayed; /* the relayed endpoint a tagged datagram came from */
    if (p->nrelays != 0 && !pywg_relay_stun(d, len) &&
        from_relay(p, d, len, src, srclen, (struct sockaddr_in6 *)&relayed)) {
        src = &relayed;
        srclen = sizeof(struct sockaddr_in6);
    }
    if (len >= PYWG_TRANSPORT_MIN_SIZE && d[0] == PYWG_MESSAGE_TRANSPORT && !d[1] && !d[2] &&
        !d[3])
        kp = index_get(p, le32(d + PYWG_RECEIVER_INDEX_OFFSET));
    if (kp == NULL || !kp->rx_native) {
        if (worth_handing_up(p, kp, d, len, src, srclen, local, now))
            push_up(p, PYWG_PLANE_ITEM_DATAGRAM, d, len, src, srclen, local); /* Python's business */
        return;
    }
    counter = le64(d + PYWG_TRANSPORT_COUNTER_OFFSET);
    if (now - kp->created >= PYWG_REJECT_AFTER_TIME || !replay_would_accept(kp, counter) ||
        pywg_aead_open(kp->rx, counter, body, len - PYWG_TRANSPORT_HEADER_SIZE, body) != 0 ||
        !replay_check(kp, counter)) {
        atomic_fetch_add(&p->stats.rx_rejected, 1);
        return;
    }
    /* authenticated (whitepaper §5.4.6) */
    peer = kp->peer;
    if (!pywg_same_address(src, srclen, &peer->endpoint, peer->endpoint_len)) {
        /* roaming (§2.1): the endpoint follows the latest authenticated packet */
        pthread_mutex_lock(&p->tx_lock);
        memset(&peer->endpoint, 0, sizeof(peer->endpoint));
        memcpy(&peer->endpoint, src, srclen);
        peer->endpoint_len = srclen;
        peer->src = *local;
        pthread_mutex_unlock(&p->tx_lock);
        atomic_fetch_add(&peer->endpoint_version, 1);
    } else if (local->len != 0 && !same_source(local, &peer->src)) {
        pthread_mutex_lock(&p->tx_lock);
        peer->src = *local; /* replies leave from the address it wrote to */
        pthread_mutex_unlock(&p->tx_lock);
    }
    atomic_fetch_add(&peer->rx_bytes, len);
    peer->last_received = now;
    plain = len - PYWG_TRANSPORT_MIN_SIZE;
    if (plain == 0)
        return; /* a keepalive */
    inner = inner_length(body, plain);
    if (inner == 0 || pywg_lpm_lookup_packet(p->routes, body, inner, 0) != (int64_t)peer->id) {
        atomic_fetch_add(&p->stats.rx_bad_source, 1); /* cryptokey routing, §3 */
        return;
    }
    peer->last_data_received = now;
    filter = p->filter;
    if (filter != NULL && pywg_filter_inbound(filter, body, inner, now) != PYWG_FILTER_PASS) {
        atomic_fetch_add(&p->stats.rx_filtered, 1); /* the access policy (filter.h) */
        return;
    }
    if (p->gro != NULL) { /* coalesced with its neighbours, written at the batch's end */
        pywg_gro_add(p->gro, body, inner);
    } else {
        write_tun(p, body, inner);
    }
    atomic_fetch_add(&p->stats.rx_packets, 1);
}

/* The source that sends from a received PKTINFO's destination: the interface
 * index stays 0 so the route picks the way out (RFC 3542 §6.1; ip(7): in_pktinfo's
 * ipi_spec_dst is the source sent from, ipi_addr the header's destination). */
static void reply_source(const struct cmsghdr *c, struct source *out)
{
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo info;
        memcpy(&info, CMSG_DATA(c), sizeof(info));
        info.ipi6_ifindex = 0;
        memcpy(out->data, &info, sizeof(info));
        out->len = sizeof(info);
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
        struct in_pktinfo info, reply = {0};
        memcpy(&info, CMSG_DATA(c), sizeof(info));
        reply.ipi_spec_dst = info.ipi_addr;
        memcpy(out->data, &reply, sizeof(reply));
        out->len = sizeof(reply);
    } else {
        return;
    }
    out->level = c->cmsg_level;
    out->type = c->cmsg_type;
}

/* The segment size of a coalesced (UDP_GRO) receive, or 0; and the reply source. */
static size_t parse_control(struct msghdr *m, struct source *local)
{
    size_t size = 0;
    local->len = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int seg;
            memcpy(&seg, CMSG_DATA(c), sizeof(seg));
            size = seg > 0 ? (size_t)seg : 0;
        } else {
            reply_source(c, local);
        }
    }
    return size;
}

static void emit_to_tun(void *ctx, uint8_t *frame, size_t len) { write_tun(ctx, frame, len); }

int pywg_plane_run_rx(struct pywg_plane *p)
{
    uint8_t *bufs = malloc((size_t)PYWG_PLANE_BATCH * RX_SLOT);
    if (p->vnet && p->gro == NULL)
        p->gro = pywg_gro_new(emit_to_tun, p);
    static __thread struct mmsghdr msgs[PYWG_PLANE_BATCH];
    static __thread struct iovec iov[PYWG_PLANE_BATCH];
    static __thread struct sockaddr_storage addrs[PYWG_PLANE_BATCH];
    /* room for UDP_GRO and the IPV6_PKTINFO the socket asks for (pywg.asyncio.udp) */
    static __thread uint8_t cmsgs[PYWG_PLANE_BATCH]
                                 [CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
    if (bufs == NULL)
        return -1;
    while (wait_ready(p, 1, p->udp_fd, POLLIN, -1)) {
        int n;
        double now;
        pywg_rx_batch(msgs, iov, addrs, cmsgs[0], sizeof(cmsgs[0]), bufs, RX_SLOT,
                      PYWG_PLANE_BATCH);
        n = recvmmsg(p->udp_fd, msgs, PYWG_PLANE_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            continue; /* EAGAIN, an ICMP error consumed, or the socket was replaced */
        now = monotonic_now();
        pthread_mutex_lock(&p->rx_lock);
        pthread_rwlock_rdlock(&p->routes_lock);
        for (int i = 0; i < n; i++) {
            uint8_t *d = iov[i].iov_base;
            struct source local;
            size_t len = msgs[i].msg_len, seg = parse_control(&msgs[i].msg_hdr, &local);
            socklen_t alen = msgs[i].msg_hdr.msg_namelen;
            if (seg == 0 || seg >= len) {
                receive_one(p, d, len, &addrs[i], alen, &local, now);
                continue;
            }
            /* coalesced datagrams from one source, seg bytes each (the last may be
             * short), in order; each is opened and written out within its own bytes */
            for (size_t off = 0; off < len; off += seg)
                receive_one(p, d + off, len - off < seg ? len - off : seg, &addrs[i], alen, &local,
                            now);
        }
        if (p->gro != NULL)
            pywg_gro_flush(p->gro);
        pthread_rwlock_unlock(&p->routes_lock);
        pthread_mutex_unlock(&p->rx_lock);
    }
    free(bufs);
    return 0;
}
