/* TUN offloads: TCP segmentation and checksums. See offload.h. */
#include "offload.h"

#include <stdlib.h>
#include <string.h>

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80
#define PROTO_TCP 6

static uint16_t fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* sum plus the ones'-complement sum of data as big-endian 16-bit words (an odd
 * last byte padded with zero), RFC 1071. The words are added 32 bits at a time
 * in the machine's byte order and the folded result is swapped to big-endian
 * once: the sum does not depend on byte order up to that swap (RFC 1071 §2(B)),
 * and a jumbo packet's checksum is 4 bytes a step, not 2. */
static uint64_t sum16(const uint8_t *data, size_t len, uint64_t sum)
{
    uint64_t acc = 0;
    uint16_t native;
    while (len >= 8) {
        uint32_t a, b;
        memcpy(&a, data, 4);
        memcpy(&b, data + 4, 4);
        acc += (uint64_t)a + b;
        data += 8;
        len -= 8;
    }
    while (len >= 2) {
        uint16_t w;
        memcpy(&w, data, 2);
        acc += w;
        data += 2;
        len -= 2;
    }
    if (len) {
        uint8_t last[2] = {data[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        acc += w;
    }
    native = fold(acc);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    native = (uint16_t)(native << 8 | native >> 8);
#endif
    return sum + native;
}

static void put_be16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put_be32(uint8_t *b, uint32_t v)
{
    put_be16(b, (uint16_t)(v >> 16));
    put_be16(b + 2, (uint16_t)v);
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

uint16_t pywg_ip_checksum(const uint8_t *data, size_t len)
{
    return (uint16_t)~fold(sum16(data, len, 0));
}

int pywg_csum_finish(const struct pywg_vnet_hdr *h, uint8_t *pkt, size_t len)
{
    size_t start = h->csum_start, field = (size_t)h->csum_start + h->csum_offset;
    uint16_t sum;
    if (start >= len || field + 2 > len)
        return -1;
    /* the field holds the pseudo-header sum; summing over it completes the checksum */
    sum = (uint16_t)~fold(sum16(pkt + start, len - start, 0));
    put_be16(pkt + field, sum);
    return 0;
}

/* The TCP pseudo-header sum (RFC 793 / RFC 8200 §8.1) for a segment of tcp_len bytes. */
static uint64_t pseudo_sum(const uint8_t *ip, int v4, size_t tcp_len)
{
    uint64_t sum = v4 ? sum16(ip + 12, 8, 0) : sum16(ip + 8, 32, 0);
    return sum + PROTO_TCP + tcp_len;
}

int pywg_tso_split(const struct pywg_vnet_hdr *h, const uint8_t *pkt, size_t len, uint8_t *out,
                   size_t stride, size_t *lens, int max)
{
    int v4 = len >= 20 && pkt[0] >> 4 == 4;
    size_t iphl, tcphl, hl, payload, mss = h->gso_size;
    uint32_t seq;
    uint16_t id = 0;
    uint8_t flags;
    int count;
    if (v4) {
        iphl = (size_t)(pkt[0] & 15) * 4;
        if (iphl < 20 || pkt[9] != PROTO_TCP)
            return -1;
        id = (uint16_t)(pkt[4] << 8 | pkt[5]);
    } else if (len >= 40 && pkt[0] >> 4 == 6 && pkt[6] == PROTO_TCP) {
        iphl = 40; /* the kernel's TSO packets from a TUN carry no extension headers */
    } else {
        return -1;
    }
    if (len < iphl + 20)
        return -1;
    tcphl = (size_t)(pkt[iphl + 12] >> 4) * 4;
    hl = iphl + tcphl;
    if (tcphl < 20 || len < hl || mss == 0)
        return -1;
    payload = len - hl;
    count = payload == 0 ? 1 : (int)((payload + mss - 1) / mss);
    if (count > max || hl + mss > stride)
        return -1;
    seq = be32(pkt + iphl + 4);
    flags = pkt[iphl + 13];
    /* last segment first, with memmove: out may be pkt itself (split in place),
     * each segment then lands at or after its own bytes and past the earlier
     * segments' (stride >= hl + mss), and the header is rewritten last */
    for (int i = count - 1; i >= 0; i--) {
        size_t off = (size_t)i * mss;
        size_t n = payload - off < mss ? payload - off : mss;
        size_t total = hl + n;
        uint8_t *seg = out + (size_t)i * stride, *tcp = seg + iphl;
        uint8_t f = flags;
        memmove(seg + hl, pkt + hl + off, n);
        if (seg != pkt)
            memcpy(seg, pkt, hl);
        if (v4) {
            put_be16(seg + 2, (uint16_t)total);
            put_be16(seg + 4, (uint16_t)(id + i));
            seg[10] = seg[11] = 0;
            put_be16(seg + 10, pywg_ip_checksum(seg, iphl));
        } else {
            put_be16(seg + 4, (uint16_t)(total - 40));
        }
        put_be32(tcp + 4, seq + (uint32_t)off);
        if (i != count - 1)
            f &= (uint8_t)~(TCP_FIN | TCP_PSH);
        if (i != 0)
            f &= (uint8_t)~TCP_CWR;
        tcp[13] = f;
        tcp[16] = tcp[17] = 0;
        put_be16(tcp + 16,
                 (uint16_t)~fold(sum16(tcp, tcphl + n, pseudo_sum(seg, v4, tcphl + n))));
        lens[i] = total;
    }
    return count;
}

/* ------------------------------------------------------------------ GRO */

#define GRO_BINS 8
#define GRO_MAX_SEGMENTS 64
#define GRO_MAX_LEN 65535
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_URG 0x20
#define TCP_ECE 0x40

struct gro_bin {
    int used, v4, segments;
    size_t iphl, tcphl, mss, len; /* len: IP packet so far, in buf + PYWG_VNET_HDR_LEN */
    uint32_t next_seq;
    uint8_t buf[PYWG_VNET_HDR_LEN + GRO_MAX_LEN];
};

struct pywg_gro {
    pywg_gro_emit emit;
    void *ctx;
    struct gro_bin bins[GRO_BINS];
};

struct pywg_gro *pywg_gro_new(pywg_gro_emit emit, void *ctx)
{
    struct pywg_gro *g = calloc(1, sizeof(*g));
    if (g != NULL) {
        g->emit = emit;
        g->ctx = ctx;
    }
    return g;
}

void pywg_gro_free(struct pywg_gro *g) { free(g); }

static uint16_t be16(const uint8_t *b) { return (uint16_t)(b[0] << 8 | b[1]); }

/* A TCP segment that may be merged: plain IPv4 (no options, not a fragment) or
 * IPv6 without extension headers, only ACK (PSH allowed), some payload, at
 * most half a frame long. Longer ones (a jumbo MTU's) are written as they
 * are: merging them saves next to nothing, and measured at MTU 34000 their
 * merged frames left the receiving TCP with segments out of order (spurious
 * retransmits, all D-SACKed) where plain writes leave none.
 * Returns its IP header length, or 0. */
static size_t mergeable(const uint8_t *pkt, size_t len, size_t *tcphl)
{
    size_t iphl;
    const uint8_t *tcp;
    if (len > GRO_MAX_LEN / 2)
        return 0;
    if (len >= 20 && pkt[0] == 0x45) {
        if (pkt[9] != PROTO_TCP || (be16(pkt + 6) & 0x3fff) != 0 || be16(pkt + 2) != len)
            return 0;
        iphl = 20;
    } else if (len >= 40 && pkt[0] >> 4 == 6 && pkt[6] == PROTO_TCP &&
               (size_t)be16(pkt + 4) + 40 == len) {
        iphl = 40;
    } else {
        return 0;
    }
    if (len < iphl + 20)
        return 0;
    tcp = pkt + iphl;
    *tcphl = (size_t)(tcp[12] >> 4) * 4;
    if (*tcphl < 20 || len <= iphl + *tcphl)
        return 0;
    if (tcp[13] & (TCP_SYN | TCP_RST | TCP_FIN | TCP_URG | TCP_ECE | TCP_CWR))
        return 0;
    return iphl;
}

/* Same flow and same everything but length/id/checksums/seq: can follow in one frame. */
static int same_flow(const struct gro_bin *b, const uint8_t *pkt, size_t iphl, size_t tcphl)
{
    const uint8_t *have = b->buf + PYWG_VNET_HDR_LEN;
    if (iphl != b->iphl || tcphl != b->tcphl)
        return 0;
    if (iphl == 20) {
        /* tos, flags/fragment, ttl, protocol, addresses */
        if (have[1] != pkt[1] || have[6] != pkt[6] || have[8] != pkt[8] ||
            memcmp(have + 12, pkt + 12, 8) != 0)
            return 0;
    } else if (memcmp(have, pkt, 4) != 0 || have[7] != pkt[7] ||
               memcmp(have + 8, pkt + 8, 32) != 0) {
        return 0;
    }
    /* ports; then ack, offset/flags but PSH, window, urgent pointer and options */
    return memcmp(have + iphl, pkt + iphl, 4) == 0 &&
           memcmp(have + iphl + 8, pkt + iphl + 8, 5) == 0 &&
           (have[iphl + 13] & ~TCP_PSH) == (pkt[iphl + 13] & ~TCP_PSH) &&
           memcmp(have + iphl + 14, pkt + iphl + 14, 2) == 0 &&
           memcmp(have + iphl + 18, pkt + iphl + 18, tcphl - 18) == 0;
}

static void emit_bin(struct pywg_gro *g, struct gro_bin *b)
{
    uint8_t *frame = b->buf, *ip = frame + PYWG_VNET_HDR_LEN, *tcp = ip + b->iphl;
    struct pywg_vnet_hdr h;
    memset(&h, 0, sizeof(h));
    if (b->segments > 1) {
        size_t tcp_len = b->len - b->iphl;
        if (b->v4) {
            put_be16(ip + 2, (uint16_t)b->len);
            ip[10] = ip[11] = 0;
            put_be16(ip + 10, pywg_ip_checksum(ip, b->iphl));
        } else {
            put_be16(ip + 4, (uint16_t)(b->len - 40));
        }
        /* NEEDS_CSUM: the field holds the pseudo-header sum, the kernel finishes it */
        put_be16(tcp + 16, fold(pseudo_sum(ip, b->v4, tcp_len)));
        h.flags = PYWG_VNET_F_NEEDS_CSUM;
        h.gso_type = b->v4 ? PYWG_VNET_GSO_TCPV4 : PYWG_VNET_GSO_TCPV6;
        h.hdr_len = (uint16_t)(b->iphl + b->tcphl);
        h.gso_size = (uint16_t)b->mss;
        h.csum_start = (uint16_t)b->iphl;
        h.csum_offset = 16;
    }
    memcpy(frame, &h, sizeof(h));
    b->used = 0;
    g->emit(g->ctx, frame, PYWG_VNET_HDR_LEN + b->len);
}

static void emit_plain(struct pywg_gro *g, uint8_t *pkt, size_t len)
{
    /* the 10 bytes before a packet belong to its (already used) WireGuard header */
    memset(pkt - PYWG_VNET_HDR_LEN, 0, PYWG_VNET_HDR_LEN);
    g->emit(g->ctx, pkt - PYWG_VNET_HDR_LEN, len + PYWG_VNET_HDR_LEN);
}

void pywg_gro_add(struct pywg_gro *g, uint8_t *pkt, size_t len)
{
    size_t tcphl = 0, iphl = mergeable(pkt, len, &tcphl);
    struct gro_bin *free_bin = NULL;
    if (iphl == 0) {
        /* not a candidate: anything pending of the same addresses goes first */
        for (int i = 0; i < GRO_BINS; i++)
            if (g->bins[i].used)
                emit_bin(g, &g->bins[i]);
        emit_plain(g, pkt, len);
        return;
    }
    for (int i = 0; i < GRO_BINS; i++) {
        struct gro_bin *b = &g->bins[i];
        size_t payload = len - iphl - tcphl;
        if (!b->used) {
            if (free_bin == NULL)
                free_bin = b;
            continue;
        }
        if (!same_flow(b, pkt, iphl, tcphl))
            continue;
        if (be32(pkt + iphl + 4) == b->next_seq && payload <= b->mss &&
            b->segments < GRO_MAX_SEGMENTS && b->len + payload <= GRO_MAX_LEN) {
            uint8_t *have = b->buf + PYWG_VNET_HDR_LEN;
            memcpy(have + b->len, pkt + iphl + tcphl, payload);
            b->len += payload;
            b->segments++;
            b->next_seq += (uint32_t)payload;
            have[iphl + 13] |= pkt[iphl + 13] & TCP_PSH;
            if (payload < b->mss || (pkt[iphl + 13] & TCP_PSH))
                emit_bin(g, b); /* a short or pushed segment ends the run */
            return;
        }
        emit_bin(g, b); /* out of order for its flow: flush, then start again */
        free_bin = b;
        break;
    }
    if (free_bin == NULL) { /* every bin busy: make room */
        free_bin = &g->bins[0];
        emit_bin(g, free_bin);
    }
    free_bin->used = 1;
    free_bin->v4 = iphl == 20;
    free_bin->iphl = iphl;
    free_bin->tcphl = tcphl;
    free_bin->mss = len - iphl - tcphl;
    free_bin->segments = 1;
    free_bin->len = len;
    free_bin->next_seq = be32(pkt + iphl + 4) + (uint32_t)free_bin->mss;
    memcpy(free_bin->buf + PYWG_VNET_HDR_LEN, pkt, len);
    if (pkt[iphl + 13] & TCP_PSH)
        emit_bin(g, free_bin);
}

void pywg_gro_flush(struct pywg_gro *g)
{
    for (int i = 0; i < GRO_BINS; i++)
        if (g->bins[i].used)
            emit_bin(g, &g->bins[i]);
}

struct run_ctx {
    uint8_t *out;
    size_t stride, *lens;
    int count, max;
};

static void run_emit(void *ctx, uint8_t *frame, size_t len)
{
    struct run_ctx *r = ctx;
    if (r->count < r->max && len <= r->stride) {
        memcpy(r->out + (size_t)r->count * r->stride, frame, len);
        r->lens[r->count] = len;
    }
    r->count++;
}

int pywg_gro_run(uint8_t *pkts, size_t stride, const size_t *lens, int n, uint8_t *out,
                 size_t out_stride, size_t *out_lens, int max_out)
{
    struct run_ctx r = {out, out_stride, out_lens, 0, max_out};
    struct pywg_gro *g = pywg_gro_new(run_emit, &r);
    if (g == NULL)
        return -1;
    for (int i = 0; i < n; i++)
        pywg_gro_add(g, pkts + (size_t)i * stride + PYWG_VNET_HDR_LEN, lens[i]);
    pywg_gro_flush(g);
    pywg_gro_free(g);
    return r.count <= max_out ? r.count : -1;
}
