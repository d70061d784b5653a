/*
 * metrics: the per-worker registry of named counter blocks.  Owns the
 * blocks; never frees one while the worker lives, so pointers handed to a
 * generation stay valid across reloads.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_destroy(struct metrics *m)
{
    while (m->listeners != NULL) {
        struct listener_stats *l = m->listeners;
        m->listeners = l->next;
        free(l);
    }
    pthread_mutex_destroy(&m->lock);
}

struct listener_stats *metrics_listener(struct metrics *m, const char *name)
{
    pthread_mutex_lock(&m->lock);
    struct listener_stats *l = m->listeners, **tail = &m->listeners;
    for (; l != NULL; tail = &l->next, l = l->next)
        if (strcmp(l->name, name) == 0)
            break;
    if (l == NULL && (l = calloc(1, sizeof(*l))) != NULL) {
        snprintf(l->name, sizeof(l->name), "%s", name);
        *tail = l;
    }
    pthread_mutex_unlock(&m->lock);
    return l;
}
