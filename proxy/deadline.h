/*
 * deadline: a libuv timer for a deadline that moves often.  Moving a
 * deadline later (once per request or per read, the common case) only
 * records it; the timer fires at the earlier time, sees the deadline is
 * not due and re-arms itself.  Only moving it earlier touches the loop's
 * timer heap.  Owned by the struct that embeds it; close with
 * deadline_handle().
 */
#ifndef MOAT_DEADLINE_H
#define MOAT_DEADLINE_H

#include <stdint.h>

#include <uv.h>

struct deadline {
    uv_timer_t timer;       /* timer.data belongs to the owner */
    uv_timer_cb on_due;
    uint64_t at;            /* uv_now() ms when due; 0: none */
    uint64_t armed_at;      /* when the timer fires; 0: not running */
};

void deadline_init(struct deadline *d, uv_loop_t *loop, uv_timer_cb on_due, void *data);
/* Due in ms from now; 0 clears it. */
void deadline_set(struct deadline *d, uint64_t ms);
uv_handle_t *deadline_handle(struct deadline *d);

#endif
