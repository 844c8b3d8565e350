/*
 * XChaCha20-Poly1305 sealing (draft-irtf-cfrg-xchacha-03), for cookie replies.
 *
 * WireGuard's cookie reply (whitepaper §5.4.7) encrypts the 16-byte cookie
 * with XAEAD under HASH(LABEL_COOKIE ‖ Spub), a random 24-byte nonce and the
 * mac1 being answered as associated data. Under a handshake flood the native
 * plane answers from C, so it needs the seal here: HChaCha20 (§2.2 of the
 * draft) derives a subkey from the key and the nonce's first 16 bytes, then
 * OpenSSL's ChaCha20-Poly1305 seals with that subkey and the 12-byte nonce
 * 0^4 ‖ nonce[16:24] (§2.3). Checked against libsodium (pynacl) in
 * tests/native/test_xaead.py, and the draft's HChaCha20 test vector.
 */
#ifndef PYWG_FAST_XAEAD_H
#define PYWG_FAST_XAEAD_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
/* out (32 bytes) = HChaCha20(key, nonce16). */
void pywg_hchacha20(uint8_t *out, const uint8_t *key, const uint8_t *nonce16);
/* out gets len + 16 bytes: ciphertext ‖ tag. Returns 0, or -1 if OpenSSL failed. */
int pywg_xaead_seal(uint8_t *out, const uint8_t *key, const uint8_t *nonce24, const uint8_t *plain,
                    size_t len, const uint8_t *ad, size_t adlen);
/* cdef-end */

#endif
