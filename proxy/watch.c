/*
 * watch: inotify watches on certificate directories, the quiet-period
 * timer and the once-a-second recheck.  Owns its libuv handles; runs on
 * the main loop only.
 */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Symlinks followed from a configured path: certbot's layout takes two. */
#define WATCH_MAX_LINKS 8
#define WATCH_RECHECK_MS 1000

struct watched_dir {
    uv_fs_event_t handle;
    struct watch *w;
    struct watched_dir *next;
    int keep;
    int armed;          /* the inotify watch is on the directory now at path */
    int lost;           /* the directory itself was removed: the kernel dropped the watch */
    dev_t dev;          /* which directory that is */
    ino_t ino;
    char **names;       /* the watched files in it (their last path component) */
    size_t nnames;
    char path[PATH_MAX];
};

struct watch {
    uv_loop_t *loop;
    uv_timer_t quiet;
    uv_timer_t recheck;
    uint64_t first_change_ms; /* of the changes not yet reported; 0: none */
    watch_cb on_change;
    void *arg;
    struct watched_dir *dirs;
    char **files;       /* the configured paths, followed again at each recheck */
    size_t nfiles;
    int rechecking;     /* errors seen again each second go to the debug log */
    int open_timers;    /* freed when both have closed */
};

static void on_quiet(uv_timer_t *t)
{
    struct watch *w = t->data;
    w->first_change_ms = 0;
    w->on_change(w->arg);
}

/* Each change restarts the quiet period, but files that never stop
 * changing still get read WATCH_MAX_WAIT_MS after the first change. */
static void changed(struct watch *w)
{
    uint64_t now = uv_now(w->loop);
    if (w->first_change_ms == 0)
        w->first_change_ms = now;
    uint64_t deadline = w->first_change_ms + WATCH_MAX_WAIT_MS;
    uint64_t wait = now >= deadline ? 0 : deadline - now;
    uv_timer_start(&w->quiet, on_quiet, wait < WATCH_QUIET_MS ? wait : WATCH_QUIET_MS, 0);
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
    (void)events;
    if (status < 0) {
        log_warn("watching %s: %s", d->path, uv_strerror(status));
        return;
    }
    /* An event on the directory itself (libuv names it by its last
     * component): removed or moved away, it takes the watch with it, even
     * if a new directory gets its inode number back. */
    const char *slash = strrchr(d->path, '/');
    if (file != NULL && strcmp(file, slash ? slash + 1 : d->path) == 0)
        d->lost = 1;
    /* Other files may change all the time (an access log written next to
     * the certificate): they must neither reload nor delay a reload. */
    if (!concerns_watched_file(d, file))
        return;
    log_debug("watch: %s/%s changed", d->path, file ? file : "");
    changed(d->w);
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

static void free_strings(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

static int append_copy(char ***list, size_t *n, const char *s)
{
    char **grown = realloc(*list, (*n + 1) * sizeof(char *));
    if (grown == NULL)
        return -1;
    *list = grown;
    if ((grown[*n] = strdup(s)) == NULL)
        return -1;
    (*n)++;
    return 0;
}

static void forget_names(struct watched_dir *d)
{
    free_strings(&d->names, &d->nnames);
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
    return append_copy(&d->names, &d->nnames, name);
}

/*
 * Puts the inotify watch on the directory now at d->path, if it is not
 * there already: after a deploy replaced the directory (rm -rf and a new
 * one, or a new one renamed into place) the old watch sees nothing more.
 * Returns 1 when it moved to another directory, 0 when nothing changed, -1
 * when the directory cannot be watched (a missing one is retried).
 */
static int arm(struct watched_dir *d)
{
    struct stat st;
    int exists = stat(d->path, &st) == 0;
    if (d->armed && !d->lost && exists && st.st_dev == d->dev && st.st_ino == d->ino)
        return 0;
    d->lost = 0;
    int was_armed = d->armed;
    if (d->armed) {
        uv_fs_event_stop(&d->handle);
        d->armed = 0;
    }
    if (!exists) {
        if (was_armed)
            log_warn("watching %s: the directory is gone; watching for it to come back", d->path);
        return was_armed;
    }
    int rc = uv_fs_event_start(&d->handle, on_dir_event, d->path, 0);
    if (rc != 0) {
        if (d->w->rechecking)
            log_debug("cannot watch %s: %s", d->path, uv_strerror(rc));
        else
            log_error("cannot watch %s: %s", d->path, uv_strerror(rc));
        return -1;
    }
    d->armed = 1;
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    return 1;
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
                forget_names(d); /* the first file of this round in it */
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
    int rc = arm(d);
    if (rc < 0 || !d->armed) {
        /* A link may point into a directory that does not exist (yet). */
        if (rc == 0 && !w->rechecking)
            log_error("cannot watch %s: %s", dir, strerror(ENOENT));
        uv_close((uv_handle_t *)&d->handle, on_dir_close);
        return w->rechecking ? 0 : -1;
    }
    d->next = w->dirs;
    w->dirs = d;
    log_info("watching %s for certificate changes", dir);
    return 0;
}

/* Watches file and every link on the way from it to the file it names: a
 * renewal that replaces a link elsewhere (certbot's live/ directory) or
 * rewrites the final file is seen too. */
static int watch_chain(struct watch *w, const char *file)
{
    char cur[PATH_MAX], target[PATH_MAX], dir[PATH_MAX];
    snprintf(cur, sizeof(cur), "%s", file);
    int rc = 0;
    for (int hop = 0; hop <= WATCH_MAX_LINKS; hop++) {
        rc |= watch_file(w, cur);
        ssize_t n = readlink(cur, target, sizeof(target) - 1);
        if (n <= 0)
            break;
        target[n] = '\0';
        if (target[0] == '/') {
            snprintf(cur, sizeof(cur), "%s", target);
        } else {
            dir_of(cur, dir);
            if (snprintf(cur, sizeof(cur), "%s/%s", dir, target) >= (int)sizeof(cur))
                break;
        }
    }
    return rc;
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

/* Follows the configured paths again and re-arms directories that were
 * replaced.  Returns -1 if a directory cannot be watched, else 1 when a
 * watch moved (the files there may be new), 0 when none did. */
static int resync(struct watch *w)
{
    int rc = 0, moved = 0;
    for (size_t i = 0; i < w->nfiles; i++)
        rc |= watch_chain(w, w->files[i]);
    drop_unkept(w);
    for (struct watched_dir *d = w->dirs; d != NULL; d = d->next) {
        int a = arm(d);
        if (a < 0)
            rc = -1;
        moved |= a > 0;
    }
    return rc < 0 ? -1 : moved;
}

static void on_recheck(uv_timer_t *t)
{
    struct watch *w = t->data;
    w->rechecking = 1;
    if (resync(w) > 0)
        changed(w);
    w->rechecking = 0;
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
    uv_timer_init(loop, &w->recheck);
    w->recheck.data = w;
    w->open_timers = 2;
    return w;
}

int watch_apply(struct watch *w, const struct cfg *cfg)
{
    int rc = 0;
    free_strings(&w->files, &w->nfiles);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->has_tls || !l->tls.watch)
            continue;
        for (size_t k = 0; k < l->tls.ncerts; k++) {
            rc |= append_copy(&w->files, &w->nfiles, l->tls.certs[k].cert);
            rc |= append_copy(&w->files, &w->nfiles, l->tls.certs[k].key);
        }
        if (l->tls.has_client_auth)
            rc |= append_copy(&w->files, &w->nfiles, l->tls.client_auth.ca);
    }
    if (resync(w) < 0)
        rc = -1;
    if (w->nfiles > 0)
        uv_timer_start(&w->recheck, on_recheck, WATCH_RECHECK_MS, WATCH_RECHECK_MS);
    else
        uv_timer_stop(&w->recheck);
    return rc;
}

static void on_timer_close(uv_handle_t *h)
{
    struct watch *w = h->data;
    if (--w->open_timers == 0)
        free(w);
}

void watch_stop(struct watch **wp)
{
    struct watch *w = *wp;
    if (w == NULL)
        return;
    *wp = NULL;
    free_strings(&w->files, &w->nfiles);
    drop_unkept(w); /* nothing is kept: every directory closes */
    uv_close((uv_handle_t *)&w->quiet, on_timer_close);
    uv_close((uv_handle_t *)&w->recheck, on_timer_close);
}
