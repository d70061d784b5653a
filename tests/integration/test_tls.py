"""TLS: SNI certificate choice, protocol versions, ALPN, plain HTTP on the
TLS port, handshake timeout."""
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from moatlib import (T, Client, basic_yaml, client_context, curl, s_client, wait_for)


@pytest.fixture
def sni_proxy(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], second_cert=True,
                                tls_extra="handshake_timeout: 1s"))
    return m, backend


def peer_cert(port, certs, sni):
    ctx = client_context(certs)
    ctx.check_hostname = False  # verify the chain, inspect the name ourselves
    with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            cert = s.getpeercert()
    cn = dict(x[0] for x in cert["subject"])["commonName"]
    sans = sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")
    return cn, sans


@pytest.mark.parametrize("sni,want", [
    ("site.test", "site.test"), ("localhost", "site.test"), ("alt.test", "alt.test"),
    ("ALT.test", "alt.test"), ("x.wild.test", "alt.test"), ("unknown.test", "site.test"),
    ("a.b.wild.test", "site.test"), (None, "site.test")])
def test_sni_picks_certificate(sni_proxy, certs, sni, want):
    m, _ = sni_proxy
    cn, sans = peer_cert(m.port(), certs, sni)
    assert cn == want, (sni, cn, sans)
    if want == "alt.test":
        assert sans == ["*.wild.test", "alt.test"]


def test_sni_with_curl_verifies_both_names(sni_proxy, certs):
    m, b = sni_proxy
    for name in ("site.test", "alt.test", "foo.wild.test"):
        r = curl("https://%s:%d/%s" % (name, m.port(), name),
                 "--resolve", "%s:%d:127.0.0.1" % (name, m.port()), certs=certs)
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.startswith(b"GET /" + name.encode())


def test_sni_openssl_subject(sni_proxy):
    m, _ = sni_proxy
    r = s_client(m.port(), "-brief", servername="alt.test", data=b"")
    text = (r.stdout + r.stderr).decode()
    assert re.search(r"CN\s*=\s*alt\.test", text), text
    r = s_client(m.port(), "-brief", servername="nomatch.test", data=b"")
    text = (r.stdout + r.stderr).decode()
    assert re.search(r"CN\s*=\s*site\.test", text), text


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls12_and_tls13_accepted(sni_proxy, certs, version, name):
    m, b = sni_proxy
    ctx = client_context(certs, minv=version, maxv=version)
    with Client(m.port(), ctx=ctx) as c:
        assert c.sock.version() == name
        r = c.request("GET", "/v")
        assert r.status == 200
    # the access log records the version
    wait_for(lambda: '"tls":"%s"' % name in m.stdout(), 5, "access log line")


def test_tls12_ciphers_are_aead_and_forward_secret(sni_proxy, certs):
    m, _ = sni_proxy
    ctx = client_context(certs, minv=ssl.TLSVersion.TLSv1_2, maxv=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with Client(m.port(), ctx=ctx) as c:
        cipher = c.sock.cipher()[0]
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    # a client offering only CBC / static-RSA suites is refused
    ctx = client_context(certs, minv=ssl.TLSVersion.TLSv1_2, maxv=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Client(m.port(), ctx=ctx).close()


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(sni_proxy, certs, flag):
    m, b = sni_proxy
    r = s_client(m.port(), flag, "-cipher", "DEFAULT@SECLEVEL=0", data=b"")
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0, out
    assert "Cipher is (NONE)" in out, out  # no session was established
    assert not re.search(r"Cipher is (?!\(NONE\))", out), out
    # the refusal did not affect service
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200


def test_old_tls_control_client_can_offer_tls1(certs, tmp_path):
    """Proves test_old_tls_versions_refused can fail: the same s_client
    command completes a TLS 1.0 handshake against openssl s_server."""
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1",
                            "-cert", certs.site_cert, "-key", certs.site_key, "-tls1",
                            "-cipher", "DEFAULT@SECLEVEL=0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.PIPE)
    try:
        line = b""
        deadline = time.monotonic() + T(5)
        while b"ACCEPT" not in line and time.monotonic() < deadline:
            line = srv.stdout.readline()
        port = int(re.search(rb":(\d+)", line).group(1))
        r = s_client(port, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", data=b"")
        out = (r.stdout + r.stderr).decode()
        assert re.search(r"Protocol\s*:\s*TLSv1\s*$", out, re.M), out
    finally:
        srv.kill()
        srv.wait(timeout=T(5))


def test_min_version_13_refuses_tls12(certs, backend, moat_factory):
    m = moat_factory(basic_yaml(certs, [backend.addr], tls_extra='min_version: "1.3"'))
    ctx = client_context(certs, maxv=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Client(m.port(), ctx=ctx).close()
    with Client(m.port(), certs) as c:
        assert c.sock.version() == "TLSv1.3"


def test_alpn_http11(sni_proxy, certs):
    m, _ = sni_proxy
    ctx = client_context(certs, alpn=["h2", "http/1.1"])
    with Client(m.port(), ctx=ctx) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/").status == 200
    r = s_client(m.port(), "-alpn", "http/1.1", data=b"")
    assert "ALPN protocol: http/1.1" in r.stdout.decode(), r.stdout.decode()
    # curl negotiates http/1.1 (and would try h2 first)
    r = curl("-v", "https://localhost:%d/" % m.port(), "--resolve",
             "localhost:%d:127.0.0.1" % m.port(), certs=certs)
    assert r.returncode == 0, r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr.decode() or \
        "ALPN, server accepted to use http/1.1" in r.stderr.decode(), r.stderr.decode()


def test_plain_http_to_tls_port_gets_400_and_close(sni_proxy, certs):
    m, b = sni_proxy
    with Client(m.port(), tls=False) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = c.read_until_close()
    assert re.match(rb"HTTP/1\.[01] 400 ", data), data
    assert b.total_bytes() == 0
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200


def client_hello(certs):
    """The bytes of a real TLS ClientHello."""
    ctx = client_context(certs)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


@pytest.mark.parametrize("what", ["nothing", "half-clienthello", "full-clienthello"])
def test_stalled_handshake_closed_after_timeout(sni_proxy, certs, what):
    """handshake_timeout is 1s: the connection must be closed after about
    1s, not before 0.8s and not later than 3s."""
    m, b = sni_proxy
    hello = client_hello(certs)
    data = {"nothing": b"", "half-clienthello": hello[:len(hello) // 2],
            "full-clienthello": hello}[what]
    s = socket.create_connection(("127.0.0.1", m.port()), timeout=T(5))
    try:
        start = time.monotonic()
        s.sendall(data)
        s.settimeout(T(4))
        closed = False
        try:
            while True:
                d = s.recv(65536)  # ServerHello etc. for a full hello
                if not d:
                    closed = True
                    break
        except ConnectionError:
            closed = True
        except socket.timeout:
            pass
        elapsed = time.monotonic() - start
    finally:
        s.close()
    assert closed, "connection still open after %.1fs" % elapsed
    assert 0.8 <= elapsed <= T(3), elapsed
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200


def test_tls_client_renegotiation_refused(sni_proxy, certs):
    """openssl s_client's "R" command asks for a renegotiation on TLS 1.2:
    moat must refuse (alert or close), never complete a second handshake."""
    m, _ = sni_proxy
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % m.port(),
                          "-servername", "localhost", "-tls1_2"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(T(0.5))
        try:
            p.stdin.write(b"R\n")
            p.stdin.flush()
            time.sleep(T(0.5))
            p.stdin.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass  # s_client gave up: the renegotiation failed
        try:
            out, _ = p.communicate(timeout=T(5))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=T(5))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode("latin-1")
    assert "RENEGOTIATING" in text, text
    assert "HTTP/1.1 200" not in text, "renegotiation succeeded and the request was served:\n" \
        + text


@pytest.mark.parametrize("closer", ["client_idle", "SIGTERM"])
def test_idle_connections_closed_with_close_notify(certs, backend, moat_factory, closer):
    """Idle keep-alive connections that moat closes (idle timeout, shutdown)
    get a close_notify too; moat writes it straight to the socket."""
    extra = "timeouts:\n  client_idle: 1s\n" if closer == "client_idle" else ""
    m = moat_factory(basic_yaml(certs, [backend.addr], extra=extra))
    ctx = client_context(certs)
    conns = []
    for _ in range(20):
        raw = socket.create_connection(("127.0.0.1", m.port()), timeout=T(5))
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        conns.append(s)
    if closer == "SIGTERM":
        m.signal(signal.SIGTERM)
    ended = []
    for s in conns:
        s.settimeout(T(5))
        try:
            while s.recv(65536):
                pass  # the rest of the response body
            ended.append("close_notify")
        except ssl.SSLEOFError:
            ended.append("eof without close_notify")
        finally:
            s.close()
    assert ended == ["close_notify"] * len(conns), ended
    if closer == "SIGTERM":
        assert m.wait(5) == 0, m.stderr()


def test_close_notify_sent_before_closing(sni_proxy, certs):
    """moat ends TLS connections it closes with close_notify, so clients can
    tell a complete close-delimited response from a truncated one."""
    m, b = sni_proxy
    for req in (b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\n"):  # a 400
        ctx = client_context(certs)
        raw = socket.create_connection(("127.0.0.1", m.port()), timeout=T(5))
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
            s.sendall(req)
            data = b""
            while True:
                d = s.recv(65536)  # SSLEOFError if the close was not notified
                if not d:
                    break
                data += d
        assert data.startswith(b"HTTP/1.1 "), data


def test_request_record_split_across_segments_after_the_handshake(proxy, certs):
    # After the handshake moat may owe the client an ACK (conn_ack_soon);
    # the first bytes of a request record that then arrive alone (a head
    # larger than one TCP segment) must not be taken for a silent client:
    # they once got 408 a millisecond later.
    m, _ = proxy
    ctx = client_context(certs)
    for _ in range(5):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with socket.create_connection(("127.0.0.1", m.port()), timeout=T(5)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    s.sendall(outgoing.read())
                    incoming.write(s.recv(65536))
            s.sendall(outgoing.read())  # the client's Finished
            time.sleep(0.0003)
            tls.write(b"GET /split HTTP/1.1\r\nHost: localhost\r\n\r\n")
            record = outgoing.read()
            s.sendall(record[:10])
            time.sleep(0.05)
            s.sendall(record[10:])
            data = b""
            while b"\r\n\r\n" not in data:
                try:
                    data += tls.read(65536)
                except ssl.SSLWantReadError:
                    d = s.recv(65536)
                    assert d, data
                    incoming.write(d)
            assert data.startswith(b"HTTP/1.1 200"), data[:100]


def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _served_key(port, sni, *, ciphers=None, maxv=None, curve=None):
    """'rsa' or 'ec': the key of the certificate a full handshake gets, after
    a GET through it answered 200."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    ctx = client_context(None, verify=False, maxv=maxv)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if curve:
        ctx.set_ecdh_curve(curve)  # the only group the client offers
    raw = socket.create_connection(("127.0.0.1", port), timeout=T(5))
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert s.recv(12) == b"HTTP/1.1 200"
        key = x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).public_key()
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)), key
    return "rsa" if isinstance(key, rsa.RSAPublicKey) else "ec"


@pytest.fixture
def dual_key_proxy(certs, backend, moat_factory, tmp_path):
    """site.test with an ECDSA certificate first and an RSA one second;
    pair.test's hosts with ECDSA for www.pair.test and RSA for *.pair.test."""
    from opslib import CertMaker
    cm = CertMaker(certs)
    files = [(str(tmp_path / ("c%d.pem" % i)), str(tmp_path / ("k%d.pem" % i))) for i in range(4)]
    cm.leaf(*files[0], cn="site.test")
    cm.leaf(*files[1], key=_rsa_key(), cn="site.test")
    cm.leaf(*files[2], cn="www.pair.test", dns=("www.pair.test",), ips=())
    cm.leaf(*files[3], key=_rsa_key(), cn="pair.test", dns=("*.pair.test",), ips=())
    pairs = "".join("        - cert: %s\n          key: %s\n" % f for f in files)
    y = basic_yaml(certs, [backend.addr]).replace(
        "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key), pairs)
    return moat_factory(y)


RSA_ONLY_12 = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"
ECDSA_ONLY_12 = "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize("sni", ["site.test", "localhost", None])
def test_an_rsa_certificate_serves_clients_that_cannot_verify_ecdsa(dual_key_proxy, sni):
    # Before, SNI took the first certificate for a name whatever its key:
    # a TLS 1.2 client offering only RSA suites failed its handshake.
    port = dual_key_proxy.port()
    tls12 = ssl.TLSVersion.TLSv1_2
    assert _served_key(port, sni, ciphers=RSA_ONLY_12, maxv=tls12) == "rsa"
    assert _served_key(port, sni, ciphers=ECDSA_ONLY_12, maxv=tls12) == "ec"
    assert _served_key(port, sni, maxv=tls12) == "ec"  # both: the first listed
    assert _served_key(port, sni) == "ec"


def test_tls12_clients_without_the_ecdsa_curve_get_the_rsa_certificate(dual_key_proxy):
    # RFC 8422 5.1: a TLS 1.2 client verifies ECDSA only on the curves it lists
    port = dual_key_proxy.port()
    tls12 = ssl.TLSVersion.TLSv1_2
    assert _served_key(port, "site.test", maxv=tls12, curve="secp384r1") == "rsa"
    assert _served_key(port, "site.test", maxv=tls12, curve="prime256v1") == "ec"
    for curves, want in (("X25519", "RSA"), ("X25519:P-256", "ECDSA")):
        r = s_client(port, "-tls1_2", "-ign_eof", "-curves", curves, servername="site.test",
                     data=b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        text = (r.stdout + r.stderr).decode(errors="replace")
        assert re.search(r"Peer signature type: %s\b" % want, text), (curves, text)
        assert "HTTP/1.1 200" in text, text


def test_an_rsa_wildcard_serves_an_exact_ecdsa_name_to_rsa_only_clients(dual_key_proxy):
    port = dual_key_proxy.port()
    tls12 = ssl.TLSVersion.TLSv1_2
    assert _served_key(port, "www.pair.test", ciphers=RSA_ONLY_12, maxv=tls12) == "rsa"
    assert _served_key(port, "www.pair.test", maxv=tls12) == "ec"
    assert _served_key(port, "api.pair.test") == "rsa"


@pytest.mark.parametrize("sigalgs,want", [
    ("rsa_pss_rsae_sha256", "RSA-PSS"), ("ecdsa_secp256r1_sha256", "ECDSA"),
    ("ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256", "ECDSA"),
    ("rsa_pss_rsae_sha256:ecdsa_secp256r1_sha256", "ECDSA"),
    ("ecdsa_secp384r1_sha384:rsa_pss_rsae_sha256", "RSA-PSS")])  # the P-256 key can't sign that
def test_tls13_certificate_follows_the_signature_algorithms(dual_key_proxy, sigalgs, want):
    r = s_client(dual_key_proxy.port(), "-tls1_3", "-ign_eof", "-sigalgs", sigalgs,
                 servername="site.test", data=b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    text = (r.stdout + r.stderr).decode(errors="replace")
    m = re.search(r"Peer signature type: (\S+)", text)
    assert m and m.group(1) == want, text
    assert "HTTP/1.1 200" in text, text


def test_the_listeners_ciphers_narrow_the_certificate_choice(certs, backend, moat_factory,
                                                             tmp_path):
    # TLS 1.2 suites for RSA only: an ECDSA certificate first has no suite,
    # so TLS 1.2 clients get the RSA one (they all failed before); TLS 1.3
    # does not depend on the suites.  A lone ECDSA certificate with such a
    # list is warned of.
    from opslib import CertMaker
    cm = CertMaker(certs)
    files = [(str(tmp_path / ("c%d.pem" % i)), str(tmp_path / ("k%d.pem" % i))) for i in range(2)]
    cm.leaf(*files[0], cn="site.test")
    cm.leaf(*files[1], key=_rsa_key(), cn="site.test")
    ciphers = 'ciphers: "TLS13-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"'
    pairs = "".join("        - cert: %s\n          key: %s\n" % f for f in files)
    y = basic_yaml(certs, [backend.addr], tls_extra=ciphers).replace(
        "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key), pairs)
    m = moat_factory(y)
    port = m.port()
    assert _served_key(port, "site.test", maxv=ssl.TLSVersion.TLSv1_2) == "rsa"
    assert _served_key(port, "site.test") == "ec"
    warning = "certificates[0] (%s) has a key of kind ecdsa-p256, which no TLS 1.2 suite of " \
              "\"ciphers\" can use"
    assert warning % files[0][0] in m.stderr(), m.stderr()
    assert "certificates[1]" not in m.stderr(), m.stderr()
    lone = moat_factory(basic_yaml(certs, [backend.addr], tls_extra=ciphers))
    assert warning % certs.site_cert in lone.stderr(), lone.stderr()


def test_ecdsa_certificates_on_two_curves_serve_each_its_clients(certs, backend, moat_factory,
                                                                 tmp_path):
    # TLS 1.3 signature schemes name the curve: a P-384 certificate first,
    # a P-256 one second; neither is "never served".
    from cryptography.hazmat.primitives.asymmetric import ec
    from opslib import CertMaker
    cm = CertMaker(certs)
    files = [(str(tmp_path / ("c%d.pem" % i)), str(tmp_path / ("k%d.pem" % i))) for i in range(2)]
    cm.leaf(*files[0], key=ec.generate_private_key(ec.SECP384R1()), cn="site.test")
    cm.leaf(*files[1], cn="site.test")
    pairs = "".join("        - cert: %s\n          key: %s\n" % f for f in files)
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace(
        "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key), pairs))
    assert "never served" not in m.stderr(), m.stderr()
    for sigalgs, bits in (("ecdsa_secp256r1_sha256", "256"), ("ecdsa_secp384r1_sha384", "384"),
                          ("ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384", "384")):
        r = s_client(m.port(), "-tls1_3", "-ign_eof", "-sigalgs", sigalgs, servername="site.test",
                     data=b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        text = (r.stdout + r.stderr).decode(errors="replace")
        assert "Server public key is %s bit" % bits in text, (sigalgs, text)
        assert "HTTP/1.1 200" in text, text


def test_a_tls12_cipher_list_keeps_tls13(certs, backend, moat_factory):
    # ciphers governs TLS 1.2, as nginx's ssl_ciphers does: Mozilla's
    # intermediate string pasted from nginx refused every TLS 1.3 client.
    tls12_only = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")
    for extra in ('ciphers: "%s"' % tls12_only,
                  'ciphers: "%s"\nmin_version: "1.3"' % tls12_only):
        m = moat_factory(basic_yaml(certs, [backend.addr], tls_extra=extra))
        with Client(m.port(), certs) as c:
            assert c.sock.version() == "TLSv1.3", extra
            assert c.request("GET", "/").status == 200
        assert "never served" not in m.stderr() and "no TLS 1.2 suite" not in m.stderr()
    # Mozilla's intermediate string as it is, ending with DHE-RSA suites
    # this build lacks, and a folded YAML list (a space after each ':'):
    # the unknown names used to make moat take the list as it was, without
    # TLS 1.3 suites; the names are skipped with a warning instead
    mozilla = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
               "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
               "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
               "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
    folded = "ciphers: >-\n  ECDHE-ECDSA-AES256-GCM-SHA384:\n  ECDHE-ECDSA-CHACHA20-POLY1305"
    for extra in ('ciphers: "%s"' % mozilla, 'ciphers: "%s"\nmin_version: "1.3"' % mozilla,
                  folded):
        m = moat_factory(basic_yaml(certs, [backend.addr], tls_extra=extra))
        with Client(m.port(), certs) as c:
            assert c.sock.version() == "TLSv1.3", extra
            assert c.request("GET", "/").status == 200
        if extra == folded:
            ctx = client_context(certs, maxv=ssl.TLSVersion.TLSv1_2)
            ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
            with Client(m.port(), certs, ctx=ctx) as c:
                assert c.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305", c.sock.cipher()
        else:
            assert ("ciphers: skipping what this build has no suite for: "
                    "DHE-RSA-AES128-GCM-SHA256, DHE-RSA-AES256-GCM-SHA384") in m.stderr(), \
                m.stderr()
    # a list that names TLS 1.3 suites chooses them
    m = moat_factory(basic_yaml(certs, [backend.addr], tls_extra=(
        'ciphers: "TLS13-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"')))
    with Client(m.port(), certs) as c:
        assert c.sock.cipher()[0] == "TLS_AES_256_GCM_SHA384", c.sock.cipher()


def test_a_cipher_list_wolfssl_cannot_use_is_one_error_at_its_key(certs, backend, tmp_path):
    from moatlib import MOAT_BIN
    y = basic_yaml(certs, [backend.addr], second_cert=True, tls_extra='ciphers: "HIGH:!aNULL"')
    (tmp_path / "c.yaml").write_text(y)
    r = subprocess.run([MOAT_BIN, "-t", "-c", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, timeout=T(30))
    assert r.returncode == 1, r
    line = next(n for n, l in enumerate(y.splitlines(), 1) if "ciphers:" in l)
    assert r.stderr.startswith("%s:%d:16: listener \"public\": ciphers: cipher list "
                               "\"HIGH:!aNULL\" is not usable: moat takes suite names"
                               % (tmp_path / "c.yaml", line)), r.stderr
    assert r.stderr.count("not usable") == 1, r.stderr


def test_an_ed25519_certificate_first_is_served_only_to_clients_that_verify_it(
        certs, backend, moat_factory, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from opslib import CertMaker
    cm = CertMaker(certs)
    files = [(str(tmp_path / ("c%d.pem" % i)), str(tmp_path / ("k%d.pem" % i))) for i in range(3)]
    cm.leaf(*files[0], key=ed25519.Ed25519PrivateKey.generate(), cn="site.test")
    cm.leaf(*files[1], cn="site.test")
    cm.leaf(*files[2], key=_rsa_key(), cn="site.test")
    pairs = "".join("        - cert: %s\n          key: %s\n" % f for f in files)
    m = moat_factory(basic_yaml(certs, [backend.addr]).replace(
        "        - cert: %s\n          key: %s\n" % (certs.site_cert, certs.site_key), pairs))
    assert "never served" not in m.stderr(), m.stderr()
    for args, want in ((["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256"],
                        "ECDSA"),
                       (["-tls1_2", "-sigalgs", "ECDSA+SHA256:RSA+SHA256"], "ECDSA"),
                       (["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"], "RSA-PSS"),
                       (["-tls1_3", "-sigalgs", "ed25519:ecdsa_secp256r1_sha256"], "Ed25519")):
        r = s_client(m.port(), "-ign_eof", *args, servername="site.test",
                     data=b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        text = (r.stdout + r.stderr).decode(errors="replace")
        assert re.search(r"Peer signature type: %s\b" % want, text, re.I), (args, text)
        assert "HTTP/1.1 200" in text, text


def test_signature_schemes_past_what_wolfssl_reads_do_not_choose(dual_key_proxy):
    # wolfSSL keeps a hello's first 19 signature schemes: an ECDSA one after
    # them made moat choose the ECDSA certificate, which wolfSSL then could
    # not sign with (handshake_failure).  RSA serves that client.
    import struct
    from test_hostile import ext, raw_client_hello, server_answer
    rsa = [0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201, 0x0301] + [0x0a0a] * 11
    sigalgs = b"".join(struct.pack(">H", s) for s in rsa + [0x0403, 0x0503])
    sn = b"\x00" + struct.pack(">H", 9) + b"site.test"
    exts = (ext(0, struct.pack(">H", len(sn)) + sn) + ext(10, b"\x00\x04\x00\x17\x00\x18")
            + ext(11, b"\x01\x00") + ext(13, struct.pack(">H", len(sigalgs)) + sigalgs)
            + ext(0xff01, b"\x00"))
    a = server_answer(dual_key_proxy.port(),
                      raw_client_hello(0x0303, [0xC02B, 0xC02F], extensions=exts))
    assert a == ("hello", 0x0303, 0xC02F), a  # ECDHE-RSA: the RSA certificate
