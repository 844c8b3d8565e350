/* XChaCha20-Poly1305 sealing: HChaCha20 here (draft-irtf-cfrg-xchacha §2.2),
 * ChaCha20-Poly1305 (RFC 8439) from OpenSSL. */
#include "xaead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

static uint32_t load32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void store32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rotl(uint32_t x, int n)
{
    return x << n | x >> (32 - n);
}

/* RFC 8439 §2.1, the quarter round. */
#define QR(a, b, c, d)                                                                           \
    do {                                                                                         \
        a += b;                                                                                  \
        d = rotl(d ^ a, 16);                                                                     \
        c += d;                                                                                  \
        b = rotl(b ^ c, 12);                                                                     \
        a += b;                                                                                  \
        d = rotl(d ^ a, 8);                                                                      \
        c += d;                                                                                  \
        b = rotl(b ^ c, 7);                                                                      \
    } while (0)

void pywg_hchacha20(uint8_t *out, const uint8_t *key, const uint8_t *nonce16)
{
    /* the ChaCha20 state with the 16-byte nonce in place of counter and nonce;
     * 20 rounds and no final addition; the output is words 0-3 and 12-15 */
    uint32_t x[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};
    for (int i = 0; i < 8; i++)
        x[4 + i] = load32(key + 4 * i);
    for (int i = 0; i < 4; i++)
        x[12 + i] = load32(nonce16 + 4 * i);
    for (int r = 0; r < 10; r++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 4; i++) {
        store32(out + 4 * i, x[i]);
        store32(out + 16 + 4 * i, x[12 + i]);
    }
    OPENSSL_cleanse(x, sizeof(x));
}

int pywg_xaead_seal(uint8_t *out, const uint8_t *key, const uint8_t *nonce24, const uint8_t *plain,
                    size_t len, const uint8_t *ad, size_t adlen)
{
    uint8_t subkey[32], nonce[12] = {0};
    int n, ok = 0;
    EVP_CIPHER_CTX *ctx;
    if (len > (size_t)1 << 30 || adlen > (size_t)1 << 30)
        return -1;
    pywg_hchacha20(subkey, key, nonce24);
    memcpy(nonce + 4, nonce24 + 16, 8);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL &&
        EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1 &&
        EVP_EncryptInit_ex(ctx, NULL, NULL, subkey, nonce) == 1 &&
        (adlen == 0 || EVP_EncryptUpdate(ctx, NULL, &n, ad, (int)adlen) == 1) &&
        (len == 0 || EVP_EncryptUpdate(ctx, out, &n, plain, (int)len) == 1) &&
        EVP_EncryptFinal_ex(ctx, out + len, &n) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + len) == 1)
        ok = 1;
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    OPENSSL_cleanse(subkey, sizeof(subkey));
    return ok ? 0 : -1;
}
