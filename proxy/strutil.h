/*
 * strutil: small pure helpers for bytes and text shared by the parsers and
 * the configuration loader.  No allocation except where a function says so;
 * no state.
 */
#ifndef MOAT_STRUTIL_H
#define MOAT_STRUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Bytes owned by someone else. */
struct span {
    const char *p;
    size_t len;
};

#define SPAN_LIT(s) ((struct span){(s), sizeof(s) - 1})

int span_eq(struct span a, const char *lit);
int span_caseeq(struct span a, const char *lit);
int span_caseeq_span(struct span a, struct span b);
struct span span_trim(struct span s);
/* Next comma-separated element of *list, trimmed; returns 0 when exhausted.
 * Empty elements are skipped (RFC 9110 list syntax). */
int span_next_list_item(struct span *list, struct span *item);

/* "250ms", "10s", "5m", "12h", "1d" -> milliseconds; bare digits are
 * seconds.  Returns 0 or -1. */
int parse_duration_ms(const char *s, uint64_t *out);
/* "512", "16k", "1m", "2g" (binary multiples) -> bytes.  Returns 0 or -1. */
int parse_size(const char *s, uint64_t *out);
/* Decimal digits only, no sign, no overflow.  Returns 0 or -1. */
int parse_u64(const char *p, size_t len, uint64_t *out);

/*
 * "host:port", "[v6]:port" or "*:port" with a numeric address -> sockaddr.
 * Returns 0 or -1 and writes a reason to err.
 */
int parse_numeric_hostport(const char *s, struct sockaddr_storage *ss, char *err,
                           size_t errlen);
/* Formats a sockaddr as "1.2.3.4:80" or "[::1]:80". */
void format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen);
/* The address alone, as X-Forwarded-For and the access log carry it: IPv4
 * for IPv4-mapped IPv6, no brackets, no port; "-" when len is 0. */
void format_peer_ip(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);
/* The port of an AF_INET or AF_INET6 address, host order. */
unsigned sockaddr_port(const struct sockaddr *sa);

/* Levenshtein distance, bounded: returns max+1 when it exceeds max. */
unsigned edit_distance(const char *a, const char *b, unsigned max);

/* 0 to 15 for a hexadecimal digit, else -1. */
int hex_digit_value(char c);

/*
 * URI paths (RFC 3986).  The character at s[*i] as 6.2.2 compares paths:
 * an escaped unreserved character is that character ("/%61pi/" is
 * "/api/", as an application will read it); another escape stays one, its
 * hex in either case (256 + its byte); anything else is itself.  Advances
 * *i past it.
 */
int uri_path_unit(const char *s, size_t len, size_t *i);
/* 1 if every "%" in path begins an escape of two hex digits, none of them
 * "%00": applications decode paths, each its own way when an escape is
 * broken, and a NUL ends a path early in C. */
int uri_path_escapes_are_sound(struct span path);

/* Appends s JSON-escaped (without quotes) to out[*pos..cap), truncating. */
void json_escape_append(char *out, size_t cap, size_t *pos, const char *s, size_t len);

/* Decodes base64 (RFC 4648, padded or not) into out[cap]: the length, or
 * -1 when in is not base64 or does not fit. */
long base64_decode(struct span in, unsigned char *out, size_t cap);

#endif
