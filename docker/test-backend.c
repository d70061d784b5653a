/*
 * test-backend: a tiny plain-HTTP/1.1 app for scripts/test-docker.sh.
 *
 *   test-backend NAME HOST:PORT
 *
 * Answers every request with 200 and a text body: "backend NAME", then the
 * request line and every header exactly as received, so a test can check
 * what moat forwarded (X-Forwarded-Proto: https, ...).  Keep-alive with
 * Content-Length bodies (read and dropped); one process per connection.
 * GET /slow... answers after 2 s (to test draining).
 * Built with `gcc -static` so that it runs in a `FROM scratch` image.
 * Exits 0 on SIGTERM or SIGINT (it is PID 1 in its container).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD 65536

static const char *name;

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The value of header `h` (case-insensitive) in head, or NULL. */
static const char *header(const char *head, const char *h, size_t *len)
{
    size_t hl = strlen(h);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, h, hl) == 0 && p[hl] == ':') {
            const char *v = p + hl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            *len = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
    }
    return NULL;
}

static void serve(int fd)
{
    static char buf[MAX_HEAD + 1];
    size_t have = 0;
    for (;;) {
        char *end;
        buf[have] = '\0';
        while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
            if (have == MAX_HEAD)
                return;
            ssize_t r = read(fd, buf + have, MAX_HEAD - have);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return;
            have += (size_t)r;
            buf[have] = '\0';
        }
        size_t head_len = (size_t)(end - buf) + 4;
        end[2] = '\0'; /* the head, each line ending in CRLF */

        size_t vl = 0;
        const char *v = header(buf, "Content-Length", &vl);
        unsigned long long body = v ? strtoull(v, NULL, 10) : 0;
        int close_after = strstr(buf, " HTTP/1.0\r\n") != NULL;
        v = header(buf, "Connection", &vl);
        if (v != NULL && vl == 5 && strncasecmp(v, "close", 5) == 0)
            close_after = 1;
        if (header(buf, "Transfer-Encoding", &vl) != NULL)
            close_after = 1; /* chunked bodies are not read: answer and close */
        if (strncmp(buf, "GET /slow", 9) == 0)
            sleep(2); /* a request still in flight when the proxy is told to stop */

        char text[MAX_HEAD + 256];
        int tn = snprintf(text, sizeof(text), "backend %s\n%s", name, buf);
        if (tn < 0 || (size_t)tn >= sizeof(text))
            return;
        char resp[MAX_HEAD + 512];
        int rn = snprintf(resp, sizeof(resp),
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                          "X-Backend: %s\r\n%s\r\n%s",
                          tn, name, close_after ? "Connection: close\r\n" : "", text);
        if (rn < 0 || (size_t)rn >= sizeof(resp))
            return;

        /* Drop the body: what is already buffered, then the rest. */
        size_t extra = have - head_len;
        size_t take = extra < body ? extra : (size_t)body;
        body -= take;
        memmove(buf, buf + head_len + take, extra - take);
        have = extra - take;
        while (body > 0) {
            char sink[16384];
            ssize_t r = read(fd, sink, body < sizeof(sink) ? (size_t)body : sizeof(sink));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return;
            body -= (unsigned long long)r;
        }
        if (write_all(fd, resp, (size_t)rn) != 0 || close_after)
            return;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 || strrchr(argv[2], ':') == NULL) {
        fprintf(stderr, "usage: test-backend NAME HOST:PORT\n");
        return 2;
    }
    name = argv[1];
    char host[256];
    const char *colon = strrchr(argv[2], ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - argv[2]), argv[2]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "test-backend: %s is not an IPv4 address\n", host);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 128) != 0) {
        perror("test-backend: listen");
        return 1;
    }
    fprintf(stderr, "test-backend %s listening on %s\n", name, argv[2]);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("test-backend: accept");
            return 1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            signal(SIGTERM, SIG_DFL);
            serve(fd);
            _exit(0);
        }
        close(fd);
    }
}
