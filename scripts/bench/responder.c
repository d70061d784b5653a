/*
 * responder: the floor moat is measured against in scripts/bench.sh.  A TLS
 * server on the same wolfSSL build moat links, with moat's suites and groups,
 * that answers every request itself: no parsing beyond the blank line that
 * ends a head, no upstream, no routing.  What moat costs above it is the
 * proxy.
 *
 * Usage: responder PORT CERT KEY [THREADS [BULK_BYTES]]
 *   GET /b... answers BULK_BYTES of zeros (default 1 MiB), anything else
 *   the benchmark backend's short body.
 *   THREADS event loops share the port with SO_REUSEPORT (default 1).
 *   wolfSSL's own session cache (a few dozen sessions per process) and its
 *   default ticket keys serve resumption.
 *
 * Build: cc -O2 -I PREFIX/include responder.c PREFIX/lib/libwolfssl.a -lm -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define MAX_EVENTS 256

static const char small_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 23\r\n"
                                     "Content-Type: text/plain\r\n\r\n"
                                     "hello from the backend\n";
static char *bulk_response;
static size_t bulk_len;

static WOLFSSL_CTX *ctx;
static int port;

struct client {
    int fd;
    WOLFSSL *ssl;
    int handshaken;
    size_t head_seen;       /* bytes of the current head scanned so far */
    char tail[3];           /* the last bytes of the previous read */
    unsigned pending;       /* complete requests not answered yet */
    unsigned bulk_pending;  /* of which bulk downloads, in order (bitmask) */
    const char *out;        /* response being written */
    size_t out_len;
    size_t chunk;           /* size of the wolfSSL_write in progress */
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int listen_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0)
        die("bind/listen");
    return fd;
}

static void drop(struct client *c)
{
    wolfSSL_free(c->ssl);
    close(c->fd);
    free(c);
}

/* Counts request heads ended in buf (a blank line), across reads. */
static void scan_requests(struct client *c, const char *buf, int n)
{
    for (int i = 0; i < n; i++) {
        char ch = buf[i];
        if (c->head_seen == 0 && ch == 'G' && i + 6 <= n && memcmp(buf + i, "GET /b", 6) == 0)
            c->bulk_pending |= 1u << (c->pending & 31);
        c->head_seen++;
        c->tail[0] = c->tail[1];
        c->tail[1] = c->tail[2];
        c->tail[2] = ch;
        if (ch == '\n' && c->head_seen >= 4 && c->tail[0] == '\n' && c->tail[1] == '\r') {
            c->pending++;
            c->head_seen = 0;
        }
    }
}

/* Writes what is due; 0 to go on, 1 when waiting for EPOLLOUT, -1 to drop. */
static int write_out(struct client *c)
{
    for (;;) {
        if (c->out_len == 0) {
            if (c->pending == 0)
                return 0;
            int bulk = (c->bulk_pending & 1) != 0;
            c->bulk_pending >>= 1;
            c->pending--;
            c->out = bulk ? bulk_response : small_response;
            c->out_len = bulk ? bulk_len : sizeof(small_response) - 1;
        }
        if (c->chunk == 0)
            c->chunk = c->out_len < 65536 ? c->out_len : 65536;
        int rc = wolfSSL_write(c->ssl, c->out, (int)c->chunk);
        if (rc <= 0) {
            int err = wolfSSL_get_error(c->ssl, rc);
            return err == WOLFSSL_ERROR_WANT_WRITE ? 1 : -1;
        }
        c->out += rc;
        c->out_len -= (size_t)rc;
        c->chunk = 0;
    }
}

static void serve(int ep, struct client *c, uint32_t events)
{
    (void)events;
    if (!c->handshaken) {
        int rc = wolfSSL_accept(c->ssl);
        if (rc != WOLFSSL_SUCCESS) {
            int err = wolfSSL_get_error(c->ssl, rc);
            if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
                return;
            drop(c);
            return;
        }
        c->handshaken = 1;
    }
    char buf[16384];
    for (;;) {
        int n = wolfSSL_read(c->ssl, buf, sizeof(buf));
        if (n > 0) {
            scan_requests(c, buf, n);
            continue;
        }
        int err = wolfSSL_get_error(c->ssl, n);
        if (err == WOLFSSL_ERROR_WANT_READ)
            break;
        drop(c);
        return;
    }
    int w = write_out(c);
    if (w < 0) {
        drop(c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (w ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void *loop(void *arg)
{
    (void)arg;
    int lfd = listen_socket(), ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct client *c = evs[i].data.ptr;
            if (c != NULL) {
                serve(ep, c, evs[i].events);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = calloc(1, sizeof(*c));
                if (c == NULL || (c->ssl = wolfSSL_new(ctx)) == NULL) {
                    free(c);
                    close(fd);
                    continue;
                }
                c->fd = fd;
                wolfSSL_set_fd(c->ssl, fd);
                struct epoll_event cev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                serve(ep, c, EPOLLIN);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: responder PORT CERT KEY [THREADS [BULK_BYTES]]\n");
        return 2;
    }
    port = atoi(argv[1]);
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    long bulk_bytes = argc > 5 ? atol(argv[5]) : 1048576;
    signal(SIGPIPE, SIG_IGN);

    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n",
                      (int)bulk_bytes);
    bulk_len = (size_t)hl + (size_t)bulk_bytes;
    bulk_response = calloc(1, bulk_len);
    if (bulk_response == NULL)
        die("calloc");
    memcpy(bulk_response, head, (size_t)hl);

    wolfSSL_Init();
    ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
    if (ctx == NULL || wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_cipher_list(ctx, "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
                                         "TLS13-CHACHA20-POLY1305-SHA256:"
                                         "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                         "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                         "ECDHE-ECDSA-CHACHA20-POLY1305:"
                                         "ECDHE-RSA-CHACHA20-POLY1305") != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(ctx, groups, 3) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_certificate_chain_file(ctx, argv[2]) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_file(ctx, argv[3], WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        fprintf(stderr, "responder: TLS set-up failed\n");
        return 1;
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    /* One send per handshake flight, not one per message: moat's memory
     * I/O writes a whole flight at once, and a floor must not pay more
     * system calls than moat does. */
    wolfSSL_CTX_set_group_messages(ctx);
    pthread_t t;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&t, NULL, loop, NULL) != 0)
            die("pthread_create");
    loop(NULL);
    return 0;
}
