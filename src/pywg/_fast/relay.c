/* The mesh relay's forwarding loop. See relay.h. */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "relay.h"

#include "datagram.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h */
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h */
#endif

#define BUCKETS 65536u     /* of each hash table; chains grow past that */
#define RX_SLOT 65536      /* one (possibly coalesced) datagram */
#define OUT_MAX 1024       /* forwarded datagrams per sendmmsg round */

struct node {
    uint32_t id;
    int deliver; /* forward messages for it here; 0: hand them up (it has a better way) */
    socklen_t len;
    struct sockaddr_storage addr;
    struct node *next_by_id, *next_by_addr;
};

struct pywg_relay {
    int udp_fd, hand_fd, wake_fd, gro;
    bool gso; /* UDP GSO sends (cleared if the kernel refuses them) */
    _Atomic int stopping;
    pthread_mutex_t lock;
    struct node *by_id[BUCKETS], *by_addr[BUCKETS]; /* lock */
    uint64_t nodes;                                  /* lock */
    struct {
        _Atomic uint64_t forwarded, forwarded_bytes, handed_up, up_drops, unassociated;
        _Atomic uint64_t malformed, not_relay, send_errors;
    } stats;
};

#define GSO_MAX_SEGMENTS 64 /* datagrams one UDP_SEGMENT send carries */
#define GSO_MAX_BYTES 65000   /* ... and their bytes, under the 64 KiB of one send */

/* A datagram's header in a run and the largest address after it. */
#define UP_HEAD_ROOM (sizeof(struct pywg_relay_up) + sizeof(struct sockaddr_storage))

/* The datagrams of one receive batch for Python (relay.h: a run). */
struct handup {
    struct pywg_relay_run run;
    uint8_t heads[PYWG_RELAY_RUN_MAX][UP_HEAD_ROOM];
    struct iovec iov[1 + 2 * PYWG_RELAY_RUN_MAX]; /* the run header, then a head and bytes each */
    size_t niov, bytes;
    const struct sockaddr_storage *last; /* where the run's last datagram came from */
    socklen_t last_len;
};

/* The largest datagram with the largest address fits in a run of its own; a run's iovecs
 * are within what one sendmsg takes (IOV_MAX, 1024 on Linux). */
_Static_assert(sizeof(struct pywg_relay_run) + UP_HEAD_ROOM + 65535 <= PYWG_RELAY_RUN_BYTES,
               "a run holds any datagram");
_Static_assert(1 + 2 * PYWG_RELAY_RUN_MAX <= 1024, "a run's iovecs fit one sendmsg");
_Static_assert(sizeof(struct sockaddr_storage) < PYWG_RELAY_UP_SAME,
               "an address's length is never SAME");

/* A batch of datagrams to forward, each pointing into the receive buffers. Runs of
 * datagrams to one node of one size (the last may be shorter), as a coalesced receive
 * brings them, go as one UDP GSO send (UDP_SEGMENT, udp(7)): one message, several
 * iovecs. */
struct outgoing {
    struct mmsghdr msgs[OUT_MAX];
    struct iovec iov[OUT_MAX];
    struct sockaddr_storage addrs[OUT_MAX];
    uint8_t control[OUT_MAX][CMSG_SPACE(sizeof(uint16_t))];
    unsigned count, niov; /* messages, iovecs */
    const struct node *last; /* the node the last message goes to */
    size_t seg, total;       /* the last message's segment size and bytes */
};

static uint32_t id_bucket(uint32_t id) { return (id * 2654435761u) % BUCKETS; }

/* FNV-1a over an address's family-specific bytes and port (what pywg_same_address
 * compares), so equal addresses share a bucket. */
static uint32_t addr_bucket(const struct sockaddr_storage *a)
{
    const uint8_t *bytes;
    size_t n;
    uint16_t port;
    uint32_t h = 2166136261u;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)a;
        bytes = in6->sin6_addr.s6_addr;
        n = 16;
        port = in6->sin6_port;
    } else {
        const struct sockaddr_in *in = (const void *)a;
        bytes = (const uint8_t *)&in->sin_addr;
        n = 4;
        port = in->sin_port;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ bytes[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    h = (h ^ (port >> 8)) * 16777619u;
    return h % BUCKETS;
}

static struct node *find_id(struct pywg_relay *r, uint32_t id)
{
    struct node *n = r->by_id[id_bucket(id)];
    while (n != NULL && n->id != id)
        n = n->next_by_id;
    return n;
}

static struct node *find_addr(struct pywg_relay *r, const struct sockaddr_storage *a,
                              socklen_t len)
{
    struct node *n = r->by_addr[addr_bucket(a)];
    while (n != NULL && !pywg_same_address(&n->addr, n->len, a, len))
        n = n->next_by_addr;
    return n;
}

/* Take `gone` out of both chains (lock held). */
static void unlink_node(struct pywg_relay *r, struct node *gone)
{
    struct node **link = &r->by_id[id_bucket(gone->id)];
    while (*link != gone)
        link = &(*link)->next_by_id;
    *link = gone->next_by_id;
    link = &r->by_addr[addr_bucket(&gone->addr)];
    while (*link != gone)
        link = &(*link)->next_by_addr;
    *link = gone->next_by_addr;
    r->nodes--;
}

struct pywg_relay *pywg_relay_new(int udp_fd, int hand_fd, int gro)
{
    struct pywg_relay *r = calloc(1, sizeof(*r));
    int one = 1;
    if (r == NULL)
        return NULL;
    r->udp_fd = udp_fd;
    r->hand_fd = hand_fd;
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) {
        free(r);
        return NULL;
    }
    r->gro = gro && setsockopt(udp_fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    r->gso = gro; /* the offloads go together: `gro` 0 turns both off */
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void pywg_relay_free(struct pywg_relay *r)
{
    if (r == NULL)
        return;
    for (uint32_t b = 0; b < BUCKETS; b++) {
        struct node *n = r->by_id[b];
        while (n != NULL) {
            struct node *next = n->next_by_id;
            free(n);
            n = next;
        }
    }
    close(r->wake_fd);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void pywg_relay_stop(struct pywg_relay *r)
{
    uint64_t one = 1;
    ssize_t ignored;
    r->stopping = 1;
    ignored = write(r->wake_fd, &one, sizeof(one));
    (void)ignored;
}

int pywg_relay_set_node(struct pywg_relay *r, uint32_t id, const uint8_t *addr,
                        uint32_t addrlen, int deliver)
{
    struct node *old, *n = NULL;
    if (id < 1 || id > PYWG_MAX_RELAY_NODE_ID || addrlen > sizeof(struct sockaddr_storage))
        return -1;
    if (addrlen != 0) {
        n = calloc(1, sizeof(*n));
        if (n == NULL)
            return -1;
        n->id = id;
        n->deliver = deliver;
        n->len = addrlen;
        memcpy(&n->addr, addr, addrlen);
    }
    pthread_mutex_lock(&r->lock);
    old = find_id(r, id);
    if (old != NULL)
        unlink_node(r, old);
    if (n != NULL) {
        struct node *holder = find_addr(r, &n->addr, n->len);
        if (holder != NULL) { /* an address is one node's: the newest association wins */
            unlink_node(r, holder);
            free(holder);
        }
        n->next_by_id = r->by_id[id_bucket(id)];
        r->by_id[id_bucket(id)] = n;
        n->next_by_addr = r->by_addr[addr_bucket(&n->addr)];
        r->by_addr[addr_bucket(&n->addr)] = n;
        r->nodes++;
    }
    pthread_mutex_unlock(&r->lock);
    free(old);
    return 0;
}

void pywg_relay_stats(struct pywg_relay *r, struct pywg_relay_stats *out)
{
    out->forwarded = r->stats.forwarded;
    out->forwarded_bytes = r->stats.forwarded_bytes;
    out->handed_up = r->stats.handed_up;
    out->up_drops = r->stats.up_drops;
    out->unassociated = r->stats.unassociated;
    out->malformed = r->stats.malformed;
    out->not_relay = r->stats.not_relay;
    out->send_errors = r->stats.send_errors;
    pthread_mutex_lock(&r->lock);
    out->nodes = r->nodes;
    pthread_mutex_unlock(&r->lock);
}

/* The run sent to Python: one message on hand_fd (relay.h), sent when full or when the
 * receive batch is done. */
static void flush_up(struct pywg_relay *r, struct handup *up)
{
    struct msghdr m = {.msg_iov = up->iov, .msg_iovlen = up->niov};
    ssize_t sent;
    if (up->run.count == 0)
        return;
    do
        sent = sendmsg(r->hand_fd, &m, MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) /* the buffer is full (Python is behind): the run is dropped */
        atomic_fetch_add(&r->stats.up_drops, up->run.count);
    else
        atomic_fetch_add(&r->stats.handed_up, up->run.count);
    up->run.count = 0;
    up->niov = 1;
    up->bytes = sizeof(up->run);
    up->last = NULL;
}

/* One datagram for Python, added to the run: its header (with its source's address unless
 * the datagram before came from there too) and its bytes, by reference into the receive
 * buffers, which stay as they are until the run is sent. */
static void hand_up(struct pywg_relay *r, struct handup *up, const uint8_t *d, size_t len,
                    const struct sockaddr_storage *src, socklen_t srclen)
{
    struct pywg_relay_up head = {.len = (uint16_t)len, .addrlen = PYWG_RELAY_UP_SAME};
    bool same = up->last != NULL && up->last_len == srclen && memcmp(up->last, src, srclen) == 0;
    size_t addrlen = same ? 0 : srclen, need = sizeof(head) + addrlen + len;
    uint8_t *entry;
    if (up->run.count == PYWG_RELAY_RUN_MAX || up->bytes + need > PYWG_RELAY_RUN_BYTES) {
        flush_up(r, up);
        same = false;
        addrlen = srclen;
        need = sizeof(head) + addrlen + len;
    }
    if (!same)
        head.addrlen = (uint16_t)addrlen;
    entry = up->heads[up->run.count];
    memcpy(entry, &head, sizeof(head));
    memcpy(entry + sizeof(head), src, addrlen);
    up->iov[up->niov++] = (struct iovec){.iov_base = entry, .iov_len = sizeof(head) + addrlen};
    up->iov[up->niov++] = (struct iovec){.iov_base = (void *)d, .iov_len = len};
    up->run.count++;
    up->bytes += need;
    up->last = src;
    up->last_len = srclen;
}

/* The datagrams of one message, one send each (the kernel refused UDP_SEGMENT). */
static void send_singly(struct pywg_relay *r, const struct msghdr *m)
{
    for (size_t i = 0; i < m->msg_iovlen; i++) {
        struct msghdr one = {.msg_name = m->msg_name, .msg_namelen = m->msg_namelen,
                             .msg_iov = &m->msg_iov[i], .msg_iovlen = 1};
        if (sendmsg(r->udp_fd, &one, 0) < 0) {
            atomic_fetch_add(&r->stats.send_errors, 1);
            continue;
        }
        atomic_fetch_add(&r->stats.forwarded, 1);
        atomic_fetch_add(&r->stats.forwarded_bytes, m->msg_iov[i].iov_len);
    }
}

static void count_sent(struct pywg_relay *r, const struct msghdr *m)
{
    for (size_t i = 0; i < m->msg_iovlen; i++)
        atomic_fetch_add(&r->stats.forwarded_bytes, m->msg_iov[i].iov_len);
    atomic_fetch_add(&r->stats.forwarded, m->msg_iovlen);
}

static void send_out(struct pywg_relay *r, struct outgoing *out)
{
    unsigned done = 0;
    while (done < out->count) {
        int sent = sendmmsg(r->udp_fd, out->msgs + done, out->count - done, 0);
        if (sent > 0) {
            for (unsigned i = done; i < done + (unsigned)sent; i++)
                count_sent(r, &out->msgs[i].msg_hdr);
            done += (unsigned)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
            struct pollfd pfd = {.fd = r->udp_fd, .events = POLLOUT};
            if (poll(&pfd, 1, 100) > 0)
                continue;
        }
        if (sent < 0 && out->msgs[done].msg_hdr.msg_iovlen > 1 && (errno == EIO || errno == EINVAL)) {
            r->gso = false; /* the kernel refuses UDP GSO on this path: stop using it */
            send_singly(r, &out->msgs[done].msg_hdr);
        } else {
            atomic_fetch_add(&r->stats.send_errors, out->msgs[done].msg_hdr.msg_iovlen);
        }
        done++; /* this one cannot go (as UDP may drop): skip it */
    }
    out->count = out->niov = 0;
    out->last = NULL;
}

/* Add a datagram for `to` to the batch: to the last message, as one more segment of its
 * GSO send, where it can go there; else as a message of its own. */
static void queue_out(struct outgoing *out, const struct node *to, uint8_t *d, size_t len,
                      bool gso)
{
    struct msghdr *m = out->count > 0 ? &out->msgs[out->count - 1].msg_hdr : NULL;
    if (gso && m != NULL && out->last == to && m->msg_iovlen < GSO_MAX_SEGMENTS &&
        len <= out->seg && out->iov[out->niov - 1].iov_len == out->seg &&
        out->total + len <= GSO_MAX_BYTES) {
        uint16_t seg = (uint16_t)out->seg;
        struct cmsghdr *c;
        out->iov[out->niov++] = (struct iovec){.iov_base = d, .iov_len = len};
        out->total += len;
        if (m->msg_iovlen++ == 1) { /* it becomes a GSO send */
            m->msg_control = out->control[out->count - 1];
            m->msg_controllen = sizeof(out->control[0]);
            c = CMSG_FIRSTHDR(m);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(seg));
            memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        }
        return;
    }
    m = &out->msgs[out->count].msg_hdr;
    memset(&out->msgs[out->count], 0, sizeof(out->msgs[0]));
    memcpy(&out->addrs[out->count], &to->addr, to->len);
    out->iov[out->niov] = (struct iovec){.iov_base = d, .iov_len = len};
    m->msg_name = &out->addrs[out->count];
    m->msg_namelen = to->len;
    m->msg_iov = &out->iov[out->niov];
    m->msg_iovlen = 1;
    out->niov++;
    out->count++;
    out->last = to;
    out->seg = out->total = len;
}

/* Forward one datagram, hand it up, or drop it (lock held). */
static void relay_one(struct pywg_relay *r, uint8_t *d, size_t len,
                      const struct sockaddr_storage *src, socklen_t srclen, struct outgoing *out,
                      struct handup *up)
{
    struct node *from, *to;
    uint32_t dest;
    if (len > 0 && d[0] == 0) {
        /* a STUN request (RFC 8489 §5: its first byte is 0 for a request), associations
         * among them; nothing that starts 1-4 is one here: a relay gets only requests */
        hand_up(r, up, d, len, src, srclen);
        return;
    }
    if (len == 0 || d[0] < PYWG_MESSAGE_INITIATION || d[0] > PYWG_MESSAGE_TRANSPORT) {
        atomic_fetch_add(&r->stats.not_relay, 1);
        return;
    }
    if (!pywg_message_shaped(d, len) ||
        (dest = (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]) == 0) {
        atomic_fetch_add(&r->stats.malformed, 1);
        return;
    }
    from = find_addr(r, src, srclen);
    if (from == NULL) {
        atomic_fetch_add(&r->stats.unassociated, 1);
        return;
    }
    to = find_id(r, dest);
    if (to == NULL || !to->deliver) {
        hand_up(r, up, d, len, src, srclen); /* on TCP, another relay, or nowhere: Python's */
        return;
    }
    if (out->niov == OUT_MAX)
        send_out(r, out); /* a full batch (coalesced receives bring up to 64 each) goes now */
    d[PYWG_RELAY_TAG_OFFSET] = (uint8_t)(from->id >> 16);
    d[PYWG_RELAY_TAG_OFFSET + 1] = (uint8_t)(from->id >> 8);
    d[PYWG_RELAY_TAG_OFFSET + 2] = (uint8_t)from->id;
    queue_out(out, to, d, len, r->gso);
}

/* The segment size of a coalesced receive (UDP_GRO), or 0. */
static size_t gro_size(struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int seg;
            memcpy(&seg, CMSG_DATA(c), sizeof(seg));
            return seg > 0 ? (size_t)seg : 0;
        }
    }
    return 0;
}

/* Wait until the socket is readable; false once stopping. */
static bool wait_readable(struct pywg_relay *r)
{
    struct pollfd pfd[2] = {{.fd = r->udp_fd, .events = POLLIN},
                            {.fd = r->wake_fd, .events = POLLIN}};
    while (!r->stopping) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            return false;
        if (pfd[0].revents & (POLLIN | POLLERR))
            return !r->stopping;
    }
    return false;
}

int pywg_relay_run(struct pywg_relay *r)
{
    static __thread struct mmsghdr msgs[PYWG_RELAY_BATCH];
    static __thread struct iovec iov[PYWG_RELAY_BATCH];
    static __thread struct sockaddr_storage addrs[PYWG_RELAY_BATCH];
    static __thread uint8_t cmsgs[PYWG_RELAY_BATCH][CMSG_SPACE(sizeof(int))];
    uint8_t *bufs = malloc((size_t)PYWG_RELAY_BATCH * RX_SLOT);
    struct outgoing *out = calloc(1, sizeof(*out));
    struct handup *up = calloc(1, sizeof(*up));
    if (bufs == NULL || out == NULL || up == NULL) {
        free(bufs);
        free(out);
        free(up);
        return -1;
    }
    up->iov[0] = (struct iovec){.iov_base = &up->run, .iov_len = sizeof(up->run)};
    up->niov = 1;
    up->bytes = sizeof(up->run);
    while (wait_readable(r)) {
        int n;
        pywg_rx_batch(msgs, iov, addrs, cmsgs[0], sizeof(cmsgs[0]), bufs, RX_SLOT,
                      PYWG_RELAY_BATCH);
        n = recvmmsg(r->udp_fd, msgs, PYWG_RELAY_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            continue; /* EAGAIN, or an ICMP error consumed */
        pthread_mutex_lock(&r->lock);
        for (int i = 0; i < n; i++) {
            uint8_t *d = iov[i].iov_base;
            size_t len = msgs[i].msg_len, seg = gro_size(&msgs[i].msg_hdr);
            socklen_t alen = msgs[i].msg_hdr.msg_namelen;
            if (seg == 0 || seg >= len)
                seg = len;
            for (size_t off = 0; off < len; off += seg)
                relay_one(r, d + off, len - off < seg ? len - off : seg, &addrs[i], alen, out,
                          up);
        }
        pthread_mutex_unlock(&r->lock);
        flush_up(r, up); /* first: Python takes it on while the forwarded batch goes out */
        send_out(r, out);
    }
    free(bufs);
    free(out);
    free(up);
    return 0;
}
