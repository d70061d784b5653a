/*
 * watch: inotify watches on certificate directories and the quiet-period
 * timer.  Owns its libuv handles; runs on the main loop only.
 */
#include "watch.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct watched_dir {
    uv_fs_event_t handle;
    struct watch *w;
    struct watched_dir *next;
    int keep;
    char path[PATH_MAX];
};

struct watch {
    uv_loop_t *loop;
    uv_timer_t quiet;
    watch_cb on_change;
    void *arg;
    struct watched_dir *dirs;
};

static void on_quiet(uv_timer_t *t)
{
    struct watch *w = t->data;
    w->on_change(w->arg);
}

static void on_dir_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    struct watched_dir *d = h->data;
    (void)events;
    if (status < 0) {
        log_warn("watching %s: %s", d->path, uv_strerror(status));
        return;
    }
    log_debug("watch: %s/%s changed", d->path, file ? file : "");
    /* Every event restarts the quiet period. */
    uv_timer_start(&d->w->quiet, on_quiet, WATCH_QUIET_MS, 0);
}

static void dir_of(const char *file, char *out)
{
    const char *slash = strrchr(file, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - file);
    if (slash == file)
        n = 1;
    if (n == 0) {
        strcpy(out, ".");
        return;
    }
    if (n >= PATH_MAX)
        n = PATH_MAX - 1;
    memcpy(out, file, n);
    out[n] = '\0';
}

static void on_dir_close(uv_handle_t *h)
{
    free(h->data);
}

static int watch_dir(struct watch *w, const char *dir)
{
    for (struct watched_dir *d = w->dirs; d != NULL; d = d->next)
        if (strcmp(d->path, dir) == 0) {
            d->keep = 1;
            return 0;
        }
    struct watched_dir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -1;
    strcpy(d->path, dir);
    d->w = w;
    d->keep = 1;
    uv_fs_event_init(w->loop, &d->handle);
    d->handle.data = d;
    int rc = uv_fs_event_start(&d->handle, on_dir_event, d->path, 0);
    if (rc != 0) {
        log_error("cannot watch %s: %s", dir, uv_strerror(rc));
        uv_close((uv_handle_t *)&d->handle, on_dir_close);
        return -1;
    }
    d->next = w->dirs;
    w->dirs = d;
    log_info("watching %s for certificate changes", dir);
    return 0;
}

struct watch *watch_new(uv_loop_t *loop, watch_cb on_change, void *arg)
{
    struct watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->on_change = on_change;
    w->arg = arg;
    uv_timer_init(loop, &w->quiet);
    w->quiet.data = w;
    return w;
}

static void drop_unkept(struct watch *w)
{
    struct watched_dir **link = &w->dirs;
    while (*link != NULL) {
        struct watched_dir *d = *link;
        if (d->keep) {
            d->keep = 0;
            link = &d->next;
            continue;
        }
        *link = d->next;
        uv_close((uv_handle_t *)&d->handle, on_dir_close);
    }
}

int watch_apply(struct watch *w, const struct cfg *cfg)
{
    char dir[PATH_MAX];
    int rc = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->has_tls || !l->tls.watch)
            continue;
        for (size_t k = 0; k < l->tls.ncerts; k++) {
            dir_of(l->tls.certs[k].cert, dir);
            rc |= watch_dir(w, dir);
            dir_of(l->tls.certs[k].key, dir);
            rc |= watch_dir(w, dir);
        }
        if (l->tls.has_client_auth) {
            dir_of(l->tls.client_auth.ca, dir);
            rc |= watch_dir(w, dir);
        }
    }
    drop_unkept(w);
    return rc;
}

static void on_watch_close(uv_handle_t *h)
{
    free(h->data);
}

void watch_stop(struct watch **wp)
{
    struct watch *w = *wp;
    if (w == NULL)
        return;
    *wp = NULL;
    drop_unkept(w); /* nothing is kept: every directory closes */
    uv_close((uv_handle_t *)&w->quiet, on_watch_close);
}
