/*
 * Unit tests for the output queue over a real socket pair: a write the
 * socket takes at once is reported from outq_report_written and never from
 * inside outq_flush; a write larger than the socket buffer goes out partly at
 * once and partly through uv_write, in order and complete; a released queue
 * is never reported; discarding keeps only what is in flight.  And the
 * chunk pool under it gives back, on decay, what sat unused since the
 * last decay.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "check.h"

struct harness {
    uv_loop_t loop;
    uv_pipe_t pipe;
    int peer;
    struct buf_pool pool;
    struct outq_written written;
    struct outq q;
    int reports;
    int last_status;
    int flush_again; /* the owner's usual reaction: write what is left */
};

static void on_written(struct outq *q, int status)
{
    struct harness *h = (struct harness *)((char *)q - offsetof(struct harness, q));
    h->reports++;
    h->last_status = status;
    if (h->flush_again && status == 0 && q->bytes > 0)
        CHECK_INT(outq_flush(q), 0);
}

static void harness_open(struct harness *h, int sndbuf)
{
    memset(h, 0, sizeof(*h));
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    if (sndbuf > 0) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
    }
    h->peer = sv[1];
    CHECK_INT(uv_loop_init(&h->loop), 0);
    CHECK_INT(uv_pipe_init(&h->loop, &h->pipe, 0), 0);
    CHECK_INT(uv_pipe_open(&h->pipe, sv[0]), 0);
    buf_pool_init(&h->pool, 4096, 64);
    outq_init(&h->q, &h->pool, (uv_stream_t *)&h->pipe, &h->written, on_written);
}

static void harness_close(struct harness *h)
{
    outq_release(&h->q);
    uv_close((uv_handle_t *)&h->pipe, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&h->loop), 0);
    CHECK_INT(h->pool.in_use, 0);
    buf_pool_destroy(&h->pool);
    close(h->peer);
}

/* Reads what the peer has now; returns bytes read. */
static size_t peer_read(struct harness *h, char *dst, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(h->peer, dst + got, cap - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void test_direct_write_reported_later(void)
{
    struct harness h;
    harness_open(&h, 0);
    CHECK_INT(outq_append(&h.q, "hello ", 6), 0);
    CHECK_INT(outq_append(&h.q, "world", 5), 0);
    CHECK_INT(outq_flush(&h.q), 0);
    CHECK_INT(h.q.bytes, 0);
    CHECK_INT(h.q.inflight, 0);
    CHECK_INT(h.pool.in_use, 0);
    CHECK_INT(h.reports, 0);
    CHECK(h.written.head == &h.q);

    /* A second direct write before the report is still one report. */
    CHECK_INT(outq_append(&h.q, "!", 1), 0);
    CHECK_INT(outq_flush(&h.q), 0);
    CHECK_INT(h.reports, 0);

    outq_report_written(&h.written);
    CHECK_INT(h.reports, 1);
    CHECK_INT(h.last_status, 0);
    CHECK(h.written.head == NULL);
    outq_report_written(&h.written);
    CHECK_INT(h.reports, 1);

    char got[32] = {0};
    CHECK_INT(peer_read(&h, got, sizeof(got) - 1), 12);
    CHECK_STR(got, "hello world!");
    harness_close(&h);
}

static void test_released_queue_not_reported(void)
{
    struct harness a, b;
    harness_open(&a, 0);
    harness_open(&b, 0);
    /* Two queues on one list: releasing either leaves the other owed. */
    b.q.written = &a.written;
    CHECK_INT(outq_append(&a.q, "a", 1), 0);
    CHECK_INT(outq_flush(&a.q), 0);
    CHECK_INT(outq_append(&b.q, "b", 1), 0);
    CHECK_INT(outq_flush(&b.q), 0);
    outq_release(&a.q);
    outq_report_written(&a.written);
    CHECK_INT(a.reports, 0);
    CHECK_INT(b.reports, 1);
    CHECK(a.written.head == NULL);

    CHECK_INT(outq_append(&b.q, "c", 1), 0);
    CHECK_INT(outq_flush(&b.q), 0);
    CHECK_INT(outq_append(&a.q, "d", 1), 0);
    CHECK_INT(outq_flush(&a.q), 0);
    outq_release(&b.q);
    outq_report_written(&a.written);
    CHECK_INT(a.reports, 1);
    CHECK_INT(b.reports, 1);
    harness_close(&a);
    b.q.written = &b.written;
    harness_close(&b);
}

#define BIG (1u << 20)

static void fill_pattern(char *p, size_t n, size_t from)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((from + i) * 131u >> 3);
}

static void test_large_write_in_order(void)
{
    struct harness h;
    harness_open(&h, 16384);
    h.flush_again = 1;
    char *src = malloc(BIG), *dst = malloc(BIG);
    fill_pattern(src, BIG, 0);
    /* Appended in odd pieces so chunk boundaries fall mid-piece. */
    for (size_t off = 0; off < BIG; off += 7919)
        CHECK_INT(outq_append(&h.q, src + off, off + 7919 > BIG ? BIG - off : 7919), 0);
    CHECK_INT(outq_flush(&h.q), 0);
    /* The socket took part of it; the rest waits on uv_write. */
    CHECK(h.q.bytes > 0 && h.q.bytes < BIG);
    CHECK(h.q.inflight > 0);
    CHECK(h.written.head == NULL);
    size_t got = peer_read(&h, dst, BIG);
    for (int spins = 0; got < BIG && spins < 200000; spins++) {
        uv_run(&h.loop, UV_RUN_NOWAIT);
        outq_report_written(&h.written);
        got += peer_read(&h, dst + got, BIG - got);
    }
    CHECK_INT(got, BIG);
    CHECK(memcmp(src, dst, BIG) == 0);
    CHECK_INT(h.q.bytes, 0);
    CHECK(h.reports > 0);
    CHECK_INT(h.last_status, 0);
    free(src);
    free(dst);
    harness_close(&h);
}

static void test_discard_keeps_inflight(void)
{
    struct harness h;
    harness_open(&h, 16384);
    char *src = malloc(BIG);
    fill_pattern(src, BIG, 0);
    CHECK_INT(outq_append(&h.q, src, BIG), 0);
    CHECK_INT(outq_flush(&h.q), 0);
    CHECK(h.q.inflight > 0);
    size_t inflight_bytes = 0;
    for (unsigned i = 0; i < h.q.inflight; i++)
        inflight_bytes += h.q.iov[i].len;
    outq_discard(&h.q);
    CHECK_INT(h.q.bytes, inflight_bytes);
    /* The in-flight write still completes and reports. */
    char *dst = malloc(BIG);
    size_t got = 0;
    for (int spins = 0; h.reports == 0 && spins < 200000; spins++) {
        got += peer_read(&h, dst, BIG);
        uv_run(&h.loop, UV_RUN_NOWAIT);
    }
    CHECK_INT(h.reports, 1);
    CHECK_INT(h.q.bytes, 0);
    CHECK_INT(h.pool.in_use, 0);
    free(src);
    free(dst);
    harness_close(&h);
}

static void test_peer_gone_reports_error(void)
{
    struct harness h;
    harness_open(&h, 0);
    close(h.peer);
    h.peer = -1;
    CHECK_INT(outq_append(&h.q, "x", 1), 0);
    int rc = outq_flush(&h.q);
    for (int spins = 0; rc == 0 && h.reports == 0 && spins < 1000; spins++)
        uv_run(&h.loop, UV_RUN_NOWAIT);
    /* Either uv_write refuses at once or its callback reports the error;
     * never a silent success. */
    CHECK(rc < 0 || (h.reports == 1 && h.last_status < 0));
    outq_report_written(&h.written);
    CHECK(rc < 0 || h.reports == 1);
    harness_close(&h);
}

/* A burst of 50 chunks, then steady use of 5: the pool keeps what the
 * steady use takes and gives back the rest within two decays. */
static void test_pool_decay_gives_back_what_a_burst_left(void)
{
    struct buf_pool pool;
    buf_pool_init(&pool, 1024, 64);
    struct buf_chunk *held[50];
    for (int i = 0; i < 50; i++)
        held[i] = buf_chunk_get(&pool);
    for (int i = 0; i < 50; i++)
        buf_chunk_put(&pool, &held[i]);
    CHECK_INT(pool.nfree, 50);
    buf_pool_decay(&pool); /* the burst happened in this interval */
    CHECK_INT(pool.nfree, 50);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5; i++)
            held[i] = buf_chunk_get(&pool);
        for (int i = 0; i < 5; i++)
            buf_chunk_put(&pool, &held[i]);
        buf_pool_decay(&pool);
    }
    CHECK_INT(pool.nfree, 5);
    CHECK_INT(pool.in_use, 0);
    buf_pool_decay(&pool); /* a second with no use at all */
    CHECK_INT(pool.nfree, 0);
    CHECK(pool.free == NULL);
    buf_pool_destroy(&pool);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_direct_write_reported_later();
    test_released_queue_not_reported();
    test_large_write_in_order();
    test_discard_keeps_inflight();
    test_peer_gone_reports_error();
    test_pool_decay_gives_back_what_a_burst_left();
    return check_result();
}
