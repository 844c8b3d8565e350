/*
 * Anti-replay window for WireGuard transport counters (RFC 6479, with the
 * sizes used by the Linux kernel and wireguard-go: whitepaper §5.4.6).
 *
 * A ring of PYWG_REPLAY_WORDS 64-bit words (8192 bits) remembers which of the
 * most recent counters were accepted. Counters up to PYWG_REPLAY_WINDOW_SIZE (8128)
 * behind the highest accepted one are judged by their bit; older ones are
 * rejected outright. The spare word lets the ring advance a whole word at a
 * time without forgetting counters that are still inside the window.
 *
 * The text between the cdef markers below is fed verbatim to cffi's cdef() by
 * build_fast.py, so keep it to plain declarations and integer #defines (no
 * expressions, no other preprocessor lines).
 */
#ifndef PYWG_FAST_REPLAY_H
#define PYWG_FAST_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "wg_constants.h" /* PYWG_REPLAY_*, from pywg/constants.py */

/* cdef-begin */
struct pywg_replay {
    /* One past the highest accepted counter; 0 before the first accepted one. */
    uint64_t next;
    /* Counters >= reject_after are never accepted (REJECT_AFTER_MESSAGES). */
    uint64_t reject_after;
    /* Bit (c + 1) % 8192 is set once counter c has been accepted. */
    uint64_t ring[PYWG_REPLAY_WORDS];
};

/* Start empty, rejecting every counter >= reject_after (so an accepted
 * counter + 1 never wraps, whatever reject_after is). */
void pywg_replay_init(struct pywg_replay *r, uint64_t reject_after);

/* Forget every counter seen; keep reject_after. */
void pywg_replay_reset(struct pywg_replay *r);

/* Validate and mark. Call only after the packet authenticated (AEAD open
 * succeeded). True if the counter is new and inside the window; it is then
 * recorded, and a new highest counter moves the window forward. */
bool pywg_replay_check(struct pywg_replay *r, uint64_t counter);

/* The verdict pywg_replay_check would give, without changing anything: a cheap
 * filter before spending a decryption on a packet. */
bool pywg_replay_would_accept(const struct pywg_replay *r, uint64_t counter);
/* cdef-end */

#endif /* PYWG_FAST_REPLAY_H */
