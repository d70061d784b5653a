"""redirect_to_https listeners (308 to the https URL, 400 without a usable
Host or for malformed requests, always closing) and the HSTS header on
proxied TLS responses."""
import socket

import pytest

from moatlib import T, Client, Resp, basic_yaml
from opslib import ADMIN, header, http_get, scrape

REDIRECT = '  - name: redirect\n    bind: "127.0.0.1:0"\n    redirect_to_https: %d\n'


def with_redirect(certs, backend, port, extra="", **kw):
    y = basic_yaml(certs, [backend.addr], extra=ADMIN + extra, **kw)
    return y.replace("routes:\n", REDIRECT % port + "routes:\n", 1)


@pytest.fixture
def redir(certs, backend, moat_factory):
    """moat with a redirect listener to port 8443."""
    return moat_factory(with_redirect(certs, backend, 8443))


def ask(port, raw, timeout=5):
    return http_get(port, None, raw=raw, timeout=timeout)


@pytest.mark.parametrize("method,target,host,location", [
    ("GET", "/", "example.com", "https://example.com:8443/"),
    ("GET", "/a/b?x=1&y=%20z", "example.com", "https://example.com:8443/a/b?x=1&y=%20z"),
    ("GET", "/p", "example.com:8080", "https://example.com:8443/p"),
    ("GET", "/p", "EXAMPLE.com:80", None),
    ("HEAD", "/h?q", "site.test", "https://site.test:8443/h?q"),
    ("POST", "/form", "site.test", "https://site.test:8443/form"),
    ("GET", "/v6", "[::1]:8080", "https://[::1]:8443/v6"),
    ("GET", "/ip", "127.0.0.1", "https://127.0.0.1:8443/ip"),
])
def test_redirect_308_location(redir, method, target, host, location):
    body = b"a=1" if method == "POST" else b""
    raw = ("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
        method, target, host,
        "Content-Length: %d\r\n" % len(body) if body else "")).encode() + body
    status, headers, rbody = ask(redir.port("redirect"), raw)
    assert status == 308, (status, headers)
    loc = header(headers, "Location")
    if location is None:  # a host name's case may be kept or folded
        assert loc.lower() == "https://example.com:8443/p", loc
    else:
        assert loc == location, loc
    assert header(headers, "Content-Length") == "0"
    assert rbody == b""
    assert header(headers, "Strict-Transport-Security") is None


def test_redirects_are_in_the_access_log(redir):
    import json
    from moatlib import wait_for
    ask(redir.port("redirect"), b"GET /logged?x HTTP/1.1\r\nHost: site.test\r\nUser-Agent: t/1\r\n\r\n")
    ask(redir.port("redirect"), b"GET /bad\x01 HTTP/1.1\r\nHost: site.test\r\n\r\n")

    def entries():
        lines = [json.loads(l) for l in redir.stdout().splitlines()]
        return lines if len(lines) >= 2 else None
    first, second = wait_for(entries, 5, "two access-log lines")
    assert first["listener"] == "redirect" and first["status"] == 308, first
    assert first["uri"] == "/logged?x" and first["host"] == "site.test", first
    assert first["remote"] == "127.0.0.1" and first["user_agent"] == "t/1", first
    assert "tls" not in first, first
    assert second["status"] == 400 and "uri" not in second, second


def test_redirect_to_443_names_the_port(certs, backend, moat_factory):
    # "answers 308 to https://host:443/..." in the product's contract.
    m = moat_factory(with_redirect(certs, backend, 443))
    for host, loc in (("example.com", "https://example.com:443/x?y"),
                      ("example.com:80", "https://example.com:443/x?y"),
                      ("[2001:db8::1]:80", "https://[2001:db8::1]:443/x?y")):
        status, headers, _ = ask(m.port("redirect"),
                                 b"GET /x?y HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
        assert status == 308 and header(headers, "Location") == loc, (host, headers)


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\n\r\n",                                   # no Host
    b"GET / HTTP/1.0\r\n\r\n",                                   # HTTP/1.0, no Host
    b"GET / HTTP/1.1\r\nHost: \r\n\r\n",                         # empty Host
    b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",                 # space
    b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",                      # slash
    b"GET / HTTP/1.1\r\nHost: evil.test\r\nHost: b.test\r\n\r\n",  # two Hosts
    b"GET / HTTP/1.1\r\nHost: a.test\"><script>\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test:port\r\n\r\n",              # non-numeric port
], ids=["no-host", "http10-no-host", "empty", "space", "slash", "two-hosts", "quote",
        "bad-port"])
def test_redirect_without_a_usable_host_is_400(redir, raw):
    status, headers, _ = ask(redir.port("redirect"), raw)
    assert status == 400, (raw, status, headers)
    assert header(headers, "Location") is None


@pytest.mark.parametrize("raw", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost a.test\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello",                       # TLS to the plain port
], ids=["garbage", "content-length", "header-no-colon", "control-char", "tls-record"])
def test_redirect_malformed_request_is_400(redir, raw):
    # bytes that cannot start an HTTP request are answered at once, not
    # after the client_header timeout
    status, _, _ = ask(redir.port("redirect"), raw, timeout=2)
    assert status == 400, (raw, status)


def test_redirect_closes_after_each_response(redir):
    port = redir.port("redirect")
    raw = b"GET /one HTTP/1.1\r\nHost: a.test\r\n\r\nGET /two HTTP/1.1\r\nHost: a.test\r\n\r\n"
    status, headers, body = ask(port, raw)  # waits for the close
    assert status == 308 and header(headers, "Location") == "https://a.test:8443/one"
    assert body == b"", body


def test_redirect_does_not_reach_the_backend_and_is_counted(redir, backend):
    for _ in range(3):
        assert ask(redir.port("redirect"), b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")[0] == 308
    assert ask(redir.port("redirect"), b"GET /x HTTP/1.1\r\n\r\n")[0] == 400
    assert backend.requests == []
    mt = scrape(redir)
    assert mt.value("moat_connections_total", listener="redirect") == 4
    # requests like any other, under no route (nginx counts them too)
    assert mt.value("moat_requests_total", route="", code="308") == 3
    assert mt.value("moat_requests_total", route="", code="400") == 1
    assert mt.value("moat_request_duration_seconds_count") == 4
    # a plain-HTTP listener has no TLS series; the TLS listener keeps its own
    for family in ("moat_tls_handshakes_total", "moat_tls_handshake_errors_total",
                   "moat_session_tickets_total"):
        assert not mt.has(family, listener="redirect"), family
        assert mt.has(family, listener="public"), family


def test_redirect_with_curl(redir):
    from moatlib import curl
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
             "http://127.0.0.1:%d/c/d?e=f" % redir.port("redirect"), "-H", "Host: www.test")
    assert r.stdout.decode() == "308 https://www.test:8443/c/d?e=f", r


# ---------------------------------------------------------------- HSTS

def test_hsts_default_on_proxied_tls_responses(certs, backend, moat_factory):
    backend.handler = lambda req: Resp(404 if req.target == "/missing" else 200, b"x")
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    with Client(m.port(), certs) as c:
        for target in ("/", "/missing"):
            r = c.request("GET", target)
            assert r.all("Strict-Transport-Security") == ["max-age=63072000"], (target, r)


def test_hsts_on_moats_own_answers(certs, backend, moat_factory):
    # RFC 6797 8.1: every response over TLS; nginx needs "always" for this.
    from moatlib import free_port
    routes = "  - path: /app/\n    upstream: app\n"
    refusing = "127.0.0.1:%d" % free_port()  # nothing listens: 502
    for hsts, want in (("", ["max-age=63072000"]), ("forwarding:\n  hsts: null\n", [])):
        m = moat_factory(basic_yaml(certs, [refusing], routes=routes, extra=hsts))
        with Client(m.port(), certs) as c:
            for target, status in (("/nowhere", 404), ("/app/x", 502)):
                r = c.request("GET", target)
                assert r.status == status, r
                assert r.all("Strict-Transport-Security") == want, (target, r)
        m.stop()


def test_hsts_custom_value(certs, backend, moat_factory):
    v = "max-age=300; includeSubDomains; preload"
    m = moat_factory(basic_yaml(certs, [backend.addr], extra='forwarding:\n  hsts: "%s"\n' % v))
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").all("Strict-Transport-Security") == [v]


def test_hsts_null_disables_it(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], extra="forwarding:\n  hsts: null\n"))
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.header("Strict-Transport-Security") is None, r


def test_hsts_does_not_override_the_upstreams(certs, backend, moat_factory):
    backend.handler = lambda req: Resp(200, b"x", headers=[
        ("strict-transport-security", "max-age=10")])
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    with Client(m.port(), certs) as c:
        r = c.request("GET", "/")
        got = [v for n, v in r.headers if n.lower() == "strict-transport-security"]
        assert got == ["max-age=10"], r


def test_hsts_reload_turns_it_off(certs, backend, moat_factory):
    from opslib import sighup, write_atomic
    m = moat_factory(basic_yaml(certs, [backend.addr]))
    keep = Client(m.port(), certs)
    try:
        assert keep.request("GET", "/").header("Strict-Transport-Security")
        write_atomic(m.config, basic_yaml(certs, [backend.addr],
                                          extra="forwarding:\n  hsts: null\n").encode())
        assert sighup(m) == "ok"
        with Client(m.port(), certs) as c:
            assert c.request("GET", "/").header("Strict-Transport-Security") is None
        # the connection opened before keeps its configuration
        assert keep.request("GET", "/").header("Strict-Transport-Security")
    finally:
        keep.close()


def test_redirect_listener_added_and_changed_by_reload(certs, backend, moat_factory):
    from moatlib import free_port
    from opslib import sighup, write_atomic
    m = moat_factory(basic_yaml(certs, [backend.addr], extra=ADMIN))
    p = free_port()
    y = with_redirect(certs, backend, 8443).replace('    bind: "127.0.0.1:0"\n    redirect',
                                                    '    bind: "127.0.0.1:%d"\n    redirect' % p)
    write_atomic(m.config, y.encode())
    assert sighup(m) == "ok", m.stderr()
    raw = b"GET /r HTTP/1.1\r\nHost: a.test\r\n\r\n"
    status, headers, _ = ask(p, raw)
    assert status == 308 and header(headers, "Location") == "https://a.test:8443/r"
    write_atomic(m.config, y.replace("redirect_to_https: 8443", "redirect_to_https: 443")
                 .encode())
    assert sighup(m) == "ok", m.stderr()
    status, headers, _ = ask(p, raw)
    assert status == 308 and header(headers, "Location") == "https://a.test:443/r"


def test_a_configuration_of_redirect_listeners_alone_needs_no_routes(moat_factory):
    # A port-80 sidecar next to another TLS terminator: nothing to forward,
    # so no routes or upstreams, as nginx runs a server that only returns.
    m = moat_factory("listeners:\n" + REDIRECT % 443 + ADMIN)
    status, headers, _ = ask(m.port("redirect"), b"GET /a?b HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert status == 308 and header(headers, "Location") == "https://a.test:443/a?b", headers
    assert scrape(m).value("moat_connections_total", listener="redirect") == 1
