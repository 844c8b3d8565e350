/*
 * ChaCha20-Poly1305 (RFC 8439) for transport messages, on OpenSSL's EVP with
 * one initialised context per key and direction (whitepaper §5.4.6: the
 * nonce is 32 zero bits then the 64-bit little-endian counter; no AD).
 *
 * Why OpenSSL EVP: measured on this project's machine kind (benches/aead_compare.c), it
 * seals a 1420-byte packet in about 1.0 µs with a context set up once per key
 * (only the nonce changes per packet), against 1.5-1.8 µs for libsodium's
 * detached IETF AEAD and 1.6-2.2 µs for a fresh EVP context per packet; its
 * vector code (AVX2/AVX-512) is picked at run time. A context is not
 * thread-safe: each thread that seals or opens under a key owns its own.
 */
#ifndef PYWG_FAST_AEAD_H
#define PYWG_FAST_AEAD_H

#include <stddef.h>
#include <stdint.h>

#include "wg_constants.h" /* PYWG_AEAD_TAG_SIZE, PYWG_KEY_SIZE */

/* cdef-begin */
struct pywg_aead;

/* A context for one key and one direction (encrypt = 1 seals, 0 opens). NULL on failure. */
struct pywg_aead *pywg_aead_new(const uint8_t *key, int encrypt);
/* Frees the context; OpenSSL cleanses the key schedule. */
void pywg_aead_free(struct pywg_aead *a);

/* out[0:len] = ciphertext, out[len:len+16] = tag. in == out is allowed. 0, or -1. */
int pywg_aead_seal(struct pywg_aead *a, uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out);
/* in[0:len] = ciphertext ‖ tag (len >= 16); out gets len - 16 bytes. 0, or -1 (forged). */
int pywg_aead_open(struct pywg_aead *a, uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out);

/* Benchmark helpers: n messages of `len` plaintext bytes each, `stride` bytes
 * apart in buf, sealed (or opened) in place with counters first_counter.. .
 * Return how many succeeded. */
size_t pywg_aead_seal_batch(struct pywg_aead *a, uint64_t first_counter, uint8_t *buf,
                            size_t stride, size_t len, size_t n);
size_t pywg_aead_open_batch(struct pywg_aead *a, uint64_t first_counter, uint8_t *buf,
                            size_t stride, size_t len, size_t n);
/* cdef-end */

#endif /* PYWG_FAST_AEAD_H */
