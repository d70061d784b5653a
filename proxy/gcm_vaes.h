/*
 * gcm_vaes: AES-GCM with 256-bit AES and carry-less multiply instructions
 * (VAES, VPCLMULQDQ: AMD since Zen 3, Intel since Ice Lake), two blocks per
 * instruction where wolfSSL 5.5.4's fastest code does one.  The bundled
 * wolfSSL calls these from wc_AesGcmEncrypt and wc_AesGcmDecrypt when
 * moat_gcm_vaes_usable() says so (scripts/build-wolfssl.sh), so every TLS
 * record moat sends or receives is sealed here.
 *
 * The arguments are those of wolfSSL's own AES_GCM_encrypt_avx2: key is an
 * AES-NI encryption key schedule of nr + 1 round keys (nr 10, 12 or 14), the
 * IV is 96 bits (callers keep other IV sizes for wolfSSL), the tag 1 to 16
 * bytes.  out may be in.
 */
#ifndef MOAT_GCM_VAES_H
#define MOAT_GCM_VAES_H

/* Non-zero when the CPU and the kernel support AVX2, VAES and VPCLMULQDQ. */
int moat_gcm_vaes_usable(void);

void moat_gcm_vaes_encrypt(const unsigned char *in, unsigned char *out, const unsigned char *aad,
                           const unsigned char *iv, unsigned char *tag, unsigned int nbytes,
                           unsigned int abytes, unsigned int ivbytes, unsigned int tbytes,
                           const unsigned char *key, int nr);

/* Decrypts and sets *ok to 1 when the tag matches, else 0 (the output is
 * then to be discarded, as with wolfSSL's own code). */
void moat_gcm_vaes_decrypt(const unsigned char *in, unsigned char *out, const unsigned char *aad,
                           const unsigned char *iv, const unsigned char *tag, unsigned int nbytes,
                           unsigned int abytes, unsigned int ivbytes, unsigned int tbytes,
                           const unsigned char *key, int nr, int *ok);

#endif
