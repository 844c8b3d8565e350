/*
 * Longest-prefix-match table for cryptokey routing (whitepaper §3). See lpm.h
 * for the structure, the measurements behind it and the contract.
 *
 * Keys: every prefix and every looked-up address is a 128-bit big-endian
 * number held in two host-order words, w[0] the most significant. An IPv4
 * address sits in the top 32 bits of w[0] and the other 96 bits are zero, so
 * both families share one set of helpers. Bit i of a key counts from the
 * most significant end (bit 0 is the first bit on the wire).
 *
 * Each family has three parts, all kept in step by every change:
 *
 *   trie   path-compressed binary trie in a node pool: the source of truth,
 *          used for updates and for lookups when many lengths are in use;
 *   tables the outcome of the trie walk across a window of address bits,
 *          one slot per value of those bits: the root slots (the first
 *          ROOT_BITS bits) and jump tables on some nodes (the JUMP_BITS bits
 *          after the node's prefix), so a walk skips the nodes in between;
 *   hash   every stored prefix keyed by (bits, length), for exact-prefix
 *          queries and for lookups when few lengths are in use.
 *
 * A slot holds what the plain walk would have found on the way (the value
 * of the last stored prefix that matched) and where it goes on; it is valid
 * for every address that has the slot's bits in the window and, for a jump
 * table, lies inside the owner's prefix (checked before the table is used).
 * After a change, tables_touch recomputes the slots whose walks cross the
 * changed link; pywg_lpm_validate recomputes all of them and compares.
 *
 * Trie nodes point at each other by 32-bit index into the pool; index 0 is
 * never a node, so 0 means "none". Freed nodes go on a free list threaded
 * through child[0]. A node in use is never moved, so an index stays valid
 * until that node is freed, but the pool and the hash may be reallocated by
 * an insert (the caller's lock keeps readers out meanwhile).
 *
 * Owners: every value that holds prefixes has an entry in a hash keyed by
 * the value, heading a doubly linked list of its stored prefixes in the
 * order they were assigned to it (Linux keeps such a list per peer too). The
 * links live beside the pool, one pair per pool entry, so lookups never
 * touch them; a list runs through both families (see REF_V6).
 */
#include "lpm.h"

#include <stdlib.h>
#include <string.h>

#include "wg_constants.h" /* PYWG_PREFIX_RECORD_SIZE, from pywg/constants.py */

#define NIL 0u
#define F_USED 1u  /* the pool entry holds a trie node (else it is on the free list) */
#define F_VALUE 2u /* the node is a stored prefix (else an intermediate fork) */

/* The first ROOT_BITS bits of an address index the root slots. */
#define ROOT_BITS 8
#define ROOT_SLOTS (1u << ROOT_BITS)
/* A jump table at a node is indexed by the JUMP_BITS bits after its prefix.
 * An insert whose lookup path runs JUMP_TRIGGER trie steps without a jump
 * gives the node where that run starts a table, while there are fewer than
 * JUMP_BASE + prefixes / JUMP_PER tables (and at most JUMP_MAX). */
#define JUMP_BITS 8u
#define JUMP_SLOTS (1u << JUMP_BITS)
#define JUMP_MAX 0xffffu
/* (overridable when compiling a stress test that wants many tables) */
#ifndef JUMP_TRIGGER
#define JUMP_TRIGGER 6u
#endif
#ifndef JUMP_BASE
#define JUMP_BASE 16u
#endif
#ifndef JUMP_PER
#define JUMP_PER 64u
#endif

#define POOL_MIN 16u
#define POOL_MAX 0x7ffffff0u /* nodes per family, never reached in practice */
#define HASH_MIN 16u          /* entries; a power of two */
#define OWNERS_MIN 16u        /* owner entries; a power of two */
/* A bulk insert of more prefixes than this into a family settles its lookup
 * tables once at the end (family_settle) instead of after each prefix. */
#define BULK_DEFER 64u

/* A reference to a node in an owner's list: its pool index, with REF_V6 set
 * for the IPv6 family. Index 0 is never a node, so 0 is "no node". */
#define REF_V6 0x80000000u
#define REF_NONE 0u

/* A prefix record (pywg_lpm_insert_many and the dumps): byte 0 the family
 * (4 or 6), byte 1 the prefix length, then 16 address bytes in network
 * order (IPv4 in the first 4, the rest zero). pywg/allowedips.py reads and
 * writes the same layout. */
#define RECORD_SIZE PYWG_PREFIX_RECORD_SIZE
_Static_assert(RECORD_SIZE == 18, "family, length, 16 address bytes");

struct node {
    uint64_t w[2];     /* the prefix, host bits zero */
    uint32_t child[2]; /* picked by the key's bit `cidr`, the first after the prefix */
    uint32_t value;    /* meaningful if F_VALUE */
    uint8_t cidr;      /* prefix length: 0..32 or 0..128 */
    uint8_t flags;
    uint16_t jump;     /* this node's jump table, 0 if none */
};

_Static_assert(sizeof(struct node) == 32, "two nodes per cache line");

/* Where a walk resumes once the address bits of a window are known: the walk
 * over every node shorter than the window's end is the same for all addresses
 * that share those bits, so its outcome is stored once. */
struct slot {
    uint32_t next;     /* the first node of the walk at or past the window's end, or NIL */
    uint32_t best;     /* the value matched so far, if has_best */
    uint32_t has_best; /* 0 or 1 */
};

/* The walks below a node over the JUMP_BITS bits after its prefix, one slot
 * per value of those bits (the nodes between are skipped). */
struct jump {
    uint32_t owner;     /* the node, NIL while the table is on the free list */
    uint32_t next_free;
    uint32_t stale;     /* 1: to be recomputed when a bulk insert ends */
    struct slot slot[JUMP_SLOTS];
};

/* A node's place in its owner's list (REF_NONE at the ends). */
struct link {
    uint32_t prev, next;
};

/* One value that holds prefixes; count 0 marks an empty hash slot. */
struct owner {
    uint32_t value;
    uint32_t count;      /* stored prefixes with this value, both families */
    uint32_t head, tail; /* the first and last assigned, as REF_V6 references */
};

/* One stored prefix in the hash (open addressing, linear probing). */
struct entry {
    uint64_t w[2];
    uint32_t value;
    uint8_t tag; /* cidr + 1; 0 = empty */
    uint8_t spare[3];
};

struct family {
    /* trie */
    struct node *pool;
    struct link *links; /* beside the pool, same indices: the owner lists */
    uint32_t cap;       /* pool entries allocated (0 before the first insert) */
    uint32_t nodes;     /* pool entries in use (stored prefixes and forks) */
    uint32_t top;       /* entries [1, top) have been handed out at some point */
    uint32_t free_head; /* free list through child[0] */
    uint32_t root;
    uint32_t width;     /* 32 or 128 */
    uint32_t prefixes;  /* stored prefixes */
    struct slot slots[ROOT_SLOTS];
    /* jump tables */
    struct jump *jumps; /* [0] unused, so that 0 means "no table" */
    uint32_t jumps_cap, jumps_top, jumps_free, jumps_used;
    /* hash */
    struct entry *table;
    uint32_t table_mask; /* entries - 1; the table is NULL while empty */
    uint32_t nlengths;   /* distinct prefix lengths in use */
    uint8_t lengths[129]; /* those lengths, longest first */
    uint32_t per_length[129]; /* stored prefixes of each length */
    /* during a bulk insert (pywg_lpm_insert_many): the root slots and jump
     * tables are marked stale instead of recomputed after every prefix */
    uint32_t deferred;
    uint32_t roots_stale;
    /* lookup strategy, from the lengths in use (strategy_update) */
    uint32_t hash_limit; /* pywg_lpm_set_hash_lengths */
    uint32_t probes;     /* probe the hash for this many of the longest lengths, */
    uint32_t walk;       /* then, if none matched, walk the trie (0 or 1) */
};

struct pywg_lpm {
    struct family v4, v6;
    struct owner *owners; /* hash of the values in use, NULL while empty */
    uint32_t owners_mask; /* entries - 1 */
    uint32_t nowners;
};

/* ------------------------------------------------------------------------ */
/* Key helpers                                                               */

static inline unsigned key_bit(const uint64_t w[2], unsigned i)
{
    return (unsigned)(w[(i >> 6) & 1] >> (63 - (i & 63))) & 1u;
}

/* The child a node steers a key to. A host route (cidr == width) has no
 * children: any bit will do, and for 32 / 128 the ones below pick a zero
 * bit (v4) or bit 0 (v6), never one past the key. */
static inline uint32_t node_next(const struct node *n, const uint64_t k[2])
{
    return n->child[key_bit(k, n->cidr & 127u)];
}

/* Zero every bit from `cidr` on. */
static inline void key_mask(uint64_t w[2], unsigned cidr)
{
    if (cidr == 0) {
        w[0] = w[1] = 0;
    } else if (cidr < 64) {
        w[0] &= ~UINT64_C(0) << (64 - cidr);
        w[1] = 0;
    } else if (cidr == 64) {
        w[1] = 0;
    } else if (cidr < 128) {
        w[1] &= ~UINT64_C(0) << (128 - cidr);
    }
}

/* Do the first `cidr` bits of a and b agree? */
static inline int key_prefix_eq(const uint64_t a[2], const uint64_t b[2], unsigned cidr)
{
    uint64_t x0 = a[0] ^ b[0], x1 = a[1] ^ b[1];

    if (cidr <= 64)
        return cidr == 0 || (x0 >> (64 - cidr)) == 0;
    return x0 == 0 && (x1 >> (128 - cidr)) == 0;
}

/* Number of leading bits a and b have in common, at most `width`. */
static inline unsigned key_common(const uint64_t a[2], const uint64_t b[2], unsigned width)
{
    uint64_t x0 = a[0] ^ b[0], x1 = a[1] ^ b[1];
    unsigned n;

    if (x0)
        n = (unsigned)__builtin_clzll(x0);
    else if (x1)
        n = 64 + (unsigned)__builtin_clzll(x1);
    else
        n = 128;
    return n < width ? n : width;
}

/* The `j` bits of k from bit `c` on, as a number (1 <= j <= 32, c + j <= 128). */
static inline uint32_t key_bits(const uint64_t k[2], unsigned c, unsigned j)
{
    uint64_t mask = (UINT64_C(1) << j) - 1;
    unsigned end = c + j;

    if (end <= 64)
        return (uint32_t)((k[0] >> (64 - end)) & mask);
    if (c >= 64)
        return (uint32_t)((k[1] >> (128 - end)) & mask);
    return (uint32_t)(((k[0] << (end - 64)) | (k[1] >> (128 - end))) & mask);
}

/* w with its `j` bits from bit `c` on replaced by `number`. */
static inline void key_with_bits(uint64_t w[2], unsigned c, unsigned j, uint32_t number)
{
    for (unsigned b = 0; b < j; b++) {
        unsigned i = c + b;
        uint64_t bit = UINT64_C(1) << (63 - (i & 63));

        if ((number >> (j - 1 - b)) & 1u)
            w[i >> 6] |= bit;
        else
            w[i >> 6] &= ~bit;
    }
}

static inline void key_load(uint64_t w[2], const uint8_t *addr, int v6)
{
    uint64_t hi = 0, lo = 0;

    if (v6) {
        for (int i = 0; i < 8; i++)
            hi = hi << 8 | addr[i];
        for (int i = 8; i < 16; i++)
            lo = lo << 8 | addr[i];
    } else {
        hi = (uint64_t)addr[0] << 56 | (uint64_t)addr[1] << 48 | (uint64_t)addr[2] << 40 |
             (uint64_t)addr[3] << 32;
    }
    w[0] = hi;
    w[1] = lo;
}

/* ------------------------------------------------------------------------ */
/* Hash of stored prefixes                                                   */

static inline uint32_t hash_of(const uint64_t w[2], unsigned cidr)
{
    /* Multiply-xorshift mixing; the inputs are configured prefixes, not
     * chosen by the network, so no keyed hash is needed. */
    uint64_t x = w[0] * UINT64_C(0x9e3779b97f4a7c15) ^ w[1] * UINT64_C(0xc2b2ae3d27d4eb4f);

    x ^= cidr;
    x ^= x >> 31;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 29;
    return (uint32_t)x;
}

/* The entry holding w/cidr (w masked), or NULL. */
static struct entry *hash_find(const struct family *f, const uint64_t w[2], unsigned cidr)
{
    uint32_t i;

    if (f->table == NULL)
        return NULL;
    for (i = hash_of(w, cidr) & f->table_mask;; i = (i + 1) & f->table_mask) {
        struct entry *e = &f->table[i];

        if (e->tag == 0)
            return NULL;
        if (e->tag == cidr + 1 && e->w[0] == w[0] && e->w[1] == w[1])
            return e;
    }
}

/* Put a prefix known to be absent into a table with room for it. */
static void hash_put(struct entry *table, uint32_t mask, const uint64_t w[2], unsigned cidr,
                     uint32_t value)
{
    uint32_t i = hash_of(w, cidr) & mask;

    while (table[i].tag != 0)
        i = (i + 1) & mask;
    table[i].w[0] = w[0];
    table[i].w[1] = w[1];
    table[i].value = value;
    table[i].tag = (uint8_t)(cidr + 1);
}

/* Move every entry into a fresh table of `size` entries (a power of two,
 * more than twice the count). On ENOMEM the old table stays. */
static int hash_resize(struct family *f, uint32_t size)
{
    struct entry *fresh = calloc(size, sizeof(*fresh));

    if (fresh == NULL)
        return -1;
    if (f->table != NULL) {
        for (uint32_t i = 0; i <= f->table_mask; i++) {
            const struct entry *e = &f->table[i];

            if (e->tag != 0)
                hash_put(fresh, size - 1, e->w, e->tag - 1u, e->value);
        }
        free(f->table);
    }
    f->table = fresh;
    f->table_mask = size - 1;
    return 0;
}

/* Make room for `extra` more prefixes (load factor stays at most 1/2). */
static int hash_reserve(struct family *f, uint32_t extra)
{
    uint64_t size = f->table == NULL ? 0 : (uint64_t)f->table_mask + 1, want;

    if (((uint64_t)f->prefixes + extra) * 2 <= size)
        return 0;
    want = size ? size * 2 : HASH_MIN;
    while (want < ((uint64_t)f->prefixes + extra) * 2)
        want *= 2;
    if (want > UINT32_MAX / 2 + 1)
        return -1;
    return hash_resize(f, (uint32_t)want);
}

/* Remove an entry (backward-shift deletion: no tombstones, so probe runs
 * stay as short as the live entries make them). */
static void hash_delete(struct family *f, struct entry *e)
{
    uint32_t mask = f->table_mask;
    uint32_t hole = (uint32_t)(e - f->table);

    for (uint32_t j = (hole + 1) & mask; f->table[j].tag != 0; j = (j + 1) & mask) {
        uint32_t home = hash_of(f->table[j].w, f->table[j].tag - 1u) & mask;

        /* The entry at j may fill the hole if its home is not strictly
         * between the hole and j (cyclically): then the hole is on its
         * probe path. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            f->table[hole] = f->table[j];
            hole = j;
        }
    }
    memset(&f->table[hole], 0, sizeof(f->table[hole]));
    /* Shrink when mostly empty; keeping the big table is fine if that fails. */
    if (f->table_mask + 1 > HASH_MIN && (uint64_t)f->prefixes * 8 < f->table_mask + 1u)
        (void)hash_resize(f, (f->table_mask + 1) / 2);
}

static void lengths_add(struct family *f, unsigned cidr)
{
    unsigned i;

    if (f->per_length[cidr]++ != 0)
        return;
    for (i = f->nlengths; i > 0 && f->lengths[i - 1] < cidr; i--)
        f->lengths[i] = f->lengths[i - 1];
    f->lengths[i] = (uint8_t)cidr;
    f->nlengths++;
}

static void lengths_drop(struct family *f, unsigned cidr)
{
    unsigned i = 0;

    if (--f->per_length[cidr] != 0)
        return;
    while (f->lengths[i] != cidr)
        i++;
    for (f->nlengths--; i < f->nlengths; i++)
        f->lengths[i] = f->lengths[i + 1];
}

/* Choose how lookups run (see lpm.h): after every change of the lengths in
 * use or of how many prefixes each holds. */
static void strategy_update(struct family *f)
{
    if (f->nlengths <= f->hash_limit) {
        f->probes = f->nlengths; /* the hash alone gives the answer */
        f->walk = 0;
    } else {
        /* Mostly host routes (or another single length): one probe answers
         * most lookups, the trie the rest. */
        f->probes = f->hash_limit > 0 && f->per_length[f->lengths[0]] * 2 >= f->prefixes;
        f->walk = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */

/* Trie walk from node `i`, having matched `best` (-1: nothing) so far. Along
 * a root-to-leaf path the prefixes nest, so the first stored prefix that
 * does not contain the address ends the walk; forks only steer. (Plain
 * branches on purpose: a version with conditional moves measured 2-3 times
 * slower, as it stops the CPU from running ahead to the next node.) */
static inline int64_t trie_lookup(const struct family *f, const uint64_t k[2])
{
    const struct node *pool = f->pool;
    const struct slot *s = &f->slots[k[0] >> (64 - ROOT_BITS)];
    int64_t best = s->has_best ? (int64_t)s->best : -1;
    uint32_t i = s->next;

    while (i != NIL) {
        const struct node *n = &pool[i];

        if (n->flags & F_VALUE) {
            if (!key_prefix_eq(k, n->w, n->cidr))
                break;
            best = n->value;
        }
        if (n->jump == 0) {
            i = node_next(n, k);
            continue;
        }
        /* A jump table: its slots were computed for addresses inside this
         * node's prefix. Outside it (possible at a fork, which is not checked
         * above) no deeper prefix can match either. */
        if (!(n->flags & F_VALUE) && !key_prefix_eq(k, n->w, n->cidr))
            break;
        s = &f->jumps[n->jump].slot[key_bits(k, n->cidr, JUMP_BITS)];
        if (s->has_best)
            best = s->best;
        i = s->next;
    }
    return best;
}

/* One probe per length for the `probes` longest lengths in use, longest
 * first: the first hit is the answer, since every longer length was tried. */
static inline int64_t hash_lookup(const struct family *f, const uint64_t k[2])
{
    const struct entry *table = f->table;
    uint32_t mask = f->table_mask;

    for (uint32_t j = 0; j < f->probes; j++) {
        unsigned cidr = f->lengths[j];
        uint64_t m[2] = {k[0], k[1]};
        uint32_t i;

        key_mask(m, cidr);
        for (i = hash_of(m, cidr) & mask; table[i].tag != 0; i = (i + 1) & mask) {
            const struct entry *e = &table[i];

            if (e->tag == cidr + 1 && e->w[0] == m[0] && e->w[1] == m[1])
                return e->value;
        }
    }
    return -1;
}

static inline int64_t lookup_key(const struct family *f, const uint64_t k[2])
{
    int64_t found = hash_lookup(f, k);

    if (found >= 0 || !f->walk)
        return found;
    return trie_lookup(f, k);
}

/* ------------------------------------------------------------------------ */
/* Root slots and jump tables                                                */

/* The walk for key k from node i over the nodes shorter than `end`, all of
 * whose steering bits and checked bits k fixes, into *s: the value matched
 * along it and the node where it continues (NIL if it stopped). Jump tables
 * inside the window are not used, so this never depends on another table. */
static void window_walk(const struct node *pool, uint32_t i, const uint64_t k[2], unsigned end,
                        struct slot *s)
{
    s->has_best = 0;
    s->best = 0;
    while (i != NIL && pool[i].cidr < end) {
        const struct node *n = &pool[i];

        if (n->flags & F_VALUE) {
            if (!key_prefix_eq(k, n->w, n->cidr)) {
                i = NIL; /* the walk ends here for every address of the slot */
                break;
            }
            s->best = n->value;
            s->has_best = 1;
        }
        i = node_next(n, k);
    }
    s->next = i;
}

static void root_slot_compute(const struct family *f, uint32_t number, struct slot *s)
{
    uint64_t k[2] = {(uint64_t)number << (64 - ROOT_BITS), 0};

    window_walk(f->pool, f->root, k, ROOT_BITS, s);
}

static void jump_slot_compute(const struct family *f, uint32_t owner, uint32_t number,
                              struct slot *s)
{
    const struct node *x = &f->pool[owner];
    uint64_t k[2] = {x->w[0], x->w[1]};

    key_with_bits(k, x->cidr, JUMP_BITS, number);
    window_walk(f->pool, node_next(x, k), k, x->cidr + JUMP_BITS, s);
}

static void jump_refresh(struct family *f, uint32_t id)
{
    struct jump *j = &f->jumps[id];

    for (uint32_t number = 0; number < JUMP_SLOTS; number++)
        jump_slot_compute(f, j->owner, number, &j->slot[number]);
}

/* Recompute the slots of one table whose walks cross the link out of
 * `parent` toward w. The table is the root slots (owner NIL) or the jump
 * table of `owner`; `from` is where its walks start (the root, or the owner)
 * and lies on w's path above `parent`, inside the table's window
 * [base, base + bits). A slot's walk reaches that link only if the slot
 * agrees with w at the steering bit of every node from `from` to `parent`:
 * those bits are fixed, the others run through all their values. (Forks do
 * not check their prefix, so a slot that differs from w elsewhere can still
 * cross the link; slots whose walk stops earlier are recomputed for nothing.) */
static void window_touch(struct family *f, uint32_t owner, uint32_t from, uint32_t parent,
                         const uint64_t w[2], unsigned base, unsigned bits, struct slot *slots)
{
    uint32_t fixed = 0, want, open, sub = 0;

    for (uint32_t i = from; i != NIL; i = node_next(&f->pool[i], w)) {
        fixed |= 1u << (bits - 1 - (f->pool[i].cidr - base));
        if (i == parent)
            break;
    }
    want = key_bits(w, base, bits) & fixed;
    open = ((1u << bits) - 1) & ~fixed;
    do { /* every subset of the open bits, the empty one first */
        uint32_t number = want | sub;

        if (owner == NIL)
            root_slot_compute(f, number, &slots[number]);
        else
            jump_slot_compute(f, owner, number, &slots[number]);
        sub = (sub - open) & open;
    } while (sub != 0);
}

/* The link out of `parent` toward key w (the root link if NIL), or the
 * value of the node it leads to, changed: recompute the slots whose walks
 * can cross that link. A new root changes every root slot and no jump table
 * (each table's walks stay inside its owner's subtree). Otherwise the root
 * slots if the parent is shallower than ROOT_BITS (deeper links lie below
 * every root slot's stopping point), and the jump tables of the parent and
 * its ancestors whose window reaches the parent's depth. */
static void tables_touch(struct family *f, uint32_t parent, const uint64_t w[2])
{
    unsigned depth;

    if (parent == NIL) {
        for (uint32_t number = 0; number < ROOT_SLOTS; number++)
            root_slot_compute(f, number, &f->slots[number]);
        return;
    }
    depth = f->pool[parent].cidr;
    if (depth < ROOT_BITS)
        window_touch(f, NIL, f->root, parent, w, 0, ROOT_BITS, f->slots);
    if (f->jumps_used == 0)
        return;
    for (uint32_t i = f->root; i != NIL; i = node_next(&f->pool[i], w)) {
        const struct node *n = &f->pool[i];

        if (n->jump != 0 && depth < n->cidr + JUMP_BITS)
            window_touch(f, i, i, parent, w, n->cidr, JUMP_BITS, f->jumps[n->jump].slot);
        if (i == parent)
            break;
    }
}

/* tables_touch for a bulk insert: only mark what it would recompute. */
static void tables_mark(struct family *f, uint32_t parent, const uint64_t w[2])
{
    unsigned depth;

    if (parent == NIL || f->pool[parent].cidr < ROOT_BITS)
        f->roots_stale = 1;
    if (parent == NIL || f->jumps_used == 0)
        return;
    depth = f->pool[parent].cidr;
    for (uint32_t i = f->root; i != NIL; i = node_next(&f->pool[i], w)) {
        const struct node *n = &f->pool[i];

        if (n->jump != 0 && depth < n->cidr + JUMP_BITS)
            f->jumps[n->jump].stale = 1;
        if (i == parent)
            break;
    }
}

/* After any change: recompute the slots it touched, or mark them in a bulk insert. */
static void tables_changed(struct family *f, uint32_t parent, const uint64_t w[2])
{
    if (f->deferred)
        tables_mark(f, parent, w);
    else
        tables_touch(f, parent, w);
}

/* Give node x a jump table (best effort: nothing happens on ENOMEM). */
static void jump_add(struct family *f, uint32_t x)
{
    uint32_t id;

    if (f->jumps_free != 0) {
        id = f->jumps_free;
        f->jumps_free = f->jumps[id].next_free;
    } else {
        if (f->jumps_top == 0)
            f->jumps_top = 1;
        if (f->jumps_top >= f->jumps_cap) {
            uint32_t cap = f->jumps_cap ? f->jumps_cap * 2 : 8;
            struct jump *grown;

            if (cap > JUMP_MAX + 1)
                cap = JUMP_MAX + 1;
            if (f->jumps_top >= cap)
                return;
            grown = realloc(f->jumps, (size_t)cap * sizeof(*grown));
            if (grown == NULL)
                return;
            f->jumps = grown;
            f->jumps_cap = cap;
        }
        id = f->jumps_top++;
    }
    f->jumps[id].owner = x;
    f->jumps[id].next_free = 0;
    f->jumps[id].stale = 0;
    f->jumps_used++;
    f->pool[x].jump = (uint16_t)id;
    jump_refresh(f, id);
}

static void jump_drop(struct family *f, uint32_t id)
{
    f->jumps[id].owner = NIL;
    f->jumps[id].next_free = f->jumps_free;
    f->jumps_free = id;
    f->jumps_used--;
}

/* After inserting w/cidr: follow the lookup path to it and count the trie
 * steps since the last jump (or root slot). A long run gets a table at the
 * node where it starts, so the next lookups skip JUMP_BITS levels there. */
static void jumps_grow(struct family *f, const uint64_t w[2], unsigned cidr)
{
    uint32_t i = f->slots[w[0] >> (64 - ROOT_BITS)].next, start = i, run = 0;

    while (i != NIL && f->pool[i].cidr < cidr) {
        const struct node *n = &f->pool[i];

        if (n->jump != 0) {
            i = f->jumps[n->jump].slot[key_bits(w, n->cidr, JUMP_BITS)].next;
            start = i;
            run = 0;
            continue;
        }
        run++;
        i = node_next(n, w);
    }
    if (run < JUMP_TRIGGER || start == NIL || f->pool[start].jump != 0 ||
        f->pool[start].cidr + JUMP_BITS > f->width || f->jumps_used >= JUMP_MAX ||
        f->jumps_used >= JUMP_BASE + f->prefixes / JUMP_PER)
        return;
    jump_add(f, start);
}

/* ------------------------------------------------------------------------ */
/* Node pool                                                                 */

/* Make sure `need` nodes can be allocated without growing the pool, so that
 * node pointers taken afterwards stay valid for the rest of the operation.
 * Grows at least twofold, and at once to whatever a bulk insert needs. */
static int pool_reserve(struct family *f, uint32_t need)
{
    uint32_t spare = f->cap > f->top ? f->cap - f->top : 0;
    uint32_t i = f->free_head;
    size_t want = (size_t)(f->top ? f->top : 1) + need, cap;
    struct node *grown;
    struct link *links;

    for (; spare < need && i != NIL; spare++)
        i = f->pool[i].child[0];
    if (spare >= need)
        return 0;
    cap = f->cap ? (size_t)f->cap * 2 : POOL_MIN;
    while (cap < want)
        cap *= 2;
    if (cap > POOL_MAX)
        cap = POOL_MAX;
    if (cap < want)
        return -1;
    grown = realloc(f->pool, cap * sizeof(*grown));
    if (grown == NULL)
        return -1;
    f->pool = grown; /* bigger than f->cap says until the links follow */
    links = realloc(f->links, cap * sizeof(*links));
    if (links == NULL)
        return -1;
    f->links = links;
    if (f->cap == 0) { /* entry 0: never a node */
        memset(&grown[0], 0, sizeof(*grown));
        memset(&links[0], 0, sizeof(*links));
    }
    f->cap = (uint32_t)cap;
    if (f->top == 0)
        f->top = 1;
    return 0;
}

static uint32_t node_alloc(struct family *f, const uint64_t w[2], unsigned cidr)
{
    uint32_t i;
    struct node *n;

    if (f->free_head != NIL) {
        i = f->free_head;
        f->free_head = f->pool[i].child[0];
    } else {
        i = f->top++; /* pool_reserve made room */
    }
    n = &f->pool[i];
    n->w[0] = w[0];
    n->w[1] = w[1];
    n->child[0] = n->child[1] = NIL;
    n->value = 0;
    n->cidr = (uint8_t)cidr;
    n->flags = F_USED;
    n->jump = 0;
    f->links[i].prev = f->links[i].next = REF_NONE;
    f->nodes++;
    return i;
}

static void node_free(struct family *f, uint32_t i)
{
    struct node *n = &f->pool[i];

    if (n->jump != 0)
        jump_drop(f, n->jump);
    n->jump = 0;
    n->flags = 0;
    n->child[1] = NIL;
    n->child[0] = f->free_head;
    f->free_head = i;
    f->nodes--;
}

static void family_init(struct family *f, uint32_t width, uint32_t hash_limit)
{
    memset(f, 0, sizeof(*f));
    f->width = width;
    f->hash_limit = hash_limit;
    strategy_update(f);
}

static void family_release(struct family *f)
{
    free(f->pool);
    free(f->links);
    free(f->table);
    free(f->jumps);
    family_init(f, f->width, f->hash_limit);
}

/* ------------------------------------------------------------------------ */
/* Owners: each value's prefixes in assignment order                         */

static inline uint32_t owner_hash(uint32_t value)
{
    return (uint32_t)(((uint64_t)value * UINT64_C(0x9e3779b97f4a7c15)) >> 32);
}

static struct owner *owner_find(const struct pywg_lpm *t, uint32_t value)
{
    if (t->owners == NULL)
        return NULL;
    for (uint32_t i = owner_hash(value) & t->owners_mask;; i = (i + 1) & t->owners_mask) {
        struct owner *o = &t->owners[i];

        if (o->count == 0)
            return NULL;
        if (o->value == value)
            return o;
    }
}

/* Move every owner into a fresh hash of `size` entries (a power of two, more
 * than twice the count). On ENOMEM the old hash stays. */
static int owners_resize(struct pywg_lpm *t, uint32_t size)
{
    struct owner *fresh = calloc(size, sizeof(*fresh));

    if (fresh == NULL)
        return -1;
    for (uint32_t i = 0; t->owners != NULL && i <= t->owners_mask; i++) {
        uint32_t j;

        if (t->owners[i].count == 0)
            continue;
        for (j = owner_hash(t->owners[i].value) & (size - 1); fresh[j].count != 0;
             j = (j + 1) & (size - 1))
            ;
        fresh[j] = t->owners[i];
    }
    free(t->owners);
    t->owners = fresh;
    t->owners_mask = size - 1;
    return 0;
}

/* Room for `extra` more owners (load factor stays at most 1/2). */
static int owners_reserve(struct pywg_lpm *t, uint32_t extra)
{
    uint64_t size = t->owners == NULL ? 0 : (uint64_t)t->owners_mask + 1, want;

    if (((uint64_t)t->nowners + extra) * 2 <= size)
        return 0;
    want = size ? size * 2 : OWNERS_MIN;
    while (want < ((uint64_t)t->nowners + extra) * 2)
        want *= 2;
    if (want > UINT32_MAX / 2 + 1)
        return -1;
    return owners_resize(t, (uint32_t)want);
}

/* The owner entry of `value`, added (empty) if there is none; owners_reserve
 * made room. */
static struct owner *owner_get(struct pywg_lpm *t, uint32_t value)
{
    uint32_t i = owner_hash(value) & t->owners_mask;

    for (; t->owners[i].count != 0; i = (i + 1) & t->owners_mask)
        if (t->owners[i].value == value)
            return &t->owners[i];
    t->owners[i].value = value;
    t->owners[i].head = t->owners[i].tail = REF_NONE;
    t->nowners++;
    return &t->owners[i]; /* count 0 until owner_append */
}

/* Drop an owner whose count reached 0 (backward-shift deletion, as for the
 * prefix hash). */
static void owner_delete(struct pywg_lpm *t, struct owner *o)
{
    uint32_t mask = t->owners_mask, hole = (uint32_t)(o - t->owners);

    for (uint32_t j = (hole + 1) & mask; t->owners[j].count != 0; j = (j + 1) & mask) {
        uint32_t home = owner_hash(t->owners[j].value) & mask;

        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->owners[hole] = t->owners[j];
            hole = j;
        }
    }
    memset(&t->owners[hole], 0, sizeof(t->owners[hole]));
    t->nowners--;
}

static inline struct link *link_of(const struct pywg_lpm *t, uint32_t ref)
{
    const struct family *f = ref & REF_V6 ? &t->v6 : &t->v4;

    return &f->links[ref & ~REF_V6];
}

static inline const struct node *node_of(const struct pywg_lpm *t, uint32_t ref)
{
    const struct family *f = ref & REF_V6 ? &t->v6 : &t->v4;

    return &f->pool[ref & ~REF_V6];
}

static inline uint32_t ref_of(const struct pywg_lpm *t, const struct family *f, uint32_t i)
{
    return f == &t->v6 ? i | REF_V6 : i;
}

/* Put node `ref` at the end of `value`'s list (owners_reserve made room). */
static void owner_append(struct pywg_lpm *t, uint32_t value, uint32_t ref)
{
    struct owner *o = owner_get(t, value);
    struct link *l = link_of(t, ref);

    l->prev = o->tail;
    l->next = REF_NONE;
    if (o->tail != REF_NONE)
        link_of(t, o->tail)->next = ref;
    else
        o->head = ref;
    o->tail = ref;
    o->count++;
}

/* Take node `ref` out of `value`'s list; the owner goes when it is empty. */
static void owner_unlink(struct pywg_lpm *t, uint32_t value, uint32_t ref)
{
    struct owner *o = owner_find(t, value);
    struct link *l = link_of(t, ref);

    if (o == NULL) /* never: a stored prefix always has its owner */
        return;
    if (l->prev != REF_NONE)
        link_of(t, l->prev)->next = l->next;
    else
        o->head = l->next;
    if (l->next != REF_NONE)
        link_of(t, l->next)->prev = l->prev;
    else
        o->tail = l->prev;
    l->prev = l->next = REF_NONE;
    if (--o->count == 0)
        owner_delete(t, o);
}

/* ------------------------------------------------------------------------ */
/* Mutation                                                                  */

/* Point the link that leads from `parent` (or the root) toward key w at `to`. */
static void relink(struct family *f, uint32_t parent, const uint64_t w[2], uint32_t to)
{
    if (parent == NIL)
        f->root = to;
    else
        f->pool[parent].child[key_bit(w, f->pool[parent].cidr)] = to;
}

static int family_insert(struct pywg_lpm *t, struct family *f, uint64_t w[2], unsigned cidr,
                         uint32_t value)
{
    uint32_t parent = NIL, cur, fresh, top;
    struct entry *e;

    key_mask(w, cidr);
    /* Room first (an owner, a prefix and maybe a fork): after this nothing
     * can fail and no pointer into the pool can go stale. */
    if (owners_reserve(t, 1) != 0)
        return -1;
    e = hash_find(f, w, cidr);
    if (e != NULL)
        e->value = value; /* the trie node is updated below */
    else if (pool_reserve(f, 2) != 0 || hash_reserve(f, 1) != 0)
        return -1;

    /* Descend while the current node is a prefix of (or equal to) the new one. */
    cur = f->root;
    while (cur != NIL) {
        struct node *n = &f->pool[cur];

        if (n->cidr > cidr || !key_prefix_eq(w, n->w, n->cidr))
            break;
        if (n->cidr == cidr) { /* the same prefix: (re)assign it */
            if (n->flags & F_VALUE) {
                if (n->value == value)
                    return 0; /* unchanged, and it keeps its place in the list */
                owner_unlink(t, n->value, ref_of(t, f, cur));
            } else { /* a fork becomes a stored prefix */
                n->flags |= F_VALUE;
                f->prefixes++;
                lengths_add(f, cidr);
                hash_put(f->table, f->table_mask, w, cidr, value);
            }
            n->value = value;
            owner_append(t, value, ref_of(t, f, cur));
            tables_changed(f, parent, w);
            strategy_update(f);
            return 0;
        }
        parent = cur;
        cur = node_next(n, w);
    }

    fresh = node_alloc(f, w, cidr);
    f->pool[fresh].value = value;
    f->pool[fresh].flags |= F_VALUE;
    top = fresh;
    if (cur != NIL) {
        /* `cur` sits where the new prefix belongs but does not contain it:
         * either the new prefix contains `cur` (and becomes its parent), or
         * the two diverge below a fork at their common bits. */
        unsigned common = key_common(w, f->pool[cur].w, f->width);

        if (common >= cidr) {
            f->pool[fresh].child[key_bit(f->pool[cur].w, cidr)] = cur;
        } else {
            uint64_t fw[2] = {w[0], w[1]};
            unsigned side = key_bit(w, common);

            key_mask(fw, common);
            top = node_alloc(f, fw, common);
            f->pool[top].child[side] = fresh;
            f->pool[top].child[side ^ 1] = cur;
        }
    }
    /* The new subtree is complete before it is linked in. */
    relink(f, parent, w, top);
    f->prefixes++;
    lengths_add(f, cidr);
    hash_put(f->table, f->table_mask, w, cidr, value);
    owner_append(t, value, ref_of(t, f, fresh));
    tables_changed(f, parent, w);
    if (!f->deferred) /* a bulk insert grows them once the tables are settled */
        jumps_grow(f, w, cidr);
    strategy_update(f);
    return 0;
}

/* Drop the stored prefix at node `i` (reached through `parent` and `grand`)
 * and prune what became redundant: a node without a value keeps exactly two
 * children, so n prefixes never take more than 2n - 1 nodes. */
static void family_delete(struct pywg_lpm *t, struct family *f, uint32_t i, uint32_t parent,
                          uint32_t grand)
{
    struct node *n = &f->pool[i];
    uint64_t w[2] = {n->w[0], n->w[1]};
    unsigned cidr = n->cidr;
    struct entry *e = hash_find(f, w, cidr);
    uint32_t only;

    owner_unlink(t, n->value, ref_of(t, f, i));
    n->flags &= (uint8_t)~F_VALUE;
    f->prefixes--;
    lengths_drop(f, cidr);
    if (e != NULL) /* always there; checked so a bug cannot write through NULL */
        hash_delete(f, e);
    strategy_update(f);
    if (n->child[0] != NIL && n->child[1] != NIL) {
        tables_touch(f, parent, w); /* it stays, as a fork */
        return;
    }
    only = n->child[0] != NIL ? n->child[0] : n->child[1];
    relink(f, parent, w, only);
    node_free(f, i);
    if (only == NIL && parent != NIL && !(f->pool[parent].flags & F_VALUE)) {
        /* `parent` was a fork and has one child left: splice it out. The
         * link from `grand` toward w is the one that led to it. */
        struct node *p = &f->pool[parent];
        uint32_t sibling = p->child[0] != NIL ? p->child[0] : p->child[1];

        relink(f, grand, w, sibling);
        node_free(f, parent);
        parent = grand;
    }
    tables_touch(f, parent, w);
}

/* The trie node of exactly w/cidr (w masked), with its parent and
 * grandparent; NIL if there is none (it may be a fork: check F_VALUE). */
static uint32_t family_find(const struct family *f, const uint64_t w[2], unsigned cidr,
                            uint32_t *parent, uint32_t *grand)
{
    uint32_t cur = f->root, p = NIL, g = NIL;

    while (cur != NIL && f->pool[cur].cidr < cidr) {
        g = p;
        p = cur;
        cur = node_next(&f->pool[cur], w);
    }
    if (cur == NIL || f->pool[cur].cidr != cidr || f->pool[cur].w[0] != w[0] ||
        f->pool[cur].w[1] != w[1])
        return NIL;
    *parent = p;
    *grand = g;
    return cur;
}

/* Delete exactly w/cidr (w masked) if it is stored, and if `only` is not
 * NULL, only if its value is *only. 1 if deleted, else 0. */
static int family_remove(struct pywg_lpm *t, struct family *f, const uint64_t w[2],
                         unsigned cidr, const uint32_t *only)
{
    uint32_t parent = NIL, grand = NIL;
    uint32_t i = family_find(f, w, cidr, &parent, &grand);

    if (i == NIL || !(f->pool[i].flags & F_VALUE))
        return 0;
    if (only != NULL && f->pool[i].value != *only)
        return 0;
    family_delete(t, f, i, parent, grand);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

static struct family *family_of(struct pywg_lpm *t, int family)
{
    if (t == NULL)
        return NULL;
    if (family == 4)
        return &t->v4;
    if (family == 6)
        return &t->v6;
    return NULL;
}

/* The same lookup for read-only callers: family_of does not write through t. */
static const struct family *family_of_const(const struct pywg_lpm *t, int family)
{
    return family_of((struct pywg_lpm *)t, family);
}

struct pywg_lpm *pywg_lpm_new(void)
{
    struct pywg_lpm *t = malloc(sizeof(*t));

    if (t == NULL)
        return NULL;
    family_init(&t->v4, 32, PYWG_LPM_HASH_LENGTHS);
    family_init(&t->v6, 128, PYWG_LPM_HASH_LENGTHS);
    t->owners = NULL;
    t->owners_mask = 0;
    t->nowners = 0;
    return t;
}

void pywg_lpm_free(struct pywg_lpm *t)
{
    if (t == NULL)
        return;
    pywg_lpm_clear(t);
    free(t);
}

int pywg_lpm_insert(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr,
                    uint32_t value)
{
    struct family *f = family_of(t, family);
    uint64_t w[2];

    if (f == NULL || addr == NULL || cidr < 0 || (uint32_t)cidr > f->width)
        return -1;
    key_load(w, addr, family == 6);
    return family_insert(t, f, w, (unsigned)cidr, value);
}

int pywg_lpm_remove(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr)
{
    struct family *f = family_of(t, family);
    uint64_t w[2];

    if (f == NULL || addr == NULL || cidr < 0 || (uint32_t)cidr > f->width)
        return -1;
    key_load(w, addr, family == 6);
    key_mask(w, (unsigned)cidr);
    return family_remove(t, f, w, (unsigned)cidr, NULL);
}

int pywg_lpm_remove_value(struct pywg_lpm *t, uint32_t value)
{
    const struct owner *o;
    int removed = 0;

    if (t == NULL)
        return 0;
    /* Each removal unlinks the head; the owner goes with the last one. */
    while ((o = owner_find(t, value)) != NULL) {
        uint32_t ref = o->head;
        struct family *f = ref & REF_V6 ? &t->v6 : &t->v4;
        const struct node *n = &f->pool[ref & ~REF_V6];
        uint64_t w[2] = {n->w[0], n->w[1]};

        if (family_remove(t, f, w, n->cidr, NULL) != 1)
            break; /* never: a listed node is a stored prefix (this keeps a bug finite) */
        removed++;
    }
    return removed;
}

void pywg_lpm_clear(struct pywg_lpm *t)
{
    if (t == NULL)
        return;
    family_release(&t->v4);
    family_release(&t->v6);
    free(t->owners);
    t->owners = NULL;
    t->owners_mask = 0;
    t->nowners = 0;
}

/* ------------------------------------------------------------------------ */
/* Bulk operations on prefix records                                         */

/* The family and masked key of one record; NULL if the record is malformed. */
static struct family *record_key(struct pywg_lpm *t, const uint8_t *rec, uint64_t w[2],
                                 unsigned *cidr)
{
    struct family *f = family_of(t, rec[0]);

    if (f == NULL || rec[1] > f->width)
        return NULL;
    key_load(w, rec + 2, rec[0] == 6);
    key_mask(w, rec[1]);
    *cidr = rec[1];
    return f;
}

static void record_store(uint8_t *rec, const struct family *f, const struct node *n)
{
    uint64_t w[2] = {n->w[0], n->w[1]};

    memset(rec, 0, RECORD_SIZE);
    rec[0] = f->width == 32 ? 4 : 6;
    rec[1] = n->cidr;
    for (int i = 0; i < 16; i++)
        rec[2 + i] = (uint8_t)(w[i >> 3] >> (56 - 8 * (i & 7)));
}

/* End a bulk insert of family f: recompute what it marked stale, then let
 * each inserted prefix grow jump tables as a single insert would have. */
static void family_settle(struct pywg_lpm *t, struct family *f, const uint8_t *records, size_t n)
{
    f->deferred = 0;
    if (f->roots_stale) {
        for (uint32_t number = 0; number < ROOT_SLOTS; number++)
            root_slot_compute(f, number, &f->slots[number]);
        f->roots_stale = 0;
    }
    for (uint32_t id = 1; id < f->jumps_top; id++) {
        if (f->jumps[id].owner != NIL && f->jumps[id].stale) {
            jump_refresh(f, id);
            f->jumps[id].stale = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t w[2];
        unsigned cidr = 0;

        if (record_key(t, records + i * RECORD_SIZE, w, &cidr) == f)
            jumps_grow(f, w, cidr);
    }
}

int pywg_lpm_insert_many(struct pywg_lpm *t, const uint8_t *records, size_t n, uint32_t value)
{
    size_t per[2] = {0, 0};

    if (t == NULL || (records == NULL && n > 0) || n > UINT32_MAX / 2)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = records + i * RECORD_SIZE;
        uint64_t w[2];
        unsigned cidr = 0;

        if (record_key(t, rec, w, &cidr) == NULL)
            return -1;
        per[rec[0] == 6]++;
    }
    /* Room for all of them at once (each may bring a fork), so that no insert
     * below can fail half way and the arrays grow once, not log n times. */
    if (owners_reserve(t, 1) != 0 || pool_reserve(&t->v4, (uint32_t)(2 * per[0])) != 0 ||
        pool_reserve(&t->v6, (uint32_t)(2 * per[1])) != 0 ||
        hash_reserve(&t->v4, (uint32_t)per[0]) != 0 || hash_reserve(&t->v6, (uint32_t)per[1]) != 0)
        return -1;
    /* Many prefixes: the lookup tables are settled once at the end, not
     * after each (a slot can be recomputed hundreds of times otherwise). */
    t->v4.deferred = per[0] > BULK_DEFER;
    t->v6.deferred = per[1] > BULK_DEFER;
    for (size_t i = 0; i < n; i++) {
        uint64_t w[2];
        unsigned cidr = 0;
        struct family *f = record_key(t, records + i * RECORD_SIZE, w, &cidr);

        (void)family_insert(t, f, w, cidr, value); /* cannot fail: the room was made above */
    }
    if (t->v4.deferred)
        family_settle(t, &t->v4, records, n);
    if (t->v6.deferred)
        family_settle(t, &t->v6, records, n);
    return 0;
}

int pywg_lpm_remove_many(struct pywg_lpm *t, const uint8_t *records, size_t n, uint32_t value)
{
    int removed = 0;

    if (t == NULL || (records == NULL && n > 0))
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t w[2];
        unsigned cidr = 0;
        struct family *f = record_key(t, records + i * RECORD_SIZE, w, &cidr);

        if (f == NULL)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t w[2];
        unsigned cidr = 0;
        struct family *f = record_key(t, records + i * RECORD_SIZE, w, &cidr);

        removed += family_remove(t, f, w, cidr, &value);
    }
    return removed;
}

size_t pywg_lpm_value_count(const struct pywg_lpm *t, uint32_t value)
{
    const struct owner *o = t == NULL ? NULL : owner_find(t, value);

    return o == NULL ? 0 : o->count;
}

size_t pywg_lpm_prefixes_of(const struct pywg_lpm *t, uint32_t value, uint8_t *out, size_t cap)
{
    const struct owner *o = t == NULL ? NULL : owner_find(t, value);
    size_t k = 0;

    if (o == NULL)
        return 0;
    for (uint32_t ref = o->head; ref != REF_NONE && k < cap; ref = link_of(t, ref)->next, k++)
        record_store(out + k * RECORD_SIZE, ref & REF_V6 ? &t->v6 : &t->v4, node_of(t, ref));
    return o->count;
}

/* The stored prefixes of one family in address order (a prefix before the
 * longer ones inside it): a depth-first walk, the 0 side first. */
static size_t family_dump(const struct family *f, uint8_t *out, uint32_t *values, size_t cap)
{
    uint32_t stack[2 * 130], depth = 0;
    size_t k = 0;

    if (f->root != NIL)
        stack[depth++] = f->root;
    while (depth > 0 && k < cap) {
        const struct node *n = &f->pool[stack[--depth]];

        if (n->flags & F_VALUE) {
            record_store(out + k * RECORD_SIZE, f, n);
            values[k++] = n->value;
        }
        if (n->child[1] != NIL)
            stack[depth++] = n->child[1];
        if (n->child[0] != NIL)
            stack[depth++] = n->child[0];
    }
    return k;
}

size_t pywg_lpm_dump(const struct pywg_lpm *t, uint8_t *out, uint32_t *values, size_t cap)
{
    size_t k;

    if (t == NULL || out == NULL || values == NULL)
        return 0;
    k = family_dump(&t->v4, out, values, cap);
    return k + family_dump(&t->v6, out + k * RECORD_SIZE, values + k, cap - k);
}

size_t pywg_lpm_nodes(const struct pywg_lpm *t)
{
    return t == NULL ? 0 : (size_t)t->v4.nodes + t->v6.nodes;
}

size_t pywg_lpm_owners(const struct pywg_lpm *t)
{
    return t == NULL ? 0 : t->nowners;
}

/* ------------------------------------------------------------------------ */
/* Copies                                                                    */

static inline uint32_t remap(uint32_t value, const uint32_t *map, size_t nmap)
{
    return value < nmap ? map[value] : PYWG_LPM_UNMAPPED;
}

static void *copy_of(const void *src, size_t size)
{
    void *dst = size ? malloc(size) : NULL;

    if (dst != NULL)
        memcpy(dst, src, size);
    return dst;
}

/* dst: a copy of src's arrays, sized to what is in use; -1 on ENOMEM (dst
 * then holds nothing to free). */
static int family_copy(struct family *dst, const struct family *src)
{
    size_t table = src->table != NULL ? (size_t)src->table_mask + 1 : 0;

    *dst = *src;
    dst->cap = src->top;
    dst->jumps_cap = src->jumps_top;
    dst->pool = copy_of(src->pool, (size_t)src->top * sizeof(*src->pool));
    dst->links = copy_of(src->links, (size_t)src->top * sizeof(*src->links));
    dst->jumps = copy_of(src->jumps, (size_t)src->jumps_top * sizeof(*src->jumps));
    dst->table = copy_of(src->table, table * sizeof(*src->table));
    if ((src->top && (dst->pool == NULL || dst->links == NULL)) ||
        (src->jumps_top && dst->jumps == NULL) || (table && dst->table == NULL)) {
        free(dst->pool);
        free(dst->links);
        free(dst->jumps);
        free(dst->table);
        family_init(dst, src->width, src->hash_limit);
        return -1;
    }
    return 0;
}

/* Every value stored in the family (nodes, hash, root slots, jump tables)
 * through the map. */
static void family_remap(struct family *f, const uint32_t *map, size_t nmap)
{
    for (uint32_t i = 1; i < f->top; i++)
        if ((f->pool[i].flags & (F_USED | F_VALUE)) == (F_USED | F_VALUE))
            f->pool[i].value = remap(f->pool[i].value, map, nmap);
    for (uint32_t i = 0; f->table != NULL && i <= f->table_mask; i++)
        if (f->table[i].tag != 0)
            f->table[i].value = remap(f->table[i].value, map, nmap);
    for (uint32_t i = 0; i < ROOT_SLOTS; i++)
        if (f->slots[i].has_best)
            f->slots[i].best = remap(f->slots[i].best, map, nmap);
    for (uint32_t id = 1; id < f->jumps_top; id++) {
        if (f->jumps[id].owner == NIL)
            continue;
        for (uint32_t i = 0; i < JUMP_SLOTS; i++)
            if (f->jumps[id].slot[i].has_best)
                f->jumps[id].slot[i].best = remap(f->jumps[id].slot[i].best, map, nmap);
    }
}

/* dst's owners: src's, keyed by their values through the map. Two values
 * that map to one become one owner, the lists joined in the order of src's
 * hash (only unmapped values can meet: the caller's map is otherwise one to
 * one). */
static int owners_copy(struct pywg_lpm *dst, const struct pywg_lpm *src, const uint32_t *map,
                       size_t nmap)
{
    dst->owners = NULL;
    dst->owners_mask = 0;
    dst->nowners = 0;
    if (src->nowners == 0)
        return 0;
    if (owners_reserve(dst, src->nowners) != 0)
        return -1;
    for (uint32_t i = 0; i <= src->owners_mask; i++) {
        const struct owner *o = &src->owners[i];
        uint32_t value = map != NULL ? remap(o->value, map, nmap) : o->value;
        struct owner *to;

        if (o->count == 0)
            continue;
        to = owner_get(dst, value);
        if (to->count == 0) {
            to->head = o->head;
        } else {
            link_of(dst, to->tail)->next = o->head;
            link_of(dst, o->head)->prev = to->tail;
        }
        to->tail = o->tail;
        to->count += o->count;
    }
    return 0;
}

struct pywg_lpm *pywg_lpm_clone(const struct pywg_lpm *src, const uint32_t *map, size_t nmap)
{
    struct pywg_lpm *t;

    if (src == NULL || (t = pywg_lpm_new()) == NULL)
        return NULL;
    if (family_copy(&t->v4, &src->v4) != 0 || family_copy(&t->v6, &src->v6) != 0 ||
        owners_copy(t, src, map, nmap) != 0) {
        pywg_lpm_free(t);
        return NULL;
    }
    if (map != NULL) {
        family_remap(&t->v4, map, nmap);
        family_remap(&t->v6, map, nmap);
    }
    return t;
}

int64_t pywg_lpm_get(const struct pywg_lpm *t, int family, const uint8_t *addr, int cidr)
{
    const struct family *f = family_of_const(t, family);
    const struct entry *e;
    uint64_t w[2];

    if (f == NULL || addr == NULL || cidr < 0 || (uint32_t)cidr > f->width)
        return -1;
    key_load(w, addr, family == 6);
    key_mask(w, (unsigned)cidr);
    e = hash_find(f, w, (unsigned)cidr);
    return e == NULL ? -1 : (int64_t)e->value;
}

int64_t pywg_lpm_lookup(const struct pywg_lpm *t, int family, const uint8_t *addr)
{
    const struct family *f = family_of_const(t, family);
    uint64_t k[2];

    if (f == NULL || addr == NULL)
        return -1;
    key_load(k, addr, family == 6);
    return lookup_key(f, k);
}

int64_t pywg_lpm_lookup_packet(const struct pywg_lpm *t, const uint8_t *ip_packet, size_t len,
                               int which)
{
    uint64_t k[2];

    if (t == NULL || ip_packet == NULL || len < 1 || (which != 0 && which != 1))
        return -1;
    switch (ip_packet[0] >> 4) {
    case 4: {
        /* RFC 791: header length (IHL, in 32-bit words) at least 5; source
         * address at offset 12, destination at 16. */
        size_t ihl = (size_t)(ip_packet[0] & 0x0f) * 4;

        if (len < 20 || ihl < 20 || ihl > len)
            return -1;
        key_load(k, ip_packet + (which ? 16 : 12), 0);
        return lookup_key(&t->v4, k);
    }
    case 6:
        /* RFC 8200: fixed 40-byte header; source at offset 8, destination at 24. */
        if (len < 40)
            return -1;
        key_load(k, ip_packet + (which ? 24 : 8), 1);
        return lookup_key(&t->v6, k);
    default:
        return -1;
    }
}

size_t pywg_lpm_count(const struct pywg_lpm *t)
{
    if (t == NULL)
        return 0;
    return (size_t)t->v4.prefixes + t->v6.prefixes;
}

size_t pywg_lpm_memory(const struct pywg_lpm *t)
{
    const struct family *fams[2];
    size_t total;

    if (t == NULL)
        return 0;
    fams[0] = &t->v4;
    fams[1] = &t->v6;
    total = sizeof(*t);
    if (t->owners != NULL)
        total += ((size_t)t->owners_mask + 1) * sizeof(struct owner);
    for (int i = 0; i < 2; i++) {
        total += (size_t)fams[i]->cap * (sizeof(struct node) + sizeof(struct link));
        total += (size_t)fams[i]->jumps_cap * sizeof(struct jump);
        if (fams[i]->table != NULL)
            total += ((size_t)fams[i]->table_mask + 1) * sizeof(struct entry);
    }
    return total;
}

void pywg_lpm_set_hash_lengths(struct pywg_lpm *t, int max_lengths)
{
    uint32_t limit = max_lengths < 0 ? 0 : max_lengths > 129 ? 129 : (uint32_t)max_lengths;

    if (t == NULL)
        return;
    t->v4.hash_limit = t->v6.hash_limit = limit;
    strategy_update(&t->v4);
    strategy_update(&t->v6);
}

/* ------------------------------------------------------------------------ */
/* Self-check (tests)                                                        */

#define CHECK(cond, code)                                                                        \
    do {                                                                                         \
        if (!(cond))                                                                             \
            return (code);                                                                       \
    } while (0)

static int family_validate(const struct family *f)
{
    /* Explicit stack: the trie is at most width + 1 nodes deep, and a
     * depth-first walk holds at most one pending sibling per level. */
    uint32_t stack[2 * 130], depth = 0, reachable = 0, stored = 0, free_nodes = 0;
    uint32_t per_length[129] = {0}, entries = 0, tables = 0;

    if (f->root != NIL)
        stack[depth++] = f->root;
    while (depth > 0) {
        uint32_t i = stack[--depth];
        const struct node *n;
        uint64_t masked[2];

        CHECK(i < f->top, 1);
        n = &f->pool[i];
        CHECK(n->flags & F_USED, 2);
        CHECK(n->cidr <= f->width, 3);
        masked[0] = n->w[0];
        masked[1] = n->w[1];
        key_mask(masked, n->cidr);
        CHECK(masked[0] == n->w[0] && masked[1] == n->w[1], 4); /* host bits zero */
        if (f->width == 32)
            CHECK(n->w[1] == 0 && (n->w[0] & 0xffffffffu) == 0, 5);
        reachable++;
        if (n->jump != 0) {
            const struct jump *j = &f->jumps[n->jump];

            CHECK(n->jump < f->jumps_top && j->owner == i, 24);
            CHECK(n->cidr + JUMP_BITS <= f->width, 25);
            for (uint32_t number = 0; number < JUMP_SLOTS; number++) {
                struct slot fresh;

                jump_slot_compute(f, i, number, &fresh);
                CHECK(memcmp(&fresh, &j->slot[number], sizeof(fresh)) == 0, 26);
            }
            tables++;
        }
        if (n->flags & F_VALUE) {
            const struct entry *e = hash_find(f, n->w, n->cidr);

            stored++;
            per_length[n->cidr]++;
            CHECK(e != NULL && e->value == n->value, 6); /* the hash agrees */
        } else {
            CHECK(n->child[0] != NIL && n->child[1] != NIL, 7); /* a fork forks */
        }
        if (n->cidr == f->width)
            CHECK(n->child[0] == NIL && n->child[1] == NIL, 8);
        for (unsigned side = 0; side < 2; side++) {
            uint32_t c = n->child[side];

            if (c == NIL)
                continue;
            CHECK(c < f->top && depth < sizeof(stack) / sizeof(stack[0]), 9);
            CHECK(f->pool[c].cidr > n->cidr, 10);
            CHECK(key_prefix_eq(f->pool[c].w, n->w, n->cidr), 11);
            CHECK(key_bit(f->pool[c].w, n->cidr) == side, 12);
            stack[depth++] = c;
        }
    }
    CHECK(stored == f->prefixes, 13);
    CHECK(reachable == f->nodes, 28);
    for (uint32_t i = f->free_head; i != NIL; i = f->pool[i].child[0]) {
        CHECK(i < f->top && !(f->pool[i].flags & F_USED) && free_nodes < f->top, 14);
        free_nodes++;
    }
    CHECK(f->top == 0 ? reachable == 0 : reachable + free_nodes == f->top - 1, 15);
    CHECK(f->prefixes == 0 || reachable <= 2 * f->prefixes - 1, 16);
    if (f->table != NULL) {
        for (uint32_t i = 0; i <= f->table_mask; i++)
            entries += f->table[i].tag != 0;
        CHECK((uint64_t)entries * 2 <= (uint64_t)f->table_mask + 1, 17);
    }
    CHECK(entries == f->prefixes, 18);
    for (unsigned cidr = 0, j = 0; cidr <= 128; cidr++) {
        unsigned length = 128 - cidr; /* longest first */

        CHECK(per_length[length] == f->per_length[length], 19);
        if (per_length[length] != 0) {
            CHECK(j < f->nlengths && f->lengths[j] == length, 20);
            j++;
        }
        if (cidr == 128)
            CHECK(j == f->nlengths, 21);
    }
    CHECK(tables == f->jumps_used, 27);
    for (uint32_t number = 0; number < ROOT_SLOTS; number++) {
        struct slot fresh;

        root_slot_compute(f, number, &fresh);
        CHECK(memcmp(&fresh, &f->slots[number], sizeof(fresh)) == 0, 22);
    }
    {
        struct family copy;

        memcpy(&copy, f, sizeof(copy));
        strategy_update(&copy);
        CHECK(copy.probes == f->probes && copy.walk == f->walk, 23);
    }
    return 0;
}

/* Each owner's list: findable by its value, linked both ways, `count`
 * stored prefixes with that value; together every stored prefix once. */
static int owners_validate(const struct pywg_lpm *t)
{
    uint64_t total = 0;
    uint32_t used = 0;

    if (t->owners == NULL)
        return t->nowners == 0 ? 0 : 1;
    for (uint32_t i = 0; i <= t->owners_mask; i++) {
        const struct owner *o = &t->owners[i];
        uint32_t steps = 0, prev = REF_NONE;

        if (o->count == 0)
            continue;
        used++;
        CHECK(owner_find(t, o->value) == o, 2);
        for (uint32_t ref = o->head; ref != REF_NONE; ref = link_of(t, ref)->next) {
            const struct family *f = ref & REF_V6 ? &t->v6 : &t->v4;
            uint32_t i = ref & ~REF_V6;

            CHECK(i > 0 && i < f->top && steps < o->count, 3);
            CHECK((f->pool[i].flags & (F_USED | F_VALUE)) == (F_USED | F_VALUE), 4);
            CHECK(f->pool[i].value == o->value, 5);
            CHECK(link_of(t, ref)->prev == prev, 6);
            prev = ref;
            steps++;
        }
        CHECK(steps == o->count && o->tail == prev, 7);
        total += steps;
    }
    CHECK(used == t->nowners && (uint64_t)used * 2 <= (uint64_t)t->owners_mask + 1, 8);
    CHECK(total == (uint64_t)t->v4.prefixes + t->v6.prefixes, 9);
    return 0;
}

int pywg_lpm_validate(const struct pywg_lpm *t)
{
    int code;

    if (t == NULL)
        return -1;
    code = family_validate(&t->v4);
    if (code != 0)
        return 400 + code;
    code = family_validate(&t->v6);
    if (code != 0)
        return 600 + code;
    code = owners_validate(t);
    return code == 0 ? 0 : 800 + code;
}

uint64_t pywg_lpm_bench(const struct pywg_lpm *t, int family, const uint8_t *addrs, size_t n,
                        size_t rounds)
{
    const struct family *f = family_of_const(t, family);
    size_t size = family == 6 ? 16 : 4;
    uint64_t sum = 0;

    if (f == NULL || (addrs == NULL && n > 0))
        return 0;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) {
            uint64_t k[2];

            key_load(k, addrs + i * size, family == 6);
            sum = sum * 31 + (uint64_t)(lookup_key(f, k) + 1);
        }
    }
    return sum;
}
