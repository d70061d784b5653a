/*
 * access: formats one access-log line per request (JSON lines or the
 * combined format) into a worker's log buffer.  Reads the entry and the
 * parsed request; changes nothing.
 */
#ifndef MOAT_ACCESS_H
#define MOAT_ACCESS_H

#include <stdint.h>

#include "config.h"
#include "log.h"

struct http1_msg;

struct access_entry {
    const char *remote;            /* the client's address */
    const char *listener;          /* the listener's name */
    const char *tls;               /* TLS version, or NULL for plain HTTP */
    const struct http1_msg *req;   /* NULL when the head never parsed */
    int status;
    uint64_t bytes;                /* response body bytes sent */
    uint64_t duration_ns;
    const char *const *upstreams;  /* servers tried, in order, as configured */
    unsigned nupstreams;
    const struct cfg_route *route;
};

void access_log_write(struct log_buf *buf, const struct cfg *cfg, const struct access_entry *e);

#endif
