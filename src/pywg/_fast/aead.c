/* ChaCha20-Poly1305 transport AEAD on OpenSSL EVP. See aead.h. */
#include "aead.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct pywg_aead {
    EVP_CIPHER_CTX *ctx;
    int encrypt;
};

static void make_nonce(uint8_t nonce[12], uint64_t counter)
{
    /* whitepaper §5.4.6: 32 bits of zeros, then the counter little-endian */
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

struct pywg_aead *pywg_aead_new(const uint8_t *key, int encrypt)
{
    struct pywg_aead *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->ctx = EVP_CIPHER_CTX_new();
    a->encrypt = encrypt;
    if (a->ctx == NULL ||
        EVP_CipherInit_ex(a->ctx, EVP_chacha20_poly1305(), NULL, key, NULL, encrypt) != 1) {
        pywg_aead_free(a);
        return NULL;
    }
    return a;
}

void pywg_aead_free(struct pywg_aead *a)
{
    if (a == NULL)
        return;
    EVP_CIPHER_CTX_free(a->ctx); /* cleanses the key material */
    free(a);
}

int pywg_aead_seal(struct pywg_aead *a, uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out)
{
    uint8_t nonce[12];
    int outl = 0, finl = 0;
    if (!a->encrypt || len > 0x7fffffff)
        return -1;
    make_nonce(nonce, counter);
    if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 1) != 1)
        return -1;
    if (len > 0 && EVP_EncryptUpdate(a->ctx, out, &outl, in, (int)len) != 1)
        return -1;
    if (EVP_EncryptFinal_ex(a->ctx, out + outl, &finl) != 1)
        return -1;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, PYWG_AEAD_TAG_SIZE, out + len) != 1)
        return -1;
    return 0;
}

int pywg_aead_open(struct pywg_aead *a, uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out)
{
    uint8_t nonce[12], tag[PYWG_AEAD_TAG_SIZE];
    int outl = 0, finl = 0;
    size_t clen;
    if (a->encrypt || len < PYWG_AEAD_TAG_SIZE || len > 0x7fffffff)
        return -1;
    clen = len - PYWG_AEAD_TAG_SIZE;
    memcpy(tag, in + clen, PYWG_AEAD_TAG_SIZE); /* in may be out: keep the tag */
    make_nonce(nonce, counter);
    if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) != 1)
        return -1;
    if (clen > 0 && EVP_DecryptUpdate(a->ctx, out, &outl, in, (int)clen) != 1)
        return -1;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, PYWG_AEAD_TAG_SIZE, tag) != 1)
        return -1;
    if (EVP_DecryptFinal_ex(a->ctx, out + outl, &finl) != 1)
        return -1; /* forged: the caller must not use out */
    return 0;
}

size_t pywg_aead_seal_batch(struct pywg_aead *a, uint64_t first_counter, uint8_t *buf,
                            size_t stride, size_t len, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += pywg_aead_seal(a, first_counter + i, buf + i * stride, len, buf + i * stride) == 0;
    return ok;
}

size_t pywg_aead_open_batch(struct pywg_aead *a, uint64_t first_counter, uint8_t *buf,
                            size_t stride, size_t len, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += pywg_aead_open(a, first_counter + i, buf + i * stride, len + PYWG_AEAD_TAG_SIZE,
                             buf + i * stride) == 0;
    return ok;
}
