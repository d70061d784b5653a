"""The daemon's life: the embedded default, graceful stop on SIGTERM/SIGINT,
the listen file, and the access log (JSON, combined, file + SIGUSR1)."""
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time

import pytest

from moatlib import (MOAT_BIN, T, Client, Hang, Moat, Resp, basic_yaml, client_context, curl,
                     wait_for)


def port_busy(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


# ---------------------------------------------------------------- embedded default

@pytest.fixture
def default_moat(tmp_path, moat_factory):
    if os.path.exists("/etc/moat/moat.yaml"):
        pytest.skip("/etc/moat/moat.yaml exists: moat would not use its embedded default")
    if port_busy(8443):
        pytest.skip("127.0.0.1:8443 is busy")
    env = {k: v for k, v in os.environ.items() if k != "MOAT_CONFIG"}
    m = moat_factory(None, args=[], env=env)
    return m


def test_embedded_default_serves_self_signed_localhost(default_moat):
    m = default_moat
    assert m.addrs == {"default": "127.0.0.1:8443"}, m.addrs
    assert len([l for l in m.stderr().splitlines() if "8443" in l and "8080" in l]) == 1, \
        m.stderr()
    ctx = client_context(None, verify=False)
    with socket.create_connection(("127.0.0.1", 8443), timeout=T(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-ext",
                        "subjectAltName"], input=pem.encode(), capture_output=True,
                       timeout=T(10))
    text = r.stdout.decode()
    assert re.search(r"subject=.*CN\s*=\s*localhost", text), text
    assert "DNS:localhost" in text, text
    # self-signed: issuer == subject
    subj = re.search(r"subject=(.*)", text).group(1)
    assert re.search(r"issuer=(.*)", text).group(1) == subj, text
    # and a client that trusts this very certificate verifies it for "localhost"
    vctx = ssl.create_default_context(cadata=pem)
    with socket.create_connection(("127.0.0.1", 8443), timeout=T(5)) as raw:
        with vctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")


def test_embedded_default_forwards_to_8080(tmp_path, moat_factory, backend_factory):
    if os.path.exists("/etc/moat/moat.yaml"):
        pytest.skip("/etc/moat/moat.yaml exists")
    if port_busy(8443):
        pytest.skip("127.0.0.1:8443 is busy")
    if port_busy(8080):
        pytest.skip("127.0.0.1:8080 is busy (cannot put a recording backend there)")
    b = backend_factory(port=8080)
    env = {k: v for k, v in os.environ.items() if k != "MOAT_CONFIG"}
    moat_factory(None, args=[], env=env)
    r = curl("-k", "https://localhost:8443/embedded", "--resolve", "localhost:8443:127.0.0.1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"GET /embedded")
    assert b.requests[0].header("X-Forwarded-Proto") == "https"


# ---------------------------------------------------------------- signals

def request_in_background(m, certs, path):
    """A GET on its own connection in a thread: (thread, result), result
    holding "resp" or "error" once the thread ends."""
    result = {}

    def client():
        try:
            with Client(m.port(), certs, timeout=10) as c:
                result["resp"] = c.request("GET", path)
        except Exception as e:  # reported by the caller
            result["error"] = e

    t = threading.Thread(target=client, daemon=True)
    t.start()
    return t, result


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_lets_in_flight_request_finish(certs, backend, moat_factory, signum):
    body = b"slow but complete\n" * 1000
    backend.handler = lambda req: Resp(200, body, delay=1.5 if req.target == "/slow" else 0)
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    t, result = request_in_background(m, certs, "/slow")
    try:
        backend.wait_requests(1)
        m.signal(signum)
        time.sleep(T(0.3))
        # no longer accepting: a new connection is refused or not served
        refused = False
        try:
            with Client(m.port(), certs, timeout=2) as c:
                r = c.request("GET", "/new")
                refused = r.status >= 500
        except (OSError, EOFError, ssl.SSLError):
            refused = True
        assert refused, "moat accepted and served a new request while stopping"
    finally:
        t.join(T(10))
    assert not t.is_alive()
    assert "error" not in result, result
    assert result["resp"].status == 200
    assert result["resp"].body == body
    assert m.wait(5) == 0, m.stderr()
    assert [q.target for q in backend.requests] == ["/slow"]


@pytest.mark.parametrize("second", [signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM,
                                    signal.SIGINT], ids=["HUP", "USR1", "TERM", "INT"])
def test_a_second_signal_does_not_cut_the_drain(certs, backend, moat_factory, second):
    # A logrotate SIGUSR1, a certificate hook's SIGHUP or an impatient second
    # SIGTERM during the drain: the in-flight request still finishes and moat
    # exits 0 (it used to die of the signal's default action).
    backend.handler = lambda req: Resp(200, b"done\n", delay=1.0)
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    t, result = request_in_background(m, certs, "/slow")
    backend.wait_requests(1)
    m.signal(signal.SIGTERM)
    time.sleep(T(0.2))
    m.signal(second)
    t.join(T(10))
    assert "error" not in result, result
    assert result["resp"].status == 200 and result["resp"].body == b"done\n"
    assert m.wait(5) == 0, m.stderr()


def test_a_reload_cut_short_by_sigterm_is_not_called_applied(certs, backend, moat_factory):
    # SIGHUP, SIGHUP, SIGTERM at once: whatever the reloads reach, nothing
    # says one was applied after the stop began, and the second SIGHUP says
    # it waits for the first.
    m = moat_factory(basic_yaml(certs, [backend.addr], workers=2))
    for sig in (signal.SIGHUP, signal.SIGHUP, signal.SIGTERM):
        m.signal(sig)
    assert m.wait(10) == 0, m.stderr()
    err = m.stderr()
    assert "applied by every worker" not in err[err.index("Terminated: stopping"):], err
    hups = re.findall(r"SIGHUP: reloading \S+( once the reload under way is applied)?$", err, re.M)
    assert len(hups) <= 2, err  # libuv may deliver SIGTERM first
    if len(hups) == 2 and "reload 3: configuration loaded" not in err:
        assert hups[1], err


def test_sigterm_closes_idle_keepalive_connections_promptly(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace("shutdown_timeout: 5s",
                                                               "shutdown_timeout: 20s"))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200
        start = time.monotonic()
        m.signal(signal.SIGTERM)
        assert c.closed_within(3), "idle connection kept open after SIGTERM"
        assert m.wait(3) == 0, m.stderr()
        assert time.monotonic() - start < T(3)


def test_sigterm_does_not_wait_for_idle_clients_that_do_not_read(certs, backend, moat_factory):
    """A pooled keep-alive connection nobody reads answers neither the
    close_notify nor the FIN: moat used to linger 2 s for its EOF before
    exiting.  It closes as soon as its FIN is out when nothing is unread."""
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace("shutdown_timeout: 5s",
                                                               "shutdown_timeout: 20s"))
    clients = [Client(m.port(), certs) for _ in range(5)]
    try:
        for c in clients:
            assert c.request("GET", "/").status == 200
        start = time.monotonic()
        m.signal(signal.SIGTERM)
        assert m.wait(5) == 0, m.stderr()
        assert time.monotonic() - start < T(1.0), time.monotonic() - start
        for c in clients:
            assert c.closed_within(1), "connection not closed by moat's exit"
    finally:
        for c in clients:
            c.close()


def test_shutdown_timeout_bounds_a_stuck_request(certs, backend, moat_factory):
    backend.handler = lambda req: Hang()
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace("shutdown_timeout: 5s",
                                                               "shutdown_timeout: 1s"))
    with Client(m.port(), certs, timeout=10) as c:
        c.send(b"GET /stuck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        backend.wait_requests(1)
        start = time.monotonic()
        m.signal(signal.SIGTERM)
        assert m.wait(5) == 0, m.stderr()
        assert 0.8 <= time.monotonic() - start <= T(3)


# ---------------------------------------------------------------- listen file

def test_listen_file_written_only_when_ready(tmp_path, certs, backend):
    """moat's usage says the file is written "once listening": a connection
    made right after the file appears must be accepted, and a SIGTERM sent
    right then must be a graceful stop (exit 0), not death by signal."""
    refused, bad_exit = [], []
    n = 40
    for i in range(n):
        m = Moat(tmp_path / ("m%d" % i), basic_yaml(certs, [backend.addr], workers=1))
        try:
            m.start(poll=0.0005)
            try:
                socket.create_connection(("127.0.0.1", m.port()), timeout=T(2)).close()
            except ConnectionRefusedError:
                refused.append(i)
        finally:
            rc = m.stop()
            if rc != 0:
                bad_exit.append(rc)
            assert not m.bad_log_lines(), m.stderr()
    assert not refused and not bad_exit, (
        "right after the listen file appeared: %d/%d connections refused; %d/%d SIGTERMs "
        "ended moat with status %r" % (len(refused), n, len(bad_exit), n, sorted(set(bad_exit))))


def test_an_unwritable_listen_file_is_a_start_up_error(tmp_path, certs, backend):
    # It used to read "Terminated: stopping", as if someone had sent SIGTERM.
    conf = tmp_path / "moat.yaml"
    conf.write_text(basic_yaml(certs, [backend.addr]))
    path = str(tmp_path / "missing" / "listen.txt")
    r = subprocess.run([MOAT_BIN, "-c", str(conf), "--listen-file", path], capture_output=True,
                       text=True, timeout=T(30))
    assert r.returncode == 1, r
    assert "[error] --listen-file %s: cannot write %s.tmp: No such file or directory" % (path, path) \
        in r.stderr, r.stderr
    assert "[error] start-up failed: exiting" in r.stderr and "Terminated" not in r.stderr, r.stderr


def test_a_listen_file_that_is_a_symlink_or_fifo_is_written_through(tmp_path, certs, backend):
    # The lines went to PATH.tmp, renamed over PATH: the link, the FIFO (and,
    # as root, /dev/stdout) was replaced by a regular file.
    conf = tmp_path / "moat.yaml"
    conf.write_text(basic_yaml(certs, [backend.addr]))
    target, link, fifo = tmp_path / "target", tmp_path / "link", tmp_path / "fifo"
    target.write_text("old\n")
    os.symlink(str(target), str(link))
    os.mkfifo(str(fifo))
    got = []
    reader = threading.Thread(target=lambda: got.append(open(str(fifo)).read()), daemon=True)
    reader.start()
    for path, written in ((link, lambda: target.read_text() != "old\n"), (fifo, lambda: got)):
        p = subprocess.Popen([MOAT_BIN, "-c", str(conf), "--listen-file", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: written() or p.poll() is not None, 10, "the listen file")
        finally:
            p.terminate()
            assert p.wait(T(10)) == 0
    assert os.path.islink(str(link)) and stat.S_ISFIFO(os.stat(str(fifo)).st_mode)
    assert re.match(r"public 127\.0\.0\.1:\d+\n$", target.read_text()), target.read_text()
    assert got and re.match(r"public 127\.0\.0\.1:\d+\n$", got[0]), got
    # a FIFO nobody reads is an error, not a start-up that waits for a reader
    r = subprocess.run([MOAT_BIN, "-c", str(conf), "--listen-file", str(fifo)],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "a FIFO with no reader" in r.stderr, r


@pytest.mark.parametrize("path", ["-", "/dev/stdout"])
def test_a_listen_file_on_stdout_keeps_what_stdout_holds(tmp_path, certs, backend, path):
    # /dev/stdout was opened again with O_TRUNC, which emptied the file
    # stdout was redirected to; "-" made a file named "-".
    conf = tmp_path / "moat.yaml"
    conf.write_text(basic_yaml(certs, [backend.addr], access="null"))
    out = tmp_path / "out.txt"
    out.write_text("earlier line\n")
    with open(str(out), "a") as f:
        p = subprocess.Popen([MOAT_BIN, "-c", str(conf), "--listen-file", path], stdout=f,
                             stderr=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        wait_for(lambda: "public 127.0.0.1:" in out.read_text() or p.poll() is not None, 10,
                 "the listen lines on stdout")
    finally:
        p.terminate()
        assert p.wait(T(10)) == 0
    assert re.match(r"earlier line\npublic 127\.0\.0\.1:\d+\n", out.read_text()), out.read_text()
    assert not (tmp_path / "-").exists()


def test_ipv6_listener(tmp_path, certs, backend, moat_factory):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace('"127.0.0.1:0"', '"[::1]:0"'))
    assert re.match(r"\[::1\]:\d+$", m.addrs["public"]), m.addrs
    r = curl("-g", "https://[::1]:%d/six" % m.port(), "-k")
    assert r.returncode == 0, r.stderr
    assert backend.requests[0].header("X-Forwarded-For") == "::1"


# ---------------------------------------------------------------- access log

def access_lines(m):
    # Only whole lines: a read may land while moat is still writing one.
    out = m.stdout()
    return [l for l in out[:out.rfind("\n") + 1].splitlines() if l.strip()]


def test_access_log_json(certs, backend, moat_factory):
    backend.handler = lambda req: Resp(201 if req.method == "POST" else 200, b"abc")
    m = moat_factory(basic_yaml(certs, [backend.addr],
                                routes="  - path: /app/\n    upstream: app\n"))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/app/x?q=\"1\"", headers=[("User-Agent", "tester/1.0 \"q\"")]) \
            .status == 200
        assert c.request("POST", "/app/p", body=b"12345").status == 201
        assert c.request("GET", "/nothing").status == 404
        assert c.request("HEAD", "/app/h").status == 200
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    with Client(m.port(), certs) as c:
        c.send(raw)
        c.read_until_close()
    lines = wait_for(lambda: len(access_lines(m)) >= 5 and access_lines(m), 5, "5 log lines")
    recs = [json.loads(l) for l in lines]  # every line is valid JSON
    assert [r["status"] for r in recs] == [200, 201, 404, 200, 400], recs
    first = recs[0]
    assert first["method"] == "GET" and first["uri"] == "/app/x?q=\"1\""
    assert first["remote"] == "127.0.0.1"
    assert first["listener"] == "public"
    assert first["proto"] == "HTTP/1.1"
    assert first["host"] == "localhost"
    assert first["bytes"] == 3
    assert first["upstream_name"] == "app" and first["upstream"] == backend.addr
    assert first["tls"] in ("TLSv1.2", "TLSv1.3")
    assert first["user_agent"] == "tester/1.0 \"q\""
    assert isinstance(first["duration"], (int, float)) and 0 <= first["duration"] < 5
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$", first["time"])
    assert recs[1]["method"] == "POST"
    assert recs[3]["bytes"] == 0


def test_access_log_combined(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], extra="  format: combined\n"))
    r = curl("-A", "agent/2", "-e", "https://ref.test/", "https://localhost:%d/c?x=1" % m.port(),
             "--resolve", "localhost:%d:127.0.0.1" % m.port(), certs=certs)
    assert r.returncode == 0, r.stderr
    line = wait_for(lambda: access_lines(m), 5, "a log line")[0]
    pat = (r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
           r'"GET /c\?x=1 HTTP/1\.1" 200 %d "https://ref\.test/" "agent/2"$' % len(r.stdout))
    assert re.match(pat, line), line
    # nginx's $remote_user: the Basic user name as sent (escaped), else "-"
    for user, logged in (("bob", "bob"), ("b b\"", "b\\x20b\\x22")):
        r = curl("-u", "%s:pw" % user, "https://localhost:%d/u" % m.port(),
                 "--resolve", "localhost:%d:127.0.0.1" % m.port(), certs=certs)
        assert r.returncode == 0, r.stderr
        line = wait_for(lambda: [l for l in access_lines(m) if '"GET /u ' in l], 5, "a line")[-1]
        assert line.startswith("127.0.0.1 - %s [" % logged), line
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/bearer", headers=[("Authorization", "Bearer x")]).status == 200
    line = wait_for(lambda: [l for l in access_lines(m) if "/bearer" in l], 5, "a line")[0]
    assert line.startswith("127.0.0.1 - - ["), line


def test_sidecar_log_variables(certs, backend, moat_factory):
    # The sidecar mode used to have no way to the log level or format short
    # of writing a YAML file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    env.update(MOAT_UPSTREAM=backend.addr, MOAT_LISTEN="127.0.0.1:0", MOAT_ADMIN="off",
               MOAT_CERT=certs.site_cert, MOAT_KEY=certs.site_key,
               MOAT_LOG_FORMAT="combined", MOAT_LOG_LEVEL="debug")
    m = moat_factory(None, args=[], env=env)
    with Client(m.port("https"), certs) as c:
        assert c.request("GET", "/side").status == 200
    line = wait_for(lambda: access_lines(m), 5, "a log line")[0]
    assert re.match(r'^127\.0\.0\.1 - - \[[^]]+\] "GET /side HTTP/1\.1" 200 \d+ "-" "-"$', line), line
    assert "[debug]" in m.stderr(), m.stderr()
    for name, value, message in (("MOAT_LOG_LEVEL", "loud", '"loud" is not one of "error"'),
                                 ("MOAT_LOG_FORMAT", "clf", '"clf" is not one of "json"')):
        r = subprocess.run([MOAT_BIN, "-t"], env=dict(env, **{name: value}), capture_output=True,
                           text=True, timeout=T(30))
        assert r.returncode == 1 and ("%s: " % name) in r.stderr and message in r.stderr, r


@pytest.mark.parametrize("fmt", ["json", "combined"])
def test_access_log_lines_stay_whole_with_hostile_long_values(certs, backend, moat_factory, fmt):
    # A long target full of characters JSON escapes used to fill the 8 KiB
    # line: it ended inside the "uri" string, without status or "}".
    m = moat_factory(basic_yaml(certs, [backend.addr], extra="  format: %s\n" % fmt))
    target = "/x?" + '"\\' * 3000
    ua, ref = '"' * 4000, "\\" * 4000
    with Client(m.port(), certs) as c:
        r = c.request("GET", target, headers=[("User-Agent", ua), ("Referer", ref)])
        assert r.status == 200
    line = wait_for(lambda: access_lines(m), 5, "a log line")[0]
    assert len(line) <= 16384
    if fmt == "json":
        rec = json.loads(line)
        assert rec["status"] == 200 and rec["upstream"] == backend.addr, rec
        assert rec["tls"] in ("TLSv1.2", "TLSv1.3")
        assert 1000 < len(rec["uri"]) < len(target) and target.startswith(rec["uri"])
        assert 500 < len(rec["user_agent"]) < len(ua) and 500 < len(rec["referer"]) < len(ref)
    else:
        pat = r'^127\.0\.0\.1 - - \[[^]]+\] "GET /x\?(\\x22\\x5C)+" 200 \d+ "(\\x5C)+" "(\\x22)+"$'
        assert re.match(pat, line), line[:200] + " ... " + line[-200:]


def test_access_log_file_and_sigusr1_reopen(tmp_path, certs, backend, moat_factory):
    log = tmp_path / "access.log"
    m = moat_factory(basic_yaml(certs, [backend.addr], access=str(log)))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/one").status == 200
    wait_for(lambda: log.exists() and "/one" in log.read_text(), 5, "/one in the log file")
    os.rename(log, tmp_path / "access.log.1")
    m.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists(), 5, "the reopened log file")
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/two").status == 200
    wait_for(lambda: "/two" in log.read_text(), 5, "/two in the new log file")
    assert "/two" not in (tmp_path / "access.log.1").read_text()
    assert m.stdout() == ""
