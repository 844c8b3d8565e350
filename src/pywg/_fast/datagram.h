/*
 * What the native loops (plane.c, relay.c) ask of a UDP datagram before anything
 * else: who sent it (address equality) and what it is (STUN, or a WireGuard
 * message of a valid size); and the receive batch both read them in.
 * Header-only: small, and on every datagram's path. Include it after defining
 * _GNU_SOURCE (struct mmsghdr).
 */
#ifndef PYWG_FAST_DATAGRAM_H
#define PYWG_FAST_DATAGRAM_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "wg_constants.h"

/* Whether two socket addresses are the same address and port (a v4-mapped IPv6
 * address differs from the plain IPv4 one: a socket reports one form only). */
static inline bool pywg_same_address(const struct sockaddr_storage *a, socklen_t alen,
                                     const struct sockaddr_storage *b, socklen_t blen)
{
    if (alen == 0 || blen == 0 || a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* A STUN message (RFC 8489 §5: two zero bits, the magic cookie, a length that is a
 * multiple of 4 and matches), as pywg.stun.is_stun decides it. */
static inline bool pywg_is_stun(const uint8_t *d, size_t len)
{
    size_t length;
    if (len < 20 || (d[0] & 0xC0) != 0 || d[4] != 0x21 || d[5] != 0x12 || d[6] != 0xA4 ||
        d[7] != 0x42)
        return false;
    length = (size_t)d[2] << 8 | d[3];
    return length % 4 == 0 && len == 20 + length;
}

/* Whether a datagram from a mesh relay is its STUN rather than a tagged WireGuard
 * message (pywg.relayed.relay_stun): a success response's type 0x0101 starts like a
 * tagged initiation, and the relay never sends STUN of an initiation's size. */
static inline bool pywg_relay_stun(const uint8_t *d, size_t len)
{
    return pywg_is_stun(d, len) &&
           !(len == PYWG_INITIATION_SIZE && d[0] == PYWG_MESSAGE_INITIATION);
}

/* Whether a datagram has a WireGuard message's type and a size valid for it
 * (whitepaper §5.4: 148, 92 and 64 bytes for types 1-3, at least 32 for type 4);
 * the reserved bytes are not looked at. */
static inline bool pywg_message_shaped(const uint8_t *d, size_t len)
{
    if (len < PYWG_MESSAGE_TYPE_SIZE)
        return false;
    switch (d[0]) {
    case PYWG_MESSAGE_INITIATION:
        return len == PYWG_INITIATION_SIZE;
    case PYWG_MESSAGE_RESPONSE:
        return len == PYWG_RESPONSE_SIZE;
    case PYWG_MESSAGE_COOKIE_REPLY:
        return len == PYWG_COOKIE_REPLY_SIZE;
    case PYWG_MESSAGE_TRANSPORT:
        return len >= PYWG_TRANSPORT_MIN_SIZE;
    default:
        return false;
    }
}

/* Point a recvmmsg batch's n headers at their buffers (`slot` bytes each from
 * `bufs`), address and control room (`cmsg_room` bytes each from `cmsgs`), for the
 * next call: recvmmsg overwrites the lengths it returns. */
static inline void pywg_rx_batch(struct mmsghdr *msgs, struct iovec *iov,
                                 struct sockaddr_storage *addrs, uint8_t *cmsgs,
                                 size_t cmsg_room, uint8_t *bufs, size_t slot, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = bufs + (size_t)i * slot;
        iov[i].iov_len = slot;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = cmsgs + (size_t)i * cmsg_room;
        msgs[i].msg_hdr.msg_controllen = cmsg_room;
    }
}

#endif
