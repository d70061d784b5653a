"""Malformed and request-smuggling attempts sent as raw bytes over TLS.

For each: the right status, the connection closes, the backend receives
nothing at all, and a normal request on a new connection still works."""
import time

import pytest

from moatlib import T, Client, basic_yaml, raw_exchange, status_of

H = b"Host: localhost\r\n"

CASES = [
    # (id, bytes, acceptable statuses)
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("two-content-length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", {400}),
    ("content-length-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
     {400}),
    ("content-length-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
     {400}),
    ("content-length-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}),
    ("content-length-huge", b"POST / HTTP/1.1\r\n" + H +
     b"Content-Length: 99999999999999999999999\r\n\r\n", {400, 413}),
    ("te-gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", {400, 501}),
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n"
     b"0\r\n\r\n", {400, 501}),
    ("te-chunked-then-identity", b"POST / HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-space-before-colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", {400}),
    ("te-on-http10", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", {400}),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", {400}),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n\tc\r\n\r\n", {400}),
    ("bare-lf", b"GET / HTTP/1.1\n" + b"Host: localhost\n\n", {400}),
    ("bare-lf-in-headers", b"GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", {400}),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", {400}),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", {400}),
    ("empty-header-name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", {400}),
    ("header-without-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", {400}),
    ("missing-host-http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("empty-host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", {400}),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: other.test\r\n\r\n", {400}),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n", {400}),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: localhost/evil\r\n\r\n", {400}),
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", {505}),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    ("http-0.9", b"GET /\r\n\r\n", {400}),
    ("http-version-garbage", b"GET / HTTP/1.x\r\n" + H + b"\r\n", {400}),
    ("absolute-form-bad-scheme", b"GET ftp://localhost/ HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("absolute-form-malformed", b"GET http:/x HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("dotdot-root", b"GET /../etc/passwd HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("dotdot-escape", b"GET /a/../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("dotdot-encoded", b"GET /%2e%2e/etc/passwd HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("target-not-origin-form", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("control-char-in-method", b"G\x01T / HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("connect-method", b"CONNECT localhost:443 HTTP/1.1\r\n" + H + b"\r\n", {400, 405, 501}),
]


@pytest.fixture
def setup(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    return m, backend


@pytest.mark.parametrize("data,statuses", [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rejected(setup, certs, data, statuses):
    m, b = setup
    raw = raw_exchange(m.port(), certs, data, timeout=3)
    assert status_of(raw) in statuses, raw[:300]
    assert raw.count(b"HTTP/1.") == 1, "more than one response: %r" % raw[:600]
    time.sleep(T(0.1))
    assert b.total_bytes() == 0, "backend received %r" % b.conn_bytes
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/fine")
        assert r.status == 200
    assert [q.target for q in b.requests] == ["/fine"]


def test_connect_gets_405_with_allow(setup, certs):
    """RFC 9110: a 405 lists the methods that are allowed."""
    m, b = setup
    raw = raw_exchange(m.port(), certs, b"CONNECT localhost:443 HTTP/1.1\r\n" + H + b"\r\n")
    assert status_of(raw) == 405, raw
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert "\r\nallow: get, head, post" in head, head
    assert "connect" not in head.partition("allow:")[2].split("\r\n")[0]


def test_valid_absolute_form_is_accepted(setup, certs):
    m, b = setup
    with Client(m.port(), certs) as c:
        c.send(b"GET https://localhost/abs?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    req = b.requests[0]
    assert req.target == "/abs?q=1", req.raw_head
    assert req.all("Host") == ["localhost"]


def test_identical_duplicate_content_length(setup, certs):
    """Two identical Content-Length values: RFC 9112 lets a recipient
    accept them as one, or reject; moat must not forward both."""
    m, b = setup
    raw = raw_exchange(m.port(), certs, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                       b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    st = status_of(raw)
    assert st in (200, 400), raw
    if st == 200:
        assert b.requests[0].all("Content-Length") == ["5"], b.requests[0].raw_head
    else:
        assert b.total_bytes() == 0


def test_http10_keepalive_and_close(setup, certs):
    """HTTP/1.0 without Host is valid; without keep-alive the connection closes."""
    m, b = setup
    raw = raw_exchange(m.port(), certs, b"GET /ten HTTP/1.0\r\n\r\n")
    assert status_of(raw) == 200, raw
    assert b.requests[0].target == "/ten"
    assert b.requests[0].version == "HTTP/1.1"
    # HTTP/1.1 needs a Host: the upstream's address, as nginx sends; but
    # the client named no host, so there is none to report as forwarded.
    assert b.requests[0].all("Host") == [b.addr], b.requests[0].raw_head
    assert b.requests[0].all("X-Forwarded-Host") == [], b.requests[0].raw_head
