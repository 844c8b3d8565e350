/*
 * The bulk paths of the UAPI text (pywg.uapi) for allowed IPs, both ways. A set
 * request that configures many allowed IPs is mostly `allowed_ip=ADDR/LEN`
 * lines, and so is the answer to get; one line at a time in Python costs more
 * than everything else the request does.
 *
 * Parsing takes a run of such lines at once and writes one prefix record per
 * line (the layout of pywg_lpm_insert_many: family, prefix length, 16 address
 * bytes, host bits cleared).
 *
 * It takes only lines whose meaning is certain, exactly those that Python's
 * fast path (pywg.allowedips._fast_prefix behind pywg.uapi.parse_allowed_ip)
 * accepts: a dotted quad without leading zeros, or IPv6 text of hex digits
 * and colons that inet_pton(3) accepts (the call Python's socket.inet_pton
 * makes), then `/`, decimal digits (leading zeros allowed) up to the family's
 * width, then `\n`. It stops before the first line that is anything else
 * (another key, a removal `allowed_ip=-...`, an error, other spellings, a
 * line without its newline yet), which Python then reads on its own.
 *
 * Formatting writes the lines for records with inet_ntop(3), as
 * pywg.allowedips.Prefix.__str__ does for the same addresses; it stops before
 * an IPv6 address in ::/80, which Python formats (its ipaddress module, not
 * inet_ntop's dotted quads).
 */
#ifndef PYWG_FAST_UAPIPARSE_H
#define PYWG_FAST_UAPIPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "wg_constants.h" /* PYWG_PREFIX_RECORD_SIZE */

/* cdef-begin */
/* The shortest line taken, `allowed_ip=::/0\n`: text of n bytes gives at
 * most n / PYWG_UAPI_ALLOWED_IP_MIN_LINE records. */
#define PYWG_UAPI_ALLOWED_IP_MIN_LINE 16

/* Parse the lines at text[0, len) while they are `allowed_ip=` lines as above,
 * at most cap of them, into out (cap records). Returns how many were taken and
 * sets *consumed to the bytes they span (whole lines, newlines included). */
size_t pywg_uapi_allowed_ips(const uint8_t *text, size_t len, uint8_t *out, size_t cap,
                             size_t *consumed);

/* The longest line formatting writes: `allowed_ip=` + 39 + `/128` + `\n`. */
#define PYWG_UAPI_ALLOWED_IP_MAX_LINE 55
/* Write `allowed_ip=ADDR/LEN\n` for the n records at `records`, into out (cap
 * bytes), until one is in ::/80 or the next line would not fit. Returns how
 * many records were written and sets *written to the bytes. */
size_t pywg_uapi_format_allowed_ips(const uint8_t *records, size_t n, uint8_t *out, size_t cap,
                                    size_t *written);
/* cdef-end */

#endif /* PYWG_FAST_UAPIPARSE_H */
