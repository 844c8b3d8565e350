/*
 * TUN offloads (IFF_VNET_HDR with TUNSETOFFLOAD): segmentation and checksums.
 *
 * With TUN_F_TSO4/TSO6 the kernel hands the plane TCP super-packets of up to
 * 64 KiB, each behind a struct virtio_net_hdr (linux/virtio_net.h), instead
 * of MTU-sized packets: one read replaces dozens. The plane splits them
 * into MSS-sized segments itself, as a NIC would: every segment gets the
 * headers with its own IPv4 length, id and header checksum (or IPv6 payload
 * length), TCP sequence number, the flags that belong to it (FIN and PSH on
 * the last only, CWR on the first only) and a full TCP checksum. With
 * TUN_F_CSUM a packet may arrive with NEEDS_CSUM: its transport checksum
 * holds only the pseudo-header sum, to be finished over csum_start.. .
 *
 * The other way, the plane coalesces the TCP segments it decrypted in one
 * batch (GRO, as a NIC driver would): consecutive in-order segments of one
 * flow with the same ACK, window and options become one super-packet written
 * with one virtio_net_hdr (GSO TCPV4/TCPV6, NEEDS_CSUM over the TCP part), so
 * the kernel's TCP stack handles one packet where it would handle dozens. The
 * original checksums are not kept: the AEAD has authenticated every byte.
 */
#ifndef PYWG_FAST_OFFLOAD_H
#define PYWG_FAST_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "wg_constants.h" /* PYWG_VNET_HDR_LEN, from pywg/constants.py */

/* cdef-begin */
#define PYWG_VNET_F_NEEDS_CSUM 1
#define PYWG_VNET_GSO_NONE 0
#define PYWG_VNET_GSO_TCPV4 1
#define PYWG_VNET_GSO_TCPV6 4
#define PYWG_VNET_GSO_ECN 128

struct pywg_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

/* The RFC 1071 checksum of data (the complemented ones'-complement sum). */
uint16_t pywg_ip_checksum(const uint8_t *data, size_t len);
/* Finish a NEEDS_CSUM packet in place; 0, or -1 if the offsets do not fit. */
int pywg_csum_finish(const struct pywg_vnet_hdr *h, uint8_t *pkt, size_t len);
/* Split a TCP super-packet into segments written at out + i * stride (their
 * lengths into lens); out may be pkt (in place). Returns the count, or -1
 * (not TCP, malformed, more than max segments, or a segment over stride). */
int pywg_tso_split(const struct pywg_vnet_hdr *h, const uint8_t *pkt, size_t len, uint8_t *out,
                   size_t stride, size_t *lens, int max);

struct pywg_gro;
typedef void (*pywg_gro_emit)(void *ctx, uint8_t *frame, size_t len);
/* A coalescer that hands frames (virtio_net_hdr + packet) to emit(ctx, ...). */
struct pywg_gro *pywg_gro_new(pywg_gro_emit emit, void *ctx);
void pywg_gro_free(struct pywg_gro *g);
/* One packet, in order. pkt must stay valid until the next pywg_gro_flush. */
void pywg_gro_add(struct pywg_gro *g, uint8_t *pkt, size_t len);
/* Emit everything pending (at the end of a batch). */
void pywg_gro_flush(struct pywg_gro *g);
/* For tests: coalesce n packets (lens[i] bytes each, stride apart in pkts)
 * into frames written to out (each at out + i * out_stride, lengths in
 * out_lens); returns how many frames, or -1 if more than max_out. */
int pywg_gro_run(uint8_t *pkts, size_t stride, const size_t *lens, int n, uint8_t *out,
                 size_t out_stride, size_t *out_lens, int max_out);
/* cdef-end */

#endif /* PYWG_FAST_OFFLOAD_H */
