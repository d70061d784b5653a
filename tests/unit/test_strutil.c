/*
 * Unit tests for strutil: number, duration and size parsing, numeric
 * host:port parsing and formatting, list spans, edit distance and JSON
 * escaping.  Every check compares exact values.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include "check.h"
#include "strutil.h"

/* Returns parse_duration_ms()'s result; *out holds the sentinel if untouched. */
static int dur(const char *s, uint64_t *out)
{
    *out = 0xdeadbeef;
    return parse_duration_ms(s, out);
}

static int size(const char *s, uint64_t *out)
{
    *out = 0xdeadbeef;
    return parse_size(s, out);
}

static void test_duration(void)
{
    uint64_t v;
    CHECK_INT(dur("250ms", &v), 0);
    CHECK_INT(v, 250);
    CHECK_INT(dur("10s", &v), 0);
    CHECK_INT(v, 10000);
    CHECK_INT(dur("5m", &v), 0);
    CHECK_INT(v, 300000);
    CHECK_INT(dur("12h", &v), 0);
    CHECK_INT(v, 43200000);
    CHECK_INT(dur("1d", &v), 0);
    CHECK_INT(v, 86400000);
    CHECK_INT(dur("7", &v), 0); /* bare digits are seconds */
    CHECK_INT(v, 7000);
    CHECK_INT(dur("0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(dur("0ms", &v), 0);
    CHECK_INT(v, 0);

    CHECK_INT(dur("", &v), -1);
    CHECK_INT(dur("10x", &v), -1);
    CHECK_INT(dur("-1", &v), -1);
    CHECK_INT(dur("+1s", &v), -1);
    CHECK_INT(dur("ms", &v), -1);
    CHECK_INT(dur("s", &v), -1);
    CHECK_INT(dur("1.5s", &v), -1);
    CHECK_INT(dur("10 s", &v), -1);
    CHECK_INT(dur(" 10s", &v), -1);
    CHECK_INT(dur("10s ", &v), -1);
    CHECK_INT(dur("10sec", &v), -1);
    CHECK_INT(dur("1m1s", &v), -1);
    /* overflow: in the digits, and in the multiplication */
    CHECK_INT(dur("99999999999999999999", &v), -1);
    CHECK_INT(dur("18446744073709551615s", &v), -1);
    CHECK_INT(dur("213503982335d", &v), -1); /* 2^64 ms is ~213503982334.6 days */
    CHECK_INT(dur("18446744073709551615ms", &v), 0);
    CHECK_INT(v == UINT64_MAX, 1);
    CHECK_INT(dur("213503982334d", &v), 0);
    CHECK_INT(v == 213503982334ULL * 86400000ULL, 1);
}

static void test_size(void)
{
    uint64_t v;
    CHECK_INT(size("512", &v), 0);
    CHECK_INT(v, 512);
    CHECK_INT(size("0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(size("16k", &v), 0);
    CHECK_INT(v, 16384);
    CHECK_INT(size("16K", &v), 0);
    CHECK_INT(v, 16384);
    CHECK_INT(size("1m", &v), 0);
    CHECK_INT(v, 1048576);
    CHECK_INT(size("2g", &v), 0);
    CHECK_INT(v, 2147483648LL);

    CHECK_INT(size("", &v), -1);
    CHECK_INT(size("1.5k", &v), -1);
    CHECK_INT(size("k", &v), -1);
    CHECK_INT(size("-1", &v), -1);
    CHECK_INT(size("16kb", &v), -1);
    CHECK_INT(size("16 k", &v), -1);
    CHECK_INT(size("1t", &v), -1);
    CHECK_INT(size("99999999999999999999", &v), -1);
    CHECK_INT(size("17179869184g", &v), -1); /* 2^34 * 2^30 = 2^64 */
    CHECK_INT(size("17179869183g", &v), 0);
    CHECK_INT(v == 17179869183ULL << 30, 1);
}

static void test_u64(void)
{
    uint64_t v = 7;
    CHECK_INT(parse_u64("0", 1, &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(parse_u64("123456", 6, &v), 0);
    CHECK_INT(v, 123456);
    CHECK_INT(parse_u64("12345", 3, &v), 0); /* only len bytes are read */
    CHECK_INT(v, 123);
    CHECK_INT(parse_u64("18446744073709551615", 20, &v), 0);
    CHECK_INT(v == UINT64_MAX, 1);
    v = 7;
    CHECK_INT(parse_u64("18446744073709551616", 20, &v), -1);
    CHECK_INT(parse_u64("99999999999999999999", 20, &v), -1);
    CHECK_INT(parse_u64("", 0, &v), -1);
    CHECK_INT(parse_u64("+1", 2, &v), -1);
    CHECK_INT(parse_u64("-1", 2, &v), -1);
    CHECK_INT(parse_u64("1 ", 2, &v), -1);
    CHECK_INT(parse_u64("0x10", 4, &v), -1);
    CHECK_INT(v, 7); /* untouched on failure */
}

static void check_hostport(const char *s, int family, const char *addr, unsigned port)
{
    struct sockaddr_storage ss;
    char err[128] = "", host[64] = "";
    int rc = parse_numeric_hostport(s, &ss, err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  input \"%s\": %s\n", s, err);
        return;
    }
    CHECK_INT(ss.ss_family, family);
    if (family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
    CHECK_STR(host, addr);
    CHECK_INT(sockaddr_port((struct sockaddr *)&ss), port);
}

static void check_hostport_bad(const char *s, const char *why)
{
    struct sockaddr_storage ss;
    char err[128] = "";
    int rc = parse_numeric_hostport(s, &ss, err, sizeof(err));
    CHECK_INT(rc, -1);
    if (rc != 0)
        CHECK_CONTAINS(err, why);
    else
        fprintf(stderr, "  input \"%s\" was accepted\n", s);
}

static void test_hostport(void)
{
    check_hostport("127.0.0.1:8443", AF_INET, "127.0.0.1", 8443);
    check_hostport("0.0.0.0:1", AF_INET, "0.0.0.0", 1);
    check_hostport("10.1.2.3:65535", AF_INET, "10.1.2.3", 65535);
    check_hostport("*:8443", AF_INET, "0.0.0.0", 8443);
    check_hostport("[::1]:443", AF_INET6, "::1", 443);
    check_hostport("[::]:8443", AF_INET6, "::", 8443);
    check_hostport("[2001:db8::7]:80", AF_INET6, "2001:db8::7", 80);
    check_hostport("[::ffff:10.0.0.1]:80", AF_INET6, "::ffff:10.0.0.1", 80);

    check_hostport_bad("127.0.0.1", "expected \"host:port\"");
    check_hostport_bad("127.0.0.1:", "invalid port \"\"");
    check_hostport_bad("127.0.0.1:65536", "invalid port \"65536\"");
    check_hostport_bad("127.0.0.1:-1", "invalid port \"-1\"");
    check_hostport_bad("127.0.0.1:80x", "invalid port \"80x\"");
    check_hostport_bad("127.0.0.1: 80", "invalid port \" 80\"");
    check_hostport_bad("localhost:80", "\"localhost\" is not a numeric IP address");
    check_hostport_bad("example.com:443", "\"example.com\" is not a numeric IP address");
    check_hostport_bad("256.0.0.1:80", "\"256.0.0.1\" is not a numeric IP address");
    check_hostport_bad("::1:80", "is not a numeric IP address");
    check_hostport_bad("[::1]", "expected \"[ipv6]:port\"");
    check_hostport_bad("[::1]80", "expected \"[ipv6]:port\"");
    check_hostport_bad("[::1:80", "expected \"[ipv6]:port\"");
    check_hostport_bad("[::1]:", "invalid port \"\"");
    check_hostport_bad("[::1]:99999", "invalid port \"99999\"");
    check_hostport_bad("[127.0.0.1]:80", "invalid IPv6 address \"127.0.0.1\"");
    check_hostport_bad("[localhost]:80", "invalid IPv6 address \"localhost\"");
    check_hostport_bad(
        "1111111111111111111111111111111111111111111111111111111111111111111111:80",
        "address too long");
}

static void test_format_sockaddr(void)
{
    char out[64];
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "1.2.3.4", &in4.sin_addr);
    format_sockaddr((struct sockaddr *)&in4, out, sizeof(out));
    CHECK_STR(out, "1.2.3.4:80");
    CHECK_INT(sockaddr_port((struct sockaddr *)&in4), 80);

    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(8443)};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    format_sockaddr((struct sockaddr *)&in6, out, sizeof(out));
    CHECK_STR(out, "[::1]:8443");
    CHECK_INT(sockaddr_port((struct sockaddr *)&in6), 8443);

    inet_pton(AF_INET6, "2001:db8::1:0:0:1", &in6.sin6_addr);
    in6.sin6_port = htons(1);
    format_sockaddr((struct sockaddr *)&in6, out, sizeof(out));
    CHECK_STR(out, "[2001:db8::1:0:0:1]:1");

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    format_sockaddr((struct sockaddr *)&un, out, sizeof(out));
    CHECK_STR(out, "unknown");
    CHECK_INT(sockaddr_port((struct sockaddr *)&un), 0);

    /* Truncation is snprintf's: bounded and terminated. */
    char small[6];
    memset(small, 'Z', sizeof(small));
    format_sockaddr((struct sockaddr *)&in4, small, sizeof(small));
    CHECK_STR(small, "1.2.3");

    /* Round trip through the parser. */
    struct sockaddr_storage ss;
    char err[64];
    CHECK_INT(parse_numeric_hostport("[fe80::1]:9901", &ss, err, sizeof(err)), 0);
    format_sockaddr((struct sockaddr *)&ss, out, sizeof(out));
    CHECK_STR(out, "[fe80::1]:9901");

    /* The address alone, as logs and X-Forwarded-For carry it. */
    format_peer_ip((struct sockaddr *)&in4, sizeof(in4), out, sizeof(out));
    CHECK_STR(out, "1.2.3.4");
    format_peer_ip((struct sockaddr *)&in6, sizeof(in6), out, sizeof(out));
    CHECK_STR(out, "2001:db8::1:0:0:1");
    inet_pton(AF_INET6, "::ffff:10.0.0.7", &in6.sin6_addr);
    format_peer_ip((struct sockaddr *)&in6, sizeof(in6), out, sizeof(out));
    CHECK_STR(out, "10.0.0.7");
    format_peer_ip((struct sockaddr *)&in4, 0, out, sizeof(out));
    CHECK_STR(out, "-");
}

static void test_spans(void)
{
    const char *text = "a, ,b,,c";
    struct span list = {text, strlen(text)}, item;
    char got[64] = "";
    size_t n = 0;
    while (span_next_list_item(&list, &item)) {
        memcpy(got + n, item.p, item.len);
        n += item.len;
        got[n++] = '|';
        got[n] = '\0';
    }
    CHECK_STR(got, "a|b|c|");
    CHECK_INT(list.len, 0);
    CHECK_INT(span_next_list_item(&list, &item), 0);

    const char *text2 = " \tclose ,  Keep-Alive\t, ,";
    list = (struct span){text2, strlen(text2)};
    CHECK_INT(span_next_list_item(&list, &item), 1);
    CHECK_INT(span_eq(item, "close"), 1);
    CHECK_INT(span_next_list_item(&list, &item), 1);
    CHECK_INT(span_eq(item, "Keep-Alive"), 1);
    CHECK_INT(span_caseeq(item, "keep-alive"), 1);
    CHECK_INT(span_next_list_item(&list, &item), 0);

    list = (struct span){",,, ,", 5};
    CHECK_INT(span_next_list_item(&list, &item), 0);
    list = (struct span){"", 0};
    CHECK_INT(span_next_list_item(&list, &item), 0);

    struct span t = span_trim((struct span){"  x y \t", 7});
    CHECK_INT(t.len, 3);
    CHECK_INT(span_eq(t, "x y"), 1);
    t = span_trim((struct span){" \t ", 3});
    CHECK_INT(t.len, 0);

    CHECK_INT(span_eq(SPAN_LIT("abc"), "abc"), 1);
    CHECK_INT(span_eq(SPAN_LIT("abc"), "ABC"), 0);
    CHECK_INT(span_eq(SPAN_LIT("abc"), "abcd"), 0);
    CHECK_INT(span_eq(SPAN_LIT("abcd"), "abc"), 0);
    CHECK_INT(span_caseeq(SPAN_LIT("Host"), "host"), 1);
    CHECK_INT(span_caseeq(SPAN_LIT("Hos"), "host"), 0);
    CHECK_INT(span_caseeq_span(SPAN_LIT("X-Foo"), SPAN_LIT("x-fOO")), 1);
    CHECK_INT(span_caseeq_span(SPAN_LIT("X-Foo"), SPAN_LIT("x-fo")), 0);
}

static void test_edit_distance(void)
{
    CHECK_INT(edit_distance("workers", "workers", 2), 0);
    CHECK_INT(edit_distance("worker", "workers", 2), 1);
    CHECK_INT(edit_distance("listners", "listeners", 2), 1);
    CHECK_INT(edit_distance("client_hedaer", "client_header", 2), 2);
    CHECK_INT(edit_distance("kitten", "sitting", 5), 3);
    CHECK_INT(edit_distance("kitten", "sitting", 2), 3); /* bounded: max + 1 */
    CHECK_INT(edit_distance("", "abc", 5), 3);
    CHECK_INT(edit_distance("abc", "", 5), 3);
    CHECK_INT(edit_distance("", "", 0), 0);
    CHECK_INT(edit_distance("frobnicate", "workers", 2), 3);
    CHECK_INT(edit_distance("ab", "ba", 2), 2);
    /* Long identical strings are still at distance 0. */
    char a[81];
    memset(a, 'x', 80);
    a[80] = '\0';
    CHECK_INT(edit_distance(a, a, 2), 0);
}

static void test_json_escape(void)
{
    char out[128];
    size_t pos = 0;
    const char in[] = "a\"b\\c/d";
    json_escape_append(out, sizeof(out), &pos, in, sizeof(in) - 1);
    out[pos] = '\0';
    CHECK_STR(out, "a\\\"b\\\\c/d");
    CHECK_INT(pos, 9);

    /* Control bytes and bytes that are not UTF-8 each become \u00XX;
     * well-formed UTF-8 stays as it is. */
    const char ctl[] = "\n\t\x01\x1f\x7f\xc3\xa9 ~\xe2\x82\xac\xf0\x9f\x98\x80";
    pos = 0;
    json_escape_append(out, sizeof(out), &pos, ctl, sizeof(ctl) - 1);
    out[pos] = '\0';
    CHECK_STR(out, "\\u000a\\u0009\\u0001\\u001f\\u007f\xc3\xa9 ~\xe2\x82\xac\xf0\x9f\x98\x80");
    /* lone continuation, overlong, surrogate, above U+10FFFF, truncated */
    const char bad[] = "\x80|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82";
    pos = 0;
    json_escape_append(out, sizeof(out), &pos, bad, sizeof(bad) - 1);
    out[pos] = '\0';
    CHECK_STR(out, "\\u0080|\\u00c0\\u00af|\\u00ed\\u00a0\\u0080|\\u00f4\\u0090\\u0080\\u0080|"
                   "\\u00e2\\u0082");

    /* An embedded NUL is escaped, not an end. */
    pos = 0;
    json_escape_append(out, sizeof(out), &pos, "a\0b", 3);
    out[pos] = '\0';
    CHECK_STR(out, "a\\u0000b");

    /* Appends at *pos. */
    memcpy(out, "{\"k\":\"", 6);
    pos = 6;
    json_escape_append(out, sizeof(out), &pos, "v\"", 2);
    out[pos] = '\0';
    CHECK_STR(out, "{\"k\":\"v\\\"");

    /* Truncation keeps one byte free for a terminator, never splits an
     * escape, and never writes past cap. */
    char buf[16];
    memset(buf, '#', sizeof(buf));
    pos = 0;
    json_escape_append(buf, 8, &pos, "abcdefghijkl", 12);
    CHECK_INT(pos, 7);
    CHECK_INT(buf[8], '#');
    buf[pos] = '\0';
    CHECK_STR(buf, "abcdefg");

    memset(buf, '#', sizeof(buf));
    pos = 0;
    json_escape_append(buf, 8, &pos, "ab\x01z", 4);
    CHECK_INT(pos, 2); /* "\u0001" needs 6 bytes, only 5 left */
    CHECK_INT(buf[2], '#');
    buf[pos] = '\0';
    CHECK_STR(buf, "ab");

    memset(buf, '#', sizeof(buf));
    pos = 0;
    json_escape_append(buf, 7, &pos, "abcde\"", 6);
    CHECK_INT(pos, 5); /* "\"" would fill the last byte */
    CHECK_INT(buf[5], '#');
    CHECK_INT(buf[6], '#');

    memset(buf, '#', sizeof(buf));
    pos = 0;
    json_escape_append(buf, 8, &pos, "abcde\"", 6);
    CHECK_INT(pos, 7);
    CHECK_INT(buf[7], '#');

    /* Full already, or nothing to add: nothing written. */
    memset(buf, '#', sizeof(buf));
    pos = 7;
    json_escape_append(buf, 8, &pos, "x", 1);
    CHECK_INT(pos, 7);
    CHECK_INT(buf[7], '#');
    pos = 3;
    json_escape_append(buf, 8, &pos, "", 0);
    CHECK_INT(pos, 3);
}

static int sound(const char *path)
{
    return uri_path_escapes_are_sound((struct span){path, strlen(path)});
}

static void test_path_escapes_are_sound(void)
{
    CHECK_INT(sound("/"), 1);
    CHECK_INT(sound(""), 1);
    CHECK_INT(sound("/a%20b"), 1);
    CHECK_INT(sound("/%61pi/%7E%7e"), 1);
    CHECK_INT(sound("/caf%C3%A9"), 1);
    CHECK_INT(sound("/a%2fb%25"), 1);
    CHECK_INT(sound("/x%01"), 1);

    CHECK_INT(sound("/a%"), 0);
    CHECK_INT(sound("/a%2"), 0);
    CHECK_INT(sound("/%zz"), 0);
    CHECK_INT(sound("/%g0/"), 0);
    CHECK_INT(sound("/a%20%"), 0);
    CHECK_INT(sound("/%00"), 0);
    CHECK_INT(sound("/api%00/x"), 0);
    CHECK_INT(sound("/ok%20then%0"), 0);
}

static void test_base64(void)
{
    unsigned char out[16];
    CHECK_INT(base64_decode(SPAN_LIT("Ym9iOnB3"), out, sizeof(out)), 6);
    CHECK(memcmp(out, "bob:pw", 6) == 0);
    CHECK_INT(base64_decode(SPAN_LIT("YQ=="), out, sizeof(out)), 1); /* padded */
    CHECK_INT(base64_decode(SPAN_LIT("YQ"), out, sizeof(out)), 1);   /* or not */
    CHECK(out[0] == 'a');
    CHECK_INT(base64_decode(SPAN_LIT("YWJj"), out, sizeof(out)), 3);
    CHECK_INT(base64_decode(SPAN_LIT(""), out, sizeof(out)), 0);
    CHECK_INT(base64_decode(SPAN_LIT("Y"), out, sizeof(out)), -1);   /* no whole byte */
    CHECK_INT(base64_decode(SPAN_LIT("Ym9i Onw="), out, sizeof(out)), -1);
    CHECK_INT(base64_decode(SPAN_LIT("YWJjZGVmZ2hpamtsbW5vcHE="), out, sizeof(out)), -1); /* 17 */
}

int main(void)
{
    test_base64();
    test_duration();
    test_size();
    test_u64();
    test_hostport();
    test_format_sockaddr();
    test_spans();
    test_edit_distance();
    test_json_escape();
    test_path_escapes_are_sound();
    return check_result();
}
