/* Runs of `allowed_ip=` lines of the UAPI, parsed and written in bulk: see uapiparse.h. */
#include "uapiparse.h"

#include <arpa/inet.h>
#include <string.h>

#define KEY "allowed_ip="
#define KEY_LEN (sizeof(KEY) - 1)
/* Longer lines are left to Python, which also enforces its own line limit. */
#define LINE_MAX_TAKEN 128u
#define V6_TEXT_MAX 39u /* pywg.allowedips._V6_TEXT: 2 to 39 hex digits and colons */

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static int is_hex_or_colon(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':';
}

/* A dotted quad of decimal octets 0-255 without leading zeros (the regex
 * pywg.allowedips._V4_TEXT) into out[4]; 0 if it is not one. */
static int parse_v4(const uint8_t *s, size_t n, uint8_t out[4])
{
    size_t i = 0;

    for (int octet = 0; octet < 4; octet++) {
        unsigned value = 0, digits = 0;

        if (octet > 0) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
        while (i < n && is_digit(s[i]) && digits < 4) {
            value = value * 10 + (unsigned)(s[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && s[i - digits] == '0'))
            return 0;
        out[octet] = (uint8_t)value;
    }
    return i == n;
}

/* IPv6 text as pywg.allowedips takes it on its fast path: 2 to 39 hex digits
 * and colons, at least one colon, and inet_pton agrees. */
static int parse_v6(const uint8_t *s, size_t n, uint8_t out[16])
{
    char text[V6_TEXT_MAX + 1];
    int colon = 0;

    if (n < 2 || n > V6_TEXT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_hex_or_colon(s[i]))
            return 0;
        colon |= s[i] == ':';
    }
    if (!colon)
        return 0;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, out) == 1;
}

/* Decimal digits, leading zeros allowed (pywg.uapi._DECIMAL), worth at most
 * `width`, into *cidr; 0 otherwise. */
static int parse_length(const uint8_t *s, size_t n, unsigned width, unsigned *cidr)
{
    unsigned value = 0;
    size_t i = 0;

    if (n == 0)
        return 0;
    while (i < n && s[i] == '0')
        i++;
    if (n - i > 3)
        return 0;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return 0;
        value = value * 10 + (unsigned)(s[i] - '0');
    }
    if (value > width)
        return 0;
    *cidr = value;
    return 1;
}

/* Clear the bits of addr (16 bytes) from bit `cidr` on. */
static void clear_host_bits(uint8_t addr[16], unsigned cidr)
{
    for (unsigned byte = cidr / 8; byte < 16; byte++) {
        unsigned keep = byte == cidr / 8 ? cidr % 8 : 0;

        addr[byte] &= (uint8_t)(0xff00u >> keep);
    }
}

/* One line's value (`ADDR/LEN`) into a record; 0 if it is not for the fast path. */
static int parse_value(const uint8_t *s, size_t n, uint8_t *record)
{
    const uint8_t *slash = memchr(s, '/', n);
    size_t alen;
    unsigned cidr;

    if (slash == NULL)
        return 0;
    alen = (size_t)(slash - s);
    memset(record, 0, PYWG_PREFIX_RECORD_SIZE);
    if (parse_v4(s, alen, record + 2))
        record[0] = 4;
    else if (parse_v6(s, alen, record + 2))
        record[0] = 6;
    else
        return 0;
    if (!parse_length(slash + 1, n - alen - 1, record[0] == 4 ? 32 : 128, &cidr))
        return 0;
    record[1] = (uint8_t)cidr;
    clear_host_bits(record + 2, cidr);
    return 1;
}

size_t pywg_uapi_allowed_ips(const uint8_t *text, size_t len, uint8_t *out, size_t cap,
                             size_t *consumed)
{
    size_t pos = 0, taken = 0;

    while (taken < cap && len - pos > KEY_LEN && memcmp(text + pos, KEY, KEY_LEN) == 0) {
        const uint8_t *value = text + pos + KEY_LEN;
        size_t window = len - pos - KEY_LEN;
        const uint8_t *nl = memchr(value, '\n', window < LINE_MAX_TAKEN ? window : LINE_MAX_TAKEN);

        if (nl == NULL || !parse_value(value, (size_t)(nl - value), out + taken * PYWG_PREFIX_RECORD_SIZE))
            break;
        taken++;
        pos = (size_t)(nl - text) + 1;
    }
    *consumed = pos;
    return taken;
}

size_t pywg_uapi_format_allowed_ips(const uint8_t *records, size_t n, uint8_t *out, size_t cap,
                                    size_t *written)
{
    static const uint8_t zeros[10] = {0};
    size_t pos = 0, k = 0;

    for (; k < n; k++) {
        const uint8_t *rec = records + k * PYWG_PREFIX_RECORD_SIZE;
        char text[INET6_ADDRSTRLEN];
        size_t alen;
        unsigned cidr = rec[1];

        if (rec[0] == 4) {
            if (inet_ntop(AF_INET, rec + 2, text, sizeof(text)) == NULL)
                break;
        } else if (rec[0] == 6 && memcmp(rec + 2, zeros, sizeof(zeros)) != 0) {
            if (inet_ntop(AF_INET6, rec + 2, text, sizeof(text)) == NULL)
                break;
        } else {
            break; /* ::/80, or not a record: Python's */
        }
        alen = strlen(text);
        if (cidr > 128 || cap - pos < KEY_LEN + alen + 5)
            break;
        memcpy(out + pos, KEY, KEY_LEN);
        pos += KEY_LEN;
        memcpy(out + pos, text, alen);
        pos += alen;
        out[pos++] = '/';
        if (cidr >= 100)
            out[pos++] = (uint8_t)('0' + cidr / 100);
        if (cidr >= 10)
            out[pos++] = (uint8_t)('0' + cidr / 10 % 10);
        out[pos++] = (uint8_t)('0' + cidr % 10);
        out[pos++] = '\n';
    }
    *written = pos;
    return k;
}
