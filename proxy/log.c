/*
 * log: error log on stderr and the access log.  Owns the access-log file
 * descriptor; never touches a connection.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = LOG_INFO;
/* -1: no access log.  Workers read it without a lock, so a descriptor they
 * may hold is never closed: reopening a file dup2()s the new file onto the
 * same number, which atomically redirects writes already racing with it. */
static _Atomic int access_fd = -1;
/* The descriptor moat opened for a file target, kept for reuse; -1 if none. */
static _Atomic int access_fd_owned = -1;

static const char *const level_names[] = {"alert", "error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, level);
}

int log_enabled(enum log_level level)
{
    return (int)level <= atomic_load(&log_level);
}

int log_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ [%s] ",
                          (int)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)log_write_all(STDERR_FILENO, line, n); /* nowhere left to report a failure */
}

int log_access_open(const char *target)
{
    int fd;
    if (target == NULL) {
        atomic_store(&access_fd, -1);
        return 0;
    }
    if (strcmp(target, "stdout") == 0) {
        atomic_store(&access_fd, STDOUT_FILENO);
        return 0;
    }
    if (strcmp(target, "stderr") == 0) {
        atomic_store(&access_fd, STDERR_FILENO);
        return 0;
    }
    /* Non-blocking only to open: a FIFO nobody reads fails (ENXIO) instead
     * of hanging the main thread on SIGUSR1; writes stay as they were. */
    fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0)
        return -errno;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    int owned = atomic_load(&access_fd_owned);
    if (owned >= 0) {
        /* Reopen (logrotate) or a new path: keep the descriptor number. */
        if (dup3(fd, owned, O_CLOEXEC) < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
        close(fd);
        fd = owned;
    } else {
        atomic_store(&access_fd_owned, fd);
    }
    atomic_store(&access_fd, fd);
    return 0;
}

int log_access_enabled(void)
{
    return atomic_load(&access_fd) >= 0;
}

void log_buf_flush(struct log_buf *buf)
{
    if (buf->len == 0)
        return;
    int fd = atomic_load(&access_fd);
    if (fd >= 0) {
        /* Pipes guarantee atomic writes only up to PIPE_BUF: cut at line
         * ends so that lines from different workers never interleave.  A
         * line longer than that goes out in one write of its own, which a
         * file opened for appending still takes whole. */
        size_t off = 0;
        while (off < buf->len) {
            size_t chunk = buf->len - off;
            if (chunk > 4096) {
                chunk = 4096;
                while (chunk > 0 && buf->data[off + chunk - 1] != '\n')
                    chunk--;
                if (chunk == 0) {
                    const char *nl = memchr(buf->data + off, '\n', buf->len - off);
                    chunk = nl ? (size_t)(nl - (buf->data + off)) + 1 : buf->len - off;
                }
            }
            (void)log_write_all(fd, buf->data + off, chunk);
            off += chunk;
        }
    }
    buf->len = 0;
}

void log_buf_append_line(struct log_buf *buf, const char *line, size_t len)
{
    if (len > sizeof(buf->data) - 1)
        len = sizeof(buf->data) - 1;
    if (buf->len + len + 1 > sizeof(buf->data))
        log_buf_flush(buf);
    memcpy(buf->data + buf->len, line, len);
    buf->len += len;
    buf->data[buf->len++] = '\n';
}
