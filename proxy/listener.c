/*
 * listener: binds the listening sockets (main thread) and accepts on them
 * (worker threads).  Hands every accepted socket to conn.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
    /* Accepted sockets inherit TCP_NODELAY from the listening socket (Linux
     * copies it): one setsockopt per listener instead of one per connection.
     * Every TLS record moat writes is complete, so Nagle only adds delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
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

static void hand_over(struct listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    if (l->w->gen->cfg->listeners[l->index].redirect_to_https)
        redirect_accept(l, fd, peer, peer_len);
    else
        conn_accept(l, fd, peer, peer_len);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void on_pause_done(uv_timer_t *t)
{
    struct listener *l = t->data;
    struct worker *w = l->w;
    if (w->reserve_fd < 0)
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uv_poll_start(&l->poll, UV_READABLE, on_poll);
}

/* Out of descriptors: close what waits in the backlog, so that the socket
 * stops being readable, or pause when not even that is possible. */
static void shed(struct listener *l, int err)
{
    struct worker *w = l->w;
    uint64_t now = uv_now(&w->loop);
    if (w->reserve_fd >= 0) {
        close(w->reserve_fd);
        w->reserve_fd = -1;
        int fd;
        while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            close(fd);
            l->shed++;
        }
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (w->reserve_fd < 0) {
        uv_poll_stop(&l->poll);
        uv_timer_start(&l->pause, on_pause_done, LISTENER_PAUSE_MS, 0);
    }
    if (now - l->last_log_ms >= 1000 || l->last_log_ms == 0) {
        log_warn("listener on %s: %s: %llu connection(s) closed unserved", l->bind, strerror(err),
                 (unsigned long long)l->shed);
        l->shed = 0;
        l->last_log_ms = now;
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    (void)events;
    if (status < 0)
        return;
    /* A bounded batch: other sockets of the loop get their turn. */
    for (int i = 0; i < 64; i++) {
        /* The peer's address comes with the accept: no getpeername. */
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            hand_over(l, fd, (const struct sockaddr *)&peer, peer_len);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            shed(l, errno);
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_warn("listener on %s: accept: %s", l->bind, strerror(errno));
        return;
    }
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
    l->fd = fd;
    l->index = index;
    l->port = port;
    snprintf(l->bind, sizeof(l->bind), "%s", cfg->bind);
    snprintf(l->name, sizeof(l->name), "%s", cfg->name);
    uv_timer_init(&w->loop, &l->pause);
    l->pause.data = l;
    l->handles = 1;
    int rc = listen(fd, 4096) == 0 ? uv_poll_init(&w->loop, &l->poll, fd) : -errno;
    if (rc == 0) {
        l->handles++;
        l->poll.data = l;
        rc = uv_poll_start(&l->poll, UV_READABLE, on_poll);
    }
    if (rc != 0) {
        snprintf(err, errlen, "listener \"%s\": listen: %s", cfg->name, uv_strerror(rc));
        listener_stop(l);
        return NULL;
    }
    return l;
}

static void on_listener_close(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (--l->handles > 0)
        return;
    close(l->fd);
    free(l);
}

void listener_stop(struct listener *l)
{
    if (uv_is_closing((uv_handle_t *)&l->pause))
        return;
    uv_close((uv_handle_t *)&l->pause, on_listener_close);
    if (l->handles > 1)
        uv_close((uv_handle_t *)&l->poll, on_listener_close);
}
