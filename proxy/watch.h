/*
 * watch: reloads when certificate files change (tls.watch).  Watches the
 * directories that hold the certificate and key files of listeners that
 * ask for it, on the main loop, so that in-place rewrites, renames over a
 * file and Kubernetes' swap of a mounted Secret's "..data" symlink are all
 * seen; changes to other files there are not.  Follows symlinks from the
 * configured paths (certbot's live/ and archive/), and once a second puts
 * the watches back on directories a deploy replaced.  Calls back once no
 * change happened for WATCH_QUIET_MS, so that a pair being written is read
 * only when both files are done, and at the latest WATCH_MAX_WAIT_MS after
 * the first change.
 */
#ifndef MOAT_WATCH_H
#define MOAT_WATCH_H

#include <uv.h>

#include "config.h"

#define WATCH_QUIET_MS 500
#define WATCH_MAX_WAIT_MS 5000

struct watch;

typedef void (*watch_cb)(void *arg);

struct watch *watch_new(uv_loop_t *loop, watch_cb on_change, void *arg);
/* Watches what cfg asks for (and stops watching the rest).  Returns 0, or
 * -1 after logging the directories that could not be watched. */
int watch_apply(struct watch *w, const struct cfg *cfg);
void watch_stop(struct watch **w);

#endif
