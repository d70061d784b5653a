"""The admin listener: GET /metrics in strict Prometheus text format whose
counters move as clients work, GET /healthz, everything else 404, one
response per connection.  (/healthz during a drain: test_reload.py.)"""
import calendar
import signal
import socket
import subprocess
import ssl
import time

import pytest

from moatlib import (SANITIZED, VALGRIND, T, Client, Hang, Raw, Reset, Resp, basic_yaml,
                     client_context, free_port, have, tls_get, wait_for)
from opslib import (ADMIN, _family_of, CertMaker, header, http_get, parse_prometheus, scrape, sighup,
                    tls_yaml, write_atomic)

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

# family -> (type, label names of every sample)
REQUIRED = {
    "moat_connections_active": ("gauge", set()),
    "moat_connections_total": ("counter", {"listener"}),
    "moat_connections_refused_total": ("counter", {"listener", "reason"}),
    "moat_memory_resident_bytes": ("gauge", set()),
    "moat_memory_budget_bytes": ("gauge", set()),
    "moat_tls_handshakes_total": ("counter", {"listener", "version", "resumed"}),
    "moat_tls_handshake_errors_total": ("counter", {"listener"}),
    "moat_session_cache_hits_total": ("counter", set()),
    "moat_session_cache_misses_total": ("counter", set()),
    "moat_session_cache_entries": ("gauge", set()),
    "moat_session_cache_evictions_total": ("counter", set()),
    "moat_session_tickets_total": ("counter", {"listener", "result"}),
    "moat_requests_total": ("counter", {"route", "code"}),
    "moat_request_duration_seconds": ("histogram", set()),
    "moat_upstream_errors_total": ("counter", {"upstream", "kind"}),
    "moat_reloads_total": ("counter", {"result"}),
    "moat_certificate_expiry_timestamp_seconds": ("gauge", {"listener", "name"}),
}


def handler(req):
    if "/code/" in req.target:
        return Resp(int(req.target.rsplit("/", 1)[1]), b"x")
    if req.target.endswith("/slow"):
        return Resp(200, b"slow", delay=0.3)
    return Resp(200, b"ok")


ROUTES = ("  - host: api.example.com\n    path: /v1/\n    upstream: app\n"
          "  - host: \"*.example.com\"\n    path: /\n    upstream: app\n"
          "  - path: /app/\n    upstream: app\n")


def admin_yaml(certs, servers, **kw):
    kw.setdefault("extra", "")
    kw["extra"] = ADMIN + kw["extra"]
    return basic_yaml(certs, servers, **kw)


def eventually(m, check, timeout=3):
    """Scrapes until check(metrics) stops raising AssertionError."""
    last = [None]

    def ok():
        mt = scrape(m)
        try:
            check(mt)
            return True
        except AssertionError as e:
            last[0] = e
            return False
    try:
        wait_for(ok, timeout, "metrics", interval=0.05)
    except AssertionError:
        raise AssertionError("metrics never satisfied the check: %s" % last[0]) from None


# ---------------------------------------------------------------- the parser itself

@pytest.mark.parametrize("text", [
    "# TYPE a counter\na 1",                                   # no final newline
    "a 1\n",                                                   # no TYPE
    "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n",          # duplicate sample
    "# TYPE a counter\na{x=1} 1\n",                            # unquoted label
    "# TYPE a counter\na -1\n",                                # negative counter
    "# TYPE a counter\n# TYPE b gauge\nb 1\na 1\nb 2\n",        # interleaved
    "# TYPE a wibble\na 1\n",                                  # unknown type
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 2\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
    "# TYPE a counter\na 1 2 3\n",
])
def test_the_strict_parser_refuses(text):
    with pytest.raises(AssertionError):
        parse_prometheus(text)


def test_the_strict_parser_accepts():
    mt = parse_prometheus('# HELP a A "thing".\n# TYPE a counter\na{x="q\\"\\\\\\n",y="2"} 3\n'
                          "# TYPE g gauge\ng -1.5e3\n"
                          '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n'
                          "h_sum 0.7\nh_count 2\n")
    assert mt.value("a", x='q"\\\n', y=2) == 3 and mt.value("g") == -1500


# ---------------------------------------------------------------- endpoints

def test_metrics_is_prometheus_text_with_every_family(certs, backend, moat_factory):
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    assert "@admin" in m.addrs and m.addrs["@admin"].startswith("127.0.0.1:"), m.addrs
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200
    status, headers, body = http_get(m.port("@admin"), "/metrics")
    assert status == 200
    ctype = header(headers, "Content-Type") or ""
    assert ctype.replace(" ", "").startswith("text/plain;version=0.0.4"), ctype
    cl = header(headers, "Content-Length")
    assert cl is None or int(cl) == len(body)
    mt = parse_prometheus(body.decode("utf-8"))
    for name, (typ, labels) in REQUIRED.items():
        assert name in mt.families, "no %s family" % name
        assert mt.families[name]["type"] == typ, (name, mt.families[name]["type"])
        assert mt.families[name]["help"], "no HELP for %s" % name
        for sname, l, _ in mt.families[name]["samples"]:
            got = set(l) - {"le"} if typ == "histogram" else set(l)
            assert got == labels, "%s has labels %r, wanted %r" % (sname, l, labels)
    assert mt.families["moat_connections_active"]["samples"], "no active-connections sample"
    for result in ("success", "failure"):
        assert mt.has("moat_reloads_total", result=result)
    for v in ("TLSv1.2", "TLSv1.3"):
        for r in ("true", "false"):
            for k in mt.find("moat_tls_handshakes_total", version=v, resumed=r):
                assert k[0]["listener"] == "public"
    assert mt.value("moat_tls_handshakes_total", listener="public", version="TLSv1.3",
                    resumed="false") + mt.value("moat_tls_handshakes_total", listener="public",
                                                version="TLSv1.2", resumed="false") == 1
    for l, _ in mt.find("moat_tls_handshakes_total"):
        assert l["version"] in ("TLSv1.2", "TLSv1.3") and l["resumed"] in ("true", "false"), l
    for l, _ in mt.find("moat_session_tickets_total"):
        assert l["result"] in ("issued", "accepted", "rejected"), l
    for l, _ in mt.find("moat_upstream_errors_total"):
        assert l["kind"] in ("connect", "timeout", "reset", "malformed", "down"), l


def test_healthz_other_paths_and_one_response_per_connection(certs, backend, moat_factory):
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    port = m.port("@admin")
    status, headers, body = http_get(port, "/healthz")
    assert status == 200 and body.strip() == b"ok", (status, body)
    for path in ("/", "/metricsx", "/healthz/more", "/nothing", "/../metrics"):
        assert http_get(port, path)[0] == 404, path
    # two pipelined requests: one answer, then the close (http_get waits for it)
    raw = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
    status, _, body = http_get(port, "/healthz", raw=raw)
    assert status == 200 and b"HTTP/1.1" not in body, body[:200]


def test_other_methods_get_405_with_allow(certs, backend, moat_factory):
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    port = m.port("@admin")
    for method in ("POST", "DELETE", "OPTIONS"):
        raw = ("%s /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" % method).encode()
        status, headers, _ = http_get(port, "/metrics", raw=raw)
        assert status == 405, method
        assert header(headers, "Allow") == "GET, HEAD", headers


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03" + b"\x00" * 40,   # a TLS hello
    b"GET /metrics\r\n",                                              # HTTP/0.9
    b"\x00\xff\xfe garbage",
    b"GET /metrics HTTP/9.9\r\n",
    b"get /metrics HTTP/1.1\r\n",
], ids=["tls", "http-0.9", "binary", "bad-version", "lowercase-method"])
def test_what_can_never_be_a_request_is_answered_at_once(certs, backend, moat_factory, raw):
    """Without waiting for a blank line that a TLS client or an HTTP/0.9
    one never sends: the connection used to hang until the 5 s timeout."""
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    t0 = time.monotonic()
    status, _, _ = http_get(m.port("@admin"), "/metrics", raw=raw, timeout=4)
    assert status == 400
    assert time.monotonic() - t0 < T(1.0)


def test_request_counters_routes_codes_and_histogram(certs, backend, moat_factory):
    backend.handler = handler
    m = moat_factory(admin_yaml(certs, [backend.addr], routes=ROUTES))
    m0 = scrape(m)
    with Client(m.port(), certs) as c:
        for _ in range(3):
            assert c.request("GET", "/app/x").status == 200
        assert c.request("GET", "/app/code/503").status == 503
        assert c.request("GET", "/app/code/404").status == 404
        assert c.request("GET", "/v1/users", host="api.example.com").status == 200
        assert c.request("GET", "/other", host="www.example.com").status == 200
        assert c.request("GET", "/zzz").status == 404  # no route
        assert c.request("GET", "/app/slow").status == 200
    n = 9

    def check(mt):
        def d(route, code):
            return (mt.value("moat_requests_total", route=route, code=code)
                    - m0.value("moat_requests_total", route=route, code=code))
        assert d("/app/", 200) == 4
        assert d("/app/", 503) == 1
        assert d("/app/", 404) == 1
        assert d("api.example.com/v1/", 200) == 1
        assert d("*.example.com/", 200) == 1
        assert d("", 404) == 1
        assert mt.sum("moat_requests_total") - m0.sum("moat_requests_total") == n
        count = mt.value("moat_request_duration_seconds_count")
        assert count - m0.value("moat_request_duration_seconds_count") == n
        assert mt.value("moat_request_duration_seconds_bucket", le="+Inf") == count
        assert mt.value("moat_request_duration_seconds_sum") - \
            m0.value("moat_request_duration_seconds_sum") >= 0.3
        fast = [(float(l["le"]), v) for l, v in mt.find("moat_request_duration_seconds_bucket")
                if l["le"] != "+Inf" and float(l["le"]) < 0.3]
        assert fast, "no bucket below 0.3 s"
        assert max(fast)[1] <= count - 1, "the 0.3 s request counted in a faster bucket"
        assert mt.value("moat_connections_total", listener="public") - \
            m0.value("moat_connections_total", listener="public") == 1
    eventually(m, check)


@pytest.mark.parametrize("workers", [1, 4])
def test_connections_active_and_refused(certs, backend, moat_factory, workers):
    # One cap for the process: with 4 workers, 3 clients are served wherever
    # the kernel puts them, and the fourth is refused.
    m = moat_factory(admin_yaml(certs, [backend.addr], workers=workers,
                                extra="limits:\n  max_connections: 3\n"))
    clients = [Client(m.port(), certs) for _ in range(3)]
    try:
        for c in clients:
            assert c.request("GET", "/").status == 200
        eventually(m, lambda mt: _eq(mt.value("moat_connections_active"), 3))
        # the fourth is refused (closed at once) and counted
        try:
            with Client(m.port(), certs, timeout=3) as c:
                c.request("GET", "/")
                pytest.fail("a connection past max_connections was served")
        except (OSError, EOFError, ssl.SSLError):
            pass
        eventually(m, lambda mt: _eq(mt.value("moat_connections_refused_total",
                                              listener="public", reason="max_connections"), 1))
        # and said in the error log, once a minute at most (nginx and HAProxy log it)
        for _ in range(3):
            try:
                with Client(m.port(), certs, timeout=3) as c:
                    c.request("GET", "/")
            except (OSError, EOFError, ssl.SSLError):
                pass
        eventually(m, lambda mt: _eq(mt.value("moat_connections_refused_total",
                                              listener="public", reason="max_connections"), 4))
        logged = m.stderr().count("[warn] max_connections (3) reached: refusing new connections")
        assert 1 <= logged <= workers, m.stderr()
    finally:
        for c in clients:
            c.close()
    eventually(m, lambda mt: _eq(mt.value("moat_connections_active"), 0))


def test_memory_budget_refuses_new_connections(certs, backend, moat_factory):
    # A budget below what moat already holds: every new connection is
    # refused, and counted, until a reload lifts it.
    m = moat_factory(admin_yaml(certs, [backend.addr], extra="limits:\n  max_memory: 1m\n"))
    eventually(m, lambda mt: _eq(mt.value("moat_memory_budget_bytes"), 1024 * 1024))
    try:
        with Client(m.port(), certs, timeout=3) as c:
            c.request("GET", "/")
            pytest.fail("a connection over max_memory was served")
    except (OSError, EOFError, ssl.SSLError):
        pass
    eventually(m, lambda mt: _eq(mt.value("moat_connections_refused_total",
                                          listener="public", reason="max_memory"), 1))
    assert "over max_memory" in m.stderr()
    # while every connection is refused, a load balancer must not send any
    assert http_get(m.port("@admin"), "/healthz")[::2] == (503, b"over max_memory\n")
    with open(m.config) as f:
        text = f.read()
    with open(m.config, "w") as f:
        f.write(text.replace("max_memory: 1m", "max_memory: 1g"))
    m.signal(signal.SIGHUP)
    wait_for(lambda: "reload 2 applied" in m.stderr(), 10, "the reload")
    wait_for(lambda: "under max_memory again" in m.stderr(), 5, "the budget to lift")
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200
    assert http_get(m.port("@admin"), "/healthz")[::2] == (200, b"ok\n")


@pytest.mark.skipif(not have("wrk"), reason="wrk not installed")
@pytest.mark.skipif(SANITIZED or VALGRIND, reason="ASan and valgrind keep freed memory")
def test_memory_is_given_back_after_a_burst(certs, backend, moat_factory):
    # The allocator keeps what moat frees resident.  A burst that crossed
    # the budget must not leave moat over it, refusing everyone, once the
    # burst is gone.
    body = b"x" * 20000
    backend.handler = lambda req: Resp(200, body)
    m = moat_factory(admin_yaml(certs, [backend.addr], workers=2))
    idle = scrape(m).value("moat_memory_resident_bytes")
    budget = int(idle) // 1024 + 8192  # KiB: 8 MiB above the idle footprint
    with open(m.config) as f:
        text = f.read()
    with open(m.config, "w") as f:
        f.write(text + "limits:\n  max_memory: %dk\n" % budget)
    assert sighup(m) == "ok"
    r = subprocess.run(["wrk", "-t2", "-c400", "-d3s", "--timeout", "5s",
                        "https://127.0.0.1:%d/burst" % m.port()], capture_output=True,
                       timeout=T(60))
    assert r.returncode == 0, r
    assert "over max_memory" in m.stderr(), "the burst did not cross the budget"
    eventually(m, lambda mt: _lt(mt.value("moat_memory_resident_bytes"), budget * 1024 * 0.9),
               timeout=5)
    assert http_get(m.port("@admin"), "/healthz")[::2] == (200, b"ok\n")
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200


def _lt(a, b):
    assert a < b, (a, b)


def _eq(a, b):
    assert a == b, (a, b)




def test_handshake_session_and_ticket_counters(certs, backend, moat_factory):
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    port = m.port()
    m0 = scrape(m)
    # TLS 1.2 with session IDs (no tickets): one full, two resumed from the cache
    ctx12 = client_context(certs, minv=TLS12, maxv=TLS12)
    ctx12.options |= ssl.OP_NO_TICKET
    _, sess = tls_get(port, ctx12)
    assert tls_get(port, ctx12, sess)[0] and tls_get(port, ctx12, sess)[0]
    # TLS 1.3: one full, one resumed with a ticket
    ctx13 = client_context(certs, minv=TLS13, maxv=TLS13)
    _, sess = tls_get(port, ctx13)
    assert tls_get(port, ctx13, sess)[0]
    # a malformed ClientHello: a handshake error
    with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as s:
        s.sendall(b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\xff\xff")
        s.settimeout(T(3))
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    # plain HTTP on the TLS port: 400, and a handshake error too
    with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")

    def check(mt):
        def d(name, **l):
            return mt.value(name, **l) - m0.value(name, **l)
        hs = "moat_tls_handshakes_total"
        assert d(hs, listener="public", version="TLSv1.2", resumed="false") == 1
        assert d(hs, listener="public", version="TLSv1.2", resumed="true") == 2
        assert d(hs, listener="public", version="TLSv1.3", resumed="false") == 1
        assert d(hs, listener="public", version="TLSv1.3", resumed="true") == 1
        assert d("moat_tls_handshake_errors_total", listener="public") == 2
        assert d("moat_session_cache_hits_total") == 2
        assert mt.value("moat_session_cache_entries") >= 1
        tk = "moat_session_tickets_total"
        assert d(tk, listener="public", result="issued") >= 1
        assert d(tk, listener="public", result="accepted") == 1
        assert d(tk, listener="public", result="rejected") == 0
        assert d("moat_connections_total", listener="public") == 7
    eventually(m, check)


def test_upstream_errors_by_kind(certs, backend_factory, moat_factory):
    hang = backend_factory(lambda req: Hang())
    reset = backend_factory(lambda req: Reset())
    bad = backend_factory(lambda req: Raw(b"this is not HTTP\r\n\r\n"))
    ok = backend_factory()
    dead = "127.0.0.1:%d" % free_port()
    routes = "".join("  - path: /%s/\n    upstream: %s\n" % (n, n)
                     for n in ("dead", "hang", "reset", "bad")) + \
        "  - path: /\n    upstream: app\n"
    ups = ('  dead:\n    servers: ["%s"]\n'
           '  hang:\n    servers: ["%s"]\n    response_timeout: 300ms\n'
           '  reset:\n    servers: ["%s"]\n'
           '  bad:\n    servers: ["%s"]\n') % (dead, hang.addr, reset.addr, bad.addr)
    y = admin_yaml(certs, [ok.addr], routes=routes).replace("upstreams:\n", "upstreams:\n" + ups)
    m = moat_factory(y)
    m0 = scrape(m)
    expect = {"dead": (502, "connect"), "hang": (504, "timeout"), "reset": (502, "reset"),
              "bad": (502, "malformed")}
    for name, (code, _) in expect.items():
        with Client(m.port(), certs) as c:
            r = c.request("GET", "/%s/x" % name)
            assert r.status == code, (name, r)

    def check(mt):
        for name, (_, kind) in expect.items():
            got = (mt.value("moat_upstream_errors_total", upstream=name, kind=kind)
                   - m0.value("moat_upstream_errors_total", upstream=name, kind=kind))
            assert got == 1, (name, kind, got)
            others = mt.sum("moat_upstream_errors_total", upstream=name) - \
                m0.sum("moat_upstream_errors_total", upstream=name)
            assert others == 1, (name, "counted under other kinds too", others)
        assert mt.sum("moat_upstream_errors_total", upstream="app") == 0
    eventually(m, check)


def test_reload_counters_and_counters_never_go_down(certs, backend, moat_factory, tmp_path):
    backend.handler = handler
    good = admin_yaml(certs, [backend.addr], routes=ROUTES)
    m = moat_factory(good)
    ctx12 = client_context(certs, minv=TLS12, maxv=TLS12)
    ctx12.options |= ssl.OP_NO_TICKET

    def traffic():
        with Client(m.port(), certs) as c:
            for t in ("/app/a", "/app/code/500", "/zzz"):
                c.request("GET", t)
            c.request("GET", "/v1/x", host="api.example.com")
        _, s = tls_get(m.port(), ctx12, path=b"/app/tls")
        tls_get(m.port(), ctx12, s, path=b"/app/tls")

    traffic()
    time.sleep(0.2)
    before = scrape(m)
    assert before.value("moat_reloads_total", result="success") == 0
    # a good reload that adds a route and moves the upstream
    write_atomic(m.config, good.replace("  - path: /app/\n",
                                        "  - path: /new/\n    upstream: app\n"
                                        "  - path: /app/\n").encode())
    assert sighup(m) == "ok"
    # a failing one
    write_atomic(m.config, (good + "nonsense: [\n").encode())
    assert sighup(m) == "failed"
    after = scrape(m)
    assert after.value("moat_reloads_total", result="success") == 1
    assert after.value("moat_reloads_total", result="failure") == 1
    for name, labels, v in before.samples:
        if before.families[_family_of(name, before.families)]["type"] in ("counter",
                                                                          "histogram"):
            found = after.find(name, **labels)
            assert found, "%s%r vanished after a reload" % (name, labels)
            assert found[0][1] >= v, "%s%r went down: %s -> %s" % (name, labels, v, found[0][1])
    traffic()

    def grew(mt):
        assert mt.value("moat_requests_total", route="/app/", code="200") == \
            before.value("moat_requests_total", route="/app/", code="200") + 3
        assert mt.value("moat_session_cache_hits_total") == \
            before.value("moat_session_cache_hits_total") + 1
    eventually(m, grew)


def test_certificate_expiry_timestamp(certs, backend, moat_factory, tmp_path):
    import datetime
    cm = CertMaker(certs)
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    na = datetime.datetime(2031, 5, 6, 7, 8, 9)
    cm.leaf(cert, key, cn="first.test", dns=("first.test",), not_after=na)
    m = moat_factory(tls_yaml(certs, [backend.addr], cert, key, extra=ADMIN))
    mt = scrape(m)
    assert mt.value("moat_certificate_expiry_timestamp_seconds", listener="public",
                    name="first.test") == calendar.timegm(na.timetuple())
    na2 = datetime.datetime(2032, 1, 2, 3, 4, 5)
    cm.leaf(cert, key, cn="first.test", dns=("first.test",), not_after=na2)
    assert sighup(m) == "ok"
    mt = scrape(m)
    assert mt.value("moat_certificate_expiry_timestamp_seconds", listener="public",
                    name="first.test") == calendar.timegm(na2.timetuple())


def test_certificate_expiry_name_is_the_first_dns_name(certs, backend, moat_factory, tmp_path):
    """name is the first DNS name (subjectAltName), not the subject CN."""
    cm = CertMaker(certs)
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    cm.leaf(cert, key, cn="common-name.test", dns=("dns-one.test", "localhost"))
    m = moat_factory(tls_yaml(certs, [backend.addr], cert, key, extra=ADMIN))
    names = [l["name"] for l, _ in scrape(m).find("moat_certificate_expiry_timestamp_seconds",
                                                   listener="public")]
    assert names == ["dns-one.test"], names


def test_certificates_sharing_a_first_name_get_one_series_each(certs, backend, moat_factory,
                                                               tmp_path):
    # Two certificates starting with the same name made the same label set
    # twice (an invalid exposition).  Each is labelled with its first name no
    # earlier one has; one whose every name an earlier one with the same
    # kind of key holds is never served: no series, and a warning.  An RSA
    # certificate beside an ECDSA one for the same names is served (to
    # clients that cannot verify ECDSA): its series has a key label.
    from cryptography.hazmat.primitives.asymmetric import rsa
    cm = CertMaker(certs)
    files = [(str(tmp_path / ("c%d.pem" % i)), str(tmp_path / ("k%d.pem" % i))) for i in range(5)]
    cm.leaf(*files[0], cn="dup.test", dns=("dup.test", "www.dup.test"))
    cm.leaf(*files[1], cn="dup.test", dns=("dup.test",))
    cm.leaf(*files[2], cn="dup.test", dns=("dup.test", "api.dup.test"))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cm.leaf(*files[3], key=rsa_key, cn="dup.test", dns=("dup.test", "www.dup.test"))
    cm.leaf(*files[4], key=rsa_key, cn="dup.test", dns=("www.dup.test",))
    pairs = "".join("        - cert: %s\n          key: %s\n" % f for f in files)
    y = admin_yaml(certs, [backend.addr]).replace(
        "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key), pairs)
    m = moat_factory(y)
    series = [(l["name"], l.get("key")) for l, _ in
              scrape(m).find("moat_certificate_expiry_timestamp_seconds", listener="public")]
    assert series == [("dup.test", None), ("api.dup.test", None), ("dup.test", "rsa")], series
    never = [line for line in m.stderr().splitlines() if "is never served" in line]
    assert len(never) == 2, never
    assert "certificates[1] (%s) is never served" % files[1][0] in never[0], never
    assert "certificates[4] (%s) is never served" % files[4][0] in never[1], never


def test_admin_listener_survives_reloads_and_can_move(certs, backend, moat_factory):
    m = moat_factory(admin_yaml(certs, [backend.addr]))
    port = m.port("@admin")
    for _ in range(3):
        assert sighup(m) == "ok"
        assert http_get(port, "/healthz")[0] == 200
    p2 = free_port()
    write_atomic(m.config, admin_yaml(certs, [backend.addr]).replace(
        'admin:\n  bind: "127.0.0.1:0"', 'admin:\n  bind: "127.0.0.1:%d"' % p2).encode())
    assert sighup(m) == "ok"
    assert http_get(p2, "/healthz")[0] == 200
    assert scrape_port(p2).value("moat_reloads_total", result="success") == 4


def scrape_port(port):
    status, _, body = http_get(port, "/metrics")
    assert status == 200
    return parse_prometheus(body.decode())
