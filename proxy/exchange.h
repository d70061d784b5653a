/*
 * exchange: one request and its response, between a client connection and
 * an upstream connection.  Owns request validation and routing, the
 * upstream choice and retries, the re-serialised request head, the response
 * relay with its framing, WebSocket tunnels, and the access-log line.
 * Reads the client's plaintext from struct conn and writes the client's
 * plaintext through conn_sink(); never touches TLS or the client socket.
 */
#ifndef MOAT_EXCHANGE_H
#define MOAT_EXCHANGE_H

#include <stddef.h>

struct conn;
struct worker;

/*
 * Parses what the client sent (c->in) and moves it on.  Starts an exchange
 * when none is in flight.  May answer errors, finish the exchange and close
 * the connection.
 */
void exchange_on_client_input(struct conn *c);
/* The client's output queue drained below the low-water mark. */
void exchange_on_client_drained(struct conn *c);
/* The client went away or the connection is being torn down: drop the
 * upstream side.  Safe to call with no exchange. */
void exchange_abort(struct conn *c);
/* The request head did not arrive in time (408). */
void exchange_on_header_timeout(struct conn *c);
/* The client's timer ran out mid-exchange: when it owed the rest of its
 * request body, answers 408 and returns 1; otherwise (it stopped reading
 * the response, or moat stopped reading it) returns 0. */
int exchange_on_client_timeout(struct conn *c);
/* Tunnel: bytes from the client for the upstream. */
void exchange_tunnel_to_upstream(struct conn *c, const char *p, size_t n);
/* 1 if the exchange is waiting for the rest of the request head. */
int exchange_reading_head(const struct conn *c);
/* 1 if the request is fully received (the rest of c->in is pipelined). */
int exchange_request_complete(const struct conn *c);

struct gen;
/* Frees the recycled exchanges of a generation. */
void exchange_pool_free(struct gen *g);

#endif
