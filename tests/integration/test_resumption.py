"""Session resumption through the real moat binary: the shared session-ID
cache, session tickets with derived keys, across loops, replicas and
listeners, the cache's bounds, and hostile resumption attempts."""
import os
import re
import secrets
import socket
import ssl
import struct
import subprocess
import time

import pytest

from moatlib import SANITIZED, T, basic_yaml, client_context, rss_kib, s_client, wait_for
from moatlib import tls_get as connect

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


def resumption_yaml(certs, backend, cache="", tickets="", workers=1, extra_listener=""):
    tls = ""
    if cache:
        tls += "session_cache:\n" + "".join("  %s\n" % l for l in cache.strip().split("\n"))
    if tickets:
        tls += "session_tickets:\n" + "".join("  %s\n" % l for l in tickets.strip().split("\n"))
    return basic_yaml(certs, [backend.addr], workers=workers, tls_extra=tls)


def ctx_for(certs, version, tickets=True):
    ctx = client_context(certs, minv=version, maxv=version)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def summary(moat):
    """The counters moat logs when it stops (moat must be stopped)."""
    err = moat.stderr()
    out = {}
    m = re.search(r"handshakes: (\d+) full, (\d+) resumed, (\d+) failed", err)
    assert m, err
    out["full"], out["resumed"], out["failed"] = map(int, m.groups())
    m = re.search(r"session cache: (\d+) hits, (\d+) misses, (\d+) entries, (\d+) evictions, "
                  r"(\d+) expired", err)
    if m:
        (out["hits"], out["misses"], out["entries"], out["evictions"],
         out["expired"]) = map(int, m.groups())
    m = re.search(r"session tickets: (\d+) issued, (\d+) accepted, (\d+) rejected", err)
    if m:
        out["issued"], out["accepted"], out["rejected"] = map(int, m.groups())
    out["workers"] = [tuple(map(int, w)) for w in
                      re.findall(r"worker (\d+): (\d+) connections, (\d+) handshakes, "
                                 r"(\d+) resumed", err)]
    return out


def stop(moat):
    assert moat.stop() == 0
    return summary(moat)


def key_file(path, data=None, mode=0o600):
    with open(path, "wb") as f:
        f.write(data if data is not None else secrets.token_bytes(64))
    os.chmod(path, mode)
    return str(path)


# ---- real clients report resumption ---------------------------------------


def test_s_client_reconnect_tls12_session_id(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, tickets="enabled: false"))
    r = s_client(m.port(), "-tls1_2", "-no_ticket", "-reconnect", timeout=20)
    out = r.stdout.decode()
    assert out.count("\nNew, TLSv1.2") == 1, out
    assert out.count("\nReused, TLSv1.2") == 5, out
    s = stop(m)
    assert s["hits"] == 5 and s["resumed"] == 5, s


def test_s_client_reconnect_tls12_ticket(certs, backend, moat_factory):
    # No session-ID cache: every resumption below must come from the ticket.
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 0"))
    r = s_client(m.port(), "-tls1_2", "-reconnect", timeout=20)
    out = r.stdout.decode()
    assert "TLS session ticket lifetime hint" in out, out
    assert out.count("\nReused, TLSv1.2") == 5, out
    s = stop(m)
    assert s["accepted"] >= 5 and s["resumed"] == 5, s
    assert "hits" not in s  # no cache configured


def test_s_client_tls13_sess_out_sess_in(certs, backend, moat_factory, tmp_path):
    m = moat_factory(resumption_yaml(certs, backend))
    sess = str(tmp_path / "sess.pem")
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = s_client(m.port(), "-tls1_3", "-sess_out", sess, "-ign_eof", data=req)
    assert b"New, TLSv1.3" in r.stdout and os.path.getsize(sess) > 0
    r = s_client(m.port(), "-tls1_3", "-sess_in", sess, "-ign_eof", data=req)
    assert b"Reused, TLSv1.3" in r.stdout, r.stdout.decode()
    assert b"HTTP/1.1 200" in r.stdout


@pytest.mark.parametrize("flag", ["-tls1_3", "-tls1_2"], ids=["tls13", "tls12-ticket"])
def test_a_ticket_resumes_only_under_its_certificate(certs, backend, moat_factory, tmp_path,
                                                      flag):
    """A ticket issued under site.test's certificate offered with SNI
    alt.test, which picks another certificate: a resumption would skip that
    certificate altogether.  A full handshake instead; the session cache
    already worked this way for session IDs."""
    m = moat_factory(basic_yaml(certs, [backend.addr], second_cert=True))
    sess = str(tmp_path / "sess.pem")
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = s_client(m.port(), flag, "-sess_out", sess, "-ign_eof", data=req, servername="site.test")
    assert b"New, TLSv1." in r.stdout and os.path.getsize(sess) > 0, r.stdout.decode()
    r = s_client(m.port(), flag, "-sess_in", sess, "-ign_eof", data=req, servername="alt.test")
    assert b"New, TLSv1." in r.stdout, r.stdout.decode()
    assert b"CN = alt.test" in r.stdout, r.stdout.decode()
    r = s_client(m.port(), flag, "-sess_in", sess, "-ign_eof", data=req, servername="site.test")
    assert b"Reused, TLSv1." in r.stdout, r.stdout.decode()


@pytest.mark.parametrize("version,tickets", [(TLS12, False), (TLS12, True), (TLS13, True)],
                         ids=["tls12-id", "tls12-ticket", "tls13"])
def test_python_session_reused(certs, backend, moat_factory, version, tickets):
    m = moat_factory(resumption_yaml(certs, backend))
    ctx = ctx_for(certs, version, tickets)
    reused, sess = connect(m.port(), ctx)
    assert not reused
    for _ in range(3):
        reused, sess = connect(m.port(), ctx, sess)
        assert reused


def session_from_first_flight(port, ctx):
    """The session a TLS 1.3 client holds after reading only the server's
    first flight: the client's Finished is made but never sent, so a ticket
    in the session means the server sent it with its own Finished."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=T(10)) as s:
        done = False
        while not done:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())  # only the ClientHello ever leaves
                data = s.recv(65536)
                assert data, "moat closed during the handshake"
                incoming.write(data)
        # Whatever else the server wrote before hearing from us.
        s.settimeout(T(0.5))
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                incoming.write(data)
        except socket.timeout:
            pass
        try:
            tls.read(1)  # processes a NewSessionTicket, if one came
        except ssl.SSLWantReadError:
            pass
        return tls.session


def test_tls13_ticket_comes_with_the_server_finished(certs, backend, moat_factory):
    # One write per handshake less: the ticket does not wait for the
    # client's Finished (RFC 8446, 4.6.1); the ticket must still resume.
    m = moat_factory(resumption_yaml(certs, backend))
    ctx = ctx_for(certs, TLS13)
    sess = session_from_first_flight(m.port(), ctx)
    assert sess is not None and sess.has_ticket
    reused, _ = connect(m.port(), ctx, sess)
    assert reused
    s = stop(m)
    assert s["resumed"] == 1, s


def first_response_wait(port, ctx, session=None):
    """Seconds from a client's first request to its response, the client
    with Nagle on as Python's http.client and s_client are, and whether its
    session resumed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=T(5))
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        start = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        return time.monotonic() - start, s.session_reused, s.session


@pytest.mark.parametrize("version,resume", [(TLS13, False), (TLS13, True), (TLS12, True)],
                         ids=["tls13-full", "tls13-resumed", "tls12-resumed"])
def test_first_request_is_not_held_behind_a_delayed_ack(certs, backend, moat_factory, version,
                                                        resume):
    # When the client's Finished is the handshake's last message, moat has
    # nothing to send that would carry its ACK, Linux delays that ACK by at
    # least 40 ms, and a client with Nagle on holds its request until the
    # ACK comes: every connection's first response came 40 ms late (nginx
    # still does this on resumption).
    m = moat_factory(resumption_yaml(certs, backend))
    ctx = ctx_for(certs, version)
    _, _, sess = first_response_wait(m.port(), ctx)
    waits = []
    for _ in range(5):
        wait, reused, _ = first_response_wait(m.port(), ctx, sess if resume else None)
        assert reused == resume
        waits.append(wait)
    assert sorted(waits)[2] < T(0.02), waits


# ---- across loops and replicas ---------------------------------------------


def test_resumption_across_worker_loops(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, workers=2))
    for version, tickets in ((TLS12, False), (TLS13, True)):
        ctx = ctx_for(certs, version, tickets)
        _, sess = connect(m.port(), ctx)
        for i in range(30):
            reused, _ = connect(m.port(), ctx, sess)
            assert reused, "resumption %d with %s failed" % (i, version)
    s = stop(m)
    assert s["resumed"] == 60, s
    # SO_REUSEPORT spread the connections: both loops resumed sessions
    # created on either of them.
    assert len(s["workers"]) == 2 and all(w[3] > 0 for w in s["workers"]), s


def two_replicas(certs, backend, moat_factory, tmp_path, same_key, rotate="12h"):
    k1 = key_file(tmp_path / "k1.key")
    k2 = k1 if same_key else key_file(tmp_path / "k2.key")
    tickets = "key_file: %s\nrotate: %s"
    a = moat_factory(resumption_yaml(certs, backend, cache="size: 0", tickets=tickets % (k1, rotate)))
    b = moat_factory(resumption_yaml(certs, backend, cache="size: 0", tickets=tickets % (k2, rotate)))
    return a, b


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_replicas_sharing_a_key_file_resume_each_other(certs, backend, moat_factory, tmp_path,
                                                       version):
    a, b = two_replicas(certs, backend, moat_factory, tmp_path, same_key=True)
    ctx = ctx_for(certs, version)
    _, sess = connect(a.port(), ctx)
    reused, sess_b = connect(b.port(), ctx, sess)
    assert reused
    reused, _ = connect(a.port(), ctx, sess_b)
    assert reused


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_replicas_with_different_key_files_fall_back_to_full(certs, backend, moat_factory,
                                                             tmp_path, version):
    a, b = two_replicas(certs, backend, moat_factory, tmp_path, same_key=False)
    ctx = ctx_for(certs, version)
    _, sess = connect(a.port(), ctx)
    reused, _ = connect(b.port(), ctx, sess)
    assert not reused
    s = stop(b)
    assert s["rejected"] >= 1 and s["failed"] == 0, s


def test_ticket_older_than_the_key_window_gets_a_full_handshake(certs, backend, moat_factory,
                                                               tmp_path):
    # rotate 1s: a ticket is accepted for the current period and the ones
    # either side of it, so one from 3+ seconds ago has a retired key.  TLS
    # 1.2 so that the client still offers it (TLS 1.3 clients drop tickets
    # past their lifetime themselves).
    k = key_file(tmp_path / "k.key")
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 0",
                                     tickets="key_file: %s\nrotate: 1s" % k))
    ctx = ctx_for(certs, TLS12)
    _, sess = connect(m.port(), ctx)
    reused, _ = connect(m.port(), ctx, sess)
    assert reused
    time.sleep(3.2)
    reused, _ = connect(m.port(), ctx, sess)
    assert not reused
    s = stop(m)
    assert s["rejected"] >= 1 and s["failed"] == 0, s


@pytest.mark.parametrize("mode,size,why", [
    (0o604, 64, "readable by others or writable by group or others"),
    (0o620, 64, "readable by others or writable by group or others"),
    (0o600, 31, "a ticket key file holds 32 to 4096 random bytes"),
])
def test_bad_key_files_are_refused(certs, backend, tmp_path, mode, size, why):
    k = key_file(tmp_path / "k.key", secrets.token_bytes(size), mode)
    cfg = tmp_path / "moat.yaml"
    cfg.write_text(resumption_yaml(certs, backend, tickets="key_file: %s" % k))
    from moatlib import MOAT_BIN
    r = subprocess.run([MOAT_BIN, "-t", "-c", str(cfg)], capture_output=True, timeout=T(20))
    assert r.returncode == 1
    err = r.stderr.decode()
    assert why in err and "k.key" in err and re.search(r"moat\.yaml:\d+:\d+: ", err), err


def test_group_readable_key_file_is_accepted(certs, backend, tmp_path):
    # Kubernetes mounts a Secret for a non-root container as root:fsGroup 0440.
    k = key_file(tmp_path / "k.key", secrets.token_bytes(64), 0o440)
    cfg = tmp_path / "moat.yaml"
    cfg.write_text(resumption_yaml(certs, backend, tickets="key_file: %s" % k))
    from moatlib import MOAT_BIN
    r = subprocess.run([MOAT_BIN, "-t", "-c", str(cfg)], capture_output=True, timeout=T(20))
    assert r.returncode == 0, r.stderr.decode()


# ---- the cache's bounds ----------------------------------------------------


def test_cache_evicts_past_its_size(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 32",
                                     tickets="enabled: false"))
    ctx = ctx_for(certs, TLS12, tickets=False)
    _, first = connect(m.port(), ctx)
    for _ in range(99):
        connect(m.port(), ctx)
    reused, _ = connect(m.port(), ctx, first)
    assert not reused  # pushed out by the 99 newer sessions
    s = stop(m)
    assert s["entries"] <= 32 and s["evictions"] >= 100 - 32, s


def test_expired_session_is_not_resumed(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 100\ntimeout: 1s",
                                     tickets="enabled: false"))
    ctx = ctx_for(certs, TLS12, tickets=False)
    _, sess = connect(m.port(), ctx)
    reused, _ = connect(m.port(), ctx, sess)
    assert reused
    time.sleep(1.5)
    reused, _ = connect(m.port(), ctx, sess)
    assert not reused
    s = stop(m)
    assert s["expired"] >= 1, s


def test_cache_and_tickets_off_means_full_handshakes(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 0", tickets="enabled: false"))
    for version in (TLS12, TLS13):
        ctx = ctx_for(certs, version)
        _, sess = connect(m.port(), ctx)
        reused, _ = connect(m.port(), ctx, sess)
        assert not reused
    s = stop(m)
    assert s["resumed"] == 0 and s["failed"] == 0, s


def test_memory_stays_bounded_while_cycling_sessions(certs, backend, moat_factory):
    m = moat_factory(resumption_yaml(certs, backend, cache="size: 100",
                                     tickets="enabled: false"))
    ctx = ctx_for(certs, TLS12, tickets=False)
    for _ in range(400):
        connect(m.port(), ctx)
    before = rss_kib(m.proc.pid)
    for _ in range(1200):
        connect(m.port(), ctx)
    after = rss_kib(m.proc.pid)
    # 1200 more sessions than the cache holds: memory must not follow them
    # (a session is a few hundred bytes, so 1200 kept would be ~0.5 MiB+).
    if not SANITIZED:
        assert after - before < 1024, (before, after)
    s = stop(m)
    assert s["entries"] <= 100 and s["evictions"] >= 1500, s


# ---- hostile resumption attempts -------------------------------------------


def der_find_ticket(der):
    """Offset and length of the ticket inside an OpenSSL SSL_SESSION (DER):
    the [10] EXPLICIT OCTET STRING of the outer SEQUENCE."""
    def read_len(b, i):
        n = b[i]
        if n < 0x80:
            return n, i + 1
        k = n & 0x7F
        return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k

    assert der[0] == 0x30
    total, i = read_len(der, 1)
    end = i + total
    while i < end:
        tag = der[i]
        n, j = read_len(der, i + 1)
        if tag == 0xAA:
            assert der[j] == 0x04
            tn, k = read_len(der, j + 1)
            return k, tn
        i = j + n
    raise AssertionError("no ticket in the session")


def test_garbage_ticket_gets_a_full_handshake(certs, backend, moat_factory, tmp_path):
    import base64
    m = moat_factory(resumption_yaml(certs, backend))
    sess = tmp_path / "sess.pem"
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = s_client(m.port(), "-tls1_3", "-sess_out", str(sess), "-ign_eof", data=req)
    assert b"New, TLSv1.3" in r.stdout
    pem = sess.read_text()
    body = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
    der = bytearray(base64.b64decode(body))
    off, n = der_find_ticket(der)
    for k in range(off + n // 3, off + n // 3 + 8):
        der[k] ^= 0xA5  # damage the sealed part of the ticket
    bad = tmp_path / "bad.pem"
    b64 = base64.b64encode(bytes(der)).decode()
    bad.write_text("-----BEGIN SSL SESSION PARAMETERS-----\n" +
                   "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) +
                   "\n-----END SSL SESSION PARAMETERS-----\n")
    r = s_client(m.port(), "-tls1_3", "-sess_in", str(bad), "-ign_eof", data=req)
    out = r.stdout.decode()
    assert "New, TLSv1.3" in out and "HTTP/1.1 200" in out, out
    s = stop(m)
    assert s["rejected"] >= 1 and s["failed"] == 0, s


def client_hello(session_id, sni=b"localhost"):
    """A TLS 1.2 ClientHello offering session_id (any length up to 32)."""
    ext = b""
    name = b"\x00" + struct.pack(">H", len(sni)) + sni
    ext += struct.pack(">HH", 0, len(name) + 2) + struct.pack(">H", len(name)) + name
    ext += struct.pack(">HHH", 10, 4, 2) + struct.pack(">H", 23)        # secp256r1
    ext += struct.pack(">HHB", 11, 2, 1) + b"\x00"                       # uncompressed points
    ext += struct.pack(">HHH", 13, 4, 2) + struct.pack(">H", 0x0403)    # ecdsa_secp256r1_sha256
    body = b"\x03\x03" + secrets.token_bytes(32)
    body += bytes([len(session_id)]) + session_id
    body += struct.pack(">H", 2) + struct.pack(">H", 0xC02B)            # ECDHE-ECDSA-AES128-GCM
    body += b"\x01\x00" + struct.pack(">H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def server_hello_session_id(port, session_id):
    """The session ID of the server's answer to a ClientHello offering
    session_id, or None when the server refused with an alert and closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as s:
        s.sendall(client_hello(session_id))
        data = b""
        while len(data) < 5 + 4 + 2 + 32 + 1:
            chunk = s.recv(4096)
            if not chunk:
                assert data[:1] == b"\x15", "closed without an alert: %r" % data
                return None
            data += chunk
    assert data[0] == 0x16 and data[5] == 0x02, data[:16]  # handshake, ServerHello
    n = data[5 + 4 + 2 + 32]
    return bytes(data[5 + 4 + 2 + 32 + 1:5 + 4 + 2 + 32 + 1 + n])


@pytest.mark.parametrize("sid,may_refuse", [
    (secrets.token_bytes(5), True),    # legal but never sent: wolfSSL refuses it
    (secrets.token_bytes(32), False),
    (b"\x00" * 32, False),
], ids=["truncated", "unknown", "zeros"])
def test_odd_session_ids_get_a_full_handshake(certs, backend, moat_factory, sid, may_refuse):
    m = moat_factory(resumption_yaml(certs, backend, tickets="enabled: false"))
    got = server_hello_session_id(m.port(), sid)
    if got is None:
        assert may_refuse, "refused a 32-byte session ID"
    else:
        assert got != sid and len(got) in (0, 32)
    # The process is fine and resumption still works afterwards.
    ctx = ctx_for(certs, TLS12, tickets=False)
    _, sess = connect(m.port(), ctx)
    assert connect(m.port(), ctx, sess)[0]


def test_sessions_do_not_cross_listeners(certs, backend, moat_factory, tmp_path):
    k = key_file(tmp_path / "shared.key")
    base = resumption_yaml(certs, backend, tickets="key_file: %s" % k)
    second = ("  - name: second\n    bind: \"127.0.0.1:0\"\n    tls:\n      certificates:\n"
              "        - cert: %s\n          key: %s\n      session_tickets:\n"
              "        key_file: %s\n" % (certs.site_cert, certs.site_key, k))
    yaml_text = base.replace("routes:\n", second + "routes:\n", 1)
    m = moat_factory(yaml_text)
    p1, p2 = m.port("public"), m.port("second")
    for version, tickets in ((TLS12, False), (TLS12, True), (TLS13, True)):
        ctx = ctx_for(certs, version, tickets)
        _, sess = connect(p1, ctx)
        assert connect(p1, ctx, sess)[0]
        reused, _ = connect(p2, ctx, sess)
        assert not reused, "a %s session from one listener resumed on the other" % version
    s = stop(m)
    assert s["failed"] == 0, s
