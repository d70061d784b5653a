"""Hostile clients: what reaches the backend, checked by a strict reference
parser (httpref); smuggling shapes and oversize input beyond
test_smuggling.py; slow clients with slowhttptest; TLS-level abuse (garbage
and truncated records, split, stalled and oversized ClientHellos, old
protocol versions and weak suites, renegotiation) and an sslscan run.

For each hostile input: the right status or a close, nothing (or exactly
the validated request) reaching the backend, the process alive, and a
normal request served right after.
"""
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import httpref
from moatlib import (SANITIZED, T, Backend, Client, Moat, Resp, Upgrade, basic_yaml,
                     client_context, have, rss_kib, sha256, wait_for)

# --------------------------------------------------------------------------
# the shared moat for the table-driven cases

def echo_handler(req):
    """Answers 200 naming the X-Diff-Id it received, so a response proves
    which forwarded request it belongs to."""
    did = req.header("X-Diff-Id") or "-"
    return Resp(200, b"id=%s len=%d sha=%s\n" % (did.encode("latin-1"), len(req.body),
                                                 sha256(req.body)[:16].encode()),
                headers=[("X-Seen-Id", did), ("Content-Type", "text/plain")])


HOSTILE_EXTRA = ("timeouts:\n  client_header: 2s\n  client_idle: 3s\n"
                 "limits:\n  max_body_bytes: 1m\n")


class Env:
    def __init__(self, moat, backend, certs, keepalive):
        self.m, self.b, self.certs = moat, backend, certs
        self.port = moat.port()
        self.checker = httpref.ForwardChecker(backend, self.port)
        self.keepalive = keepalive
        self.n = 0

    def next_id(self, prefix="r"):
        self.n += 1
        return "%s%d" % (prefix, self.n)


def start_env(tmp_path_factory, certs, name, keepalive, extra=HOSTILE_EXTRA, tls_extra=""):
    b = Backend(echo_handler)
    y = basic_yaml(certs, [b.addr], workers=2, upstream_extra="keepalive: %d" % keepalive,
                   tls_extra="handshake_timeout: 2s\n" + tls_extra, extra=extra, access="null")
    m = Moat(tmp_path_factory.mktemp(name), y)
    m.start()
    return Env(m, b, certs, keepalive)


def stop_env(env):
    problems = []
    rc = env.m.stop()
    if rc != 0:
        problems.append("moat exited with %r" % rc)
    bad = env.m.bad_log_lines()
    if bad:
        problems.append("moat logged alerts or sanitizer reports:\n" + "\n".join(bad[:20]))
    env.b.stop()
    if env.b.errors:
        problems.append("backend errors: %r" % env.b.errors)
    if problems:
        env.m.dump()
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory, certs):
    """moat (2 workers, no upstream keep-alive, so each case has its own
    upstream connections) in front of an echoing backend."""
    e = start_env(tmp_path_factory, certs, "hostile", keepalive=0)
    yield e
    stop_env(e)


def served_normally(env, tag="after"):
    """moat is alive and a normal request on a new connection is served and
    forwarded exactly."""
    assert env.m.running(), "moat died:\n" + env.m.stderr()[-3000:]
    did = env.next_id(tag)
    data = ("GET /after/%s HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\n\r\n"
            % (did, did)).encode()
    with Client(env.port, env.certs, timeout=5) as c:
        c.send(data)
        r = c.read_response()
    assert r.status == 200 and r.header("X-Seen-Id") == did, r
    env.checker.expect(did, data)
    return did


def read_status(c, method="GET"):
    """The next response on client c, or None when the connection closes
    (or resets) without one."""
    try:
        return c.read_response(method)
    except (EOFError, ConnectionError, ssl.SSLError):
        return None


# statuses after which moat must close the connection (README: malformed,
# head too large, timeouts; and every framing problem)
CLOSING = {400, 408, 413, 414, 431, 505}


# --------------------------------------------------------------------------
# table-driven hostile requests

def mk(line, headers=(), body=b"", host=b"localhost"):
    """A request: request line, then Host (unless host is None), then the raw
    header lines, then body.  X-Diff-Id is filled in by run_case."""
    hs = [line]
    if host is not None:
        hs.append(b"Host: " + host)
    hs.append(b"X-Diff-Id: {ID}")
    hs += list(headers)
    return b"\r\n".join(hs) + b"\r\n\r\n" + body


P = b"POST /h HTTP/1.1"
G = b"GET /h HTTP/1.1"
TE = b"Transfer-Encoding: chunked"
BODY5 = b"5\r\nhello\r\n0\r\n\r\n"


def ch(*lines, trailer=b""):
    """A chunked body from raw chunk lines given as (size line, data)."""
    out = b""
    for size, data in lines:
        out += size + b"\r\n" + data + b"\r\n"
    return out + b"0\r\n" + trailer + b"\r\n"


SAME = "same"  # canonical form: the request as sent is already strictly valid

# (id, bytes, acceptable statuses (None: closed without a response),
#  canonical strict form if acceptance is legitimate)
CASES = [
    # --- Transfer-Encoding obfuscation
    ("te-leading-space", mk(P, [b"Transfer-Encoding:  chunked"], BODY5), {200, 400}, SAME),
    ("te-trailing-tab", mk(P, [b"Transfer-Encoding: chunked\t"], BODY5), {200, 400}, SAME),
    ("te-uppercase", mk(P, [b"Transfer-Encoding: CHUNKED"], BODY5), {200, 400}, SAME),
    ("te-leading-space-and-cl", mk(P, [b"Transfer-Encoding:  chunked", b"Content-Length: 3"],
                                   BODY5), {400}, None),
    ("te-trailing-tab-and-cl", mk(P, [b"Content-Length: 3", b"Transfer-Encoding: chunked\t"],
                                  BODY5), {400}, None),
    ("te-second-header-identity", mk(P, [TE, b"Transfer-Encoding: identity"], BODY5),
     {400, 501}, None),
    ("te-second-header-chunked", mk(P, [TE, TE], BODY5), {400, 501}, None),
    ("te-list-chunked-chunked", mk(P, [b"Transfer-Encoding: chunked, chunked"], BODY5),
     {400, 501}, None),
    ("te-list-identity-chunked", mk(P, [b"Transfer-Encoding: identity, chunked"], BODY5),
     {400, 501}, None),
    ("te-list-gzip-chunked", mk(P, [b"Transfer-Encoding: gzip, chunked"], BODY5), {400, 501},
     None),
    ("te-vtab", mk(P, [b"Transfer-Encoding: \x0bchunked"], BODY5), {400}, None),
    ("te-quoted", mk(P, [b'Transfer-Encoding: "chunked"'], BODY5), {400, 501}, None),
    ("te-param", mk(P, [b"Transfer-Encoding: chunked;q=1"], BODY5), {400, 501}, None),
    ("te-nul", mk(P, [b"Transfer-Encoding: chunked\x00"], BODY5), {400}, None),
    ("te-folded", mk(P, [b"Transfer-Encoding:", b" chunked"], BODY5), {400}, None),
    ("te-cr-in-value", mk(P, [b"Transfer-Encoding: \rchunked"], BODY5), {400}, None),
    ("te-empty-and-cl", mk(P, [b"Transfer-Encoding: ", b"Content-Length: 5"], b"hello"),
     {400, 501}, None),
    ("te-chunked-on-get", mk(G, [TE], BODY5), {200}, SAME),
    # --- Content-Length forms
    ("cl-leading-zeros", mk(P, [b"Content-Length: 005"], b"hello"), {200, 400},
     mk(P, [b"Content-Length: 5"], b"hello")),
    ("cl-ows", mk(P, [b"Content-Length:   5  "], b"hello"), {200, 400}, SAME),
    ("cl-list-equal", mk(P, [b"Content-Length: 5, 5"], b"hello"), {200, 400},
     mk(P, [b"Content-Length: 5"], b"hello")),
    ("cl-inner-space", mk(P, [b"Content-Length: 5 5"], b"hello"), {400}, None),
    ("cl-hex", mk(P, [b"Content-Length: 0x5"], b"hello"), {400}, None),
    ("cl-decimal", mk(P, [b"Content-Length: 5.0"], b"hello"), {400}, None),
    ("cl-exponent", mk(P, [b"Content-Length: 5e0"], b"hello"), {400}, None),
    ("cl-empty", mk(P, [b"Content-Length: "], b"hello"), {400}, None),
    ("cl-trailing-comma", mk(P, [b"Content-Length: 5,"], b"hello"), {400}, None),
    ("cl-vtab", mk(P, [b"Content-Length: \x0b5"], b"hello"), {400}, None),
    ("cl-fullwidth-digit", mk(P, [b"Content-Length: \xef\xbc\x95"], b"hello"), {400}, None),
    ("cl-overflow-2^64", mk(P, [b"Content-Length: 18446744073709551616"], b"hello"),
     {400, 413}, None),
    ("cl-2^63", mk(P, [b"Content-Length: 9223372036854775808"], b"hello"), {400, 413}, None),
    ("cl-twenty-digits", mk(P, [b"Content-Length: 00000000000000000000005"], b"hello"),
     {200, 400}, mk(P, [b"Content-Length: 5"], b"hello")),
    ("cl-folded", mk(P, [b"Content-Length: 5", b" 6"], b"hello!"), {400}, None),
    # --- chunk-size and chunk-extension abuse
    ("chunk-size-overflow", mk(P, [TE], b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
     {400}, None),
    ("chunk-size-2^64", mk(P, [TE], b"10000000000000000\r\nhello\r\n0\r\n\r\n"), {400},
     None),
    ("chunk-size-2^64-1", mk(P, [TE], b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), {400, 413},
     None),
    ("chunk-size-negative", mk(P, [TE], b"-5\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-0x", mk(P, [TE], b"0x5\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-plus", mk(P, [TE], b"+5\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-leading-space", mk(P, [TE], b" 5\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-trailing-space", mk(P, [TE], b"5 \r\nhello\r\n0\r\n\r\n"), {200, 400},
     mk(P, [TE], BODY5)),
    ("chunk-size-empty", mk(P, [TE], b"\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-nonhex", mk(P, [TE], b"5g\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-underscore", mk(P, [TE], b"0_5\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-size-leading-zeros", mk(P, [TE], b"0000000005\r\nhello\r\n0\r\n\r\n"), {200},
     SAME),
    ("chunk-ext-bare-lf", mk(P, [TE], b"5;a=b\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-ext-bare-cr", mk(P, [TE], b"5;a\r=b\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-ext-nul", mk(P, [TE], b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-ext-ctl", mk(P, [TE], b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-ext-huge-1m", mk(P, [TE], b"5;" + b"a" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n"),
     {400, 413, 431, None}, None),
    ("chunk-ext-empty-name", mk(P, [TE], b"5;\r\nhello\r\n0\r\n\r\n"), {200, 400},
     mk(P, [TE], BODY5)),
    # valid chunk extensions (RFC 9112 7.1.1): refusing them breaks clients
    ("chunk-ext-bws", mk(P, [TE], b"5 ; a = b\r\nhello\r\n0\r\n\r\n"), {200},
     mk(P, [TE], BODY5)),
    ("chunk-ext-two", mk(P, [TE], b"5;a=1;b=2\r\nhello\r\n0\r\n\r\n"), {200},
     mk(P, [TE], BODY5)),
    ("chunk-ext-quoted-pair", mk(P, [TE], b'5;a="x\\"y"\r\nhello\r\n0\r\n\r\n'), {200},
     mk(P, [TE], BODY5)),
    ("chunk-ext-smuggled-request", mk(P, [TE], b"5;\x0d GET /x\r\nhello\r\n0\r\n\r\n"),
     {400}, None),
    ("chunk-data-too-long", mk(P, [TE], b"3\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-data-too-short", mk(P, [TE], b"7\r\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-no-crlf-after-data", mk(P, [TE], b"5\r\nhelloXX0\r\n\r\n"), {400}, None),
    ("chunk-bare-lf-after-data", mk(P, [TE], b"5\r\nhello\n0\r\n\r\n"), {400}, None),
    ("chunk-bare-lf-after-size", mk(P, [TE], b"5\nhello\r\n0\r\n\r\n"), {400}, None),
    ("chunk-last-bare-lf", mk(P, [TE], b"5\r\nhello\r\n0\n\r\n"), {400}, None),
    ("chunk-last-end-bare-lf", mk(P, [TE], b"5\r\nhello\r\n0\r\n\n"), {400}, None),
    ("chunk-bare-cr", mk(P, [TE], b"5\rhello\r\n0\r\n\r\n"), {400}, None),
    ("trailer-obs-fold", mk(P, [TE], ch((b"5", b"hello"), trailer=b"X-T: a\r\n b\r\n")),
     {400}, None),
    ("trailer-bare-lf", mk(P, [TE], ch((b"5", b"hello"), trailer=b"X-T: a\n")), {400}, None),
    ("trailer-end-bare-lf", mk(P, [TE], ch((b"5", b"hello"), trailer=b"X-T: a\r\n")[:-2]
                               + b"\n"), {400}, None),
    ("trailer-no-colon", mk(P, [TE], ch((b"5", b"hello"), trailer=b"X-T a\r\n")), {400},
     None),
    ("trailer-nul", mk(P, [TE], ch((b"5", b"hello"), trailer=b"X-T: a\x00\r\n")), {400},
     None),
    ("trailer-content-length", mk(P, [TE], ch((b"5", b"hello"),
                                              trailer=b"Content-Length: 50\r\n")),
     {200, 400}, mk(P, [TE], BODY5)),
    ("trailer-40k", mk(P, [TE], ch((b"5", b"hello"), trailer=b"".join(
        b"X-T%d: %s\r\n" % (i, b"t" * 1000) for i in range(40)))), {400, 431}, None),
    # --- bare CR / LF
    ("cr-in-request-line", b"GET /h\r HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("lf-in-target", b"GET /a\nb HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("cr-after-name", mk(G, [b"X-A\r: b"]), {400}, None),
    ("cr-cr-lf", mk(G, [b"X-A: b\r\rX-B: c"]), {400}, None),
    ("lf-cr-lf", mk(G, [b"X-A: b\n\rX-B: c"]), {400}, None),
    ("cr-before-end", b"GET /h HTTP/1.1\r\nHost: localhost\r\n\r\r\n", {400}, None),
    ("lf-only-end", b"GET /h HTTP/1.1\r\nHost: localhost\r\n\n", {400}, None),
    # --- obs-fold
    ("obs-fold-host", b"GET /h HTTP/1.1\r\nHost: local\r\n host\r\n\r\n", {400}, None),
    ("obs-fold-first-line", b"GET /h HTTP/1.1\r\n X-A: b\r\nHost: localhost\r\n\r\n", {400},
     None),
    # --- NUL and control bytes
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("nul-in-name", mk(G, [b"X-\x00A: b"]), {400}, None),
    ("nul-in-method", b"GE\x00T /h HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("del-in-value", mk(G, [b"X-A: b\x7fc"]), {400}, None),
    ("esc-in-value", mk(G, [b"X-A: \x1b[31m"]), {400}, None),
    ("vtab-in-value", mk(G, [b"X-A: b\x0bc"]), {400}, None),
    ("formfeed-in-value", mk(G, [b"X-A: b\x0cc"]), {400}, None),
    ("tab-in-value", mk(G, [b"X-A: b\tc"]), {200}, SAME),
    ("obs-text-in-value", mk(G, [b"X-A: \xc3\xa9\xff"]), {200}, SAME),
    # --- header names
    ("name-inner-space", mk(G, [b"X A: b"]), {400}, None),
    ("name-tab-before-colon", mk(G, [b"X-A\t: b"]), {400}, None),
    ("name-non-ascii", mk(G, [b"X-\xc3\xa9: b"]), {400}, None),
    ("name-paren", mk(G, [b"X(A): b"]), {400}, None),
    ("name-slash", mk(G, [b"X/A: b"]), {400}, None),
    ("name-at", mk(G, [b"X@A: b"]), {400}, None),
    ("name-quote", mk(G, [b'X"A: b']), {400}, None),
    ("name-brace", mk(G, [b"X{A}: b"]), {400}, None),
    ("name-equals", mk(G, [b"X=A: b"]), {400}, None),
    ("name-colon-in-value", mk(G, [b"X:A: b"]), {200}, SAME),
    ("name-40k", mk(G, [b"X" * 40000 + b": b"]), {431}, None),
    ("value-40k", mk(G, [b"X-A: " + b"v" * 40000]), {431}, None),
    # --- Host confusion
    ("abs-form-other-host", mk(b"GET http://alt.test/p?q HTTP/1.1"), {200}, SAME),
    ("abs-form-ipv6", mk(b"GET http://[::1]:8443/x HTTP/1.1"), {200}, SAME),
    ("abs-form-trailing-dot", mk(b"GET https://localhost./x HTTP/1.1"), {200}, SAME),
    ("abs-form-userinfo", mk(b"GET http://user:pw@localhost/ HTTP/1.1"), {400}, None),
    ("abs-form-userinfo-only", mk(b"GET http://@localhost/ HTTP/1.1"), {400}, None),
    ("abs-form-backslash-at", mk(b"GET http://localhost\\@evil.test/ HTTP/1.1"), {400}, None),
    ("abs-form-empty-host", mk(b"GET http:/// HTTP/1.1"), {400}, None),
    ("abs-form-port-range", mk(b"GET http://localhost:99999/ HTTP/1.1"), {400}, None),
    ("abs-form-port-alpha", mk(b"GET http://localhost:ab/ HTTP/1.1"), {400}, None),
    ("abs-form-bad-ipv6", mk(b"GET http://[::g]/ HTTP/1.1"), {400}, None),
    ("abs-form-fragment", mk(b"GET http://localhost/#f HTTP/1.1"), {400}, None),
    ("abs-form-ws-scheme", mk(b"GET ws://localhost/ HTTP/1.1"), {400}, None),
    ("abs-form-without-host-header", mk(b"GET http://localhost/x HTTP/1.1", host=None),
     {400}, None),
    ("authority-form-on-get", mk(b"GET localhost:443 HTTP/1.1"), {400}, None),
    ("host-userinfo", mk(G, host=b"user@localhost"), {400}, None),
    ("host-empty-port", mk(G, host=b"localhost:"), {200, 400}, SAME),
    ("host-port-overflow", mk(G, host=b"localhost:65536"), {400}, None),
    ("host-port-negative", mk(G, host=b"localhost:-1"), {400}, None),
    ("host-port-plus", mk(G, host=b"localhost:+443"), {400}, None),
    ("host-two-ports", mk(G, host=b"localhost:1:2"), {400}, None),
    ("host-ipv6", mk(G, host=b"[::1]:8443"), {200}, SAME),
    ("host-ipv6-unclosed", mk(G, host=b"[::1"), {400}, None),
    ("host-ipv6-garbage", mk(G, host=b"[zz::1]"), {400}, None),
    ("host-ipv6-unbracketed", mk(G, host=b"::1"), {400}, None),
    ("host-trailing-dot", mk(G, host=b"localhost."), {200}, SAME),
    ("host-whitespace-only", mk(G, host=b"   "), {400}, None),
    ("host-bad-pct", mk(G, host=b"local%zzhost"), {400}, None),
    ("host-non-ascii", mk(G, host=b"l\xc3\xb6calhost"), {400}, None),
    ("host-backslash", mk(G, host=b"localhost\\evil"), {400}, None),
    ("host-question", mk(G, host=b"localhost?x"), {400}, None),
    ("host-hash", mk(G, host=b"localhost#x"), {400}, None),
    ("host-tab-inside", mk(G, host=b"local\thost"), {400}, None),
    ("host-comma-list", mk(G, host=b"localhost, evil.test"), {400}, None),
    # --- versions and request targets
    ("version-1.2", b"GET /h HTTP/1.2\r\nHost: localhost\r\n\r\n", {505}, None),
    ("version-3.0", b"GET /h HTTP/3.0\r\nHost: localhost\r\n\r\n", {505}, None),
    ("version-lowercase", b"GET /h http/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("version-1.10", b"GET /h HTTP/1.10\r\nHost: localhost\r\n\r\n", {400}, None),
    ("version-01.1", b"GET /h HTTP/01.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("version-missing", b"GET /h \r\nHost: localhost\r\n\r\n", {400}, None),
    ("version-trailing-space", b"GET /h HTTP/1.1 \r\nHost: localhost\r\n\r\n", {400}, None),
    ("tab-separators", b"GET\t/h\tHTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("double-space", b"GET  /h HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("leading-space", b" GET /h HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("method-lowercase", b"get /h HTTP/1.1\r\nHost: localhost\r\n\r\n", {400, 405, 501},
     None),
    ("method-9k", b"A" * 9000 + b" /h HTTP/1.1\r\nHost: localhost\r\n\r\n", {400, 414, 501},
     None),
    ("asterisk-on-get", b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("target-del", b"GET /\x7f HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("target-non-ascii", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("target-fragment", b"GET /a#b HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    # broken escapes and %00: each application decodes them its own way,
    # and a NUL ends a C string early (nginx: 400)
    ("pct-nul", b"GET /api%00/x HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("pct-not-hex", b"GET /a%zz/ HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("pct-cut", b"GET /a/x%4 HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("pct-trailing", b"GET /a/x% HTTP/1.1\r\nHost: localhost\r\n\r\n", {400}, None),
    ("target-dotdot-backslash", b"GET /a/..\\..\\etc HTTP/1.1\r\nHost: localhost\r\n\r\n",
     {400}, None),
    ("target-dotdot-encoded-slash", b"GET /a/%2e%2e%2fetc HTTP/1.1\r\nHost: localhost\r\n\r\n",
     {400}, None),
    # --- h2c and Upgrade abuse: never an upgrade, the headers go
    ("h2c-upgrade", mk(G, [b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]), {200}, SAME),
    ("h2c-upgrade-post", mk(P, [b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                                b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                                b"Content-Length: 5"], b"hello"), {200}, SAME),
    ("websocket-on-post", mk(P, [b"Connection: upgrade", b"Upgrade: websocket",
                                 b"Sec-WebSocket-Version: 13",
                                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                 b"Content-Length: 5"], b"hello"), {200, 400}, SAME),
    ("websocket-on-http10", mk(b"GET /h HTTP/1.0", [b"Connection: upgrade",
                                                    b"Upgrade: websocket"]), {200, 400}, SAME),
    ("websocket-without-connection", mk(G, [b"Upgrade: websocket",
                                            b"Sec-WebSocket-Version: 13"]), {200}, SAME),
    ("upgrade-twice", mk(G, [b"Connection: upgrade", b"Upgrade: websocket",
                             b"Upgrade: websocket"]), {200, 400}, SAME),
    # --- Expect
    ("expect-unknown", mk(G, [b"Expect: bogus"]), {417}, None),
    ("expect-two", mk(P, [b"Expect: 100-continue", b"Expect: 100-continue",
                          b"Content-Length: 5"], b"hello"), {400, 417}, None),
]


def run_case(env, cid, data, ok, canon):
    data = data.replace(b"{ID}", cid.encode())
    if canon is SAME:
        canon = data
    elif canon is not None:
        canon = canon.replace(b"{ID}", cid.encode())
    snap = len(env.b.conn_bytes)
    head_method = data.split(b" ", 1)[0].decode("latin-1")
    with Client(env.port, env.certs, timeout=5) as c:
        try:
            c.send(data)
        except (ConnectionError, ssl.SSLError):
            pass  # moat closed while the input was still being sent
        r = read_status(c, head_method)
        status = r.status if r is not None else None
        assert status in ok, "answered %s, expected one of %s: %r" % (status, sorted(
            ok, key=str), r)
        if status is not None and status in CLOSING:
            assert c.closed_within(3), "connection left open after %d" % status
    accepted = status is not None and 200 <= status < 300
    if accepted:
        assert canon is not None, "moat accepted and forwarded a request it must refuse"
        assert r.header("X-Seen-Id") == cid, r
        env.checker.expect(cid, data, canonical=canon)
    after = served_normally(env)
    ids = ([cid] if accepted else []) + [after]
    check_new(env, snap, ids, partial=None if accepted else cid)


def check_new(env, snap, ids, partial=None):
    """Differential check of the upstream connections opened since snap:
    exactly the requests ids, each exactly as expected.  partial: the id of
    a rejected request whose head and the valid start of its body moat may
    already have streamed before the body turned bad -- an incomplete
    request on an upstream connection that moat then closed, never a
    complete one."""
    new = {}
    with env.b._lock:
        streams = [(i, bytes(s)) for i, s in enumerate(env.b.conn_bytes[snap:], snap)]
    for i, s in streams:
        try:
            reqs, rest = httpref.parse_stream(s)
        except httpref.ParseError as e:
            raise AssertionError("strict parse error on an upstream connection: %s\n%r"
                                 % (e, s[:600]))
        if rest and partial is not None and b"\r\nX-Diff-Id: %s\r\n" % partial.encode() in \
                rest.split(b"\r\n\r\n", 1)[0] + b"\r\n":
            httpref.parse_head(rest)  # the head itself is strictly valid
            wait_for(lambda: i in env.b.closed, 5, "moat to close the upstream connection "
                     "of a rejected request")
            rest = b""
        assert not rest, "bytes left over on an upstream connection: %r" % rest[:300]
        for q in reqs:
            k = (q.all("X-Diff-Id") or [b"?"])[0].decode("latin-1")
            new.setdefault(k, []).append(q)
    unexpected = {k: [(q.method, q.target) for q in v] for k, v in new.items() if k not in ids}
    assert not unexpected, "requests that must not reach the backend did: %r" % unexpected
    for k in ids:
        got = new.get(k, [])
        assert len(got) == 1, "request %s forwarded %d times" % (k, len(got))
        diff = httpref.compare(got[0], env.checker.expected[k])
        assert not diff, "request %s forwarded differently:\n - %s" % (k, "\n - ".join(diff))


@pytest.mark.parametrize("cid,data,ok,canon", CASES, ids=[c[0] for c in CASES])
def test_hostile_request(env, cid, data, ok, canon):
    run_case(env, cid, data, ok, canon)


# --------------------------------------------------------------------------
# pipelined requests after a bad one

BAD_IN_PIPELINE = [
    ("bare-lf", b"GET /bad HTTP/1.1\nHost: localhost\n\n", {400}),
    ("cl-te", b"POST /bad HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("obs-fold", b"GET /bad HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n", {400}),
    ("bad-chunk", b"POST /bad HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5x\r\nhello\r\n0\r\n\r\n", {400}),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    ("too-big-head", b"GET /bad HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 40000
     + b"\r\n\r\n", {431}),
    ("body-over-limit", b"POST /bad HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n"
                        b"\r\n", {413}),
    ("http-2.0", b"GET /bad HTTP/2.0\r\nHost: localhost\r\n\r\n", {505}),
]


@pytest.mark.parametrize("bad,ok", [(b[1], b[2]) for b in BAD_IN_PIPELINE],
                         ids=[b[0] for b in BAD_IN_PIPELINE])
def test_nothing_after_a_bad_request_reaches_the_backend(env, bad, ok):
    """One write: a good request, a bad one, then good-looking requests
    (also smuggled inside what would be the bad one's body): the first is
    served, the bad one answered, nothing after it forwarded, and the
    connection closed."""
    first, last = env.next_id("p"), env.next_id("p")
    good1 = ("GET /first HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\n\r\n"
             % first).encode()
    good2 = ("GET /last HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\n\r\n" % last).encode()
    snap = len(env.b.conn_bytes)
    with Client(env.port, env.certs, timeout=5) as c:
        c.send(good1 + bad + good2 + good2)
        r1 = read_status(c)
        assert r1 is not None and r1.status == 200 and r1.header("X-Seen-Id") == first, r1
        r2 = read_status(c)
        assert r2 is not None and r2.status in ok, r2
        assert c.closed_within(3), "connection left open after %d" % r2.status
    env.checker.expect(first, good1)
    after = served_normally(env)
    check_new(env, snap, [first, after])


# --------------------------------------------------------------------------
# differential check over a large set of valid but unusual requests

TCHARS = "!#$%&'*+-.^_`|~"
PCHARS = "abcXYZ019-._~!$&'()*+,;=:@"


def gen_requests(rng, n):
    """n (id-less) valid, unusual requests: (method, bytes template, is_head)."""
    out = []
    for i in range(n):
        kind = rng.choice(["get", "get", "post-cl", "post-chunked", "head", "options",
                           "options-star", "abs", "big", "many", "http10", "expect",
                           "conn-tokens", "webdav", "delete", "put-empty"])
        method = {"post-cl": "POST", "post-chunked": "PATCH", "head": "HEAD",
                  "options": "OPTIONS", "options-star": "OPTIONS", "webdav": rng.choice(
                      ["PROPFIND", "MKCOL", "REPORT", "LOCK", "PURGE"]),
                  "delete": "DELETE", "put-empty": "PUT"}.get(kind, "GET")
        path = "/" + "/".join("".join(rng.choice(PCHARS) for _ in range(rng.randint(0, 12)))
                              for _ in range(rng.randint(1, 4)))
        path = path.replace("/./", "/a/").replace("/../", "/b/")
        path = re.sub(r"(^|/)\.\.?(?=/|$)", r"\1x", path)
        if rng.random() < 0.3:
            path += "%" + rng.choice(["20", "41", "e9", "FF", "2F"])
        if rng.random() < 0.5:
            path += "?" + "&".join("%s=%s" % (rng.choice("abq"), "".join(
                rng.choice(PCHARS + "/?") for _ in range(rng.randint(0, 8))))
                for _ in range(rng.randint(1, 3)))
        target = path
        version = "HTTP/1.1"
        if kind == "options-star":
            target = "*"
        if kind == "abs":
            target = rng.choice(["http://localhost", "https://LOCALHOST:8443",
                                 "http://alt.test", "https://[::1]", "http://site.test."]) + path
        if kind == "http10":
            version = "HTTP/1.0"
        hs = []
        if kind != "http10" or rng.random() < 0.5:
            hs.append(("Host", rng.choice(["localhost", "LocalHost:8443", "site.test",
                                           "127.0.0.1", "[::1]:1", "my_host.test"])))
        if kind == "http10":
            hs.append(("Connection", "keep-alive"))
        hs.append(("X-Diff-Id", "{ID}"))
        crowded = kind in ("big", "many")
        for _ in range(rng.randint(0, 2 if crowded else 6)):
            name = "".join(rng.choice(TCHARS + "abcXYZ09") for _ in range(rng.randint(1, 20)))
            if name.lower() in httpref.HOP_BY_HOP or name.lower() in (
                    "host", "content-length", "expect", "x-diff-id", "forwarded") \
                    or name.lower().startswith("x-forwarded-"):
                name = "X-" + name
            value = rng.choice(["", "plain", "  padded\t ", "a\tb  c", "q=\"a, b\";x=1",
                                "\xe9t\xe9", "=;,:/?@[]", "%00",
                                "x" * rng.randint(10 if crowded else 100, 20 if crowded else 2000)])
            hs.append((name, value))
        if rng.random() < 0.2:
            hs.append(("X-Forwarded-For", "6.6.6.6"))
            hs.append(("Forwarded", "for=6.6.6.6"))
        if kind == "big":
            # close to the 16k head limit (moat adds its X-Forwarded-* on the way)
            total = rng.randint(12000, 15500)
            k = rng.randint(1, 8)
            for j in range(k):
                hs.append(("X-Big-%d" % j, "b" * (total // k - 20)))
        if kind == "many":
            for j in range(rng.randint(60, 90)):
                hs.append(("X-M%d" % j, str(j)))
        if kind == "conn-tokens":
            hs.append(("Connection", "keep-alive, X-Drop-Me, x-drop-too"))
            hs += [("X-Drop-Me", "1"), ("X-Drop-Too", "2"), ("Keep-Alive", "timeout=5"),
                   ("TE", "trailers"), ("Proxy-Connection", "keep-alive"),
                   ("Upgrade", "foo/2"), ("Proxy-Authorization", "Basic eDp5")]
        body = b""
        if kind in ("post-cl", "expect", "put-empty", "webdav") and kind != "put-empty":
            body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 100, 5000])))
            hs.append(("Content-Length", str(len(body))))
            if kind == "expect":
                hs.append(("Expect", "100-continue"))
            raw_body = body
        elif kind == "put-empty":
            hs.append(("Content-Length", "0"))
            raw_body = b""
        elif kind == "post-chunked":
            hs.append(("Transfer-Encoding", rng.choice(["chunked", "Chunked"])))
            chunks = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 700)))
                      for _ in range(rng.randint(0, 5))]
            raw_body = b""
            for cpart in chunks:
                size = "%x" % len(cpart)
                if rng.random() < 0.3:
                    size = size.upper().rjust(6, "0")
                ext = rng.choice(["", ";a=b", ";flag", ';q="x, y;z"', ';n=""'])
                raw_body += ("%s%s\r\n" % (size, ext)).encode() + cpart + b"\r\n"
                body += cpart
            raw_body += b"0" + rng.choice([b"", b";end=1"]) + b"\r\n"
            if rng.random() < 0.5:
                raw_body += b"X-Trailer: t\r\nX-Sum: 1\r\n"
            raw_body += b"\r\n"
        else:
            raw_body = b""
        head = "%s %s %s\r\n" % (method, target, version)
        head += "".join("%s: %s\r\n" % hv for hv in hs) + "\r\n"
        out.append((method, head.encode("latin-1") + raw_body, version == "HTTP/1.0"))
    return out


@pytest.fixture(scope="module")
def pooled_env(tmp_path_factory, certs):
    """As env, with upstream keep-alive: requests share pooled upstream
    connections, where framing mistakes would desynchronise them."""
    e = start_env(tmp_path_factory, certs, "pooled", keepalive=8,
                  extra="timeouts:\n  client_header: 5s\n  client_idle: 5s\n")
    yield e
    stop_env(e)


def test_differential_valid_unusual_requests(pooled_env):
    """~400 valid requests with odd names, values, targets, framings, near the
    limits, one per connection or in pipelined bursts: every one is served,
    and the bytes the backend got parse strictly as exactly those requests."""
    env = pooled_env
    rng = random.Random(0x5eed)
    reqs = gen_requests(rng, 400)
    i, ids, rejected = 0, [], []
    while i < len(reqs):
        burst = rng.choice([1, 1, 2, 5, 12, 30])
        group = reqs[i:i + burst]
        i += burst
        # an HTTP/1.0 request only as the last of a burst
        sent = []
        payload = b""
        for method, tmpl, is10 in group:
            did = env.next_id("v")
            data = tmpl.replace(b"{ID}", did.encode())
            sent.append((did, method, data))
            payload += data
        with Client(env.port, env.certs, timeout=10) as c:
            # a burst goes in one write, or byte-split across TLS records
            if rng.random() < 0.2:
                for k in range(0, len(payload), 7):
                    c.send(payload[k:k + 7])
            else:
                c.send(payload)
            for did, method, data in sent:
                r = read_status(c, method)
                if r is None or r.status != 200:
                    rejected.append((did, r and r.status, data[:200]))
                    break
                assert r.header("X-Seen-Id") == did, (did, r)
                env.checker.expect(did, data)
                ids.append(did)
    assert not rejected, "valid requests not served: %r" % rejected[:10]
    env.checker.check(ids)
    assert len(ids) == len(reqs)


def test_differential_pipelined_mixed_framing(pooled_env):
    """Back-to-back bodies in every framing on one connection: body bytes
    never turn into a request and requests never merge."""
    env = pooled_env
    parts, ids = [], []
    for k in range(40):
        did = env.next_id("m")
        inner = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
        if k % 3 == 0:
            data = b"POST /m HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\nContent-Length: %d" \
                   b"\r\n\r\n%s" % (did.encode(), len(inner), inner)
        elif k % 3 == 1:
            data = b"POST /m HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\nTransfer-Encoding: " \
                   b"chunked\r\n\r\n%x;x=\"0; 1\"\r\n%s\r\n0\r\nX-T: 0\r\n\r\n" % (
                       did.encode(), len(inner), inner)
        else:
            data = b"HEAD /m HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\n\r\n" % did.encode()
        parts.append((did, data))
    with Client(env.port, env.certs, timeout=10) as c:
        c.send(b"".join(d for _, d in parts))
        for did, data in parts:
            r = c.read_response("HEAD" if data.startswith(b"HEAD") else "GET")
            assert r.status == 200 and r.header("X-Seen-Id") == did, (did, r)
            env.checker.expect(did, data)
            ids.append(did)
    env.checker.check(ids, allow_unexpected=True)
    assert not [q for q in env.b.requests if q.target == "/smuggled"]


# --------------------------------------------------------------------------
# upgrade abuse against a backend that answers 101 to anything

def test_upgrade_not_granted_by_an_eager_backend(certs, backend, moat_factory):
    """A backend that answers every request with 101 and then echoes: moat
    must not open a tunnel for requests that are not a valid WebSocket
    upgrade (POST, HTTP/1.0, no Connection: upgrade), so that the bytes the
    client sends next are never delivered raw to the backend."""
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    backend.handler = lambda req: Upgrade(b"RAW-TUNNEL\n")
    shapes = [
        b"POST /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"GET /ws HTTP/1.0\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    ]
    for shape in shapes:
        with Client(m.port(), certs, timeout=5) as c:
            c.send(shape + b"GET /after-101 HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                   b"\r\n\r\n")
            data = c.read_until_close()
        assert data.startswith(b"HTTP/1.1 502 "), (shape, data[:300])
        assert b"RAW-TUNNEL" not in data and b" 101 " not in data, (shape, data[:600])
    time.sleep(T(0.2))
    # every upstream connection carries exactly one complete request: the
    # bytes after the one that got the 101 were never tunnelled to it
    for cid, data in enumerate(list(backend.conn_bytes)):
        reqs, left = httpref.parse_stream(bytes(data))
        assert len(reqs) == 1 and not left, (cid, bytes(data)[:500])
    backend.handler = echo_handler
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/ok").status == 200


# --------------------------------------------------------------------------
# slow clients (slowhttptest)

def read_slow_csv(path):
    """slowhttptest -g's per-second CSV: [(second, closed, pending, connected)]."""
    rows = []
    with open(path) as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split(",")
            if len(parts) >= 4 and parts[0].isdigit():
                rows.append(tuple(int(x) for x in parts[:4]))
    return rows


class Prober(threading.Thread):
    """Sends normal requests on new connections every 100 ms and records
    their latency (None for a failure)."""

    def __init__(self, port, certs, target="/probe"):
        super().__init__(daemon=True)
        self.port, self.certs, self.target = port, certs, target
        self.results = []
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                with Client(self.port, self.certs, timeout=3) as c:
                    ok = c.request("GET", self.target).status == 200
            except (OSError, EOFError, ssl.SSLError, AssertionError):
                ok = False
            self.results.append(time.monotonic() - t0 if ok else None)
            self.stop_ev.wait(0.1)

    def finish(self):
        self.stop_ev.set()
        self.join(T(10))
        return self.results


def metric_active(m):
    from opslib import scrape
    return scrape(m).value("moat_connections_active")


SLOW_YAML_EXTRA = ("timeouts:\n  client_header: 2s\n  client_idle: 2s\n"
                   "admin:\n  bind: \"127.0.0.1:0\"\n")

need_slowhttptest = pytest.mark.skipif(not have("slowhttptest"),
                                       reason="slowhttptest not installed")


def run_slow_attack(m, certs, tmp_path, args, duration):
    """Runs slowhttptest for duration seconds while a prober makes normal
    requests; samples moat's open connections every 250 ms.  Returns
    (slowhttptest output, CSV rows, prober latencies, [(t, active)])."""
    prober = Prober(m.port(), certs)
    prober.start()
    out = str(tmp_path / "slow")
    p = subprocess.Popen(["slowhttptest"] + args + ["-l", str(duration), "-g", "-o", out, "-u",
                                                    "https://127.0.0.1:%d/slow" % m.port()],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    samples, t0 = [], time.monotonic()
    try:
        while p.poll() is None and time.monotonic() - t0 < T(duration + 20):
            samples.append((time.monotonic() - t0, metric_active(m)))
            time.sleep(0.25)
    finally:
        if p.poll() is None:
            p.kill()
        text = p.communicate(timeout=T(10))[0].decode("latin-1")
        results = prober.finish()
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    return text, read_slow_csv(out + ".csv"), results, samples


def check_attack_outcome(m, certs, n, closed_by, text, rows, results, samples, what):
    print("slowhttptest (%s): %s" % (what, text.strip().splitlines()[-1] if text.strip() else ""))
    print("seconds,closed,pending,connected: %r" % rows)
    print("moat connections (t, active): %r" % [(round(t, 1), int(a)) for t, a in samples])
    assert m.running(), "moat died under %s" % what
    peak = max(a for _, a in samples)
    assert peak >= 0.6 * n, "the attack never held its %d connections (peak %d): %s" % (
        n, peak, text[-800:])
    ok = [r for r in results if r is not None]
    assert results and len(ok) == len(results), \
        "normal clients failed during %s: %d of %d" % (what, len(results) - len(ok),
                                                        len(results))
    assert max(ok) < T(1.0), "a normal request took %.2fs during %s" % (max(ok), what)
    # every slow connection must be gone closed_by seconds after the attack
    # peaked (slowhttptest ends early once all are closed: then the wait
    # below checks moat's side)
    t_peak = min(t for t, a in samples if a == peak)
    late = [a for t, a in samples if t > t_peak + closed_by]
    assert not late or max(late) <= 3, \
        "moat still holds %d slow connections %.1fs after the attack peaked" % (max(late),
                                                                               closed_by)
    wait_for(lambda: metric_active(m) <= 1, 5, "moat to close every slow connection")
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/after").status == 200


@need_slowhttptest
def test_slowloris(certs, backend, moat_factory, tmp_path):
    """slowhttptest -H: 300 connections sending a header line every second;
    client_header is 2s, so each is closed (408) about 2s after it began."""
    m = moat_factory(basic_yaml(certs, [backend.addr], extra=SLOW_YAML_EXTRA))
    out = run_slow_attack(m, certs, tmp_path, ["-H", "-c", "300", "-r", "300", "-i", "1",
                                               "-t", "GET", "-p", "3"], 7)
    check_attack_outcome(m, certs, 300, 3.0, *out, "slowloris")
    # (slowhttptest's own probe requests are complete and reach the backend)


@need_slowhttptest
def test_slow_body(certs, backend, moat_factory, tmp_path):
    """slowhttptest -B: 200 POSTs announcing 8 KiB and sending 10 bytes
    every 3s, more than client_idle (2s) apart: moat closes them (and their
    upstream connections) client_idle after the last bytes each sent, so at
    most 3 + 2 s after the attack peaked (client_idle is the wait between a
    body's reads, as nginx's client_body_timeout)."""
    m = moat_factory(basic_yaml(certs, [backend.addr], extra=SLOW_YAML_EXTRA))
    out = run_slow_attack(m, certs, tmp_path, ["-B", "-c", "200", "-r", "200", "-i", "3",
                                               "-s", "8192", "-t", "POST", "-p", "3"], 7)
    check_attack_outcome(m, certs, 200, 5.0, *out, "slow body")

    def slow_upstreams_open():
        with backend._lock:
            return [i for i, b in enumerate(backend.conn_bytes)
                    if bytes(b[:10]).startswith(b"POST /slow") and i not in backend.closed]
    wait_for(lambda: not slow_upstreams_open(), 5, "upstream connections of slow bodies closed")


@need_slowhttptest
def test_slow_read(certs, backend, moat_factory, tmp_path):
    """slowhttptest -X: 100 connections pipelining requests for a 1 MiB
    response and reading 32 bytes every 3s through a tiny window: moat
    must close them once they stall longer than client_idle, without
    buffering the responses."""
    m = moat_factory(basic_yaml(certs, [backend.addr], extra=SLOW_YAML_EXTRA))
    big = b"r" * (1 << 20)
    backend.handler = lambda req: Resp(200, big) if req.target == "/slow" else Resp(200, b"ok")
    rss = []
    sampler = threading.Timer(3.0, lambda: rss.append(rss_kib(m.proc.pid)))
    sampler.start()
    out = run_slow_attack(m, certs, tmp_path, ["-X", "-c", "100", "-r", "100", "-k", "3",
                                               "-w", "512", "-y", "1024", "-n", "3", "-z", "32",
                                               "-p", "3"], 8)
    sampler.cancel()
    check_attack_outcome(m, certs, 100, 4.0, *out, "slow read")
    if not SANITIZED:
        assert rss and rss[0] < 100 * 1024, "RSS %r KiB under a slow-read attack" % rss


# --------------------------------------------------------------------------
# TLS abuse

def real_client_hello(certs, server_hostname="localhost", **kw):
    ctx = client_context(certs, **kw)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return obj, inc, out, out.read()


def finish_handshake(s, obj, inc, out):
    """Drives the memory-BIO client obj over socket s to the end of its
    handshake (the ClientHello already sent)."""
    deadline = time.monotonic() + T(5)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                s.sendall(pending)
            assert time.monotonic() < deadline, "handshake did not complete"
            d = s.recv(65536)
            assert d, "moat closed during the handshake"
            inc.write(d)
    pending = out.read()
    if pending:
        s.sendall(pending)


def served_over(env, s, obj, inc, out, tag):
    """One request over the memory-BIO client obj: served and forwarded."""
    did = env.next_id(tag)
    req = ("GET /%s HTTP/1.1\r\nHost: localhost\r\nX-Diff-Id: %s\r\nConnection: close"
           "\r\n\r\n" % (tag, did)).encode()
    obj.write(req)
    s.sendall(out.read())
    data = b""
    while True:
        try:
            data += obj.read(65536)
            if b"\r\n\r\n" in data and b"id=" in data:
                break
        except ssl.SSLWantReadError:
            d = s.recv(65536)
            if not d:
                break
            inc.write(d)
    assert data.startswith(b"HTTP/1.1 200") and did.encode() in data, data[:300]


def ext(t, data):
    return struct.pack(">HH", t, len(data)) + data


def raw_client_hello(version, suites, record_version=0x0301, sni=b"localhost", extensions=None,
                     padding=0):
    """A hand-made ClientHello offering exactly version and suites."""
    if extensions is None:
        sn = b"\x00" + struct.pack(">H", len(sni)) + sni
        extensions = (ext(0, struct.pack(">H", len(sn)) + sn)
                      + ext(10, b"\x00\x06\x00\x1d\x00\x17\x00\x18")     # groups
                      + ext(11, b"\x01\x00")                             # point formats
                      + ext(13, b"\x00\x08\x04\x03\x05\x03\x08\x04\x04\x01")  # sig algs
                      + ext(0xff01, b"\x00"))                            # renegotiation_info
    if padding:
        extensions += ext(21, b"\x00" * padding)
    body = struct.pack(">H", version) + os.urandom(32) + b"\x00"
    body += struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites)
    body += b"\x01\x00"
    if extensions:
        body += struct.pack(">H", len(extensions)) + extensions
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    out = b""
    for i in range(0, len(hs), 16384):
        frag = hs[i:i + 16384]
        out += b"\x16" + struct.pack(">HH", record_version, len(frag)) + frag
    return out


def server_answer(port, data, timeout=3):
    """Sends data, returns ("hello", version, suite) on a ServerHello,
    ("alert", level, description) on an alert, ("closed",) or ("timeout",)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=T(timeout))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        try:
            s.sendall(data)
        except ConnectionError:
            return ("closed",)
        buf = b""
        while len(buf) < 5 or len(buf) < 5 + struct.unpack(">H", buf[3:5])[0]:
            try:
                d = s.recv(65536)
            except socket.timeout:
                return ("timeout",)
            except ConnectionError:
                return ("closed",)
            if not d:
                return ("closed",) if not buf else ("partial", buf)
            buf += d
        if buf[0] == 0x15:
            return ("alert", buf[5], buf[6])
        if buf[0] == 0x16 and buf[5] == 2:
            sid_len = buf[5 + 4 + 2 + 32]
            p = 5 + 4 + 2 + 32 + 1 + sid_len
            return ("hello", struct.unpack(">H", buf[9:11])[0], struct.unpack(">H",
                                                                     buf[p:p + 2])[0])
        return ("other", buf[:16])
    finally:
        s.close()


GOOD12 = [0xC02B, 0xC02C, 0xCCA9]  # ECDHE-ECDSA with AES-GCM / ChaCha20-Poly1305


def test_handmade_client_hello_control(env):
    """The builder below is sound: a TLS 1.2 hello offering ECDHE-ECDSA-GCM
    gets a ServerHello with one of the offered suites."""
    a = server_answer(env.port, raw_client_hello(0x0303, GOOD12))
    assert a[0] == "hello" and a[1] == 0x0303 and a[2] in GOOD12, a


WEAK = {
    # the certificate is ECDSA: suites moat could actually pick are the
    # ECDSA and anonymous ones; RSA ones are offered too for completeness
    "rc4": [0xC007, 0xC016, 0x0018, 0x0005, 0x0004, 0xC011],
    "3des": [0xC008, 0xC017, 0x001B, 0x000A, 0xC012, 0x0016],
    "null": [0xC006, 0xC015, 0xC001, 0x0001, 0x0002, 0x003B, 0xC010],
    "export": [0x0003, 0x0006, 0x0008, 0x000B, 0x000E, 0x0011, 0x0014, 0x0017, 0x0019],
    "anonymous": [0xC018, 0xC019, 0x0034, 0x003A, 0x006C, 0x006D, 0x00A6, 0x00A7],
    "cbc-only": [0xC009, 0xC00A, 0xC023, 0xC024],
    "static-ecdh-gcm": [0xC02D, 0xC02E, 0xC025, 0xC026],
    "static-rsa-gcm": [0x009C, 0x009D],
}


@pytest.mark.parametrize("kind", sorted(WEAK))
def test_weak_suites_only_refused(env, kind):
    a = server_answer(env.port, raw_client_hello(0x0303, WEAK[kind]))
    # a fatal handshake_failure, as RFC 5246 7.4.1.3 asks (wolfSSL alone
    # just closes)
    assert a == ("alert", 2, 40), "moat's answer to only %s suites: %r" % (kind, a)
    served_normally(env)


@pytest.mark.parametrize("name,version", [("SSLv3", 0x0300), ("TLSv1.0", 0x0301),
                                          ("TLSv1.1", 0x0302)])
def test_old_protocol_versions_refused(env, name, version):
    """Offered with suites that exist in that version (and good ones too):
    no ServerHello."""
    suites = [0xC009, 0xC00A, 0x002F, 0x0035, 0x000A] + GOOD12
    a = server_answer(env.port, raw_client_hello(version, suites, record_version=version))
    assert a[0] in ("alert", "closed"), "moat negotiated %s: %r" % (name, a)
    served_normally(env)


def test_tls11_refused_by_openssl_s_client(env):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % env.port,
                        "-servername", "localhost", "-tls1_1", "-cipher",
                        "ALL:@SECLEVEL=0"], input=b"", capture_output=True, timeout=T(10))
    out = (r.stdout + r.stderr).decode("latin-1")
    assert "Cipher is (NONE)" in out, out
    assert not re.search(r"New, TLSv1(\.1)?, Cipher is (?!\(NONE\))", out), out
    served_normally(env)


def test_client_hello_in_one_byte_segments(env, certs):
    """A real ClientHello sent one byte per TCP segment completes and the
    request is served."""
    obj, inc, out, hello = real_client_hello(certs)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i in range(len(hello)):
            s.sendall(hello[i:i + 1])
            if i % 8 == 0:
                time.sleep(0.001)
        finish_handshake(s, obj, inc, out)
        served_over(env, s, obj, inc, out, "seg")
    finally:
        s.close()


def split_into_records(hello, size):
    """The handshake records of hello again, with at most size bytes of
    payload each (RFC 8446 5.1 lets a sender split messages anywhere)."""
    out, i = b"", 0
    while i < len(hello):
        n = struct.unpack(">H", hello[i + 3:i + 5])[0]
        body = hello[i + 5:i + 5 + n]
        for k in range(0, len(body), size):
            out += hello[i:i + 3] + struct.pack(">H", len(body[k:k + size])) + body[k:k + size]
        i += 5 + n
    return out


@pytest.mark.parametrize("size", [1, 3, 50])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_client_hello_split_into_small_records(env, certs, version, size):
    """A ClientHello split over many records, down to one byte each (the
    handshake header itself split): it completes, the server name in it
    still picks the certificate, and the request is served."""
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    obj, inc, out, hello = real_client_hello(certs, server_hostname="site.test", minv=v, maxv=v)
    records = split_into_records(hello, size)
    assert records.count(b"\x16\x03") > 1
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    try:
        s.sendall(records)
        finish_handshake(s, obj, inc, out)  # verifies the name site.test
        assert obj.version() == "TLSv1." + version[-1]
        served_over(env, s, obj, inc, out, "split")
    finally:
        s.close()


@pytest.mark.parametrize("size", [None, 1], ids=["whole", "split"])
def test_tls13_change_cipher_spec_right_after_the_hello_is_dropped(env, certs, size):
    """RFC 8446 5: a change_cipher_spec record after the ClientHello (middlebox
    compatibility, sent with early data) is dropped; wolfSSL refused it
    before its ServerHello with illegal_parameter."""
    v = ssl.TLSVersion.TLSv1_3
    obj, inc, out, hello = real_client_hello(certs, minv=v, maxv=v)
    if size:
        hello = split_into_records(hello, size)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    try:
        s.sendall(hello + b"\x14\x03\x03\x00\x01\x01")
        finish_handshake(s, obj, inc, out)
        assert obj.version() == "TLSv1.3"
        served_over(env, s, obj, inc, out, "ccs")
    finally:
        s.close()


def test_split_client_hello_picks_the_certificate_by_its_server_name(certs, backend,
                                                                      moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], second_cert=True))
    obj, inc, out, hello = real_client_hello(certs, server_hostname="alt.test")
    s = socket.create_connection(("127.0.0.1", m.port()), timeout=T(5))
    try:
        s.sendall(split_into_records(hello, 7))
        finish_handshake(s, obj, inc, out)  # fails unless alt.test's certificate came
        assert "alt.test" in str(obj.getpeercert()["subject"])
    finally:
        s.close()


@pytest.mark.parametrize("pad,records", [(15000, 1), (17000, 2)])
def test_oversized_client_hello(env, pad, records):
    """ClientHellos of ~15 and ~17 KiB (a padding extension; the second spans
    two records): answered with a ServerHello or an alert, promptly."""
    data = raw_client_hello(0x0303, GOOD12, padding=pad)
    assert data.count(b"\x16\x03\x01") >= records
    t0 = time.monotonic()
    a = server_answer(env.port, data, timeout=5)
    assert a[0] in ("hello", "alert"), a
    assert time.monotonic() - t0 < T(1.5)
    served_normally(env)


def test_huge_client_hello_answered_promptly(env):
    """A 64 KiB handshake message in four records: a ServerHello, an alert
    or a close, at once (never a connection left waiting)."""
    data = raw_client_hello(0x0303, GOOD12, padding=65000)
    t0 = time.monotonic()
    a = server_answer(env.port, data, timeout=5)
    assert a[0] in ("hello", "alert", "closed"), a
    assert time.monotonic() - t0 < T(1.5)
    served_normally(env)


@pytest.mark.parametrize("length,sent", [(16385, 100), (18432, 18432)],
                         ids=["announced", "sent-whole"])
def test_first_record_over_16k_is_a_record_overflow(env, length, sent):
    """TLS plaintext records hold at most 2^14 bytes: a first record
    announcing more gets record_overflow at once (it waited out
    handshake_timeout), counted as a handshake error."""
    data = b"\x16\x03\x01" + struct.pack(">H", length) + b"\x01" + os.urandom(sent - 1)
    t0 = time.monotonic()
    a = server_answer(env.port, data, timeout=5)
    assert a == ("alert", 2, 22), a
    assert time.monotonic() - t0 < T(1.5)
    served_normally(env)


@pytest.mark.parametrize("sni, alert", [
    (b"localhost\x00evil", 112), (b"evil\x00localhost", 112),
    (b"a" * 256, 112), (b"a" * 300, 112), (b"", 50)],
    ids=["nul-after", "nul-before", "256-bytes", "300-bytes", "empty"])
def test_server_name_that_cannot_be_a_host_is_refused(env, sni, alert):
    """A NUL ends a C string: the name before it used to pick the
    certificate; a long name was cut to 255 bytes and an empty one got the
    default certificate.  Refused with OpenSSL's alerts: unrecognized_name
    (112), or decode_error (50) for an empty name."""
    a = server_answer(env.port, raw_client_hello(0x0303, GOOD12, sni=sni), timeout=5)
    assert a == ("alert", 2, alert), a
    served_normally(env)


def test_server_name_of_255_bytes_is_served(env):
    """The longest name DNS allows is a name like any other: no match, so
    the default certificate answers."""
    a = server_answer(env.port, raw_client_hello(0x0303, GOOD12, sni=b"a" * 255), timeout=5)
    assert a[0] == "hello", a


GARBAGE = [
    ("random-bytes", lambda: bytes([0xff]) + os.urandom(2000)),
    ("zeros", lambda: b"\x00" * 4096),
    ("bad-record-type", lambda: b"\x99\x03\x01\x00\x10" + os.urandom(16)),
    ("handshake-record-garbage", lambda: b"\x16\x03\x01\x01\x00" + os.urandom(256)),
    ("alert-first", lambda: b"\x15\x03\x03\x00\x02\x02\x28"),
    ("appdata-first", lambda: b"\x17\x03\x03\x00\x20" + os.urandom(32)),
    ("record-too-long", lambda: b"\x16\x03\x01\xff\xff" + os.urandom(65535)),
    ("record-zero-length", lambda: b"\x16\x03\x01\x00\x00" * 100),
    ("sslv2-hello", lambda: b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"
     + b"\x00\x00\x05\x00\x00\x04\x01\x00\x80\x07\x00\xc0" + os.urandom(16)),
]


@pytest.mark.parametrize("make", [g[1] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_instead_of_tls(env, make):
    """Not TLS at all, or broken records: an alert or a close within a
    second, nothing forwarded."""
    snap = len(env.b.conn_bytes)
    t0 = time.monotonic()
    a = server_answer(env.port, make(), timeout=3)
    assert a[0] in ("alert", "closed"), a
    assert time.monotonic() - t0 < T(1.5), "moat took %.1fs to refuse" % (time.monotonic() - t0)
    after = served_normally(env)
    check_new(env, snap, [after])


def established(env, certs, tls13=True):
    """(socket, SSLObject, in BIO, out BIO) after a completed handshake."""
    v = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    obj, inc, out, hello = real_client_hello(certs, minv=v, maxv=v)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    s.sendall(hello)
    finish_handshake(s, obj, inc, out)
    return s, obj, inc, out


def closed_soon(s, timeout):
    s.settimeout(T(timeout))
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except ConnectionError:
        return True
    except socket.timeout:
        return False


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
@pytest.mark.parametrize("what", ["garbage-record", "truncated-record-eof",
                                  "record-bad-mac", "record-too-long"])
def test_broken_records_after_handshake(env, certs, tls13, what):
    """Half a request, then a broken record: the connection is closed and
    the half request never reaches the backend."""
    snap = len(env.b.conn_bytes)
    s, obj, inc, out = established(env, certs, tls13)
    try:
        obj.write(b"GET /half HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
        rec = out.read()
        if what == "garbage-record":
            s.sendall(rec + b"\x17\x03\x03\x00\x40" + os.urandom(64))
            assert closed_soon(s, 3)
        elif what == "record-bad-mac":
            obj.write(b"more body")
            rec2 = bytearray(out.read())
            rec2[-1] ^= 0x55
            s.sendall(rec + bytes(rec2))
            assert closed_soon(s, 3)
        elif what == "record-too-long":
            s.sendall(rec + b"\x17\x03\x03\x48\x01" + os.urandom(0x4801))
            assert closed_soon(s, 3)
        else:
            obj.write(b"x" * 1000)
            rec2 = out.read()
            s.sendall(rec + rec2[:len(rec2) // 2])
            s.shutdown(socket.SHUT_WR)
            assert closed_soon(s, 3)
    finally:
        s.close()
    after = served_normally(env)
    check_new(env, snap, [after])
    assert not [q for q in env.b.requests if q.target == "/half"]


def test_truncated_record_stall_is_timed_out(env, certs):
    """A record header and half its body, then silence: closed after
    client_idle (3s) at the latest, nothing forwarded."""
    snap = len(env.b.conn_bytes)
    s, obj, inc, out = established(env, certs)
    try:
        obj.write(b"GET /stall HTTP/1.1\r\nHost: localhost\r\n\r\n")
        rec = out.read()
        t0 = time.monotonic()
        s.sendall(rec[:len(rec) - 5])
        assert closed_soon(s, 6), "connection still open"
        assert time.monotonic() - t0 < T(4)
    finally:
        s.close()
    check_new(env, snap, [served_normally(env)])


def test_stalled_client_hello_fragments(env, certs):
    """A ClientHello trickled one byte every 200 ms: closed by the 2s
    handshake_timeout, not kept alive by the trickle."""
    _, _, _, hello = real_client_hello(certs)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    closed = False
    try:
        for i in range(40):
            try:
                s.sendall(hello[i:i + 1])
            except ConnectionError:
                closed = True
                break
            s.settimeout(0.2)
            try:
                if s.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionError:
                closed = True
                break
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    assert closed, "trickled ClientHello kept the connection open %.1fs" % elapsed
    assert elapsed < T(3.5), elapsed
    served_normally(env)


def test_client_renegotiation_refused_pyopenssl(env, certs):
    """A TLS 1.2 client asks to renegotiate (pyOpenSSL): moat must refuse
    with an alert or a close, never complete a second handshake."""
    pytest.importorskip("OpenSSL")
    from OpenSSL import SSL
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.load_verify_locations(certs.ca)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=T(5))
    s.settimeout(None)  # pyOpenSSL wants a blocking socket; the timer bounds the wait
    watchdog = threading.Timer(T(5), lambda: s.shutdown(socket.SHUT_RDWR))
    watchdog.start()
    conn = SSL.Connection(ctx, s)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    try:
        conn.do_handshake()
        assert conn.get_protocol_version_name() == "TLSv1.2"
        assert conn.renegotiate()
        try:
            conn.do_handshake()
            conn.send(b"GET /reneg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = conn.recv(65536)
            outcome = "renegotiation %s, then %r" % (
                "pending" if conn.renegotiate_pending() else "completed", answer[:60])
        except (SSL.Error, OSError) as e:
            outcome = None  # refused: alert or close
            print("refused with %r" % (e,))
    finally:
        watchdog.cancel()
        s.close()
    assert outcome is None, "moat did not refuse the renegotiation: " + outcome
    served_normally(env)


# --------------------------------------------------------------------------
# what the TLS defaults negotiate

AEAD_FS_12 = {0xC02B, 0xC02C, 0xCCA9, 0xC02F, 0xC030, 0xCCA8, 0x009E, 0x009F, 0xCCAA,
              0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xC09E, 0xC09F, 0xC0A2, 0xC0A3}


def enumerate_tls12_suites(port, candidates):
    """Every suite in candidates that moat picks when offered it (in
    batches of 100, removing each chosen one), as a sorted list."""
    accepted = []
    for i in range(0, len(candidates), 100):
        batch = list(candidates[i:i + 100])
        while batch:
            a = server_answer(port, raw_client_hello(0x0303, batch))
            if a[0] != "hello":
                break
            assert a[2] in batch, "moat picked a suite it was not offered: %#06x" % a[2]
            accepted.append(a[2])
            batch.remove(a[2])
    return sorted(accepted)


def test_tls12_suites_are_aead_with_forward_secrecy(env):
    """A scan of 768 suite ids (0x00xx, 0xC0xx, 0xCCxx, 0x13xx) offered in
    TLS 1.2 hellos: moat accepts only ECDHE/DHE suites with AES-GCM,
    AES-CCM or ChaCha20-Poly1305 -- and the ones it should accept with an
    ECDSA certificate are among them."""
    # (0x00FF, the renegotiation SCSV, is left out: with the
    # renegotiation_info extension it makes the whole hello invalid)
    candidates = ([x for x in range(0x0001, 0x00FF)] + [x for x in range(0xC001, 0xC100)]
                  + [x for x in range(0xCC00, 0xCD00)] + [0x1301, 0x1302, 0x1303])
    accepted = enumerate_tls12_suites(env.port, candidates)
    print("TLS 1.2 suites accepted: %s" % ", ".join("%#06x" % s for s in accepted))
    assert {0xC02B, 0xC02C, 0xCCA9} <= set(accepted), "ECDHE-ECDSA AEAD suites missing"
    bad = [s for s in accepted if s not in AEAD_FS_12]
    assert not bad, "suites without AEAD or forward secrecy accepted: %s" % [
        "%#06x" % s for s in bad]


def test_client_hello_with_many_suites_is_served(env):
    """RFC 5246 allows up to 32767 suites in a ClientHello; scanners and
    some clients offer every suite they know (sslscan: 344).  A hello
    offering 200 suites, good ones last, must get a ServerHello."""
    suites = [x for x in range(0x0001, 0x00C6)] + GOOD12
    a = server_answer(env.port, raw_client_hello(0x0303, suites))
    assert a[0] == "hello" and a[2] in GOOD12, \
        "a ClientHello with %d suites is refused: %r" % (len(suites), a)


HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def tls13_hello(groups, shares):
    sni = b"localhost"
    sn = b"\x00" + struct.pack(">H", len(sni)) + sni
    g = b"".join(struct.pack(">H", x) for x in groups)
    ks = b"".join(struct.pack(">HH", grp, len(k)) + k for grp, k in shares)
    exts = (ext(0, struct.pack(">H", len(sn)) + sn) + ext(10, struct.pack(">H", len(g)) + g)
            + ext(13, b"\x00\x08\x04\x03\x05\x03\x08\x04\x04\x01")
            + ext(43, b"\x02\x03\x04") + ext(51, struct.pack(">H", len(ks)) + ks)
            + ext(45, b"\x01\x01"))
    return raw_client_hello(0x0303, [0x1301, 0x1302, 0x1303], extensions=exts)


def tls13_answer(port, data):
    """("hello", group) / ("hrr", selected group or None) / ("alert", desc) /
    ("closed",)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=T(3))
    try:
        s.sendall(data)
        buf = b""
        while len(buf) < 5 or len(buf) < 5 + struct.unpack(">H", buf[3:5])[0]:
            d = s.recv(65536)
            if not d:
                return ("closed",)
            buf += d
    except (ConnectionError, socket.timeout):
        return ("closed",)
    finally:
        s.close()
    if buf[0] == 0x15:
        return ("alert", buf[6])
    assert buf[0] == 0x16 and buf[5] == 2, buf[:20]
    hrr = buf[11:43] == HRR_RANDOM
    p = 43
    p += 1 + buf[p]          # session id
    p += 3                   # suite, compression
    end = p + 2 + struct.unpack(">H", buf[p:p + 2])[0]
    p += 2
    group = None
    while p < end:
        t, l = struct.unpack(">HH", buf[p:p + 4])
        if t == 51:
            group = struct.unpack(">H", buf[p + 4:p + 6])[0]
        p += 4 + l
    return ("hrr" if hrr else "hello", group)


WEAK_GROUPS = {"sect163k1": (0x0001, 43), "secp192r1": (0x0013, 49)}


@pytest.mark.parametrize("name", sorted(WEAK_GROUPS))
def test_tls13_without_a_common_group_is_refused(env, name):
    """A TLS 1.3 hello offering only a group moat does not use: a
    handshake_failure alert (RFC 8446 4.1.1), not a ServerHello in that
    group and not a HelloRetryRequest that selects nothing (4.1.4: such an
    HRR "would not result in any change"; scanners read it as support)."""
    gid, klen = WEAK_GROUPS[name]
    a = tls13_answer(env.port, tls13_hello([gid], [(gid, os.urandom(klen))]))
    assert a[0] in ("alert", "closed"), "offered only %s, moat answered %r" % (name, a)
    # control: with x25519 the same hello shape gets a ServerHello
    b = tls13_answer(env.port, tls13_hello([0x001D], [(0x001D, os.urandom(32))]))
    assert b == ("hello", 0x001D), b
    served_normally(env)


# --------------------------------------------------------------------------
# a TLS scanner against moat's defaults

@pytest.mark.skipif(not have("sslscan"), reason="sslscan not installed")
def test_sslscan_defaults(env):
    """sslscan against the default TLS settings: TLS 1.2 and 1.3 and nothing
    else, only AEAD suites with forward secrecy, no insecure renegotiation,
    no Heartbleed."""
    r = subprocess.run(["sslscan", "--no-colour", "--sni-name=localhost",
                        "127.0.0.1:%d" % env.port], capture_output=True, timeout=T(120))
    text = r.stdout.decode("latin-1")
    summary = [l for l in text.splitlines() if re.match(
        r"^\s*(SSLv|TLSv1\.\d\s+(en|dis)abled|Preferred|Accepted|Session renegotiation|"
        r"Secure|Insecure|Server does|TLSv1\.\d\s+(not )?vulnerable)", l)]
    groups = re.findall(r"^TLSv1\.3\s+\d+ bits\s+(\S+)", text, re.M)
    print("sslscan summary:\n" + "\n".join(summary) + "\nkey exchange groups reported: "
          + ", ".join(groups))
    protos = dict(re.findall(r"^\s*(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", text, re.M))
    assert len(protos) == 6, text
    accepted = re.findall(r"^(?:Preferred|Accepted)\s+(\S+)\s+\d+\s+bits\s+(\S+)", text, re.M)
    bad = []
    for proto, suite in accepted:
        if proto == "TLSv1.2" and suite.startswith(("ECDHE-", "DHE-")) and (
                "GCM" in suite or "CHACHA20" in suite or "CCM" in suite):
            continue
        if proto == "TLSv1.3" and re.match(r"TLS_(AES_\d+_GCM|CHACHA20_POLY1305|AES_128_CCM)",
                                           suite):
            continue
        bad.append((proto, suite))
    assert not bad, "non-AEAD or non-forward-secret suites accepted: %r" % bad
    assert "Insecure session renegotiation supported" not in text
    assert not re.search(r"TLSv1\.[0-3] vulnerable to heartbleed", text)
    enabled = sorted(p for p, s in protos.items() if s == "enabled")
    assert enabled == ["TLSv1.2", "TLSv1.3"], \
        "sslscan sees protocols %r (TLS 1.2 missing: its hello offers 344 suites, see " \
        "test_client_hello_with_many_suites_is_served)" % protos
