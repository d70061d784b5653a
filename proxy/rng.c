/*
 * rng: getrandom(2) for every request, no state of our own.  wolfSSL's own
 * default, a Hash_DRBG per connection, cost an open/read/close of
 * /dev/urandom and a SHA-256 known-answer test each time a WOLFSSL object was
 * made; getrandom costs about half a microsecond per call here, and with no
 * buffer there is nothing to erase after use and nothing a fork could
 * duplicate.
 */
#include "rng.h"

#include <errno.h>
#include <sys/random.h>

int moat_random_block(unsigned char *out, unsigned int len)
{
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        out += n;
        len -= (unsigned int)n;
    }
    return 0;
}
