/*
 * listener: binds the listening sockets (main thread) and accepts on them
 * (worker threads).  Hands every accepted socket to conn.
 */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "gen.h"
#include "log.h"
#include "redirect.h"
#include "strutil.h"
#include "worker.h"

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static int bind_one(const struct sockaddr_storage *ss, int reuseport, char *err, size_t errlen,
                    const char *name)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0) {
        snprintf(err, errlen, "listener \"%s\": socket: %s", name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
        snprintf(err, errlen, "listener \"%s\": SO_REUSEPORT: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (ss->ss_family == AF_INET6) {
        /* "[::]:443" means IPv6 and IPv4, as with nginx's default. */
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (bind(fd, (const struct sockaddr *)ss, addr_len(ss)) != 0) {
        char addr[64];
        format_sockaddr((const struct sockaddr *)ss, addr, sizeof(addr));
        snprintf(err, errlen, "listener \"%s\": bind %s: %s", name, addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listener_bind_group(const struct cfg_listener *l, unsigned n, int *fds, unsigned *port,
                        char *err, size_t errlen)
{
    struct sockaddr_storage ss = l->addr;
    if (sockaddr_port((struct sockaddr *)&ss) != 0) {
        /* SO_REUSEPORT would let us share a port another process holds;
         * a probe without it finds out. */
        int probe = bind_one(&ss, 0, err, errlen, l->name);
        if (probe < 0)
            return -1;
        close(probe);
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = bind_one(&ss, 1, err, errlen, l->name);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
        if (i == 0) {
            socklen_t len = sizeof(ss);
            getsockname(fds[0], (struct sockaddr *)&ss, &len);
            *port = sockaddr_port((struct sockaddr *)&ss);
        }
    }
    return 0;
}

int listener_same_socket(const struct cfg_listener *cfg, const char *name, const char *bind)
{
    if (strcmp(cfg->bind, bind) != 0)
        return 0;
    return sockaddr_port((const struct sockaddr *)&cfg->addr) != 0 || strcmp(cfg->name, name) == 0;
}

static void on_listener_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    if (status < 0) {
        /* EMFILE and friends: libuv sheds the connection and retries. */
        log_warn("listener on %s: accept: %s", l->bind, uv_strerror(status));
        return;
    }
    if (l->w->gen->cfg->listeners[l->index].redirect_to_https)
        redirect_accept(l);
    else
        conn_accept(l);
}

struct listener *listener_start(struct worker *w, const struct cfg_listener *cfg, size_t index,
                                int fd, unsigned port, char *err, size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        snprintf(err, errlen, "listener \"%s\": out of memory", cfg->name);
        return NULL;
    }
    l->w = w;
    l->index = index;
    l->port = port;
    snprintf(l->bind, sizeof(l->bind), "%s", cfg->bind);
    snprintf(l->name, sizeof(l->name), "%s", cfg->name);
    uv_tcp_init(&w->loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0)
        close(fd);
    else
        rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_listener_connection);
    if (rc != 0) {
        snprintf(err, errlen, "listener \"%s\": listen: %s", cfg->name, uv_strerror(rc));
        listener_stop(l);
        return NULL;
    }
    return l;
}

static void on_listener_close(uv_handle_t *h)
{
    free(h->data);
}

void listener_stop(struct listener *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->tcp))
        uv_close((uv_handle_t *)&l->tcp, on_listener_close);
}
