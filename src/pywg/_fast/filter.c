/* The packet filter: rules and connection tracking. See filter.h. */
#define _GNU_SOURCE
#include "filter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMPV6 58
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define KIND_FLOW 0
#define KIND_FRAGMENT 1
#define SEEN_OUT 1
#define SEEN_IN 2
#define CLOSING 4
#define EVICT_SCAN 8 /* entries looked at for the oldest when the table is full */

/* A packet's headers, as far as the filter needs them. */
struct parsed {
    int family;           /* 4 or 6 */
    uint8_t proto;        /* the upper-layer protocol (of a later fragment: its header's) */
    const uint8_t *src, *dst;
    bool later_fragment;  /* offset > 0: no transport header */
    bool first_fragment;  /* offset 0, more follow */
    uint32_t frag_id;     /* IPv4: identification | proto << 16; IPv6: the header's */
    uint16_t sport, dport;
    uint8_t tcp_flags;
    int icmp_type;        /* -1: not ICMP */
    uint16_t icmp_id;
    const uint8_t *l4;    /* the transport header and what follows, l4len bytes */
    size_t l4len;
};

struct key {
    uint8_t local[16], remote[16];
    uint16_t lport, rport;
    uint8_t family, proto, kind, pad;
};

struct flow {
    struct key key;
    double expires;
    uint32_t next;      /* index + 1 of the next in its bucket, 0: none */
    uint32_t gen;       /* the rules' generation that let it in */
    uint8_t origin_in;  /* let in by a rule (else opened by this node) */
    uint8_t seen;       /* SEEN_OUT | SEEN_IN | CLOSING */
    uint8_t denied;     /* let in by older rules that the current ones do not renew */
};

/* A rule row with its prefixes as masked 128-bit numbers (IPv4 in the top 32 bits). */
struct crule {
    uint64_t src[2], smask[2], dst[2], dmask[2];
    uint16_t lo, hi;
    uint8_t proto;
};

struct ruleset {
    size_t n[2]; /* [0] IPv4, [1] IPv6 */
    struct crule *rows[2];
};

struct pywg_filter {
    pthread_mutex_t lock; /* everything below */
    uint32_t capacity, mask, count, hand, free_head;
    uint64_t seed;
    uint32_t *heads;
    struct flow *flows;
    struct ruleset *rules; /* NULL: off, everything passes */
    uint32_t gen;
    _Atomic int active;
    struct pywg_filter_stats stats;
};

static uint16_t be16(const uint8_t *b) { return (uint16_t)(b[0] << 8 | b[1]); }

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint64_t be64(const uint8_t *b) { return (uint64_t)be32(b) << 32 | be32(b + 4); }

/* ------------------------------------------------------------------ parsing */

static bool is_icmp(int family, uint8_t proto)
{
    return proto == (family == 4 ? PROTO_ICMP : PROTO_ICMPV6);
}

static int parse_transport(const uint8_t *t, size_t len, struct parsed *p)
{
    p->icmp_type = -1;
    p->l4 = t;
    p->l4len = len;
    if (p->proto == PROTO_TCP) {
        if (len < 20)
            return -1; /* the whole fixed header, as RFC 1858 asks of a first fragment */
        p->sport = be16(t);
        p->dport = be16(t + 2);
        p->tcp_flags = t[13];
    } else if (p->proto == PROTO_UDP) {
        if (len < 8)
            return -1;
        p->sport = be16(t);
        p->dport = be16(t + 2);
    } else if (is_icmp(p->family, p->proto)) {
        if (len < 8)
            return -1; /* type, code, checksum and the 4 bytes every message has */
        p->icmp_type = t[0];
        p->icmp_id = be16(t + 4);
    }
    return 0;
}

static int parse_ipv4(const uint8_t *pkt, size_t len, struct parsed *p)
{
    size_t ihl, total;
    uint16_t frag, offset;
    if (len < 20)
        return -1;
    ihl = (size_t)(pkt[0] & 15) * 4;
    total = be16(pkt + 2);
    if (ihl < 20 || total < ihl || total > len)
        return -1;
    p->family = 4;
    p->proto = pkt[9];
    p->src = pkt + 12;
    p->dst = pkt + 16;
    frag = be16(pkt + 6);
    offset = frag & 0x1fff;
    p->frag_id = be16(pkt + 4) | (uint32_t)p->proto << 16;
    if (offset != 0) {
        p->later_fragment = true;
        return p->proto == PROTO_TCP && offset == 1 ? -1 : 0; /* RFC 1858 §4 */
    }
    p->first_fragment = (frag & 0x2000) != 0;
    return parse_transport(pkt + ihl, total - ihl, p);
}

static int parse_ipv6(const uint8_t *pkt, size_t len, struct parsed *p)
{
    size_t total, off = 40;
    uint8_t next;
    bool fragment_seen = false;
    if (len < 40)
        return -1;
    total = 40 + (size_t)be16(pkt + 4);
    if (total > len)
        return -1;
    p->family = 6;
    p->src = pkt + 8;
    p->dst = pkt + 24;
    next = pkt[6];
    for (int i = 0;; i++) {
        if (next != 0 && next != 43 && next != 60 && next != 51 && next != 44)
            break; /* the upper-layer header (or one the filter does not walk) */
        if (i >= PYWG_FILTER_MAX_EXT || off + 8 > total)
            return -1;
        if (next == 44) { /* Fragment, RFC 8200 §4.5 */
            uint16_t fo = be16(pkt + off + 2);
            if (fragment_seen)
                return -1;
            fragment_seen = true;
            p->frag_id = be32(pkt + off + 4);
            next = pkt[off];
            off += 8;
            if (fo >> 3 != 0) {
                p->proto = next;
                p->later_fragment = true;
                return next == PROTO_TCP && fo >> 3 == 1 ? -1 : 0;
            }
            p->first_fragment = (fo & 1) != 0;
            continue;
        }
        size_t hl = next == 51 ? ((size_t)pkt[off + 1] + 2) * 4 : ((size_t)pkt[off + 1] + 1) * 8;
        next = pkt[off];
        off += hl;
        if (off > total)
            return -1;
    }
    p->proto = next;
    return parse_transport(pkt + off, total - off, p);
}

static int parse(const uint8_t *pkt, size_t len, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    if (len >= 1 && pkt[0] >> 4 == 4)
        return parse_ipv4(pkt, len, p);
    if (len >= 1 && pkt[0] >> 4 == 6)
        return parse_ipv6(pkt, len, p);
    return -1;
}

/* ------------------------------------------------------------------ rules */

static void load128(const uint8_t *addr, int family, uint64_t out[2])
{
    uint8_t full[16] = {0};
    memcpy(full, addr, family == 4 ? 4 : 16);
    out[0] = be64(full);
    out[1] = be64(full + 8);
}

static void mask128(unsigned bits, uint64_t out[2])
{
    out[0] = bits == 0 ? 0 : bits >= 64 ? ~0ULL : ~0ULL << (64 - bits);
    out[1] = bits <= 64 ? 0 : bits >= 128 ? ~0ULL : ~0ULL << (128 - bits);
}

static bool within(const uint64_t a[2], const uint64_t net[2], const uint64_t mask[2])
{
    return (a[0] & mask[0]) == net[0] && (a[1] & mask[1]) == net[1];
}

static bool proto_matches(const struct crule *r, const struct parsed *p)
{
    if (r->proto == 0)
        return true;
    if (r->proto == PROTO_ICMP)
        return is_icmp(p->family, p->proto);
    return r->proto == p->proto;
}

/* Whether a rule lets `p` in; `portless`: a later fragment, which only a rule for all
 * ports of its protocol can. */
static bool rules_allow(const struct ruleset *rs, const struct parsed *p, bool portless)
{
    int fam = p->family == 4 ? 0 : 1;
    uint64_t src[2], dst[2];
    bool ports = !portless && (p->proto == PROTO_TCP || p->proto == PROTO_UDP);
    load128(p->src, p->family, src);
    load128(p->dst, p->family, dst);
    for (size_t i = 0; i < rs->n[fam]; i++) {
        const struct crule *r = &rs->rows[fam][i];
        if (!within(src, r->src, r->smask) || !within(dst, r->dst, r->dmask) ||
            !proto_matches(r, p))
            continue;
        if (ports ? p->dport >= r->lo && p->dport <= r->hi : r->lo == 0 && r->hi == 65535)
            return true;
    }
    return false;
}

static void ruleset_free(struct ruleset *rs)
{
    if (rs == NULL)
        return;
    free(rs->rows[0]);
    free(rs->rows[1]);
    free(rs);
}

static int compile_row(const struct pywg_filter_rule *in, struct crule *out)
{
    unsigned bits = in->family == 4 ? 32 : 128;
    uint64_t m[2];
    if ((in->family != 4 && in->family != 6) || in->src_len > bits || in->dst_len > bits ||
        in->port_lo > in->port_hi ||
        (in->proto != 0 && in->proto != PROTO_ICMP && in->proto != PROTO_TCP &&
         in->proto != PROTO_UDP))
        return -1;
    memset(out, 0, sizeof(*out));
    load128(in->src, in->family, out->src);
    mask128(in->src_len, out->smask);
    load128(in->dst, in->family, out->dst);
    mask128(in->dst_len, out->dmask);
    for (int k = 0; k < 2; k++) {
        m[k] = out->smask[k];
        out->src[k] &= m[k];
        out->dst[k] &= out->dmask[k];
    }
    out->lo = in->port_lo;
    out->hi = in->port_hi;
    out->proto = in->proto;
    return 0;
}

static struct ruleset *ruleset_new(const struct pywg_filter_rule *rows, size_t n)
{
    struct ruleset *rs = calloc(1, sizeof(*rs));
    size_t at[2] = {0, 0};
    if (rs == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        rs->n[rows[i].family == 4 ? 0 : 1]++;
    for (int k = 0; k < 2; k++) {
        rs->rows[k] = calloc(rs->n[k] ? rs->n[k] : 1, sizeof(struct crule));
        if (rs->rows[k] == NULL) {
            ruleset_free(rs);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int k = rows[i].family == 4 ? 0 : 1;
        if (compile_row(&rows[i], &rs->rows[k][at[k]++]) != 0) {
            ruleset_free(rs);
            return NULL;
        }
    }
    return rs;
}

/* ------------------------------------------------------------------ the flow table */

static uint32_t bucket_of(const struct pywg_filter *f, const struct key *k)
{
    uint64_t w[5], h = f->seed;
    memcpy(w, k, sizeof(w));
    for (int i = 0; i < 5; i++) {
        h = (h ^ w[i]) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 31;
    }
    return (uint32_t)(h ^ h >> 32) & f->mask;
}

static void release(struct pywg_filter *f, uint32_t idx)
{
    f->flows[idx - 1].next = f->free_head;
    f->free_head = idx;
    f->count--;
}

/* Take entry idx out of its bucket's chain (it is in it). */
static void unlink_flow(struct pywg_filter *f, uint32_t idx)
{
    uint32_t *link = &f->heads[bucket_of(f, &f->flows[idx - 1].key)];
    while (*link != idx)
        link = &f->flows[*link - 1].next;
    *link = f->flows[idx - 1].next;
}

static struct flow *find(struct pywg_filter *f, const struct key *k, double now)
{
    uint32_t *link = &f->heads[bucket_of(f, k)];
    while (*link != 0) {
        uint32_t idx = *link;
        struct flow *e = &f->flows[idx - 1];
        if (memcmp(&e->key, k, sizeof(*k)) == 0) {
            if (e->expires > now)
                return e;
            *link = e->next; /* expired: gone */
            release(f, idx);
            return NULL;
        }
        link = &e->next;
    }
    return NULL;
}

static void forget(struct pywg_filter *f, struct flow *e)
{
    uint32_t idx = (uint32_t)(e - f->flows) + 1;
    unlink_flow(f, idx);
    release(f, idx);
}

/* A free entry; when none is, the one of EVICT_SCAN that expires first is reused. */
static uint32_t take_entry(struct pywg_filter *f, double now)
{
    uint32_t idx = f->free_head, oldest = 0;
    if (idx != 0) {
        f->free_head = f->flows[idx - 1].next;
        f->count++;
        return idx;
    }
    for (int i = 0; i < EVICT_SCAN; i++) {
        uint32_t at = f->hand++ & (f->capacity - 1);
        if (oldest == 0 || f->flows[at].expires < f->flows[oldest - 1].expires)
            oldest = at + 1;
    }
    if (f->flows[oldest - 1].expires > now)
        f->stats.flows_evicted++;
    unlink_flow(f, oldest);
    return oldest;
}

static struct flow *insert(struct pywg_filter *f, const struct key *k, double now)
{
    uint32_t idx = take_entry(f, now), b = bucket_of(f, k);
    struct flow *e = &f->flows[idx - 1];
    memset(e, 0, sizeof(*e));
    e->key = *k;
    e->next = f->heads[b];
    f->heads[b] = idx;
    return e;
}

static double timeout_of(const struct flow *e)
{
    if (e->key.kind == KIND_FRAGMENT)
        return PYWG_FLOW_TIMEOUT_FRAGMENT;
    if (e->key.proto == PROTO_TCP) {
        if (e->seen & CLOSING)
            return PYWG_FLOW_TIMEOUT_TCP_CLOSING;
        return (e->seen & (SEEN_IN | SEEN_OUT)) == (SEEN_IN | SEEN_OUT)
                   ? PYWG_FLOW_TIMEOUT_TCP_ESTABLISHED
                   : PYWG_FLOW_TIMEOUT_TCP_OPENING;
    }
    return e->key.proto == PROTO_UDP ? PYWG_FLOW_TIMEOUT_UDP : PYWG_FLOW_TIMEOUT_OTHER;
}

static void touch(struct flow *e, const struct parsed *p, bool inbound, double now)
{
    e->seen |= inbound ? SEEN_IN : SEEN_OUT;
    if (p->proto == PROTO_TCP && (p->tcp_flags & (TCP_FIN | TCP_RST)))
        e->seen |= CLOSING;
    e->expires = now + timeout_of(e);
}

/* ICMP echo requests and replies are tracked by identifier; other ICMP messages not. */
static bool trackable(const struct parsed *p)
{
    if (p->icmp_type < 0)
        return true;
    if (p->family == 4)
        return p->icmp_type == 8 || p->icmp_type == 0;
    return p->icmp_type == 128 || p->icmp_type == 129;
}

static void flow_key(const struct parsed *p, bool inbound, struct key *k)
{
    size_t n = p->family == 4 ? 4 : 16;
    memset(k, 0, sizeof(*k));
    memcpy(k->local, inbound ? p->dst : p->src, n);
    memcpy(k->remote, inbound ? p->src : p->dst, n);
    k->family = (uint8_t)p->family;
    k->proto = p->proto;
    if (p->icmp_type >= 0) {
        k->lport = p->icmp_id;
    } else if (p->proto == PROTO_TCP || p->proto == PROTO_UDP) {
        k->lport = inbound ? p->dport : p->sport;
        k->rport = inbound ? p->sport : p->dport;
    }
}

/* The key of an inbound datagram's fragments. */
static void fragment_key(const struct parsed *p, struct key *k)
{
    size_t n = p->family == 4 ? 4 : 16;
    memset(k, 0, sizeof(*k));
    memcpy(k->local, p->dst, n);
    memcpy(k->remote, p->src, n);
    k->family = (uint8_t)p->family;
    k->kind = KIND_FRAGMENT;
    k->lport = (uint16_t)(p->frag_id >> 16);
    k->rport = (uint16_t)p->frag_id;
}

static bool new_connection(const struct parsed *p)
{
    return p->proto == PROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/* ------------------------------------------------------------------ ICMP errors */

/* An ICMP error: it quotes the packet that caused it (RFC 792; RFC 4443 §2.4). */
static bool is_icmp_error(const struct parsed *p)
{
    if (p->icmp_type < 0)
        return false;
    if (p->family == 4)
        return p->icmp_type == 3 || p->icmp_type == 11 || p->icmp_type == 12;
    return p->icmp_type >= 1 && p->icmp_type <= 4;
}

/* The packet an ICMP error `outer` quotes, as far as its flow: a packet this node
 * sent (its source is the error's destination), its first 8 transport bytes at
 * least; IPv6 with no extension headers. 0 ok, -1 not such a packet. */
static int parse_quoted(const struct parsed *outer, struct parsed *q)
{
    const uint8_t *t = outer->l4 + 8;
    size_t len = outer->l4len - 8, off, n = outer->family == 4 ? 4 : 16;
    memset(q, 0, sizeof(*q));
    q->family = outer->family;
    q->icmp_type = -1;
    if (outer->family == 4) {
        if (len < 20 || t[0] >> 4 != 4 || (be16(t + 6) & 0x1fff) != 0)
            return -1;
        off = (size_t)(t[0] & 15) * 4;
        q->proto = t[9];
        q->src = t + 12;
        q->dst = t + 16;
    } else {
        if (len < 40 || t[0] >> 4 != 6)
            return -1;
        off = 40;
        q->proto = t[6];
        q->src = t + 8;
        q->dst = t + 24;
    }
    if (off < 20 || off + 8 > len || memcmp(q->src, outer->dst, n) != 0)
        return -1;
    t += off;
    if (q->proto == PROTO_TCP || q->proto == PROTO_UDP) {
        q->sport = be16(t);
        q->dport = be16(t + 2);
    } else if (is_icmp(q->family, q->proto)) {
        q->icmp_type = t[0];
        q->icmp_id = be16(t + 4);
    }
    return 0;
}

/* Whether `p` is an ICMP error about a flow tracked here (and not denied). */
static bool related(struct pywg_filter *f, const struct parsed *p, double now)
{
    struct parsed q;
    struct key k;
    struct flow *e;
    if (!is_icmp_error(p) || parse_quoted(p, &q) != 0 || !trackable(&q))
        return false;
    flow_key(&q, false, &k);
    e = find(f, &k, now);
    return e != NULL && !e->denied;
}

/* ------------------------------------------------------------------ the verdicts */

static int tracked_verdict(struct pywg_filter *f, const struct parsed *p, double now)
{
    struct key k;
    struct flow *e;
    flow_key(p, true, &k);
    e = find(f, &k, now);
    if (e != NULL && new_connection(p)) {
        forget(f, e); /* a new connection on these ports starts over */
        e = NULL;
    }
    if (e != NULL && e->origin_in && e->gen != f->gen) {
        e->gen = f->gen; /* let in by older rules: matched again against these */
        e->denied = !rules_allow(f->rules, p, false);
    }
    if (e != NULL && e->denied) {
        /* kept (not refreshed) so that this node's own packets of the flow do not
         * make it one this node opened; it expires unless the rules allow it again */
        f->stats.dropped_no_rule++;
        return PYWG_FILTER_DROP_NO_RULE;
    }
    if (e != NULL) {
        touch(e, p, true, now);
        f->stats.passed_tracked++;
        return PYWG_FILTER_PASS;
    }
    if (!rules_allow(f->rules, p, false)) {
        f->stats.dropped_no_rule++;
        return PYWG_FILTER_DROP_NO_RULE;
    }
    e = insert(f, &k, now);
    e->origin_in = 1;
    e->gen = f->gen;
    touch(e, p, true, now);
    f->stats.passed_rule++;
    return PYWG_FILTER_PASS;
}

static int fragment_verdict(struct pywg_filter *f, const struct parsed *p, double now)
{
    struct key k;
    fragment_key(p, &k);
    if (find(f, &k, now) != NULL || rules_allow(f->rules, p, true)) {
        f->stats.passed_fragment++;
        return PYWG_FILTER_PASS;
    }
    f->stats.dropped_fragment++;
    return PYWG_FILTER_DROP_FRAGMENT;
}

static int decide(struct pywg_filter *f, const struct parsed *p, double now)
{
    int verdict;
    if (p->later_fragment)
        return fragment_verdict(f, p, now);
    if (trackable(p)) {
        verdict = tracked_verdict(f, p, now);
    } else if (related(f, p, now)) {
        f->stats.passed_related++;
        verdict = PYWG_FILTER_PASS;
    } else if (rules_allow(f->rules, p, false)) {
        f->stats.passed_rule++;
        verdict = PYWG_FILTER_PASS;
    } else {
        f->stats.dropped_no_rule++;
        verdict = PYWG_FILTER_DROP_NO_RULE;
    }
    if (verdict == PYWG_FILTER_PASS && p->first_fragment) {
        struct key k;
        struct flow *e;
        fragment_key(p, &k);
        e = find(f, &k, now);
        if (e == NULL)
            e = insert(f, &k, now);
        e->expires = now + PYWG_FLOW_TIMEOUT_FRAGMENT;
    }
    return verdict;
}

int pywg_filter_inbound(struct pywg_filter *f, const uint8_t *pkt, size_t len, double now)
{
    struct parsed p;
    int verdict;
    if (!atomic_load_explicit(&f->active, memory_order_relaxed))
        return PYWG_FILTER_PASS;
    bool malformed = parse(pkt, len, &p) != 0;
    pthread_mutex_lock(&f->lock);
    if (f->rules == NULL) {
        verdict = PYWG_FILTER_PASS; /* turned off meanwhile */
    } else if (malformed) {
        f->stats.dropped_malformed++;
        verdict = PYWG_FILTER_DROP_MALFORMED;
    } else {
        verdict = decide(f, &p, now);
    }
    pthread_mutex_unlock(&f->lock);
    return verdict;
}

void pywg_filter_outbound(struct pywg_filter *f, const uint8_t *pkt, size_t len, double now)
{
    struct parsed p;
    struct key k;
    struct flow *e;
    if (parse(pkt, len, &p) != 0 || p.later_fragment || !trackable(&p))
        return;
    flow_key(&p, false, &k);
    pthread_mutex_lock(&f->lock);
    e = find(f, &k, now);
    if (e != NULL && new_connection(&p)) {
        forget(f, e);
        e = NULL;
    }
    if (e == NULL) {
        e = insert(f, &k, now);
        e->gen = f->gen;
    }
    touch(e, &p, false, now);
    pthread_mutex_unlock(&f->lock);
}

/* ------------------------------------------------------------------ lifecycle */

static void reset_table(struct pywg_filter *f)
{
    memset(f->heads, 0, (size_t)f->capacity * sizeof(uint32_t));
    for (uint32_t i = 0; i < f->capacity; i++)
        f->flows[i].next = i + 2 <= f->capacity ? i + 2 : 0;
    f->free_head = 1;
    f->count = 0;
}

struct pywg_filter *pywg_filter_new(uint32_t capacity)
{
    struct pywg_filter *f = calloc(1, sizeof(*f));
    uint32_t size = 64;
    if (f == NULL)
        return NULL;
    while (size < capacity && size < (1u << 30))
        size <<= 1;
    f->capacity = size;
    f->mask = size - 1;
    f->heads = malloc((size_t)size * sizeof(uint32_t));
    f->flows = calloc(size, sizeof(struct flow));
    if (f->heads == NULL || f->flows == NULL ||
        getrandom(&f->seed, sizeof(f->seed), 0) != sizeof(f->seed)) {
        pywg_filter_free(f);
        return NULL;
    }
    pthread_mutex_init(&f->lock, NULL);
    reset_table(f);
    return f;
}

void pywg_filter_free(struct pywg_filter *f)
{
    if (f == NULL)
        return;
    ruleset_free(f->rules);
    free(f->heads);
    free(f->flows);
    free(f);
}

int pywg_filter_set_rules(struct pywg_filter *f, const struct pywg_filter_rule *rows, size_t n)
{
    struct ruleset *next = NULL, *old;
    if (n > PYWG_FILTER_MAX_ROWS)
        return -1;
    if (rows != NULL && (next = ruleset_new(rows, n)) == NULL)
        return -1;
    pthread_mutex_lock(&f->lock);
    old = f->rules;
    f->rules = next;
    f->gen++;
    f->stats.rules = n;
    atomic_store(&f->active, next != NULL);
    pthread_mutex_unlock(&f->lock);
    ruleset_free(old);
    return 0;
}

int pywg_filter_active(struct pywg_filter *f) { return atomic_load(&f->active); }

void pywg_filter_stats(struct pywg_filter *f, struct pywg_filter_stats *out)
{
    pthread_mutex_lock(&f->lock);
    *out = f->stats;
    out->flows = f->count;
    out->generation = f->gen;
    pthread_mutex_unlock(&f->lock);
}

void pywg_filter_flush(struct pywg_filter *f)
{
    pthread_mutex_lock(&f->lock);
    reset_table(f);
    pthread_mutex_unlock(&f->lock);
}
