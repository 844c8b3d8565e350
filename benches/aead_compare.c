/*
 * Which ChaCha20-Poly1305 is fastest on this machine, measured in C so no
 * binding overhead blurs it: OpenSSL EVP with one context set up per key (what
 * pywg's aead.c does), OpenSSL with a new context per packet, and libsodium's
 * detached IETF AEAD (loaded with dlopen, so only libsodium.so.23 is needed).
 *
 *   gcc -O2 -o /tmp/aead_compare benches/aead_compare.c -lcrypto -ldl && /tmp/aead_compare
 */
#include <dlfcn.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ROUNDS 200000

typedef int (*sodium_init_fn)(void);
typedef int (*sodium_seal_fn)(unsigned char *, unsigned char *, unsigned long long *,
                              const unsigned char *, unsigned long long, const unsigned char *,
                              unsigned long long, const unsigned char *, const unsigned char *,
                              const unsigned char *);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint8_t key[32], nonce[12], buf[2048], tag[16];

static double evp_reused(size_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n;
    double t0;
    EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, NULL);
    t0 = now();
    for (int i = 0; i < ROUNDS; i++) {
        memcpy(nonce + 4, &i, sizeof(i));
        EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce);
        EVP_EncryptUpdate(ctx, buf, &n, buf, (int)len);
        EVP_EncryptFinal_ex(ctx, buf + n, &n);
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
    }
    t0 = (now() - t0) / ROUNDS;
    EVP_CIPHER_CTX_free(ctx);
    return t0;
}

static double evp_fresh(size_t len)
{
    int n;
    double t0 = now();
    for (int i = 0; i < ROUNDS; i++) {
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        memcpy(nonce + 4, &i, sizeof(i));
        EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, nonce);
        EVP_EncryptUpdate(ctx, buf, &n, buf, (int)len);
        EVP_EncryptFinal_ex(ctx, buf + n, &n);
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
        EVP_CIPHER_CTX_free(ctx);
    }
    return (now() - t0) / ROUNDS;
}

static double sodium(sodium_seal_fn seal, size_t len)
{
    unsigned long long maclen;
    double t0 = now();
    for (int i = 0; i < ROUNDS; i++) {
        memcpy(nonce + 4, &i, sizeof(i));
        seal(buf, tag, &maclen, buf, len, NULL, 0, NULL, nonce, key);
    }
    return (now() - t0) / ROUNDS;
}

int main(void)
{
    void *lib = dlopen("libsodium.so.23", RTLD_NOW);
    sodium_seal_fn seal = NULL;
    size_t sizes[] = {64, 512, 1420, 1440};
    if (lib != NULL) {
        sodium_init_fn init = (sodium_init_fn)dlsym(lib, "sodium_init");
        seal = (sodium_seal_fn)dlsym(lib, "crypto_aead_chacha20poly1305_ietf_encrypt_detached");
        if (init == NULL || init() < 0)
            seal = NULL;
    }
    printf("%8s %16s %16s %16s   (ns per packet, %d rounds)\n", "bytes", "evp-reused",
           "evp-fresh", "libsodium", ROUNDS);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        printf("%8zu %16.0f %16.0f", len, evp_reused(len) * 1e9, evp_fresh(len) * 1e9);
        if (seal != NULL)
            printf(" %16.0f\n", sodium(seal, len) * 1e9);
        else
            printf(" %16s\n", "(no libsodium)");
    }
    return 0;
}
