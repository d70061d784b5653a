#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into OUT/<target>/.

The committed corpora (tests/fuzz/corpus/) grew from these seeds by fuzzing
and were minimised with -merge=1; scripts/fuzz.sh --reseed merges them in
again.  Each target's input layout is described at the top of its .c file.

Usage: seeds.py OUT
"""
import os
import sys

H = b"Host: localhost\r\n"

REQUESTS = [
    b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /index.html?q=1&r=%2F HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n"
    b"Accept: */*\r\n\r\n",
    b"HEAD /api/x HTTP/1.1\r\nHost: EXAMPLE.com:8443\r\n\r\n",
    b"GET /static/a.css HTTP/1.0\r\n\r\n",
    b"GET /v1/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v1/y HTTP/1.0\r\n\r\n",
    b"POST /api/form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"1\r\na\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"PUT / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /a HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /b HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: unknown.test\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x00",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    b"GET http://example.com/api/v?x HTTP/1.1\r\nHost: other.test\r\n\r\n",
    b"GET https://a.example.org HTTP/1.1\r\nHost: a.example.org\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"
    b"X-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Port: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: X-Secret, close\r\nX-Secret: 1\r\n"
    b"Keep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost:" + b"0" * 200 + b"80\r\n\r\n",
    # smuggling shapes (tests/integration/test_smuggling.py)
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffff1\r\na\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n",
    b"GET / HTTP/1.1\nHost: localhost\n\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: other.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost/evil\r\n\r\n",
    b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /%2e%2e/etc/passwd HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a/..%2fb HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n",
    b"CONNECT localhost:443 HTTP/1.1\r\n" + H + b"\r\n",
    b"G\x01T / HTTP/1.1\r\n" + H + b"\r\n",
    b"\x16\x03\x01\x00\x05hello",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nclose-delimited body",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
    b"Strict-Transport-Security: max-age=1\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 999 Odd\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
]

CONFIGS = [
    open(os.path.join(os.path.dirname(__file__), "..", "..", "config", "moat.yaml"), "rb").read()
    if os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "config", "moat.yaml"))
    else b"",
    b"listeners:\n  - name: default\n    bind: \"127.0.0.1:8443\"\n    tls:\n"
    b"      certificates: [{cert: c.pem, key: c.key}]\nroutes:\n  - path: /\n    upstream: app\n"
    b"upstreams:\n  app:\n    servers: [\"127.0.0.1:8080\"]\n",
    b"workers: 2\nlisteners:\n  - {name: a, bind: \"[::1]:0\", tls: {certificates: [{cert: a, key: b}],"
    b" min_version: \"1.3\", alpn: [], session_tickets: {enabled: false}}}\n"
    b"  - {name: r, bind: \"127.0.0.1:0\", redirect_to_https: 443}\n"
    b"routes:\n  - {host: \"*.example.org\", path: /x/, upstream: u}\n"
    b"  - {host: \"[::1]\", upstream: u}\n  - {host: Example.COM., path: /, upstream: u}\n"
    b"upstreams:\n  u: {servers: [\"localhost:80\", \"[::1]:81\"], balance: least_conn,"
    b" health_check: {path: /healthz, interval: 1s}}\n"
    b"forwarding: {trusted_proxies: [10.0.0.0/8, \"::ffff:0:0/96\"], hsts: null}\n"
    b"limits: {max_header_bytes: 1m, max_body_bytes: 16k, max_memory: 2g}\n"
    b"timeouts: {client_header: 250ms, client_idle: 1d}\nlog: {access: null, level: debug}\n"
    b"admin: {bind: \"127.0.0.1:0\"}\n",
    b"a: &a [*a, *a]\n",
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"listeners: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    b"listeners:\n  - &l {name: a, bind: \"127.0.0.1:1\", tls: {certificates: [{cert: a, key: b}]}}\n"
    b"  - <<: *l\n    name: b\n",
    b"routes: " + b"[" * 200 + b"]" * 200 + b"\n",
    b"listeners: !!str 1\nroutes: {}\nupstreams: []\nbogus: 1\n",
    b"%YAML 1.1\n---\nlisteners: ~\n...\n---\nb: 2\n",
    b"upstreams:\n  u:\n    servers: [\"name.test:65536\", \"x:0\", \"[::1]\", \"1.2.3.4\"]\n",
    b"\xef\xbb\xbflisteners: '\x00'\n",
]


def client_hellos():
    """ClientHellos from Python's OpenSSL: TLS 1.3, TLS 1.2 only, no SNI."""
    import ssl
    out = []
    for maxv, sni in ((ssl.TLSVersion.TLSv1_3, "localhost"), (ssl.TLSVersion.TLSv1_2, "localhost"),
                      (ssl.TLSVersion.TLSv1_3, None)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = maxv
        inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outg, server_hostname=sni)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append(outg.read())
    return out


def split_into_records(hello, size):
    """hello's handshake records again with at most size payload bytes each:
    the sniffer joins them before wolfSSL sees the hello."""
    out, i = b"", 0
    while i + 5 <= len(hello):
        n = int.from_bytes(hello[i + 3:i + 5], "big")
        body = hello[i + 5:i + 5 + n]
        for k in range(0, len(body), size):
            out += hello[i:i + 3] + len(body[k:k + size]).to_bytes(2, "big") + body[k:k + size]
        i += 5 + n
    return out


SEP = b"\x00@@\x00"

CONN_TLS = [
    # (flags, client plaintext, responses)
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
     [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
     [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"]),
    (0x01 | 0x08, b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", [b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"]),
    (0x01 | 0x10, b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n",
     [b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]),
    (0x01 | 0x02, b"HEAD / HTTP/1.0\r\n\r\n", [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"]),
    (0x01 | 0x04 | 0x20, b"GET /nokeep/x HTTP/1.1\r\nHost: other.test\r\n\r\n",
     [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]),
    (0x01, b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nhello",
     [b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nworld"]),
    (0x01, b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n", [b"HTTP/1.1 200 OK\r\n\r\n"]),
    (0x01, b"GET /nowhere HTTP/1.1\r\nHost: nothing.test\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
     [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]),
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"]),
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", [b"garbage\r\n\r\n"]),
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
     [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]),
    (0x01 | 0x40, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
     [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"\x17\x03\x03\x00\x10" + b"A" * 16]),
    (0x01 | 0x40, b"", [b"\x15\x03\x03\x00\x02\x02\x0a"]),
    (0x01, b"GET / HTTP/1.1\r\nHost: localhost\r\n", []),
    (0x01, b"\r\n\r\n" + b"X" * 300, []),
]


def write(out, target, items):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    # fuzz_request: flags, piece seed, client bytes.
    reqs = []
    for i, r in enumerate(REQUESTS):
        reqs.append(bytes([0x02, 0x00]) + r)               # keep-alive upstream, whole
        reqs.append(bytes([0x03 | (i % 4) << 3, i]) + r)    # trusted, split
        if i % 3 == 0:
            reqs.append(bytes([0x06, 0x02]) + r)           # small limits
    write(out, "request", reqs)
    # fuzz_response: request flags, piece seed (bit 7: EOF), upstream bytes.
    resps = []
    for i, r in enumerate(RESPONSES):
        resps.append(bytes([0x04, 0x80]) + r)
        resps.append(bytes([0x04 | (i % 2) | (i % 3 == 0) << 1 | 0x08 | 0x10, 0x80 | i]) + r)
        resps.append(bytes([0x24 | 0xc0, 0x01]) + r)
    write(out, "response", resps)
    # fuzz_config: error buffer size, YAML.
    write(out, "config", [bytes([i * 7 % 64]) + c for i, c in enumerate(CONFIGS) if c])
    # fuzz_conn: flags, piece seed, then raw bytes or plaintext SEP responses.
    conn = []
    for i, hello in enumerate(client_hellos()):
        conn.append(bytes([0x00, 0x00]) + hello)
        conn.append(bytes([0x00, 0x02]) + hello)
        conn.append(bytes([0x00, 0x00]) + hello[: len(hello) // 2])
        conn.append(bytes([0x00, 0x00]) + hello + b"\x15\x03\x03\x00\x02\x01\x00")
        conn.append(bytes([0x00, 0x00]) + split_into_records(hello, 1 + 2 * i))
    conn += [
        bytes([0x00, 0x00]) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        bytes([0x00, 0x01]) + b"POST / HTTP/1.1\r\n",
        bytes([0x00, 0x00]) + b"\x16\x03\x01\x00\x00",
        bytes([0x00, 0x00]) + b"\x16\x03\x01\x40\x00" + b"\x01" * 64,
        bytes([0x00, 0x00]) + b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10",
        bytes([0x00, 0x00]) + b"\x17\x03\x03\x00\x05hello",
        bytes([0x00, 0x00]) + b"\x00\x00\x00\x00",
        bytes([0x00, 0x00]) + b"SSH-2.0-OpenSSH_9.2\r\n",
    ]
    for r in REQUESTS[:20] + [b"GET / HTTP/1.1\r\nHost: a.test\r\n", b"GET * HTTP/1.0\r\n\r\n",
                              b"OPTIONS * HTTP/1.1\r\nHost: [::1]\r\n\r\n"]:
        conn.append(bytes([0x80, 0x00]) + r)
    for flags, client, responses in CONN_TLS:
        conn.append(bytes([flags, 0x00]) + client + b"".join(SEP + r for r in responses))
        conn.append(bytes([flags, 0x02]) + client + b"".join(SEP + r for r in responses))
    write(out, "conn", conn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
