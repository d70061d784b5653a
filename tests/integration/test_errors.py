"""Every error status a client can get from moat: 400, 404, 408, 413, 414,
431, 502, 504; and what reaches (or does not reach) the backend."""
import json
import time

import pytest

from moatlib import (T, Client, Hang, Raw, Reset, Resp, basic_yaml, free_port, raw_exchange,
                     status_of, wait_for)


def limits_yaml(certs, backend, extra):
    return basic_yaml(certs, [backend.addr], extra=extra)


def assert_closed_with(m, certs, data, status, backend=None, timeout=5):
    """Sends data on a new TLS connection: the answer is `status` and the
    connection is closed; nothing reaches the backend; a normal request on
    a new connection still works."""
    before = backend.total_bytes() if backend is not None else 0
    raw = raw_exchange(m.port(), certs, data, timeout=timeout)
    assert status_of(raw) == status, raw[:500]
    assert raw.count(b"HTTP/1.1 ") == 1, raw[:500]
    if backend is not None:
        time.sleep(T(0.1))
        assert backend.total_bytes() == before, "the backend received %d bytes" % (
            backend.total_bytes() - before)
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/still-ok").status == 200
    return raw


def access_statuses(m):
    out = []
    for line in m.stdout().splitlines():
        out.append(json.loads(line)["status"])
    return out


def test_404_no_route(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr],
                                routes="  - host: app.test\n    path: /\n    upstream: app\n"))
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/x", host="other.test")
        assert r.status == 404
        r = c.request("GET", "/y", host="app.test")  # 404 keeps the connection
        assert r.status == 200
    assert [q.target for q in backend.requests] == ["/y"]
    wait_for(lambda: access_statuses(m) == [404, 200], 5, "access log 404, 200")


def test_404_to_head_has_no_body_and_the_connection_goes_on(certs, backend, moat_factory):
    # A body after a HEAD response would be read as the next response.
    m = moat_factory(basic_yaml(certs, [backend.addr],
                                routes="  - host: app.test\n    path: /\n    upstream: app\n"))
    with Client(m.port(), certs) as c:
        c.send(b"HEAD /x HTTP/1.1\r\nHost: other.test\r\n\r\n"
               b"GET /y HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        data = c.read_until_close()
    first, rest = data.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 404"), data
    assert rest.startswith(b"HTTP/1.1 200"), data
    wait_for(lambda: access_statuses(m) == [404, 200], 5, "access log 404, 200")
    entries = [json.loads(line) for line in m.stdout().splitlines()]
    assert entries[0]["bytes"] == 0


def test_access_log_counts_the_body_of_moats_own_responses(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr],
                                routes="  - host: app.test\n    path: /\n    upstream: app\n"))
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/x", host="other.test")
        assert r.status == 404
    wait_for(lambda: access_statuses(m) == [404], 5, "access log 404")
    assert json.loads(m.stdout().splitlines()[0])["bytes"] == len(r.body)


def test_400_malformed_closes(proxy, certs):
    m, b = proxy
    raw = raw_exchange(m.port(), certs,
                       b"GET / HTTP/1.1\r\nHost: localhost\r\nThis is not a header\r\n\r\n"
                       b"GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status_of(raw) == 400, raw
    assert raw.count(b"HTTP/1.1") == 1, raw  # the pipelined request was not served
    assert b.total_bytes() == 0


def test_408_partial_head(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend, "timeouts:\n  client_header: 1s\n"))
    with Client(m.port(), certs, timeout=5) as c:
        start = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\nX-A: ")
        data = c.read_until_close()
        elapsed = time.monotonic() - start
    assert status_of(data) == 408, data
    assert 0.8 <= elapsed <= T(3), elapsed
    assert backend.total_bytes() == 0


def test_408_for_a_connection_that_never_sends_a_request(certs, backend, moat_factory):
    # The first request's head is due within client_header of the handshake;
    # client_idle (longer here) is for waits between requests.
    m = moat_factory(limits_yaml(certs, backend,
                                 "timeouts:\n  client_header: 1s\n  client_idle: 10s\n"))
    with Client(m.port(), certs, timeout=8) as c:
        start = time.monotonic()
        data = c.read_until_close()
        elapsed = time.monotonic() - start
    assert status_of(data) == 408, data
    assert 0.8 <= elapsed <= T(4), elapsed
    assert backend.total_bytes() == 0


def test_408_slowloris_trickle(certs, backend, moat_factory):
    """The deadline covers the whole head, not each read."""
    m = moat_factory(limits_yaml(certs, backend, "timeouts:\n  client_header: 1s\n"))
    with Client(m.port(), certs, timeout=5) as c:
        start = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        status = None
        for i in range(30):
            try:
                c.send(b"X-%d: y\r\n" % i)
            except OSError:
                break
            c.sock.settimeout(T(0.2))
            try:
                d = c.sock.recv(4096)
            except OSError as e:
                if "timed out" in str(e):
                    continue
                break
            if d:
                status = status_of(d)
            break
        elapsed = time.monotonic() - start
    assert status == 408, status
    assert elapsed <= T(3), elapsed
    assert backend.total_bytes() == 0


def test_idle_keepalive_connection_closed(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend,
                                 "timeouts:\n  client_header: 5s\n  client_idle: 1s\n"))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200
        start = time.monotonic()
        assert c.closed_within(4), "idle keep-alive connection not closed"
        elapsed = time.monotonic() - start
    assert 0.8 <= elapsed <= T(3), elapsed


def test_413_content_length_over_max_body(certs, backend, moat_factory):
    from opslib import ADMIN, scrape
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_body_bytes: 1k\n" + ADMIN))
    with Client(m.port(), certs) as c:
        assert c.request("POST", "/ok", body=b"a" * 1024).status == 200
    with Client(m.port(), certs) as c:
        c.send(b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1025\r\n\r\n"
               + b"a" * 1025)
        r = c.read_response()
        assert r.status == 413
    assert [q.target for q in backend.requests] == ["/ok"]
    # refused for its length, the request still counts under the route it matched
    assert scrape(m).find("moat_requests_total", code="413") == [({"route": "/", "code": "413"}, 1)]


def test_413_chunked_over_max_body(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_body_bytes: 1k\n"))
    with Client(m.port(), certs) as c:
        c.send(b"POST /big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"200\r\n" + b"a" * 512 + b"\r\n" + b"201\r\n" + b"a" * 513 + b"\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 413
    # the backend may have seen the start, never a complete oversized request
    assert all(len(q.body) <= 1024 for q in backend.requests)
    assert [q for q in backend.requests if q.target == "/big"] == []


def test_414_uri_too_long(proxy, certs):
    m, b = proxy
    assert_closed_with(m, certs, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                       414, b)


def test_431_when_a_long_uri_makes_the_head_too_large(certs, backend, moat_factory):
    # The head's limit is the contract's 431 whatever part of the head is long.
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_header_bytes: 4k\n"))
    assert_closed_with(m, certs, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                       431)


def test_default_head_limit_is_16k(proxy, certs):
    m, b = proxy
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/", headers=[("X-Pad", "p" * 15000)]).status == 200
    assert_closed_with(m, certs, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"p" * 17000 +
                       b"\r\n\r\n", 431)


def test_414_with_configured_limit(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_uri_bytes: 1k\n"))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/" + "a" * 900).status == 200
    assert_closed_with(m, certs, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                       414)


def test_431_configured_max_header_bytes(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_header_bytes: 2k\n"))
    assert_closed_with(m, certs, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: "
                       + b"b" * 3000 + b"\r\n\r\n", 431, backend)


def test_431_too_many_headers(proxy, certs):
    m, b = proxy
    with Client(m.port(), certs) as c:
        hs = [("X-N%d" % i, "1") for i in range(98)]  # 99 with Host
        assert c.request("GET", "/", headers=hs).status == 200
    many = b"".join(b"X-N%d: 1\r\n" % i for i in range(120))
    assert_closed_with(m, certs, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n", 431, b)


def test_431_configured_max_headers(certs, backend, moat_factory):
    m = moat_factory(limits_yaml(certs, backend, "limits:\n  max_headers: 5\n"))
    many = b"".join(b"X-N%d: 1\r\n" % i for i in range(6))
    assert_closed_with(m, certs, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n", 431,
                       backend)


def test_502_upstream_refuses(certs, moat_factory):
    port = free_port()
    m = moat_factory(basic_yaml(certs, ["127.0.0.1:%d" % port]).replace("level: info",
                                                                        "level: warn"))
    with Client(m.port(), certs) as c:
        start = time.monotonic()
        r = c.request("GET", "/refused")
        assert r.status == 502
        assert time.monotonic() - start < T(2)
    wait_for(lambda: access_statuses(m) == [502], 5, "access log 502")
    # an outage is in the error log at level warn, as nginx logs it at error
    err = m.stderr()
    assert "[warn] upstream app: connect to 127.0.0.1:%d failed: connection refused" % port \
        in err, err
    assert "[warn] 127.0.0.1 /refused: 502 upstream refused the connection" in err, err


def test_502_upstream_resets_before_response(proxy, certs):
    m, b = proxy
    b.handler = lambda req: Reset() if req.target == "/reset" else Resp(200, b"ok")
    with Client(m.port(), certs) as c:
        r = c.request("POST", "/reset", body=b"data")  # not idempotent: no retry
        assert r.status == 502
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/fine").status == 200


def test_502_upstream_closes_before_response(proxy, certs):
    m, b = proxy
    b.handler = lambda req: Raw(b"", close=True)
    with Client(m.port(), certs) as c:
        assert c.request("POST", "/", body=b"x").status == 502


@pytest.mark.parametrize("resp", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    # The head is fine, the chunk after it is not, and both come at once:
    # nothing has left for the client yet, so it gets a clean 502 (it got
    # an empty reply, and the log said 200).
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
], ids=["garbage", "bad-status", "two-cl", "cl-and-te", "no-colon", "negative-cl",
        "bad-chunk-with-head"])
def test_502_upstream_malformed_response(proxy, certs, resp):
    m, b = proxy
    b.handler = lambda req: Raw(resp, close=True)
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/")
        assert r.status == 502, r
    wait_for(lambda: access_statuses(m) == [502], 5, "access log 502")


def test_502_truncated_body_is_not_a_complete_response(proxy, certs):
    """The upstream promises 100 bytes and closes after 10: the client must
    not get a complete-looking response (moat closes the connection)."""
    m, b = proxy
    b.handler = lambda req: Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    with Client(m.port(), certs) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = c.read_until_close()
    assert data.startswith(b"HTTP/1.1 200") or status_of(data) == 502, data
    if data.startswith(b"HTTP/1.1 200"):
        assert data.endswith(b"x" * 10), data


def test_504_response_timeout(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], upstream_extra="response_timeout: 1s"))
    backend.handler = lambda req: Hang()
    with Client(m.port(), certs) as c:
        start = time.monotonic()
        r = c.request("GET", "/hang")
        elapsed = time.monotonic() - start
        assert r.status == 504
    assert 0.8 <= elapsed <= T(3), elapsed
    wait_for(lambda: backend.open_connections() == 0, 5, "moat to close the hung upstream")
    wait_for(lambda: access_statuses(m) == [504], 5, "access log 504")


@pytest.mark.parametrize("timers", ["response_timeout_first", "client_idle_first"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_upload_the_client_stops_sending_is_a_408(certs, backend, moat_factory, timers,
                                                    framing):
    # The upstream waits for a body the client never finishes: the client's
    # stall, answered 408 as nginx's client_body_timeout, whichever timer runs
    # out first; never a 504 blamed on the upstream, nor a silent close.
    from opslib import ADMIN, scrape
    fast, slow = "1s", "30s"
    up, idle = (fast, slow) if timers == "response_timeout_first" else (slow, fast)
    m = moat_factory(basic_yaml(certs, [backend.addr], upstream_extra="response_timeout: " + up,
                                extra=ADMIN + "timeouts:\n  client_idle: %s\n" % idle))
    head = ("Content-Length: 100\r\n\r\nabc" if framing == "length"
            else "Transfer-Encoding: chunked\r\n\r\n5\r\nabc")
    with Client(m.port(), certs) as c:
        start = time.monotonic()
        c.send(("POST /up HTTP/1.1\r\nHost: localhost\r\n" + head).encode())
        r = c.read_response()
        elapsed = time.monotonic() - start
    assert r.status == 408 and r.header("Connection") == "close", r
    assert 0.8 <= elapsed <= T(3), elapsed
    wait_for(lambda: access_statuses(m) == [408], 5, "access log 408")
    mt = scrape(m)
    assert mt.sum("moat_upstream_errors_total") == 0, mt.find("moat_upstream_errors_total")
    assert mt.value("moat_requests_total", route="/", code="408") == 1
    assert backend.requests == [], "an unfinished request reached the backend's handler"


@pytest.mark.parametrize("short", ["response_timeout", "client_idle"])
def test_slow_upload_longer_than_response_timeout_is_answered(certs, backend, moat_factory,
                                                              short):
    # The response is not due before the request is sent: an upload that
    # takes longer than response_timeout but keeps moving is not a 504 (it
    # was, as the timer ran from the head).  Nor is client_idle a deadline
    # for the whole body: it is the wait between its bytes (it was a 408).
    up, idle = ("1s", "60s") if short == "response_timeout" else ("60s", "1s")
    m = moat_factory(basic_yaml(certs, [backend.addr], upstream_extra="response_timeout: " + up,
                                extra="timeouts:\n  client_idle: %s\n" % idle))
    backend.handler = lambda req: Resp(200, b"got %d\n" % len(req.body))
    with Client(m.port(), certs) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 600\r\n\r\n")
        for _ in range(6):
            time.sleep(0.4)
            c.send(b"x" * 100)
        r = c.read_response()
    assert r.status == 200 and r.body == b"got 600\n", (r.status, r.body)
    if short == "client_idle":
        return
    # Once the body is in, the timer runs again.
    backend.handler = lambda req: Hang()
    with Client(m.port(), certs) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
        start = time.monotonic()
        r = c.read_response()
        assert r.status == 504 and time.monotonic() - start <= T(3)
