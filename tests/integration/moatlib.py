"""Harness for moat's integration tests.

Starts the real moat binary on a configuration written by the test, with
listeners on port 0 and --listen-file to learn the bound addresses; runs a
scripted HTTP/1.1 backend on raw sockets that records the exact bytes moat
forwarded; and provides TLS clients (Python ssl, curl, openssl s_client).

Every wait is bounded and scaled by MOAT_TEST_TIMEOUT_SCALE.  Everything
listens on and connects to loopback only.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

SCALE = float(os.environ.get("MOAT_TEST_TIMEOUT_SCALE") or "1")
# Set by scripts/test.sh for the ASan+UBSan run: the allocator's quarantine
# makes RSS meaningless there, so memory-growth checks are skipped.
SANITIZED = os.environ.get("MOAT_TEST_SANITIZED") == "1"
MOAT_BIN = os.environ.get("MOAT_BIN") or "/work/main/build-it/moat"
# Set by scripts/test.sh for its valgrind smoke run: moat runs under
# memcheck, and any error or definite leak makes it exit 99.
VALGRIND = os.environ.get("MOAT_TEST_VALGRIND") == "1"
BAD_LOG = re.compile(r"\[alert\]|AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer")


def T(seconds):
    """A timeout in seconds, scaled for slow machines and sanitizer builds."""
    return seconds * SCALE


def wait_for(pred, timeout, what="condition", interval=0.02):
    """Polls pred() until it returns a true value (returned), at most timeout."""
    deadline = time.monotonic() + T(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (T(timeout), what))
        time.sleep(interval)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def pattern_bytes(n, seed=0):
    """n deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(b"moat-%d" % seed).digest()
    i = 0
    while len(out) < n:
        block = hashlib.sha256(block + i.to_bytes(8, "little")).digest()
        out += block * 64  # 2 KiB per round keeps this fast
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# certificates


def _openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, timeout=T(30),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class KeyDir:
    """A directory where openssl makes ECDSA P-256 keys and certificates."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", name], self.dir)


class Certs(KeyDir):
    """A CA and ECDSA P-256 leaf certificates it signed, in directory d.

    site: CN=site.test, SAN localhost, site.test, 127.0.0.1 (the default one)
    alt:  CN=alt.test,  SAN alt.test, *.wild.test
    other.key: a key that matches neither certificate.
    """

    def __init__(self, d):
        super().__init__(d)
        self.ca = self._path("ca.pem")
        if not os.path.exists(self._path("done")):
            self._generate()
        self.site_cert, self.site_key = self._path("site.pem"), self._path("site.key")
        self.alt_cert, self.alt_key = self._path("alt.pem"), self._path("alt.key")
        self.other_key = self._path("other.key")

    def _leaf(self, name, cn, sans):
        self._key(name + ".key")
        _openssl(["req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn,
                  "-out", name + ".csr"], self.dir)
        with open(self._path(name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n" % sans)
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", "30", "-sha256", "-extfile", name + ".ext",
                  "-out", name + ".pem"], self.dir)

    def _generate(self):
        self._key("ca.key")
        _openssl(["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=moat test CA",
                  "-days", "30", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem"],
                 self.dir)
        self._leaf("site", "site.test", "DNS:localhost,DNS:site.test,IP:127.0.0.1")
        self._leaf("alt", "alt.test", "DNS:alt.test,DNS:*.wild.test")
        self._key("other.key")
        open(self._path("done"), "w").close()


# --------------------------------------------------------------------------
# configuration


def basic_yaml(certs, servers, *, workers=1, tls_extra="", upstream_extra="", extra="",
               routes=None, second_cert=False, access="stdout"):
    """The common configuration: one TLS listener "public" on 127.0.0.1:0,
    every path routed to upstream "app" (servers: list of "host:port").
    tls_extra/upstream_extra are YAML lines placed under tls:/app:, extra
    is appended at the top level."""
    certs_yaml = "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key)
    if second_cert:
        certs_yaml += "        - cert: %s\n          key: %s\n" % (certs.alt_cert, certs.alt_key)
    if routes is None:
        routes = "  - path: /\n    upstream: app\n"
    srv = ", ".join('"%s"' % s for s in servers)
    return ("workers: %d\n"
            "shutdown_timeout: 5s\n"
            "listeners:\n"
            "  - name: public\n"
            "    bind: \"127.0.0.1:0\"\n"
            "    tls:\n"
            "      certificates:\n%s%s"
            "routes:\n%s"
            "upstreams:\n"
            "  app:\n"
            "    servers: [%s]\n%s"
            "log:\n"
            "  access: %s\n"
            "  level: info\n%s") % (workers, certs_yaml, _indent(tls_extra, 6), routes, srv,
                                    _indent(upstream_extra, 4), access, extra)


def _indent(text, n):
    if not text:
        return ""
    return "".join(" " * n + line + "\n" for line in text.strip("\n").split("\n"))


# --------------------------------------------------------------------------
# the moat process


class Moat:
    """One moat process.  start() waits for its --listen-file."""

    def __init__(self, workdir, yaml_text=None, args=None, env=None, listen=True):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "moat.yaml")
        self.listen_file = os.path.join(self.dir, "listen.txt")
        self.out_path = os.path.join(self.dir, "moat.stdout")
        self.err_path = os.path.join(self.dir, "moat.stderr")
        if yaml_text is not None:
            with open(self.config, "w") as f:
                f.write(yaml_text)
        if args is None:
            args = ["-c", self.config]
        self.args = [MOAT_BIN] + list(args)
        if VALGRIND:
            self.args = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                         "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                         "--log-file=" + os.path.join(self.dir, "valgrind.log")] + self.args
        if listen:
            self.args += ["--listen-file", self.listen_file]
        self.env = env
        self.proc = None
        self.addrs = {}
        self.returncode = None

    def start(self, timeout=10, poll=0.02):
        if os.path.exists(self.listen_file):
            os.unlink(self.listen_file)
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=self.dir, stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=self.env)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("moat exited with %s during start-up:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            try:
                with open(self.listen_file) as f:
                    text = f.read()
            except FileNotFoundError:
                return False
            return text if text.endswith("\n") else False

        text = wait_for(ready, timeout, "moat's listen file", interval=poll)
        self.listen_file_seen = time.monotonic()
        for line in text.splitlines():
            name, addr = line.split(" ", 1)
            self.addrs[name] = addr
        # moat writes the file once every listener accepts: no probing.
        return self

    def port(self, name="public"):
        return int(self.addrs[name].rsplit(":", 1)[1])

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=T(timeout))
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait(timeout=T(10))
                self.returncode = None
                self._close_files()
                return None
        self.returncode = self.proc.returncode
        self._close_files()
        return self.returncode

    def _close_files(self):
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def bad_log_lines(self):
        return [l for l in self.stderr().splitlines() if BAD_LOG.search(l)]

    def dump(self):
        print("==== moat %s" % " ".join(self.args))
        print("---- exit status: %s" % self.returncode)
        print("---- stderr:\n" + self.stderr())
        out = self.stdout()
        if len(out) > 20000:
            out = out[:10000] + "\n...\n" + out[-10000:]
        print("---- stdout:\n" + out)
        if VALGRIND:
            try:
                with open(os.path.join(self.dir, "valgrind.log")) as f:
                    print("---- valgrind:\n" + f.read())
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------
# the backend


class BackendRequest:
    def __init__(self, conn_id, head, body, raw):
        self.conn_id = conn_id
        self.raw_head = head
        self.body = body
        self.raw = raw
        lines = head.split(b"\r\n")
        self.request_line = lines[0].decode("latin-1")
        parts = self.request_line.split(" ")
        self.method, self.target, self.version = (parts + ["", "", ""])[:3]
        self.headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            self.headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name):
        v = self.all(name)
        return v[0] if v else None

    def __repr__(self):
        return "<BackendRequest conn=%d %r>" % (self.conn_id, self.raw_head[:200])


class Resp:
    """A scripted response.  chunked: send the body in chunks of chunk_size.
    length=False: neither Content-Length nor chunked (body ends at close).
    delay: seconds before the head; close: close after the response.
    stream=(chunk, count): a chunked body of count copies of chunk, sent one
    at a time and counted in Backend.sent_bytes."""

    def __init__(self, status=200, body=b"", headers=None, reason=None, chunked=False,
                 chunk_size=16384, length=True, delay=0, close=False, body_delay=0,
                 stream=None):
        self.stream = stream
        if stream:
            chunked = True
        self.status, self.body, self.headers = status, body, list(headers or [])
        self.reason = reason or {200: "OK", 201: "Created", 204: "No Content",
                                 304: "Not Modified", 404: "Not Found"}.get(status, "Whatever")
        self.chunked, self.chunk_size, self.length = chunked, chunk_size, length
        self.delay, self.close, self.body_delay = delay, close, body_delay


class Raw:
    """Send these exact bytes, then close unless close=False.  data may be
    a list of byte strings and numbers (seconds to pause in between).
    reset=True ends the connection with a TCP RST after the bytes;
    drain=seconds half-closes it and reads (and drops) what still comes
    for that long before closing, as servers with a lingering close do."""

    def __init__(self, data, close=True, delay=0, reset=False, drain=0):
        self.data, self.close, self.delay, self.reset = data, close, delay, reset
        self.drain = drain


class Reset:
    """Abort the connection with a TCP RST, without a response."""


class Hang:
    """Never answer; keep the connection open until moat closes it or the
    backend stops."""


class Stall:
    """Read nothing more and answer nothing until the backend stops or the
    peer resets (a stuck upstream, for backpressure tests)."""


class Upgrade:
    """Answer 101 Switching Protocols, send greeting, then echo every byte."""

    def __init__(self, greeting=b"hello-from-backend\n"):
        self.greeting = greeting


def default_handler(req):
    return Resp(200, b"%s %s conn=%d\n" % (req.method.encode(), req.target.encode(), req.conn_id),
                headers=[("Content-Type", "text/plain")])


class Backend:
    """A scripted HTTP/1.1 server on 127.0.0.1:0, one thread per connection.

    handler(req) -> Resp | Raw | Reset | Hang | Upgrade.  early(req), when
    set and not None, answers from the head alone.  Records every
    request (self.requests), every connection's raw bytes (self.conn_bytes)
    and the number of connections accepted."""

    def __init__(self, handler=None, send_continue=True, port=0, nagle=False):
        self.handler = handler or default_handler
        self.nagle = nagle  # True: small writes wait for the ACK of the last
        self.early = None  # early(req) -> action answers before the body is read
        self.send_continue = send_continue
        self.requests = []
        self.conn_bytes = []
        self.closed = set()  # ids of connections that ended
        self.sent_bytes = 0  # body bytes sent by Resp(stream=...)
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(512)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def connections(self):
        return len(self.conn_bytes)

    def open_connections(self):
        with self._lock:
            return len(self.conn_bytes) - len(self.closed)

    def total_bytes(self):
        with self._lock:
            return sum(len(b) for b in self.conn_bytes)

    def wait_requests(self, n, timeout=5):
        return wait_for(lambda: len(self.requests) >= n, timeout, "%d backend request(s)" % n)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                cid = len(self.conn_bytes)
                self.conn_bytes.append(bytearray())
                self._socks.append(s)
            t = threading.Thread(target=self._serve, args=(s, cid), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _recv(self, s, cid):
        """Some bytes, or b"" at EOF / stop."""
        while not self._stop.is_set():
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return b""
            with self._lock:
                self.conn_bytes[cid] += d
            return d
        return b""

    def _serve(self, s, cid):
        s.settimeout(0.2)
        if not self.nagle:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    d = self._recv(s, cid)
                    if not d:
                        return
                    buf += d
                end = buf.index(b"\r\n\r\n") + 4
                head = bytes(buf[:end])
                del buf[:end]
                req = BackendRequest(cid, head, b"", b"")
                early = self.early(req) if self.early else None
                if early is not None:
                    # answer from the head alone, leave the body unread, close
                    with self._lock:
                        self.requests.append(req)
                    self._act(s, cid, req, early, buf)
                    return
                if self.send_continue and (req.header("Expect") or "").lower() == "100-continue":
                    self._send(s, b"HTTP/1.1 100 Continue\r\n\r\n")
                body, rawbody = self._read_body(s, cid, req, buf)
                if body is None:
                    return
                req.body, req.raw = body, head + rawbody
                with self._lock:
                    self.requests.append(req)
                action = self.handler(req)
                if not self._act(s, cid, req, action, buf):
                    return
        except Exception as e:  # a broken backend must not pass silently
            if not self._stop.is_set() and not isinstance(e, (ConnectionError, BrokenPipeError)):
                self.errors.append(repr(e))
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self._lock:
                self.closed.add(cid)

    def _need(self, s, cid, buf, n):
        while len(buf) < n:
            d = self._recv(s, cid)
            if not d:
                return False
            buf += d
        return True

    def _read_body(self, s, cid, req, buf):
        te = ",".join(req.all("Transfer-Encoding")).lower()
        if "chunked" in te:
            body, raw = bytearray(), bytearray()
            while True:
                while b"\r\n" not in buf:
                    d = self._recv(s, cid)
                    if not d:
                        return None, None
                    buf += d
                i = buf.index(b"\r\n")
                line = bytes(buf[:i])
                size = int(line.split(b";")[0].strip(), 16)
                raw += buf[:i + 2]
                del buf[:i + 2]
                if size == 0:
                    # trailers until an empty line
                    while True:
                        while b"\r\n" not in buf:
                            d = self._recv(s, cid)
                            if not d:
                                return None, None
                            buf += d
                        i = buf.index(b"\r\n")
                        raw += buf[:i + 2]
                        del buf[:i + 2]
                        if i == 0:
                            return bytes(body), bytes(raw)
                if not self._need(s, cid, buf, size + 2):
                    return None, None
                body += buf[:size]
                raw += buf[:size + 2]
                del buf[:size + 2]
        cl = req.header("Content-Length")
        n = int(cl) if cl is not None else 0
        if not self._need(s, cid, buf, n):
            return None, None
        body = bytes(buf[:n])
        del buf[:n]
        return body, body

    def _act(self, s, cid, req, action, buf):
        """Performs a scripted action; False when the connection is done."""
        if isinstance(action, Reset):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return False
        if isinstance(action, Stall):
            self._stop.wait()
            return False
        if isinstance(action, Hang):
            while self._recv(s, cid):
                pass
            return False
        if isinstance(action, Raw):
            self._sleep(action.delay)
            parts = action.data if isinstance(action.data, list) else [action.data]
            for p in parts:
                if isinstance(p, (int, float)):
                    self._sleep(p)
                else:
                    self._send(s, p)
            if getattr(action, "reset", False):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return False
            if getattr(action, "drain", 0):
                s.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + action.drain
                while time.monotonic() < deadline and self._recv(s, cid):
                    pass
                return False
            return not action.close
        if isinstance(action, Upgrade):
            self._send(s, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n" + action.greeting)
            if buf:
                self._send(s, bytes(buf))
                buf.clear()
            while True:
                d = self._recv(s, cid)
                if not d:
                    return False
                self._send(s, d)
        r = action
        self._sleep(r.delay)
        head = [b"HTTP/1.1 %d %s" % (r.status, r.reason.encode())]
        for n, v in r.headers:
            head.append(b"%s: %s" % (n.encode(), v.encode() if isinstance(v, str) else v))
        no_body = req.method == "HEAD" or r.status in (204, 304) or r.status < 200
        if r.chunked:
            head.append(b"Transfer-Encoding: chunked")
        elif r.length and not any(n.lower() == "content-length" for n, _ in r.headers) \
                and r.status not in (204, 304) and r.status >= 200:
            head.append(b"Content-Length: %d" % len(r.body))
        if r.close:
            head.append(b"Connection: close")
        head = b"\r\n".join(head) + b"\r\n\r\n"
        if r.stream and not no_body:
            self._send(s, head)
            chunk, count = r.stream
            for _ in range(count):
                self._send(s, b"%x\r\n%s\r\n" % (len(chunk), chunk))
                with self._lock:
                    self.sent_bytes += len(chunk)
            self._send(s, b"0\r\n\r\n")
            return not r.close
        if not no_body and r.body and not r.chunked and not r.body_delay and len(r.body) < 65536:
            self._send(s, head + r.body)
        elif not no_body and r.body:
            self._send(s, head)
            self._sleep(r.body_delay)
            if r.chunked:
                for i in range(0, len(r.body), r.chunk_size):
                    part = r.body[i:i + r.chunk_size]
                    self._send(s, b"%x\r\n%s\r\n" % (len(part), part))
            else:
                self._send(s, r.body)
        else:
            self._send(s, head)
        if r.chunked and not no_body:
            self._send(s, b"0\r\n\r\n")
        return not (r.close or not r.length
                    or (req.header("Connection") or "").lower() == "close")

    def _send(self, s, data):
        """sendall that waits out backpressure (the socket has a short
        timeout for polling) until the backend stops."""
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise ConnectionError("backend stopping")
            try:
                n = s.send(view)
            except socket.timeout:
                continue
            view = view[n:]

    def _sleep(self, secs):
        if secs:
            self._stop.wait(secs)

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + T(10)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in threads if t.is_alive()]
        assert not alive, "backend threads did not stop: %r" % alive


def free_port():
    """A loopback TCP port on which nobody listens (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------
# clients


def tls_get(port, ctx, session=None, sni="localhost", path=b"/"):
    """One TLS connection with one GET that must answer 200; returns
    (session_reused, session).  The response is read to the end so that
    TLS 1.3 tickets are received."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=T(5))
    with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        return s.session_reused, s.session


def client_context(certs, minv=None, maxv=None, alpn=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(certs.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class Response:
    def __init__(self, status, reason, version, headers, body, interim):
        self.status, self.reason, self.version = status, reason, version
        self.headers, self.body, self.interim = headers, body, interim

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name):
        v = self.all(name)
        return v[0] if v else None

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                        self.body[:200])


class Client:
    """An HTTP/1.1 client over one TLS (or plain, tls=False) connection."""

    def __init__(self, port, certs=None, sni="localhost", ctx=None, timeout=5, tls=True,
                 host="127.0.0.1"):
        self.timeout = T(timeout)
        raw = socket.create_connection((host, port), timeout=self.timeout)
        if tls:
            ctx = ctx or client_context(certs)
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        else:
            self.sock = raw
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def read_response(self, method="GET", interim_ok=True):
        """Reads one response (skipping 1xx except 101); the body is framed
        by HEAD/status, Content-Length, chunked, or the connection close."""
        interim = []
        while True:
            line = self._line().decode("latin-1")
            version, status, reason = (line.split(" ", 2) + ["", ""])[:3]
            status = int(status)
            headers = []
            while True:
                h = self._line()
                if not h:
                    break
                n, _, v = h.partition(b":")
                headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
            if 100 <= status < 200 and status != 101 and interim_ok:
                interim.append(status)
                continue
            break
        r = Response(status, reason, version, headers, b"", interim)
        te = ",".join(r.all("Transfer-Encoding")).lower()
        if method == "HEAD" or status in (204, 304) or status < 200:
            return r
        if "chunked" in te:
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n", "bad chunk end"
            r.body = bytes(body)
        elif r.header("Content-Length") is not None:
            r.body = self._exact(int(r.header("Content-Length")))
        else:
            r.body = self.read_until_close()
        return r

    def request(self, method="GET", target="/", headers=None, body=None, host="localhost"):
        head = ["%s %s HTTP/1.1" % (method, target)]
        if host is not None:
            head.append("Host: %s" % host)
        for n, v in headers or []:
            head.append("%s: %s" % (n, v))
        if body is not None and not any(n.lower() in ("content-length", "transfer-encoding")
                                        for n, _ in headers or []):
            head.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        return self.read_response(method)

    def read_until_close(self):
        """Everything until EOF (clean or reset) within the timeout."""
        out = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + self.timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, EOFError):
                return out
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs; got %r"
                                     % (self.timeout, out[:300]))
            if not d:
                return out
            out += d

    def closed_within(self, timeout):
        """True if the peer closes within timeout (any unread data dropped)."""
        deadline = time.monotonic() + T(timeout)
        self.buf.clear()
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, EOFError, OSError) as e:
                if isinstance(e, socket.timeout):
                    return False
                return True
            if not d:
                return True
        return False


def raw_exchange(port, certs, data, timeout=5, sni="localhost"):
    """Sends data on a new TLS connection and returns all it gets until the
    close (fails if the connection is still open after timeout)."""
    with Client(port, certs, sni=sni, timeout=timeout) as c:
        c.send(data)
        return c.read_until_close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def curl(*args, certs=None, timeout=20, check=False):
    """Runs curl; returns CompletedProcess (text)."""
    cmd = ["curl", "-sS", "--max-time", str(T(timeout))]
    if certs is not None:
        cmd += ["--cacert", certs.ca]
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, timeout=T(timeout) + 10, check=check)


def s_client(port, *args, data=b"", timeout=10, servername="localhost"):
    """Runs openssl s_client against 127.0.0.1:port; returns CompletedProcess."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    if servername:
        cmd += ["-servername", servername]
    cmd += list(args)
    return subprocess.run(cmd, input=data, capture_output=True, timeout=T(timeout))


def have(tool):
    return shutil.which(tool) is not None


def rss_kib(pid):
    """Resident memory of process pid, KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)
