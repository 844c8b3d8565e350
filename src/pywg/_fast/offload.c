/* TUN offloads: TCP segmentation and checksums. See offload.h. */
#include "offload.h"

#include <string.h>

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80
#define PROTO_TCP 6

static uint64_t sum16(const uint8_t *data, size_t len, uint64_t sum)
{
    while (len >= 2) {
        sum += (uint32_t)data[0] << 8 | data[1];
        data += 2;
        len -= 2;
    }
    if (len)
        sum += (uint32_t)data[0] << 8;
    return sum;
}

static uint16_t fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
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
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)i * mss;
        size_t n = payload - off < mss ? payload - off : mss;
        size_t total = hl + n;
        uint8_t *seg = out + (size_t)i * stride, *tcp = seg + iphl;
        uint8_t f = flags;
        memcpy(seg, pkt, hl);
        memcpy(seg + hl, pkt + hl + off, n);
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
