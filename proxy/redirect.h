/*
 * redirect: plain-HTTP listeners with redirect_to_https.  Each connection
 * reads one request head (strictly checked by http1), answers 308 with the
 * https:// URL of the same host and target, and closes.  Nothing is
 * forwarded anywhere.
 */
#ifndef MOAT_REDIRECT_H
#define MOAT_REDIRECT_H

#include <sys/socket.h>

struct listener;
struct worker;

/* A connection accepted (fd) on a redirect listener; it owns fd now. */
void redirect_accept(struct listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len);
/* Shutdown: close connections still waiting for a request (now: all). */
void redirect_drain(struct worker *w, int now);

#endif
