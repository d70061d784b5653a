/*
 * watch: inotify watches on certificate directories and the quiet-period
 * timer.  Owns its libuv handles; runs on the main loop only.
 */
#include "watch.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct watched_dir {
    uv_fs_event_t handle;
    struct watch *w;
    struct watched_dir *next;
    int keep;
    char **names;       /* the watched files in it (their last path component) */
    size_t nnames;
    char path[PATH_MAX];
};

struct watch {
    uv_loop_t *loop;
    uv_timer_t quiet;
    uint64_t first_change_ms; /* of the changes not yet reported; 0: none */
    watch_cb on_change;
    void *arg;
    struct watched_dir *dirs;
};

static void on_quiet(uv_timer_t *t)
{
    struct watch *w = t->data;
    w->first_change_ms = 0;
    w->on_change(w->arg);
}

/* 1 if an event on name in d may have changed a watched file: the file
 * itself, or Kubernetes' "..data" link to the Secret's current files. */
static int concerns_watched_file(const struct watched_dir *d, const char *name)
{
    if (name == NULL || strcmp(name, "..data") == 0)
        return 1;
    for (size_t i = 0; i < d->nnames; i++)
        if (strcmp(d->names[i], name) == 0)
            return 1;
    return 0;
}

static void on_dir_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    struct watched_dir *d = h->data;
    struct watch *w = d->w;
    (void)events;
    if (status < 0) {
        log_warn("watching %s: %s", d->path, uv_strerror(status));
        return;
    }
    /* Other files may change all the time (an access log written next to
     * the certificate): they must neither reload nor delay a reload. */
    if (!concerns_watched_file(d, file))
        return;
    log_debug("watch: %s/%s changed", d->path, file ? file : "");
    /* Each change restarts the quiet period, but files that never stop
     * changing still get read after WATCH_MAX_WAIT_MS. */
    uint64_t now = uv_now(w->loop);
    if (w->first_change_ms == 0)
        w->first_change_ms = now;
    uint64_t deadline = w->first_change_ms + WATCH_MAX_WAIT_MS;
    uint64_t wait = now >= deadline ? 0 : deadline - now;
    uv_timer_start(&w->quiet, on_quiet, wait < WATCH_QUIET_MS ? wait : WATCH_QUIET_MS, 0);
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

static void forget_names(struct watched_dir *d)
{
    for (size_t i = 0; i < d->nnames; i++)
        free(d->names[i]);
    free(d->names);
    d->names = NULL;
    d->nnames = 0;
}

static void on_dir_close(uv_handle_t *h)
{
    struct watched_dir *d = h->data;
    forget_names(d);
    free(d);
}

static int add_name(struct watched_dir *d, const char *name)
{
    for (size_t i = 0; i < d->nnames; i++)
        if (strcmp(d->names[i], name) == 0)
            return 0;
    char **names = realloc(d->names, (d->nnames + 1) * sizeof(char *));
    if (names == NULL)
        return -1;
    d->names = names;
    if ((d->names[d->nnames] = strdup(name)) == NULL)
        return -1;
    d->nnames++;
    return 0;
}

/* Watches the directory of file for changes to file. */
static int watch_file(struct watch *w, const char *file)
{
    char dir[PATH_MAX];
    dir_of(file, dir);
    const char *slash = strrchr(file, '/');
    const char *name = slash ? slash + 1 : file;
    for (struct watched_dir *d = w->dirs; d != NULL; d = d->next)
        if (strcmp(d->path, dir) == 0) {
            if (!d->keep)
                forget_names(d); /* the first file of this configuration in it */
            d->keep = 1;
            return add_name(d, name);
        }
    struct watched_dir *d = calloc(1, sizeof(*d));
    if (d == NULL || add_name(d, name) != 0) {
        if (d != NULL)
            forget_names(d);
        free(d);
        return -1;
    }
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
    int rc = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->has_tls || !l->tls.watch)
            continue;
        for (size_t k = 0; k < l->tls.ncerts; k++) {
            rc |= watch_file(w, l->tls.certs[k].cert);
            rc |= watch_file(w, l->tls.certs[k].key);
        }
        if (l->tls.has_client_auth)
            rc |= watch_file(w, l->tls.client_auth.ca);
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
