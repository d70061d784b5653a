/*
 * deadline: lazily re-armed timers.  Touches only its own uv_timer_t.
 */
#include "deadline.h"

#include "strutil.h"

static void on_deadline_timer(uv_timer_t *t)
{
    struct deadline *d = container_of(t, struct deadline, timer);
    uint64_t now = uv_now(t->loop);
    d->armed_at = 0;
    if (d->at == 0)
        return;
    if (now < d->at) {
        d->armed_at = d->at;
        uv_timer_start(&d->timer, on_deadline_timer, d->at - now, 0);
        return;
    }
    d->at = 0;
    d->on_due(t);
}

void deadline_init(struct deadline *d, uv_loop_t *loop, uv_timer_cb on_due, void *data)
{
    uv_timer_init(loop, &d->timer);
    d->timer.data = data;
    d->on_due = on_due;
    d->at = 0;
    d->armed_at = 0;
}

void deadline_set(struct deadline *d, uint64_t ms)
{
    if (uv_is_closing((uv_handle_t *)&d->timer))
        return;
    if (ms == 0) {
        d->at = 0; /* a running timer fires, finds nothing due, stops */
        return;
    }
    d->at = uv_now(d->timer.loop) + ms;
    if (d->armed_at != 0 && d->armed_at <= d->at)
        return;
    d->armed_at = d->at;
    uv_timer_start(&d->timer, on_deadline_timer, ms, 0);
}

uv_handle_t *deadline_handle(struct deadline *d)
{
    return (uv_handle_t *)&d->timer;
}
