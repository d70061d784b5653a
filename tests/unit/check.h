/*
 * check: typed assertions for unit tests that print both sides on failure
 * and keep going, so one run shows every broken case.  main() returns
 * check_result().
 */
#ifndef MOAT_TEST_CHECK_H
#define MOAT_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(cond)) {                                                                     \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);       \
        }                                                                                  \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
        check_count++;                                                                     \
        if (check_a_ != check_b_) {                                                        \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__,  \
                    #a, #b, check_a_, check_b_);                                           \
        }                                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *check_a_ = (a), *check_b_ = (b);                                       \
        check_count++;                                                                     \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) {     \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,        \
                    __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                      \
                    check_b_ ? check_b_ : "(null)");                                       \
        }                                                                                  \
    } while (0)

/* The substring needle must occur in haystack. */
#define CHECK_CONTAINS(haystack, needle)                                                   \
    do {                                                                                   \
        const char *check_h_ = (haystack), *check_n_ = (needle);                           \
        check_count++;                                                                     \
        if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL) {                      \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    check_h_ ? check_h_ : "(null)", check_n_);                             \
        }                                                                                  \
    } while (0)

static inline int check_result(void)
{
    if (check_failures)
        fprintf(stderr, "%d of %d checks failed\n", check_failures, check_count);
    else
        printf("%d checks passed\n", check_count);
    return check_failures ? 1 : 0;
}

#endif
