/*
 * Longest-prefix-match table for cryptokey routing (whitepaper §3): maps IPv4
 * and IPv6 prefixes to 32-bit values (peer ids). The native data plane looks
 * up the destination of every packet read from the TUN (which peer to
 * encrypt for) and the inner source of every packet decrypted (is it allowed
 * for the peer whose key opened it). Same semantics as pywg.allowedips: host
 * bits are masked off, inserting an existing prefix gives it the new value,
 * IPv4 and IPv6 are separate tables (::ffff:a.b.c.d is an IPv6 address).
 *
 * Structure
 * ---------
 * Per family, three parts kept in step by every change:
 *
 * 1. A path-compressed binary trie (the source of truth, same algorithm as
 *    pywg/allowedips.py): one node per stored prefix plus a fork wherever two
 *    diverge, so n prefixes take at most 2n - 1 nodes. Nodes are 32 bytes in
 *    one array per family, linked by 32-bit index. Depth is at most 33 / 129
 *    nodes; every walk is a loop, nothing recurses.
 * 2. Tables that cut trie walks short: root slots indexed by the first 8
 *    bits of the address (where the walk goes on, what matched on the way),
 *    and 256-entry jump tables like them on trie nodes below which an insert
 *    saw a run of 6 or more single-bit steps (at most 16 + n / 64 tables,
 *    3 KiB each), indexed by the 8 bits after the node's prefix. A change
 *    recomputes only the entries whose walks cross the changed link.
 * 3. A hash of all stored prefixes keyed by (bits, length), open addressing.
 *    When a family uses at most PYWG_LPM_HASH_LENGTHS distinct prefix lengths
 *    (a typical configuration: /32 and /128 per peer, a few subnets, default
 *    routes) a lookup probes it once per length, longest first, and the
 *    first hit is the answer; the probes do not depend on one another. With
 *    more lengths the trie answers, after one probe of the longest length if
 *    that holds at least half of the prefixes (mostly host routes).
 *
 * Why: ns per lookup in a C loop (pywg_lpm_bench), 10,000 prefixes, each
 * address inside a random stored prefix, best of 5 on this project's 2-vCPU
 * EPYC (benches/bench_lpm.py has the same layouts):
 *
 *   prefixes                       binary trie  + root slots  + jump tables  chosen
 *   random, lengths /1-/32                 110            36             26      25
 *   random, lengths /1-/128                120            43             26      25
 *   inside one /16, lengths /16-/32        110           150             29      29
 *   inside one /16, lengths /16-/128       125           130             33      33
 *   inside one /16, host routes /32        120           125             42       7
 *   inside one /16, host routes /128       130           135             46       7
 *
 * A binary trie is 14-16 dependent loads deep at this size, ~8 ns each once
 * its 600 KiB of nodes outgrow L1, whatever the layout; the root slots only
 * help when the first bits are spread out (not in one /16, the usual
 * WireGuard case), the jump tables wherever the trie is deep. The hash costs
 * ~6 ns per length tried: 7 ns for host routes, 20 ns for 17 lengths, but
 * 220 ns for 33 and 650-740 ns for 129, hence the limit of 4 lengths. A
 * DIR-24-8 table for IPv4 would cost 64 MiB up front and does not carry over
 * to IPv6. (A branch-free trie walk measured 2-3x slower than the plain one:
 * it keeps the CPU from running ahead to the next node.)
 *
 * 4. Per value, the list of its prefixes in the order they were assigned to
 *    it (what `wg show` lists for a peer), linked through an array beside
 *    the node pool, headed from a hash keyed by the value: removing a
 *    value's prefixes or listing them costs what it holds, not the table.
 *
 * Memory is O(prefixes): 220-280 bytes each at 10,000 (trie nodes and their
 * list links, hash, jump tables), under 8 KiB for an empty table; 17-18 MiB
 * for 130,000 (65,000 IPv4 /16s and 65,000 IPv6 /128s). Capacity follows
 * the peak size; pywg_lpm_clear releases everything, and pywg_lpm_clone
 * sizes its copy to what is in use.
 *
 * Concurrency: not thread-safe by itself. Lookups only read (no caches, no
 * allocation), so any number may run at once; every other call must exclude
 * lookups and other writers (the data plane's rwlock), since an insert may
 * reallocate the arrays that lookups read.
 *
 * The text between the cdef markers below is fed verbatim to cffi's cdef() by
 * build_fast.py, so keep it to plain declarations and integer #defines.
 */
#ifndef PYWG_FAST_LPM_H
#define PYWG_FAST_LPM_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
/* `which` for pywg_lpm_lookup_packet */
#define PYWG_LPM_SOURCE 0
#define PYWG_LPM_DESTINATION 1
/* default for pywg_lpm_set_hash_lengths */
#define PYWG_LPM_HASH_LENGTHS 4
/* what pywg_lpm_clone gives a value its map does not cover */
#define PYWG_LPM_UNMAPPED 4294967295

struct pywg_lpm; /* opaque: both families */

/* An empty table, or NULL on ENOMEM. */
struct pywg_lpm *pywg_lpm_new(void);
/* Free the table (NULL is fine). */
void pywg_lpm_free(struct pywg_lpm *t);

/* Route family (4 or 6) prefix addr/cidr (addr: 4 or 16 bytes, network
 * order; host bits are ignored) to value, replacing the value if that exact
 * prefix is already there. 0 ok; -1 bad arguments or ENOMEM (table
 * unchanged). */
int pywg_lpm_insert(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr, uint32_t value);
/* Delete exactly addr/cidr (host bits ignored), whatever its value.
 * 1 removed, 0 absent, -1 bad arguments. */
int pywg_lpm_remove(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr);
/* Delete every prefix (both families) with this value; how many. */
int pywg_lpm_remove_value(struct pywg_lpm *t, uint32_t value);
/* Delete everything and release the memory. */
void pywg_lpm_clear(struct pywg_lpm *t);

/* Bulk forms over n prefix records of PYWG_PREFIX_RECORD_SIZE bytes each:
 * the family (4 or 6), the prefix length, 16 address bytes in network order
 * (IPv4 in the first 4; host bits are ignored). */
/* pywg_lpm_insert of each record in order, all with `value`. Checks every
 * record and makes room for all before it changes anything: 0 ok; -1 a bad
 * record or ENOMEM (table unchanged). */
int pywg_lpm_insert_many(struct pywg_lpm *t, const uint8_t *records, size_t n, uint32_t value);
/* Delete each record's exact prefix if its value is `value`; how many
 * were, or -1 for a bad record (table unchanged). */
int pywg_lpm_remove_many(struct pywg_lpm *t, const uint8_t *records, size_t n, uint32_t value);
/* How many prefixes have this value. */
size_t pywg_lpm_value_count(const struct pywg_lpm *t, uint32_t value);
/* The prefixes with this value as records, in the order they were assigned
 * to it (a prefix that moves to another value goes to the end of its list;
 * one assigned again to the value it has keeps its place), at most cap of
 * them; returns how many there are. */
size_t pywg_lpm_prefixes_of(const struct pywg_lpm *t, uint32_t value, uint8_t *out, size_t cap);
/* Every prefix as a record, with its value in values[]: IPv4 then IPv6, each
 * in address order (a prefix before the longer ones inside it); at most cap,
 * returns how many were written. */
size_t pywg_lpm_dump(const struct pywg_lpm *t, uint8_t *out, uint32_t *values, size_t cap);
/* A copy of the table (both families, the lists of each value) in memory
 * of its own, with every value v replaced by map[v] (PYWG_LPM_UNMAPPED when
 * v >= nmap; map NULL keeps the values); NULL on ENOMEM. For readers of the
 * copy, it is as if each prefix had been inserted with its new value. */
struct pywg_lpm *pywg_lpm_clone(const struct pywg_lpm *src, const uint32_t *map, size_t nmap);
/* Trie nodes in use (stored prefixes and forks), both families. */
size_t pywg_lpm_nodes(const struct pywg_lpm *t);
/* Values that hold at least one prefix. */
size_t pywg_lpm_owners(const struct pywg_lpm *t);

/* The value of exactly addr/cidr (host bits ignored), -1 if absent or bad arguments. */
int64_t pywg_lpm_get(const struct pywg_lpm *t, int family, const uint8_t *addr, int cidr);
/* The value of the longest prefix containing addr (4 or 16 bytes by
 * family), -1 if none or bad arguments. */
int64_t pywg_lpm_lookup(const struct pywg_lpm *t, int family, const uint8_t *addr);
/* pywg_lpm_lookup of the source (which = PYWG_LPM_SOURCE) or destination
 * (PYWG_LPM_DESTINATION) address of an IP packet, by its version nibble.
 * -1 for no match, or a packet too short for its header (IPv4: 20 bytes and
 * IHL >= 5 and IHL * 4 <= len; IPv6: 40 bytes), or another version. The
 * total-length field and checksum are not checked (padding after the packet
 * is fine). */
int64_t pywg_lpm_lookup_packet(const struct pywg_lpm *t, const uint8_t *ip_packet, size_t len, int which);
/* Stored prefixes, both families. */
size_t pywg_lpm_count(const struct pywg_lpm *t);
/* Bytes allocated by the table. */
size_t pywg_lpm_memory(const struct pywg_lpm *t);

/* Tuning, for tests and benchmarks: a family that uses at most this many
 * distinct prefix lengths is looked up by hash probes alone; 0 means always
 * the trie, 129 always the hash. The answers never depend on it. */
void pywg_lpm_set_hash_lengths(struct pywg_lpm *t, int max_lengths);
/* Check every invariant (trie shape, hash, jump tables, counters): 0 if all
 * hold, else a code saying which failed (for tests). */
int pywg_lpm_validate(const struct pywg_lpm *t);
/* Look up the n addresses at addrs (4 or 16 bytes each, by family) `rounds`
 * times; a checksum of the answers (for measuring lookups without cffi). */
uint64_t pywg_lpm_bench(const struct pywg_lpm *t, int family, const uint8_t *addrs, size_t n, size_t rounds);
/* cdef-end */

#endif /* PYWG_FAST_LPM_H */
