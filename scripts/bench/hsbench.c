/*
 * hsbench: a TLS handshake load generator for scripts/bench.sh.
 *
 * One thread, non-blocking sockets and epoll, OpenSSL as the client.  Keeps
 * CONC connections in flight: connect, handshake, (TLS 1.3: wait for the
 * server's session ticket, as a real client would), optionally send one GET
 * and read the answer, send close_notify, close, start the next one.  Counts
 * handshakes and how many of them resumed, so the caller can check that a
 * "resumed" figure really resumed and a "full" figure really did not.
 *
 * Modes (-m):
 *   full    never offers a session: every handshake is a full one
 *   id      TLS 1.2 session-ID resumption: the client refuses tickets, keeps
 *           the last session the server handed out and offers its ID
 *   ticket  ticket resumption (TLS 1.2 tickets, TLS 1.3 PSK): TLS 1.2
 *           offers the newest ticket it received; TLS 1.3 offers each
 *           ticket once (a pool of unused tickets, newest first)
 *
 * -R offers the first session the server issued to every connection instead
 * of the newest one (TLS 1.3 tickets are meant to be used once: this shows
 * whether a server enforces that).
 *
 * -H N holds N idle connections instead (handshake done, ticket read, then
 * nothing): prints "ready open=N" once they are up and waits for SIGTERM or
 * -d seconds.
 *
 * Output: one line of key=value pairs on stdout.
 *
 * Build: cc -O2 -o hsbench hsbench.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { M_FULL, M_ID, M_TICKET };
enum state { S_CONNECT, S_HANDSHAKE, S_TICKET, S_WRITE, S_READ, S_IDLE };

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    int offered;        /* a session was offered */
    int got_ticket;     /* new_session callback fired */
    double t_phase;     /* start of the current wait, for timeouts */
    size_t wrote;
    size_t got, want;   /* response bytes read / expected (0 = unknown yet) */
    char head[1024];
    size_t headlen;
};

static struct {
    const char *host;
    int port;
    int conc;
    double duration;
    int version;        /* TLS1_2_VERSION or TLS1_3_VERSION */
    enum mode mode;
    int get;
    int hold;
    const char *groups;
    int keep_first;     /* -R: offer the first session forever, never a newer one */
} opt = { "127.0.0.1", 0, 32, 5.0, TLS1_3_VERSION, M_FULL, 0, 0, "X25519:P-256", 0 };

static struct {
    long handshakes, resumed, offered, errors, timeouts, wrong_version;
    long no_ticket;     /* TLS 1.3: no ticket arrived in time */
    long ticket_sessions, id_sessions; /* kind of the sessions offered */
    long requests, bad_responses;
    long reused_tickets;    /* TLS 1.3: a ticket offered a second time (pool empty) */
    char first_error[256];
    char cipher[64], group[32], proto[16];
} st;

static SSL_CTX *ctx;
static SSL_SESSION *current;    /* the newest session the server issued */
/* TLS 1.3 tickets are meant to be used once: like a browser, the client keeps
 * the tickets it has not used yet and offers each one once (newest first),
 * falling back to the newest ticket only when none is left */
#define POOL_MAX 4096
static SSL_SESSION *pool[POOL_MAX];
static int pool_n;
static int priming;     /* filling the pool: full handshakes, nothing offered */
static int ep;
static volatile sig_atomic_t stop_flag;
static struct sockaddr_in addr;
static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void note_error(const char *what)
{
    st.errors++;
    if (st.first_error[0] == '\0') {
        unsigned long e = ERR_peek_error();
        char buf[160] = "";
        if (e)
            ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(st.first_error, sizeof(st.first_error), "%s%s%s%s", what,
                 e ? " (" : "", buf, e ? ")" : "");
        for (char *p = st.first_error; *p; p++)
            if (*p == ' ')
                *p = '_';
    }
    ERR_clear_error();
}

/* Every session the server hands out passes here (TLS 1.2 after a full
 * handshake, TLS 1.3 once per NewSessionTicket). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (c != NULL)
        c->got_ticket = 1;
    if (opt.mode == M_FULL)
        return 0;
    if (opt.mode == M_TICKET && !SSL_SESSION_has_ticket(sess))
        return 0;
    if (opt.mode == M_ID) {
        unsigned int idlen = 0;
        SSL_SESSION_get_id(sess, &idlen);
        if (idlen == 0 || SSL_SESSION_has_ticket(sess))
            return 0;
    }
    if (current != NULL) {
        if (opt.keep_first)
            return 0;
        SSL_SESSION_free(current);
    }
    current = sess;
    if (opt.version == TLS1_3_VERSION) {
        if (pool_n == POOL_MAX) {
            SSL_SESSION_free(pool[0]);
            memmove(pool, pool + 1, (POOL_MAX - 1) * sizeof(pool[0]));
            pool_n--;
        }
        SSL_SESSION_up_ref(sess);
        pool[pool_n++] = sess;
    }
    return 1;   /* we keep the reference */
}

static void ep_set(struct conn *c, uint32_t events, int add)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        if (c->st != S_CONNECT && c->st != S_HANDSHAKE)
            SSL_shutdown(c->ssl);   /* one close_notify, no waiting for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    ERR_clear_error();
}

static int conn_start(struct conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->st = S_CONNECT;
    c->t_phase = now();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
        note_error("connect");
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    ep_set(c, EPOLLOUT, 1);
    return 0;
}

/* Advances one connection as far as it goes without blocking.  Returns 1
 * when the connection is finished (closed), 0 when it waits. */
static int conn_step(struct conn *c)
{
    int r, e;
    if (c->st == S_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            errno = err;
            note_error("connect");
            conn_close(c);
            return 1;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_app_data(c->ssl, c);
        SSL_set_connect_state(c->ssl);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        SSL_SESSION *offer = NULL;
        if (priming)
            ;
        else if (opt.mode != M_FULL && !opt.keep_first && pool_n > 0)
            offer = pool[--pool_n];     /* SSL_set_session takes its own reference */
        else if (opt.mode != M_FULL && current != NULL) {
            offer = current;
            SSL_SESSION_up_ref(offer);
            if (opt.version == TLS1_3_VERSION)
                st.reused_tickets++;
        }
        if (offer != NULL) {
            SSL_set_session(c->ssl, offer);
            SSL_SESSION_free(offer);
            c->offered = 1;
            st.offered++;
            if (SSL_SESSION_has_ticket(SSL_get_session(c->ssl)))
                st.ticket_sessions++;
            else
                st.id_sessions++;
        }
        c->st = S_HANDSHAKE;
        c->t_phase = now();
    }
    if (c->st == S_HANDSHAKE) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) { ep_set(c, EPOLLIN, 0); return 0; }
            if (e == SSL_ERROR_WANT_WRITE) { ep_set(c, EPOLLOUT, 0); return 0; }
            note_error("handshake");
            conn_close(c);
            return 1;
        }
        st.handshakes++;
        if (SSL_session_reused(c->ssl))
            st.resumed++;
        if (SSL_version(c->ssl) != opt.version)
            st.wrong_version++;
        if (st.cipher[0] == '\0') {
            snprintf(st.cipher, sizeof(st.cipher), "%s", SSL_get_cipher_name(c->ssl));
            snprintf(st.proto, sizeof(st.proto), "%s", SSL_get_version(c->ssl));
            int g = SSL_get_negotiated_group(c->ssl);
            const char *gn = g ? OBJ_nid2sn(g & ~TLSEXT_nid_unknown) : NULL;
            snprintf(st.group, sizeof(st.group), "%s", gn ? gn : "none");
        }
        c->st = opt.version == TLS1_3_VERSION && !c->got_ticket ? S_TICKET
              : opt.get ? S_WRITE : S_IDLE;
        c->t_phase = now();
    }
    if (c->st == S_TICKET) {
        char buf[4096];
        r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0 || (e = SSL_get_error(c->ssl, r)) != SSL_ERROR_WANT_READ || c->got_ticket) {
            if (!c->got_ticket)
                st.no_ticket++;
            ERR_clear_error();
            c->st = opt.get ? S_WRITE : S_IDLE;
        } else {
            ep_set(c, EPOLLIN, 0);
            return 0;
        }
    }
    if (c->st == S_WRITE) {
        r = SSL_write(c->ssl, request + c->wrote, (int)(sizeof(request) - 1 - c->wrote));
        if (r <= 0) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) { ep_set(c, EPOLLIN, 0); return 0; }
            if (e == SSL_ERROR_WANT_WRITE) { ep_set(c, EPOLLOUT, 0); return 0; }
            note_error("write");
            conn_close(c);
            return 1;
        }
        c->wrote += (size_t)r;
        if (c->wrote < sizeof(request) - 1)
            return conn_step(c);
        c->st = S_READ;
        c->t_phase = now();
    }
    if (c->st == S_READ) {
        char buf[16384];
        for (;;) {
            r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) { ep_set(c, EPOLLIN, 0); return 0; }
                if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
                    /* closed: complete only when the length matched */
                    if (c->want && c->got >= c->want) st.requests++;
                    else st.bad_responses++;
                } else {
                    note_error("read");
                }
                break;
            }
            /* collect the head to find Content-Length, then count the body */
            if (c->want == 0) {
                size_t n = (size_t)r;
                if (n > sizeof(c->head) - 1 - c->headlen)
                    n = sizeof(c->head) - 1 - c->headlen;
                memcpy(c->head + c->headlen, buf, n);
                c->headlen += n;
                c->head[c->headlen] = '\0';
                char *end = strstr(c->head, "\r\n\r\n");
                if (end != NULL) {
                    char *cl = strcasestr(c->head, "\r\ncontent-length:");
                    if (cl == NULL || strncmp(c->head, "HTTP/1.1 200", 12) != 0) {
                        st.bad_responses++;
                        break;
                    }
                    c->want = (size_t)(end + 4 - c->head) + strtoul(cl + 17, NULL, 10);
                    c->got = c->headlen - n + (size_t)r;
                } else if (c->headlen >= sizeof(c->head) - 1) {
                    st.bad_responses++;
                    break;
                }
            } else {
                c->got += (size_t)r;
            }
            if (c->want && c->got >= c->want) {
                st.requests++;
                break;
            }
        }
        c->st = S_IDLE;
    }
    /* S_IDLE: done with this connection unless we are holding it */
    if (opt.hold)
        return 0;
    conn_close(c);
    return 1;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: hsbench -p PORT [-h HOST] [-c CONC] [-d SECONDS] [-v 1.2|1.3]\n"
            "               [-m full|id|ticket] [-g] [-R] [-H IDLE_CONNS] [-G GROUPS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "h:p:c:d:v:m:gRH:G:")) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conc = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'v': opt.version = strcmp(optarg, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION; break;
        case 'm':
            if (strcmp(optarg, "full") == 0) opt.mode = M_FULL;
            else if (strcmp(optarg, "id") == 0) opt.mode = M_ID;
            else if (strcmp(optarg, "ticket") == 0) opt.mode = M_TICKET;
            else usage();
            break;
        case 'g': opt.get = 1; break;
        case 'R': opt.keep_first = 1; break;
        case 'H': opt.hold = atoi(optarg); break;
        case 'G': opt.groups = optarg; break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.conc <= 0 || opt.duration <= 0)
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
        usage();

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, opt.version);
    SSL_CTX_set_max_proto_version(ctx, opt.version);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* the same preference as the servers are given: AES-128-GCM first */
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384");
    if (SSL_CTX_set1_groups_list(ctx, opt.groups) != 1) {
        fprintf(stderr, "hsbench: bad groups list %s\n", opt.groups);
        return 2;
    }
    if (opt.mode == M_ID)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);

    ep = epoll_create1(EPOLL_CLOEXEC);
    int nslots = opt.hold ? opt.hold : opt.conc;
    struct conn *conns = calloc((size_t)nslots, sizeof(*conns));
    struct epoll_event *evs = calloc((size_t)nslots, sizeof(*evs));
    if (conns == NULL || evs == NULL)
        return 1;
    for (int i = 0; i < nslots; i++)
        conns[i].fd = -1;

    /* modes id and ticket: one connection first, not counted, so that
     * every counted handshake has a session to offer */
    if (opt.mode != M_FULL && !opt.hold) {
        struct conn *c = &conns[0];
        double until = now() + 10.0;
        /* TLS 1.3: enough unused tickets for the first wave of connections */
        int want = opt.version == TLS1_3_VERSION && !opt.keep_first ? opt.conc : 1;
        priming = 1;
        for (int tries = 0; tries < 4 * want && now() < until && !stop_flag; tries++) {
            if (current != NULL && (opt.version != TLS1_3_VERSION || opt.keep_first || pool_n >= want))
                break;
            if (conn_start(c) < 0)
                break;
            while (c->fd >= 0 && !stop_flag && now() < until)
                if (epoll_wait(ep, evs, 1, 100) > 0)
                    conn_step(c);
            if (c->fd >= 0)
                conn_close(c);
        }
        priming = 0;
        if (current == NULL)
            fprintf(stderr, "hsbench: the priming connection got no session (%s)\n",
                    st.first_error[0] ? st.first_error : "no error");
        memset(&st, 0, sizeof(st));
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now(), deadline = t0 + opt.duration;
    int started = 0, active = 0, ready_printed = 0;
    double last_check = t0;
    long done_hold = 0;

    for (;;) {
        double t = now();
        if (stop_flag || t >= deadline)
            break;
        /* keep CONC connections in flight (hold mode: until N are up) */
        while (active < opt.conc && (!opt.hold || started < opt.hold)) {
            struct conn *c = &conns[opt.hold ? started : 0];
            if (!opt.hold) {
                /* find a free slot */
                int i;
                for (i = 0; i < nslots && conns[i].fd >= 0; i++)
                    ;
                if (i == nslots)
                    break;
                c = &conns[i];
            }
            if (conn_start(c) < 0) {
                if (opt.hold) {
                    started++;
                    continue;
                }
                break;
            }
            started++;
            active++;
        }
        if (opt.hold && !ready_printed && active == 0 && started >= opt.hold) {
            long open = 0;
            for (int i = 0; i < nslots; i++)
                open += conns[i].fd >= 0;
            printf("ready open=%ld errors=%ld\n", open, st.errors);
            fflush(stdout);
            ready_printed = 1;
        }
        int n = epoll_wait(ep, evs, nslots, 100);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (opt.hold && c->st == S_IDLE) {
                /* the server closed an idle connection (or sent data) */
                char b[256];
                int r = SSL_read(c->ssl, b, sizeof(b));
                if (r <= 0 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
                    conn_close(c);
                    st.timeouts++;
                }
                continue;
            }
            int finished = conn_step(c);
            if (finished)
                active--;
            else if (opt.hold && c->st == S_IDLE) {
                active--;
                done_hold++;
                ep_set(c, EPOLLIN, 0);
            }
        }
        /* per-phase timeout: 5 s without progress, checked twice a second */
        if (now() - last_check > 0.5) {
            double t2 = last_check = now();
            for (int i = 0; i < nslots; i++) {
                struct conn *c = &conns[i];
                if (c->fd >= 0 && c->st != S_IDLE && t2 - c->t_phase > 5.0) {
                    if (c->st == S_TICKET) {
                        st.no_ticket++;
                        c->st = opt.get ? S_WRITE : S_IDLE;
                        if (conn_step(c)) active--;
                        else if (opt.hold && c->st == S_IDLE) { active--; ep_set(c, EPOLLIN, 0); }
                        continue;
                    }
                    st.timeouts++;
                    conn_close(c);
                    active--;
                }
            }
        }
    }
    double elapsed = now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long open = 0;
    for (int i = 0; i < nslots; i++)
        if (conns[i].fd >= 0) {
            open++;
            conns[i].st = S_CONNECT; /* no close_notify on the way out */
            conn_close(&conns[i]);
        }
    (void)done_hold;
    printf("handshakes=%ld resumed=%ld offered=%ld id_sessions=%ld ticket_sessions=%ld "
           "seconds=%.3f rate=%.1f client_cpu=%.3f errors=%ld timeouts=%ld no_ticket=%ld "
           "wrong_version=%ld requests=%ld bad_responses=%ld reused_tickets=%ld open=%ld proto=%s cipher=%s group=%s first_error=%s\n",
           st.handshakes, st.resumed, st.offered, st.id_sessions, st.ticket_sessions,
           elapsed, st.handshakes / elapsed, cpu / elapsed, st.errors, st.timeouts, st.no_ticket,
           st.wrong_version, st.requests, st.bad_responses, st.reused_tickets, open,
           st.proto[0] ? st.proto : "none", st.cipher[0] ? st.cipher : "none",
           st.group[0] ? st.group : "none", st.first_error[0] ? st.first_error : "none");
    if (current != NULL)
        SSL_SESSION_free(current);
    while (pool_n > 0)
        SSL_SESSION_free(pool[--pool_n]);
    SSL_CTX_free(ctx);
    return 0;
}
