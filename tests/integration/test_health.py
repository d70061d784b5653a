"""Upstream health: active checks (a failing server taken out and put back,
what counts as up, once per process not per worker, every server down ->
502 at once), passive skipping of a refusing server or one that fails
requests, least_conn."""
import json
import socket
import threading
import time

import pytest

from moatlib import T, Backend, Client, Hang, Reset, Resp, basic_yaml, free_port, wait_for

HC = "health_check:\n  path: /healthz\n  interval: 250ms\n  timeout: 200ms\n"


class Server:
    """A backend whose /healthz answer can be changed; it names itself."""

    def __init__(self, factory, name):
        self.name = name
        self.health = Resp(200, b"ok")
        self.hold = None  # an Event: /hold requests wait for it
        self.b = factory(self.handle)
        self.addr = self.b.addr

    def handle(self, req):
        if req.target == "/healthz":
            return self.health
        if req.target.startswith("/hold") and self.hold is not None:
            self.hold.wait(T(10))
        return Resp(200, self.name.encode())

    def checks(self):
        return [r for r in self.b.requests if r.target == "/healthz"]

    def served(self):
        return [r for r in self.b.requests if r.target != "/healthz"]

    def wait_checks(self, n_more, timeout=3):
        """Waits for n_more health checks after now."""
        start = len(self.checks())
        wait_for(lambda: len(self.checks()) >= start + n_more, timeout,
                 "%d more health checks on %s" % (n_more, self.name))


def spread(m, certs, n=10, path="/r"):
    """n requests on one connection: the bodies (server names) in order."""
    out = []
    with Client(m.port(), certs) as c:
        for i in range(n):
            r = c.request("GET", "%s%d" % (path, i))
            out.append(r.body.decode() if r.status == 200 else r.status)
    return out


def logged_upstreams(m, n):
    """The access log's "upstream" of the first n requests, once n are logged."""
    out = m.stdout()
    lines = [json.loads(l) for l in out[:out.rfind("\n") + 1].splitlines() if l.strip()]
    return [e.get("upstream") for e in lines[:n]] if len(lines) >= n else None


@pytest.fixture
def two(backend_factory):
    return Server(backend_factory, "A"), Server(backend_factory, "B")


def test_failing_server_is_taken_out_and_put_back(certs, two, moat_factory):
    a, b = two
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], workers=2, upstream_extra=HC))
    a.wait_checks(1)
    got = spread(m, certs)
    assert got.count("A") >= 3 and got.count("B") >= 3, got
    a.health = Resp(500, b"sick")
    a.wait_checks(2)
    assert spread(m, certs) == ["B"] * 10
    a.health = Resp(200, b"ok")
    a.wait_checks(2)
    got = spread(m, certs)
    assert got.count("A") >= 3 and got.count("B") >= 3, got


@pytest.mark.parametrize("answer,up", [
    (Resp(204), True),
    (Resp(301, headers=[("Location", "/elsewhere")]), True),
    (Resp(399), True),
    (Resp(404, b"no"), False),
    (Resp(503, b"no"), False),
    (Resp(200, b"late", delay=0.6), False),          # past the 200 ms timeout
    (Resp(100), False),                               # not a final answer
], ids=["204", "301", "399", "404", "503", "timeout", "100"])
def test_what_counts_as_up(certs, two, moat_factory, answer, up):
    a, b = two
    a.health = answer
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], upstream_extra=HC))
    a.wait_checks(2)
    time.sleep(0.3)
    got = spread(m, certs)
    if up:
        assert got.count("A") == 5 and got.count("B") == 5, got
    else:
        assert got == ["B"] * 10, got


def test_refusing_server_is_down_before_any_client_sees_it(certs, backend_factory,
                                                         moat_factory):
    b = Server(backend_factory, "B")
    dead = "127.0.0.1:%d" % free_port()
    m = moat_factory(basic_yaml(certs, [dead, b.addr], upstream_extra=HC))
    b.wait_checks(2)
    assert spread(m, certs, 10) == ["B"] * 10


def test_checks_run_once_per_process_not_per_worker(certs, two, moat_factory):
    a, b = two
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], workers=2,
                                upstream_extra=HC.replace("250ms", "200ms")))
    a.wait_checks(1)
    n0, t0 = len(a.checks()), time.monotonic()
    time.sleep(2.0)
    n, dt = len(a.checks()) - n0, time.monotonic() - t0
    expected = dt / 0.2
    assert 0.5 * expected <= n <= 1.4 * expected, \
        "%d checks in %.1fs at a 200ms interval (per worker would be %d)" % (n, dt, 2 * expected)
    r = a.checks()[-1]
    assert r.method == "GET" and r.target == "/healthz"


def blackhole():
    """A loopback port where connects hang: a listener whose accept queue is
    full and never drained.  Returns (address, sockets to close)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        hangs = False
    except socket.timeout:
        hangs = True
    finally:
        probe.close()
    if not hangs:
        for s in fill + [ls]:
            s.close()
        pytest.skip("cannot make a loopback port whose connects hang")
    return "127.0.0.1:%d" % port, fill + [ls]


def test_every_server_down_means_502_at_once(certs, moat_factory):
    (h1, s1), (h2, s2) = blackhole(), blackhole()
    try:
        m = moat_factory(basic_yaml(certs, [h1, h2], upstream_extra=HC + "connect_timeout: 5s"))
        time.sleep(1.2)  # several intervals: every check timed out
        with Client(m.port(), certs, timeout=10) as c:
            for i in range(3):
                t0 = time.monotonic()
                r = c.request("GET", "/x%d" % i)
                took = time.monotonic() - t0
                assert r.status == 502, r
                assert took < min(T(0.5), 2.5), \
                    "502 after %.2fs: moat waited for a connect" % took
    finally:
        for s in s1 + s2:
            s.close()


def test_every_server_failing_checks_502_without_forwarding(certs, two, moat_factory):
    from opslib import ADMIN, scrape
    a, b = two
    a.health = b.health = Resp(500)
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], upstream_extra=HC, extra=ADMIN))
    a.wait_checks(2)
    b.wait_checks(2)
    t0 = time.monotonic()
    assert spread(m, certs, 4) == [502] * 4
    assert time.monotonic() - t0 < T(1.0)
    assert a.served() == [] and b.served() == []
    # an outage of the whole upstream shows in its errors, and each server's
    # state is listed in the order the configuration names them
    mt = scrape(m)
    assert mt.value("moat_upstream_errors_total", upstream="app", kind="down") == 4
    assert [(l["server"], v) for l, v in mt.find("moat_upstream_server_up")] == \
        [(a.addr, 0), (b.addr, 0)]
    b.health = Resp(200)
    b.wait_checks(2)
    assert spread(m, certs, 4) == ["B"] * 4


def test_passive_skip_of_a_refusing_server_for_10s(certs, backend_factory, moat_factory):
    port = free_port()
    b = Server(backend_factory, "B")
    m = moat_factory(basic_yaml(certs, ["127.0.0.1:%d" % port, b.addr]))
    got = spread(m, certs, 10)
    t_refused = time.monotonic()
    assert got.count(502) <= 1 and got.count("B") >= 9, got
    # the server comes back at once, but this worker skips it for 10 s
    a = Server(lambda h: backend_factory(h, port=port), "A")
    time.sleep(1.0)
    assert spread(m, certs, 6) == ["B"] * 6
    time.sleep(max(0.0, 10.5 - (time.monotonic() - t_refused)))
    got = spread(m, certs, 6)
    assert got.count("A") >= 2, got


def test_a_server_that_resets_requests_is_skipped_for_10s(certs, backend_factory, moat_factory):
    """As nginx's default max_fails=1 fail_timeout=10s: a server that accepts
    and then resets fails one request, not one in three.  The POST is not
    sent again; a GET moves on to the next server."""
    from opslib import ADMIN, scrape
    bad = backend_factory(lambda req: Reset())
    b, c = Server(backend_factory, "B"), Server(backend_factory, "C")
    m = moat_factory(basic_yaml(certs, [bad.addr, b.addr, c.addr], workers=1, extra=ADMIN))
    with Client(m.port(), certs) as cl:
        assert cl.request("POST", "/first", body=b"data").status == 502
    assert len(bad.requests) == 1
    got = spread(m, certs, 12)
    assert sorted(set(got)) == ["B", "C"], got
    assert len(bad.requests) == 1
    assert scrape(m).value("moat_upstream_errors_total", upstream="app", kind="reset") == 1


def test_a_get_that_meets_a_reset_is_answered_by_the_next_server(certs, backend_factory,
                                                                   moat_factory):
    bad = backend_factory(lambda req: Reset())
    b = Server(backend_factory, "B")
    m = moat_factory(basic_yaml(certs, [bad.addr, b.addr], workers=1))
    assert spread(m, certs, 4) == ["B"] * 4
    assert [r.target for r in bad.requests] == ["/r0"]
    assert [r.target for r in b.served()] == ["/r0", "/r1", "/r2", "/r3"]
    assert "trying the next server" in m.stderr()
    # as nginx's $upstream_addr: every server the request went to
    logged = wait_for(lambda: logged_upstreams(m, 4), 5, "4 access-log lines")
    assert logged == ["%s, %s" % (bad.addr, b.addr)] + [b.addr] * 3, logged


def test_a_server_that_does_not_answer_is_skipped_after_its_504(certs, backend_factory,
                                                                moat_factory):
    bad = backend_factory(lambda req: Hang())
    b = Server(backend_factory, "B")
    m = moat_factory(basic_yaml(certs, [bad.addr, b.addr], workers=1,
                                upstream_extra="response_timeout: 500ms"))
    got = spread(m, certs, 6)
    # the client waited response_timeout once: that is not doubled by a retry
    assert got == [504] + ["B"] * 5, got
    assert len(bad.requests) == 1
    # the failing server is named where the operator looks for it
    assert wait_for(lambda: logged_upstreams(m, 6), 5, "6 access-log lines")[0] == bad.addr
    assert "/r0: 504 upstream response timed out (upstream app: %s)" % bad.addr in m.stderr()


def test_every_server_failing_lately_is_still_tried(certs, backend_factory, moat_factory):
    """Passive marks alone never refuse the whole upstream: a server that
    recovers within the 10 s is used at once."""
    broken = {"A": True, "B": True}

    def server(name):
        return lambda req: Reset() if broken[name] else Resp(200, name.encode())

    a, b = backend_factory(server("A")), backend_factory(server("B"))
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], workers=1))
    assert spread(m, certs, 1) == [502]
    assert len(a.requests) == 1 and len(b.requests) == 1
    broken["B"] = False
    assert spread(m, certs, 2) == ["B", "B"]


def test_least_conn_avoids_the_busy_server(certs, two, moat_factory):
    """Four held requests spread 2+2 (fewest in use); B's two finish, A's two
    stay in flight: every new request goes to B while round robin would
    send half of them to A."""
    a, b = two
    a.hold, b.hold = threading.Event(), threading.Event()
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], workers=1,
                                upstream_extra="balance: least_conn"))
    results, threads = [], []

    def held(i):
        try:
            with Client(m.port(), certs, timeout=15) as c:
                results.append(c.request("GET", "/hold%d" % i).status)
        except Exception as e:
            results.append(repr(e))

    def n_held(s):
        return len([r for r in s.served() if r.target.startswith("/hold")])

    try:
        for i in range(4):
            seen = n_held(a) + n_held(b)
            t = threading.Thread(target=held, args=(i,), daemon=True)
            t.start()
            threads.append(t)
            wait_for(lambda: n_held(a) + n_held(b) > seen, 3, "held request %d" % i)
        assert (n_held(a), n_held(b)) == (2, 2), \
            "4 concurrent requests went %d to A, %d to B" % (n_held(a), n_held(b))
        b.hold.set()
        wait_for(lambda: len(results) == 2, 5, "B's held requests to finish")
        before = len(a.served())
        got = spread(m, certs, 8, path="/fast")
        assert got == ["B"] * 8, \
            "least_conn sent requests to the server with 2 in flight: %r" % got
        assert len(a.served()) == before
    finally:
        a.hold.set()
        b.hold.set()
        for t in threads:
            t.join(T(10))
    assert results == [200] * 4, results


def test_least_conn_ties_go_round_robin(certs, two, moat_factory):
    a, b = two
    m = moat_factory(basic_yaml(certs, [a.addr, b.addr], workers=1,
                                upstream_extra="balance: least_conn"))
    got = spread(m, certs, 8)
    assert sorted(got) == ["A"] * 4 + ["B"] * 4, got
    assert all(got[i] != got[i + 1] for i in range(7)), got
