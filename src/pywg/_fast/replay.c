/*
 * Anti-replay window (RFC 6479; whitepaper §5.4.6). See replay.h.
 *
 * Positions in the ring are counter + 1, so that next == 0 can mean "nothing
 * accepted yet" and the word holding position `next` is always the newest
 * word of the ring. Every word the high mark moves into is zeroed before use,
 * so a word only ever holds bits of counters from its current lap.
 */
#include "replay.h"

#include <string.h>

_Static_assert(PYWG_REPLAY_WORDS * PYWG_REPLAY_BITS_PER_WORD == PYWG_REPLAY_BITS_TOTAL,
               "ring size");
_Static_assert(PYWG_REPLAY_WINDOW_SIZE == PYWG_REPLAY_BITS_TOTAL - PYWG_REPLAY_BITS_PER_WORD,
               "window is the ring less one word");
_Static_assert((PYWG_REPLAY_WORDS & (PYWG_REPLAY_WORDS - 1)) == 0, "ring is a power of two");

#define WORD_SHIFT 6 /* log2(PYWG_REPLAY_BITS_PER_WORD) */
#define WORD_MASK ((uint64_t)PYWG_REPLAY_WORDS - 1)
#define BIT_MASK ((uint64_t)PYWG_REPLAY_BITS_PER_WORD - 1)

_Static_assert((1 << WORD_SHIFT) == PYWG_REPLAY_BITS_PER_WORD, "word shift");

void pywg_replay_init(struct pywg_replay *r, uint64_t reject_after)
{
    r->reject_after = reject_after;
    pywg_replay_reset(r);
}

void pywg_replay_reset(struct pywg_replay *r)
{
    r->next = 0;
    memset(r->ring, 0, sizeof(r->ring));
}

bool pywg_replay_would_accept(const struct pywg_replay *r, uint64_t counter)
{
    uint64_t pos, bit;

    if (counter >= r->reject_after)
        return false;
    pos = counter + 1; /* cannot wrap: counter < reject_after <= UINT64_MAX */
    if (pos > r->next)
        return true; /* a new high: its word is zeroed on the way, or above the mark */
    if (r->next - pos > PYWG_REPLAY_WINDOW_SIZE)
        return false; /* too old */
    bit = (uint64_t)1 << (pos & BIT_MASK);
    return (r->ring[(pos >> WORD_SHIFT) & WORD_MASK] & bit) == 0;
}

bool pywg_replay_check(struct pywg_replay *r, uint64_t counter)
{
    uint64_t pos, bit, old, *word;

    if (counter >= r->reject_after)
        return false;
    pos = counter + 1;
    if (pos > r->next) {
        /* Advance: zero every word after the current one up to the new one,
         * at most the whole ring. */
        uint64_t from = r->next >> WORD_SHIFT;
        uint64_t span = (pos >> WORD_SHIFT) - from;

        if (span > PYWG_REPLAY_WORDS)
            span = PYWG_REPLAY_WORDS;
        for (uint64_t i = 1; i <= span; i++)
            r->ring[(from + i) & WORD_MASK] = 0;
        r->next = pos;
    } else if (r->next - pos > PYWG_REPLAY_WINDOW_SIZE) {
        return false; /* too old */
    }
    word = &r->ring[(pos >> WORD_SHIFT) & WORD_MASK];
    bit = (uint64_t)1 << (pos & BIT_MASK);
    old = *word;
    *word = old | bit;
    return (old & bit) == 0;
}
