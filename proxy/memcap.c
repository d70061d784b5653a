/*
 * memcap: samples /proc/self/statm on the main loop.  Owns two process-wide
 * words (the budget and the flag) that workers only read.
 */
#include "memcap.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

static uint64_t budget;     /* atomic */
static uint64_t resident;   /* atomic: last sample, bytes */
static int over;            /* atomic */
static uv_timer_t timer;
static int timer_running;

/* A burst worth handing memory back after: this many connections, of
 * which at least half have gone.  The trim waits for the workers' buffer
 * pools to give back what the burst left (buf_pool_decay: two seconds).
 * Over budget, trims come a second apart at least: each walks every arena
 * under its lock. */
#define TRIM_MIN_BURST 64
#define TRIM_AFTER_BURST_MS 2500
#define TRIM_MIN_INTERVAL_MS 1000

static memcap_active_fn count_active;
static void *count_ctx;
static uint64_t peak_active;
static uint64_t trim_due_ms;    /* 0: no burst has ended */
static uint64_t last_trim_ms;

static uint64_t sample(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size = 0, rss = 0;
    if (sscanf(buf, "%llu %llu", &size, &rss) != 2)
        return 0;
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Returns free heap pages to the system when a burst of connections has
 * ended, or while over budget, and then the resident size anew. */
static uint64_t give_back(uv_loop_t *loop, uint64_t rss, uint64_t cap, int was_over)
{
    uint64_t active = count_active != NULL ? count_active(count_ctx) : 0;
    if (active > peak_active)
        peak_active = active;
    uint64_t now = uv_now(loop);
    if (peak_active >= TRIM_MIN_BURST && active <= peak_active / 2) {
        peak_active = active;
        trim_due_ms = now + TRIM_AFTER_BURST_MS;
    }
    int burst_over = trim_due_ms != 0 && now >= trim_due_ms;
    int over_budget = cap != 0 && (rss > cap || was_over);
    if (!(burst_over || over_budget) || now - last_trim_ms < TRIM_MIN_INTERVAL_MS)
        return rss;
    last_trim_ms = now;
    trim_due_ms = 0;
#ifdef __GLIBC__
    malloc_trim(0);
    return sample();
#else
    return rss;
#endif
}

static void on_sample(uv_timer_t *t)
{
    uint64_t cap = __atomic_load_n(&budget, __ATOMIC_RELAXED);
    int was = __atomic_load_n(&over, __ATOMIC_RELAXED), now = was;
    uint64_t rss = give_back(t->loop, sample(), cap, was);
    __atomic_store_n(&resident, rss, __ATOMIC_RELAXED);
    if (cap == 0)
        now = 0;
    else if (rss > cap)
        now = 1;
    else if (rss < cap / 10 * 9)
        now = 0;
    if (now != was) {
        __atomic_store_n(&over, now, __ATOMIC_RELAXED);
        if (now)
            log_warn("memory: %llu MiB resident, over max_memory (%llu MiB): refusing new "
                     "connections", (unsigned long long)(rss >> 20), (unsigned long long)(cap >> 20));
        else
            log_info("memory: %llu MiB resident, under max_memory again: accepting",
                     (unsigned long long)(rss >> 20));
    }
}

void memcap_set_budget(uint64_t bytes)
{
    __atomic_store_n(&budget, bytes, __ATOMIC_RELAXED);
    if (bytes == 0)
        __atomic_store_n(&over, 0, __ATOMIC_RELAXED);
}

int memcap_start(uv_loop_t *loop, memcap_active_fn active, void *ctx)
{
    if (timer_running)
        return 0;
    count_active = active;
    count_ctx = ctx;
    uv_timer_init(loop, &timer);
    timer_running = 1;
    on_sample(&timer);
    return uv_timer_start(&timer, on_sample, MEMCAP_SAMPLE_MS, MEMCAP_SAMPLE_MS);
}

void memcap_stop(void)
{
    if (timer_running) {
        uv_close((uv_handle_t *)&timer, NULL);
        timer_running = 0;
    }
}

int memcap_over(void)
{
    return __atomic_load_n(&over, __ATOMIC_RELAXED);
}

uint64_t memcap_resident_now(void)
{
    return sample();
}

uint64_t memcap_resident(void)
{
    return __atomic_load_n(&resident, __ATOMIC_RELAXED);
}

uint64_t memcap_budget(void)
{
    return __atomic_load_n(&budget, __ATOMIC_RELAXED);
}
