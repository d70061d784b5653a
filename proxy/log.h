/*
 * log: the error log (leveled lines on stderr) and the access log (one line
 * per request, buffered per worker and written whole lines at a time).
 *
 * The error log may be called from any thread; each line is one write(2).
 * The access log file descriptor is global; each worker owns a struct
 * log_buf and nothing else touches it.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
    LOG_ALERT = 0, /* a state that cannot happen: a bug; tests fail on it */
    LOG_ERROR,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

enum log_format {
    LOG_FORMAT_JSON = 0,
    LOG_FORMAT_COMBINED,
};

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_alert(...) log_msg(LOG_ALERT, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                   \
    } while (0)

/*
 * Opens the access log: "stdout", "stderr", a file path (appended to) or NULL
 * for none.  Returns 0 or a negative errno; on failure the previous target
 * stays in use.  Safe to call again to reopen (SIGUSR1).
 */
int log_access_open(const char *target);
int log_access_enabled(void);

/* Writes all of p to fd, through EINTR and short writes: 0, or -1 with
 * errno.  The logs' own writer, for other whole-file writes too. */
int log_write_all(int fd, const char *p, size_t len);

/* A worker's pending access-log lines.  Lines are appended whole. */
struct log_buf {
    size_t len;
    char data[32768];
};

/*
 * Appends one line (without its newline) to buf, flushing first when it
 * would not fit.  Lines longer than the buffer are truncated.
 */
void log_buf_append_line(struct log_buf *buf, const char *line, size_t len);
/* Writes buf out in whole lines; called once per event-loop iteration. */
void log_buf_flush(struct log_buf *buf);

#endif
