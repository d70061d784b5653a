"""Soak: thousands of connections cycling through good requests, bad
requests, aborts at every stage, slow clients, upstream faults, tunnels and
reloads (SIGHUP) must end with the file descriptors moat started with and
a flat RSS (warm-up vs end; not under ASan, see moatlib.SANITIZED)."""
import os
import random
import signal
import socket
import ssl
import threading
import time

from moatlib import (SANITIZED, T, Client, Hang, Raw, Reset, Resp, Upgrade, basic_yaml,
                     client_context, free_port, rss_kib, status_of, wait_for)
from opslib import fd_count, reload_counts, scrape

WARMUP_S = 7
MAIN_S = 20
THREADS = 6


def handler(req):
    t = req.target.split("?")[0]
    if t == "/big":
        return Resp(200, b"B" * (256 << 10))
    if t == "/chunked":
        return Resp(200, b"c" * 20000, chunked=True, chunk_size=3000)
    if t == "/reset":
        return Reset()
    if t == "/malformed":
        return Raw(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n")
    if t == "/truncated":
        return Raw([b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"t" * 100, 0.01],
                   reset=True)
    if t == "/slow":
        return Resp(200, b"slow", delay=0.15)
    if t == "/hang":
        return Hang()
    if t == "/ws":
        return Upgrade(b"hi\n")
    return Resp(200, b"%s %d" % (req.method.encode(), len(req.body)))


class Soak:
    def __init__(self, m, certs):
        self.m, self.certs, self.port = m, certs, m.port()
        self.ctx = client_context(certs)
        self.counts = {}
        self.errors = []
        self.lock = threading.Lock()
        self.hello = None

    def note(self, what, ok=True, detail=None):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            if not ok:
                self.errors.append((what, detail))

    def client(self, timeout=5):
        return Client(self.port, ctx=self.ctx, timeout=timeout)

    # --- scenarios; each uses one connection (or a few) and checks what it can

    def good_keepalive(self, rng):
        with self.client() as c:
            for i in range(rng.randint(1, 6)):
                kind = rng.choice(["get", "post", "chunked", "head", "big", "chunked-resp",
                                   "slow"])
                if kind == "get":
                    r = c.request("GET", "/ok?%d" % i)
                    ok = r.status == 200 and r.body == b"GET 0"
                elif kind == "post":
                    body = os.urandom(rng.randint(0, 50000))
                    r = c.request("POST", "/post", body=body)
                    ok = r.status == 200 and r.body == b"POST %d" % len(body)
                elif kind == "chunked":
                    c.send(b"POST /post HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: "
                           b"chunked\r\n\r\n5;e=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
                    r = c.read_response()
                    ok = r.status == 200 and r.body == b"POST 8"
                elif kind == "head":
                    r = c.request("HEAD", "/ok")
                    ok = r.status == 200 and r.body == b""
                elif kind == "big":
                    r = c.request("GET", "/big")
                    ok = r.status == 200 and len(r.body) == 256 << 10
                elif kind == "chunked-resp":
                    r = c.request("GET", "/chunked")
                    ok = r.status == 200 and r.body == b"c" * 20000
                else:
                    r = c.request("GET", "/slow")
                    ok = r.status == 200
                self.note("good-" + kind, ok, r)

    def pipelined(self, rng):
        n = rng.randint(2, 20)
        with self.client() as c:
            c.send(b"".join(b"GET /ok?p%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i
                            for i in range(n)))
            ok = all(c.read_response().status == 200 for _ in range(n))
        self.note("pipelined", ok)

    def bad_request(self, rng):
        bad = rng.choice([
            b"GET / HTTP/1.1\nHost: localhost\n\n",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: "
            b"chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n",
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n",
            b"GET / HTTP/3.0\r\nHost: localhost\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ])
        with self.client() as c:
            try:
                c.send(bad)
            except (OSError, ssl.SSLError):
                pass
            data = c.read_until_close()
        self.note("bad-request", status_of(data) in (400, 414, 431, 505), data[:100])

    def upstream_fault(self, rng):
        target = rng.choice(["/reset", "/malformed", "/dead/x", "/truncated"])
        with self.client() as c:
            if target == "/truncated":
                c.send(b"GET /truncated HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data = c.read_until_close()
                ok = status_of(data) in (200, 502) and len(data) < 5000
            else:
                r = c.request("POST", target, body=b"x")
                ok = r.status == 502
        self.note("upstream-" + target.strip("/").split("/")[0], ok)

    def abort(self, rng):
        stage = rng.choice(["tcp", "half-hello", "after-handshake", "mid-head", "mid-upload",
                            "mid-download", "waiting", "rst-mid-upload", "chunked-mid-body"])
        if stage in ("tcp", "half-hello"):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=T(5))
            if stage == "half-hello":
                s.sendall(self.hello[:len(self.hello) // 2])
            s.close()
            self.note("abort-" + stage)
            return
        c = self.client()
        try:
            if stage == "mid-head":
                c.send(b"GET /ok HTTP/1.1\r\nHost: local")
            elif stage in ("mid-upload", "rst-mid-upload"):
                c.send(b"POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500000\r\n\r\n"
                       + b"u" * rng.randint(0, 100000))
            elif stage == "chunked-mid-body":
                c.send(b"POST /post HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked"
                       b"\r\n\r\n10\r\n0123456789")
            elif stage == "mid-download":
                c.send(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
                c.sock.recv(rng.randint(1, 5000))
            elif stage == "waiting":
                c.send(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
                time.sleep(0.02)
            if stage.startswith("rst") or rng.random() < 0.3:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  b"\x01\x00\x00\x00\x00\x00\x00\x00")
        finally:
            c.close()
        self.note("abort-" + stage)

    def garbage(self, rng):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=T(5))
        try:
            kind = rng.choice(["random", "plain-http", "bad-record"])
            if kind == "plain-http":
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            elif kind == "random":
                s.sendall(b"\xff" + os.urandom(rng.randint(1, 3000)))
            else:
                s.sendall(b"\x16\x03\x01\x00\x40" + os.urandom(64))
            s.settimeout(T(3))
            try:
                while s.recv(4096):
                    pass
                ok = True
            except ConnectionError:
                ok = True
            except socket.timeout:
                ok = False
        finally:
            s.close()
        self.note("garbage-" + kind, ok)

    def tunnel(self, rng):
        with self.client() as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13"
                   b"\r\n\r\n")
            r = c.read_response()
            ok = r.status == 101
            if ok:
                c.send(b"ping")
                got = bytes(c.buf)
                while b"ping" not in got:
                    d = c.sock.recv(100)
                    if not d:
                        break
                    got += d
                ok = got.endswith(b"hi\nping") or b"ping" in got
        self.note("tunnel", ok)

    SCENARIOS = [("good_keepalive", 10), ("pipelined", 2), ("bad_request", 3),
                 ("upstream_fault", 2), ("abort", 5), ("garbage", 2), ("tunnel", 1)]

    def run(self, seconds, seed):
        names = [n for n, w in self.SCENARIOS for _ in range(w)]
        rng = random.Random(seed)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            name = rng.choice(names)
            try:
                getattr(self, name)(rng)
            except (OSError, EOFError, ssl.SSLError, AssertionError) as e:
                self.note(name, False, repr(e))

    def slow_ones(self, seconds):
        """A few connections at a time that let client_header (1s) and
        client_idle (1s) expire: 408s and idle closes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            cs = []
            for i in range(4):
                try:
                    c = self.client(timeout=4)
                    if i % 2 == 0:
                        c.send(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                    else:
                        c.request("GET", "/ok")
                    cs.append((i, c))
                except (OSError, EOFError, ssl.SSLError) as e:
                    self.note("slow", False, repr(e))
            for i, c in cs:
                try:
                    data = c.read_until_close()
                    self.note("slow-408" if i % 2 == 0 else "slow-idle",
                              status_of(data) == 408 if i % 2 == 0 else data == b"", data[:80])
                except (AssertionError, OSError) as e:
                    self.note("slow", False, repr(e))
                finally:
                    c.close()

    def phase(self, seconds, seed, reloads):
        ts = [threading.Thread(target=self.run, args=(seconds, seed + i))
              for i in range(THREADS)]
        ts.append(threading.Thread(target=self.slow_ones, args=(seconds,)))
        hup = threading.Thread(target=self.reloader, args=(seconds, reloads))
        for t in ts + [hup]:
            t.start()
        for t in ts + [hup]:
            t.join(T(seconds + 30))
            assert not t.is_alive(), "a soak thread is stuck"

    def reloader(self, seconds, out):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(2)
            self.m.signal(signal.SIGHUP)
            out.append(time.monotonic())


def quiesce(m, fds_target=None, timeout=10):
    """Waits until moat holds no client connection, and (if given) its
    descriptors are back to fds_target."""
    wait_for(lambda: scrape(m).value("moat_connections_active") == 0, timeout,
             "no client connections left")
    if fds_target is not None:
        try:
            wait_for(lambda: fd_count(m.proc.pid) <= fds_target, timeout,
                     "descriptors back to %d" % fds_target, interval=0.2)
        except AssertionError:
            fds = sorted(os.readlink("/proc/%d/fd/%s" % (m.proc.pid, f))
                         for f in os.listdir("/proc/%d/fd" % m.proc.pid))
            raise AssertionError("moat holds %d descriptors, started with %d: %r"
                                 % (len(fds), fds_target, fds))


def test_soak(certs, backend, moat_factory):
    backend.handler = handler
    dead = free_port()
    routes = "  - path: /dead\n    upstream: dead\n  - path: /\n    upstream: app\n"
    y = basic_yaml(certs, [backend.addr], workers=2, routes=routes, access="null",
                   upstream_extra="response_timeout: 2s",
                   tls_extra="handshake_timeout: 1s",
                   extra="timeouts:\n  client_header: 1s\n  client_idle: 1s\n"
                         "limits:\n  max_body_bytes: 1m\n"
                         "admin:\n  bind: \"127.0.0.1:0\"\n")
    y = y.replace("log:\n", "  dead:\n    servers: [\"127.0.0.1:%d\"]\nlog:\n" % dead, 1)
    m = moat_factory(y)
    pid = m.proc.pid
    # libuv opens one spare descriptor per event loop with its first
    # stream (/dev/null, its own EMFILE reserve): two worker loops
    fds0 = fd_count(pid) + 2
    soak = Soak(m, certs)
    ctx = client_context(certs)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        ctx.wrap_bio(inc, out, server_hostname="localhost").do_handshake()
    except ssl.SSLWantReadError:
        pass
    soak.hello = out.read()

    reloads = []
    soak.phase(WARMUP_S, 1, reloads)
    quiesce(m, fds0)
    rss_warm = rss_kib(pid)
    total_warm = sum(soak.counts.values())
    soak.phase(MAIN_S, 100, reloads)
    quiesce(m, fds0)
    # pooled upstream connections idle for 4s are closed: the fd count above
    # already includes none of the client side; wait for the pools as well
    rss_end = rss_kib(pid)
    total = sum(soak.counts.values())
    ok_reloads, failed_reloads = reload_counts(m)
    metrics = scrape(m)
    print("connections: %d (warm-up %d); per scenario: %s" % (
        total, total_warm, ", ".join("%s=%d" % kv for kv in sorted(soak.counts.items()))))
    print("descriptors: start %d, end %d; RSS after warm-up %d KiB, at the end %d KiB "
          "(%+d KiB); reloads: %d sent, %d applied, %d failed"
          % (fds0, fd_count(pid), rss_warm, rss_end, rss_end - rss_warm, len(reloads),
             ok_reloads, failed_reloads))
    assert total > 2000, "only %d connections in the soak" % total
    assert not soak.errors, "%d scenario failures, first: %r" % (len(soak.errors),
                                                                 soak.errors[:8])
    assert failed_reloads == 0
    assert ok_reloads >= len(reloads) // 2, (ok_reloads, len(reloads))
    assert metrics.value("moat_connections_active") == 0
    assert m.running()
    if not SANITIZED:
        assert rss_end - rss_warm <= max(2048, rss_warm // 20), \
            "RSS grew from %d to %d KiB between warm-up and the end" % (rss_warm, rss_end)
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/final").status == 200
