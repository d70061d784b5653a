/*
 * rng: the random bytes wolfSSL draws.  The bundled wolfSSL is built with
 * CUSTOM_RAND_GENERATE_BLOCK naming this function (scripts/build-wolfssl.sh),
 * so every wc_RNG_GenerateBlock (server randoms, session IDs, key shares,
 * ECDSA nonces, ticket IVs) lands here.
 */
#ifndef MOAT_RNG_H
#define MOAT_RNG_H

/* Fills out[0..len) from the kernel's CSPRNG.  Returns 0, or -1 with errno
 * set (wolfSSL then fails the operation that needed the bytes). */
int moat_random_block(unsigned char *out, unsigned int len);

#endif
