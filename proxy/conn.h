/*
 * conn: one client connection, from accept to the last close callback.  Owns
 * the client socket, its timer, its TLS session, the plaintext input buffer
 * and the output queue, and the connection's state machine.  The request
 * and response in flight belong to exchange, the only other module that
 * reads this struct.
 */
#ifndef MOAT_CONN_H
#define MOAT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "buf.h"
#include "deadline.h"

struct gen;
struct listener;
struct worker;
struct exchange;
struct tls_session;

/*
 *   accept
 *     |
 *     v
 *   SNIFF ---- plain HTTP: 400 -------------+
 *     | TLS record                         |
 *     v                                    |
 *   HANDSHAKE ---- error, timeout -------->+
 *     | done                               |
 *     v                                    v
 *   ACTIVE <--> (exchange in flight)     LINGER --- flushed, peer EOF or timeout
 *     |   \                                ^              |
 *     |    +-- 101 --> TUNNEL -------------+              v
 *     +-- idle timeout, close, error ----->+           CLOSED (handles closing; freed
 *                                                       in the last close callback)
 */
enum conn_state {
    CONN_SNIFF = 0,
    CONN_HANDSHAKE,
    CONN_ACTIVE,
    CONN_TUNNEL,
    CONN_LINGER,
    CONN_CLOSED,
};

/* Ownership: allocated by conn_accept(), freed after both handles closed. */
struct conn {
    uv_tcp_t tcp;
    struct deadline timer;
    uv_shutdown_t shutdown_req;
    struct worker *w;
    struct gen *gen;                /* the configuration it started with: one reference */
    size_t lidx;                    /* its listener in gen->cfg */
    unsigned port;                  /* the listener's port */
    struct conn *prev, *next;       /* worker's list */
    enum conn_state state;
    int handles;                    /* open libuv handles */
    int reading;
    int input_blocked;              /* exchange cannot take plaintext now */
    int close_after_flush;
    int shutdown_started;           /* uv_shutdown issued: at most once */
    int eof;                        /* peer closed its side */
    int processing;                 /* inside the input loop */
    int pending_parse;              /* c->in holds unparsed pipelined bytes */
    int ack_due;                    /* conn_ack_soon() is pending */
    uint64_t ack_resume_at;         /* the deadline it stands in for (uv_now ms) */

    struct tls_session *tls;
    struct outq out;
    struct outq_sink cipher_sink;   /* TLS output -> out */
    struct sink plain_sink;         /* plaintext -> TLS */

    uint8_t *spill;                 /* ciphertext read but not consumed (malloc) */
    size_t spill_len;

    char *in;                       /* plaintext input; pool buffer while in use */
    size_t in_len;
    size_t in_cap;

    struct exchange *x;             /* request in flight, or NULL */
    unsigned requests;

    struct sockaddr_storage peer;
    char peer_ip[64];
    uint64_t last_activity;         /* uv_now() */
};

/* A connection accepted (fd) on a TLS listener; conn owns fd from now on. */
void conn_accept(struct listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len);

/* Plaintext for the client goes through this sink (TLS-encrypted). */
struct sink *conn_sink(struct conn *c);
/* Starts sending what is queued; returns 0 or closes the connection. */
int conn_flush(struct conn *c);
/* Bytes queued towards the client and not yet written. */
size_t conn_out_pending(const struct conn *c);
/* Above this the producer stops reading its source. */
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

/* The exchange finished: close (after flushing) or wait for the next
 * request.  May parse pipelined input at once. */
void conn_exchange_done(struct conn *c, int close_after);
/* Stop / resume feeding plaintext to the exchange (backpressure). */
void conn_block_input(struct conn *c);
void conn_unblock_input(struct conn *c);
/* The exchange switched to a tunnel (101). */
void conn_enter_tunnel(struct conn *c);
/* Flush what is queued, then close; for errors after a response. */
void conn_close_after_flush(struct conn *c);
/* Close at once, dropping queued output. */
void conn_abort(struct conn *c);
/* (Re)arms the client timer for ms, or stops it for 0. */
void conn_set_timeout(struct conn *c, uint64_t ms);
/* Linux delays the ACK of what the client sent last by 40 ms, and a
 * client with Nagle on sends nothing more until it comes: when moat has
 * nothing to answer yet, this sends the ACK after a millisecond of
 * silence.  Setting a timeout cancels it (the client has spoken again);
 * at once, it would cost a packet on every connection whose next bytes
 * were about to come anyway. */
void conn_ack_soon(struct conn *c);
/* Graceful shutdown: idle connections close now, busy ones after their
 * exchange. */
void conn_drain(struct conn *c);

/* Drops in[0..n) after the exchange consumed it. */
void conn_consume_input(struct conn *c, size_t from, size_t n);

#endif
