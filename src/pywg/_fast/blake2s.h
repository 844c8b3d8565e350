/*
 * BLAKE2s (RFC 7693), keyed and unkeyed, any digest size 1-32.
 *
 * The data plane needs it for one thing: checking mac1 on handshake messages
 * (whitepaper §5.4.4, mac1 = MAC(HASH(LABEL_MAC1 ‖ Spub), msg), a 16-byte
 * keyed BLAKE2s) before they are queued for Python, so that a flood of
 * garbage or forged initiations dies in C. OpenSSL 1.1 has no keyed BLAKE2s
 * and 3.x's EVP_MAC costs more in setup than the hash itself for 116 bytes,
 * so it is written here from the RFC; tests/native/test_blake2s.py checks it
 * against hashlib.blake2s and the RFC's appendix vector.
 */
#ifndef PYWG_FAST_BLAKE2S_H
#define PYWG_FAST_BLAKE2S_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
/* out gets outlen (1-32) bytes of BLAKE2s(key (0-32 bytes), in). Returns 0, or -1 on bad sizes. */
int pywg_blake2s(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                 const uint8_t *in, size_t inlen);
/* cdef-end */

#endif
