/*
 * The packet filter of the native plane: inbound rules and connection tracking.
 *
 * A node enforces the access policy on what arrives through its tunnel
 * (docs/policy.md). The RX loop asks pywg_filter_inbound about every
 * decrypted packet before it is written to the TUN; the TX loop tells
 * pywg_filter_outbound about every packet read from the TUN before it is
 * sealed. An inbound packet passes if it belongs to a tracked flow (one this
 * node opened, or one a rule let in) or a rule allows it (then its flow is
 * tracked); otherwise it is dropped and counted by reason (PYWG_FILTER_DROP_*).
 *
 * Rules: rows of (family, source prefix, destination prefix, protocol, port
 * range), scanned linearly per family; only a packet that starts a flow (or
 * belongs to one let in under older rules) is matched against them, so the
 * cost per packet of an established flow is one hash lookup.
 * pywg_filter_set_rules replaces the whole table at once (built outside the
 * lock, swapped under it); flows this node opened stay, and a flow a rule let
 * in is matched again on its next inbound packet: if no rule allows it now, its
 * inbound packets are dropped until it expires (the entry stays, so that this
 * node's own packets of that flow, a retransmission say, do not pass it off as
 * one this node opened), unless later rules allow it again.
 *
 * Flows: a hash table of at most `capacity` entries keyed by (family, protocol,
 * local address, remote address, local port, remote port), the ports being the
 * ICMP echo identifier for pings; each expires PYWG_FLOW_TIMEOUT_* seconds after
 * its last packet. When full, the oldest of a few entries is reused.
 *
 * ICMP: echo requests and replies are tracked by their identifier. An ICMP error
 * (IPv4 unreachable, time exceeded, parameter problem; ICMPv6 types 1-4) that
 * quotes a packet of a tracked flow this node sent passes (path MTU discovery
 * needs Packet Too Big / Fragmentation Needed); other ICMP passes by a rule only.
 *
 * Fragments: a later fragment (IPv4 offset > 0, IPv6 Fragment header with an
 * offset) has no ports; it passes while the first fragment of its datagram
 * (same addresses and identification) was let in within
 * PYWG_FLOW_TIMEOUT_FRAGMENT, or when a rule allows all ports of its protocol.
 * A TCP fragment at offset 8 bytes is malformed (RFC 1858 §4).
 *
 * Headers are read within the packet's length only: IPv4 options and IPv6
 * extension headers (at most PYWG_FILTER_MAX_EXT) are walked with bounds, and a
 * packet whose transport header is cut short is malformed.
 *
 * Thread safety: inbound and outbound calls may come from different threads;
 * the flow table has a mutex, the rules a rwlock.
 */
#ifndef PYWG_FAST_FILTER_H
#define PYWG_FAST_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "wg_constants.h"

/* cdef-begin */
#define PYWG_FILTER_MAX_EXT 8

struct pywg_filter;

/* One row of the rule table (pywg.policy.rules.RuleRow); IPv4 in the first 4 bytes. */
struct pywg_filter_rule {
    uint8_t family;     /* 4 or 6 */
    uint8_t proto;      /* 0 any, 1 ICMP (ICMPv6 in an IPv6 row), 6 TCP, 17 UDP */
    uint8_t src_len, dst_len;
    uint16_t port_lo, port_hi;
    uint8_t src[16], dst[16];
};

struct pywg_filter_stats {
    uint64_t passed_tracked;   /* inbound packets of a tracked flow */
    uint64_t passed_rule;      /* inbound packets a rule let in */
    uint64_t passed_fragment;  /* later fragments of a datagram let in */
    uint64_t passed_related;   /* ICMP errors about a tracked flow */
    uint64_t dropped_no_rule, dropped_malformed, dropped_fragment;
    uint64_t flows;            /* entries in the table now */
    uint64_t flows_evicted;    /* live entries reused because the table was full */
    uint64_t rules;            /* rows in the rule table */
    uint64_t generation;       /* how many times the rules were set */
};

/* capacity: the most flows tracked (rounded up to a power of two, at least 64). */
struct pywg_filter *pywg_filter_new(uint32_t capacity);
void pywg_filter_free(struct pywg_filter *f);
/* Replace the rules; rows NULL (n 0): no rules, everything passes (the filter is off).
 * n 0 with rows not NULL: no rule allows anything, only tracked flows pass.
 * 0 ok, -1 too many rows or a bad row or no memory (the old rules stay). */
int pywg_filter_set_rules(struct pywg_filter *f, const struct pywg_filter_rule *rows, size_t n);
/* Whether rules are set (a policy is in force). */
int pywg_filter_active(struct pywg_filter *f);
/* PYWG_FILTER_PASS, or the reason to drop it (PYWG_FILTER_DROP_*). now: monotonic s. */
int pywg_filter_inbound(struct pywg_filter *f, const uint8_t *pkt, size_t len, double now);
/* Track a packet this node sends (read from the TUN). */
void pywg_filter_outbound(struct pywg_filter *f, const uint8_t *pkt, size_t len, double now);
void pywg_filter_stats(struct pywg_filter *f, struct pywg_filter_stats *out);
/* Forget every flow (tests). */
void pywg_filter_flush(struct pywg_filter *f);
/* cdef-end */

#endif /* PYWG_FAST_FILTER_H */
