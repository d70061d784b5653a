/*
 * Unit tests for cert: the embedded default's self-signed pair, reading
 * PEM files back, and certificate name matching.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cert.h"
#include "check.h"

static int has_name(const struct cert_pair *pair, const char *name)
{
    for (size_t i = 0; i < pair->nnames; i++)
        if (strcmp(pair->names[i], name) == 0)
            return 1;
    return 0;
}

static void test_generate(void)
{
    struct cert_pair pair;
    char err[256] = "";
    time_t now = time(NULL);
    int rc = cert_pair_generate(&pair, "localhost", err, sizeof(err));
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_INT(has_name(&pair, "localhost"), 1);
    CHECK_INT(pair.nnames, 1); /* the IP SAN is not a DNS name */
    CHECK(pair.chain != NULL && pair.chain_len > 100);
    CHECK(pair.key != NULL && pair.key_len > 32);
    CHECK_INT(pair.chain_enc, CERT_DER);
    CHECK_INT(pair.key_enc, CERT_DER);
    CHECK(pair.chain != NULL && pair.chain[0] == 0x30); /* a DER SEQUENCE */
    CHECK_CONTAINS(pair.source, "localhost");

    /* Valid now, for about a year. */
    CHECK(pair.not_before != 0);
    CHECK(pair.not_before <= now + 60);
    CHECK(pair.not_before >= now - 2 * 86400);
    long long days = (long long)(pair.not_after - now) / 86400;
    CHECK(days >= 363 && days <= 366);
    if (!(days >= 363 && days <= 366))
        fprintf(stderr, "  not_after is %lld days ahead\n", days);

    cert_pair_free(&pair);
    CHECK(pair.chain == NULL);
    CHECK(pair.key == NULL);
    CHECK_INT(pair.nnames, 0);
    cert_pair_free(&pair); /* idempotent */

    /* Upper-case input becomes a lower-case name; another host, another
     * key; the same host again (a reload), the same pair. */
    struct cert_pair a, b, c;
    CHECK_INT(cert_pair_generate(&a, "Example.TEST", err, sizeof(err)), 0);
    CHECK_INT(cert_pair_generate(&b, "example.test", err, sizeof(err)), 0);
    CHECK_INT(cert_pair_generate(&c, "example.test", err, sizeof(err)), 0);
    CHECK_INT(has_name(&a, "example.test"), 1);
    CHECK(a.key_len != b.key_len || memcmp(a.key, b.key, a.key_len) != 0);
    CHECK(b.key_len == c.key_len && memcmp(b.key, c.key, b.key_len) == 0);
    CHECK(b.chain_len == c.chain_len && memcmp(b.chain, c.chain, b.chain_len) == 0);
    cert_pair_free(&a);
    cert_pair_free(&b);
    cert_pair_free(&c);

    /* A host too long for the SAN is refused, not truncated. */
    char longhost[200];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    err[0] = '\0';
    CHECK_INT(cert_pair_generate(&pair, longhost, err, sizeof(err)), -1);
    CHECK(err[0] != '\0');
}

static void test_load_errors(void)
{
    struct cert_pair pair;
    char err[512];
    CHECK_INT(cert_pair_load(&pair, "/nonexistent/moat/c.pem", "/nonexistent/moat/k.pem", err,
                             sizeof(err)),
              -1);
    CHECK_CONTAINS(err, "/nonexistent/moat/c.pem: cannot open");

    char dir[] = "/tmp/moat-test-cert-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        CHECK(0);
        return;
    }
    char cert[256], key[256];
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    FILE *f = fopen(cert, "w");
    if (f != NULL) {
        fputs("not a certificate\n", f);
        fclose(f);
    }
    f = fopen(key, "w");
    if (f != NULL) {
        fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", f);
        fclose(f);
    }
    CHECK_INT(cert_pair_load(&pair, cert, key, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "not a PEM certificate chain");
    CHECK_CONTAINS(err, cert);
    CHECK(pair.chain == NULL && pair.key == NULL);

    f = fopen(cert, "w"); /* empty */
    if (f != NULL)
        fclose(f);
    CHECK_INT(cert_pair_load(&pair, cert, key, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "not a non-empty regular file");

    CHECK_INT(cert_pair_load(&pair, dir, key, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, dir);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static int m(const char *name, const char *host)
{
    return cert_name_matches(name, (struct span){host, strlen(host)});
}

static void test_name_matches(void)
{
    CHECK_INT(m("example.com", "example.com"), 1);
    CHECK_INT(m("example.com", "www.example.com"), 0);
    CHECK_INT(m("example.com", "example.co"), 0);
    CHECK_INT(m("example.com", "example.com."), 0);
    CHECK_INT(m("www.example.com", "example.com"), 0);
    CHECK_INT(m("*.example.com", "www.example.com"), 1);
    CHECK_INT(m("*.example.com", "a-b.example.com"), 1);
    CHECK_INT(m("*.example.com", "a.b.example.com"), 0); /* one label only */
    CHECK_INT(m("*.example.com", "example.com"), 0);
    CHECK_INT(m("*.example.com", ".example.com"), 0);
    CHECK_INT(m("*.example.com", "wwwexample.com"), 0);
    CHECK_INT(m("*.example.com", "www.example.org"), 0);
    CHECK_INT(m("*.example.com", "www.example.com.evil"), 0);
    CHECK_INT(m("*.example.com", "com"), 0);
    CHECK_INT(m("*.example.com", ""), 0);
    CHECK_INT(m("example.com", ""), 0);
    CHECK_INT(m("*.com", "example.com"), 1);
    CHECK_INT(m("localhost", "localhost"), 1);
    CHECK_INT(m("localhost", "localhos"), 0);
    /* Only the span counts, not what follows it. */
    CHECK_INT(cert_name_matches("example.com", (struct span){"example.com:443", 11}), 1);
    CHECK_INT(cert_name_matches("*.example.com", (struct span){"a.example.com.x", 13}), 1);
}

int main(void)
{
    test_generate();
    test_load_errors();
    test_name_matches();
    return check_result();
}
