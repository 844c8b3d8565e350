/* draft */
#ifndef PYWG_FAST_LPM_H
#define PYWG_FAST_LPM_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
#define PYWG_LPM_SOURCE 0
#define PYWG_LPM_DESTINATION 1
#define PYWG_LPM_HASH_LENGTHS 8

struct pywg_lpm;

struct pywg_lpm *pywg_lpm_new(void);
void pywg_lpm_free(struct pywg_lpm *t);
int pywg_lpm_insert(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr, uint32_t value);
int pywg_lpm_remove(struct pywg_lpm *t, int family, const uint8_t *addr, int cidr);
int pywg_lpm_remove_value(struct pywg_lpm *t, uint32_t value);
void pywg_lpm_clear(struct pywg_lpm *t);
int64_t pywg_lpm_get(const struct pywg_lpm *t, int family, const uint8_t *addr, int cidr);
int64_t pywg_lpm_lookup(const struct pywg_lpm *t, int family, const uint8_t *addr);
int64_t pywg_lpm_lookup_packet(const struct pywg_lpm *t, const uint8_t *ip_packet, size_t len, int which);
size_t pywg_lpm_count(const struct pywg_lpm *t);
size_t pywg_lpm_memory(const struct pywg_lpm *t);
void pywg_lpm_set_hash_lengths(struct pywg_lpm *t, int max_lengths);
int pywg_lpm_validate(const struct pywg_lpm *t);
uint64_t pywg_lpm_bench(const struct pywg_lpm *t, int family, const uint8_t *addrs, size_t n, size_t rounds);
/* cdef-end */

#endif
