"""Reloads and signals through the real binary: SIGHUP swapping certificates
and configuration without dropping connections or tunnels, broken
certificates and configurations refused (old one kept), the certificate
watcher (file replacement, debounce, the Kubernetes ..data swap), a reload
storm under load, SIGTERM draining, SIGUSR1 reopening the access log."""
import datetime
import os
import re
import shutil
import signal
import ssl
import threading
import time

import pytest

from moatlib import (SANITIZED, T, Client, Resp, Upgrade, basic_yaml, client_context, tls_get,
                     wait_for)
from opslib import (ADMIN, CertMaker, connect_refused, failure_report, fd_count, http_get,
                    listener_addr_from_log, peer_cert, peer_serial, reload_counts, rss_kib, scrape,
                    sighup, tls_served, tls_yaml, wait_reload, wait_serial, write_atomic)

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


@pytest.fixture
def cm(certs):
    return CertMaker(certs)


@pytest.fixture
def live(tmp_path, cm):
    """A directory with a fresh certificate pair: (dir, cert, key, serial)."""
    d = tmp_path / "live"
    d.mkdir()
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    serial = cm.leaf(cert, key)
    return str(d), cert, key, serial


def config(certs, servers, cert, key, *, watch=False, listeners="", routes=None, upstreams="",
           workers=1, access="stdout", extra=""):
    """basic_yaml with the listener's pair at cert/key, the admin listener,
    optional more listeners (YAML list items) and upstreams."""
    y = tls_yaml(certs, servers, cert, key, workers=workers, routes=routes, access=access,
                 tls_extra="watch: true" if watch else "", extra=ADMIN + extra)
    if listeners:
        y = y.replace("routes:\n", listeners + "routes:\n", 1)
    if upstreams:
        y = y.replace("upstreams:\n", "upstreams:\n" + upstreams, 1)
    return y


def write_config(m, text):
    write_atomic(m.config, text.encode())


def open_tunnel(port, certs, path="/ws"):
    c = Client(port, certs, timeout=5)
    r = c.request("GET", path, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert r.status == 101, r
    assert c._exact(len(b"hello-from-backend\n")) == b"hello-from-backend\n"
    return c


def echo(c, data):
    c.send(data)
    assert c._exact(len(data)) == data


def ws_handler(req):
    if req.target.startswith("/ws"):
        return Upgrade()
    return Resp(200, b"%s conn=%d\n" % (req.target.encode(), req.conn_id))


# ---------------------------------------------------------------- certificates by SIGHUP

def test_sighup_swaps_certificate_open_connections_and_tunnels_keep_working(
        certs, cm, live, backend, moat_factory):
    d, cert, key, serial1 = live
    backend.handler = ws_handler
    m = moat_factory(config(certs, [backend.addr], cert, key, workers=2))
    assert peer_serial(m.port()) == serial1
    keep = Client(m.port(), certs)
    tunnel = open_tunnel(m.port(), certs)
    try:
        assert keep.request("GET", "/before").status == 200
        echo(tunnel, b"ping before\n")

        serial2 = cm.leaf(cert, key)
        assert sighup(m) == "ok", m.stderr()
        err = m.stderr()
        assert "reload 2: configuration loaded" in err, err
        assert "reload 2 applied by every worker" in err, err
        # every new handshake, on either worker, gets the new certificate
        for _ in range(8):
            assert peer_serial(m.port()) == serial2
        # the connection opened before still works, several times
        for i in range(5):
            r = keep.request("GET", "/after%d" % i)
            assert r.status == 200 and r.body.startswith(b"/after%d" % i), r
        # and so does the tunnel
        for i in range(3):
            echo(tunnel, b"ping after %d\n" % i)
        assert scrape(m).value("moat_reloads_total", result="success") == 1
    finally:
        keep.close()
        tunnel.close()


def test_tunnel_survives_several_reloads_and_config_changes(certs, cm, live, backend_factory,
                                                           moat_factory):
    d, cert, key, _ = live
    b1 = backend_factory(ws_handler)
    b2 = backend_factory(ws_handler)
    m = moat_factory(config(certs, [b1.addr], cert, key))
    tunnel = open_tunnel(m.port(), certs)
    try:
        for i, b in enumerate([b2, b1, b2]):
            write_config(m, config(certs, [b.addr], cert, key))
            cm.leaf(cert, key)
            assert sighup(m) == "ok"
            echo(tunnel, b"round %d\n" % i)
        with Client(m.port(), certs) as c:
            c.request("GET", "/now")
        assert [r.target for r in b2.requests] == ["/now"]
    finally:
        tunnel.close()


@pytest.mark.parametrize("version,tickets", [(TLS13, True), (TLS12, True), (TLS12, False)],
                         ids=["tls13-ticket", "tls12-ticket", "tls12-session-id"])
def test_sessions_resume_across_a_reload(certs, cm, live, backend, moat_factory, version,
                                         tickets):
    d, cert, key, _ = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    ctx = client_context(certs, minv=version, maxv=version)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET

    def connect(session=None):
        return tls_get(m.port(), ctx, session)

    _, sess = connect()
    assert connect(sess)[0], "no resumption even before the reload"
    write_config(m, config(certs, [backend.addr], cert, key,
                           routes="  - path: /\n    upstream: app\n  - path: /x/\n"
                                  "    upstream: app\n"))
    assert sighup(m) == "ok"
    reused, _ = connect(sess)
    assert reused, "a session from before the reload did not resume after it"
    # A new certificate: sessions proved by the old one end with it (as
    # nginx's), since a certificate may be replaced because its key leaked.
    serial = cm.leaf(cert, key)
    assert sighup(m) == "ok"
    reused, _ = connect(sess)
    assert not reused, "a session of the replaced certificate resumed"
    assert peer_serial(m.port()) == serial
    _, sess = connect()
    assert connect(sess)[0], "no resumption under the new certificate"


def test_certificate_expiring_soon_loads_with_a_warning(certs, cm, live, backend, moat_factory):
    d, cert, key, _ = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    serial = cm.leaf(cert, key, days=5)
    assert sighup(m) == "ok", m.stderr()
    assert peer_serial(m.port()) == serial
    warn = [l for l in m.stderr().splitlines()
            if "[warn" in l and "expire" in l and "cert.pem" in l]
    assert warn, m.stderr()


def test_chain_leaf_first_with_intermediate_loads(certs, cm, live, backend, moat_factory):
    d, cert, key, _ = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    inter, ikey = cm.intermediate()
    serial = cm.leaf(cert, key, issuer=inter, issuer_key=ikey, extra_chain=[inter])
    assert sighup(m) == "ok", m.stderr()
    # a client that only trusts the root verifies through the sent intermediate
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/").status == 200
    assert peer_serial(m.port()) == serial


# ---------------------------------------------------------------- broken certificates

def _truncated(cm, cert, key):
    cm.leaf(cert, key)
    with open(cert, "rb") as f:
        pem = f.read()
    write_atomic(cert, pem[:len(pem) // 2])
    return "cert.pem"


def _mismatched_key(cm, cert, key):
    cm.leaf(cert, None)  # a new certificate, the old key
    return "cert.pem"


def _missing_cert(cm, cert, key):
    os.unlink(cert)
    return "cert.pem"


def _missing_key(cm, cert, key):
    os.unlink(key)
    return "key.pem"


def _expired(cm, cert, key):
    now = datetime.datetime.utcnow()
    cm.leaf(cert, key, not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1))
    return "cert.pem"


def _not_yet_valid(cm, cert, key):
    now = datetime.datetime.utcnow()
    cm.leaf(cert, key, not_before=now + datetime.timedelta(days=1),
            not_after=now + datetime.timedelta(days=30))
    return "cert.pem"


def _chain_out_of_order(cm, cert, key):
    inter, ikey = cm.intermediate()
    cm.leaf(cert, key, issuer=inter, issuer_key=ikey, extra_chain=[inter], chain_first=True)
    return "cert.pem"


def _no_dns_name(cm, cert, key):
    cm.leaf(cert, key, cn=None, dns=(), ips=("127.0.0.1",))
    return "cert.pem"


BROKEN = {
    "truncated-pem": _truncated,
    "key-not-matching": _mismatched_key,
    "missing-cert": _missing_cert,
    "missing-key": _missing_key,
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "chain-out-of-order": _chain_out_of_order,
    "no-dns-name": _no_dns_name,
}


def assert_failed_reload_reported(m, filename):
    report = failure_report(m)
    assert report, "no error lines under the failure line:\n" + m.stderr()
    located = [l for l in report if re.match(r"^\S+:\d+:\d+: \S", l)]
    assert located, "no FILE:LINE:COL: message line:\n%s" % "\n".join(report)
    assert any(filename in l for l in report), \
        "the error does not name %s:\n%s" % (filename, "\n".join(report))


@pytest.mark.parametrize("breakage", list(BROKEN), ids=list(BROKEN))
def test_broken_certificate_on_sighup_keeps_the_old_one(certs, cm, live, backend, moat_factory,
                                                       breakage):
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    keep = Client(m.port(), certs)
    try:
        assert keep.request("GET", "/").status == 200
        filename = BROKEN[breakage](cm, cert, key)
        assert sighup(m) == "failed", m.stderr()
        assert m.running()
        assert_failed_reload_reported(m, filename)
        assert peer_serial(m.port()) == serial1
        with Client(m.port(), certs) as c:
            assert c.request("GET", "/still").status == 200
        assert keep.request("GET", "/open").status == 200
        mt = scrape(m)
        assert mt.value("moat_reloads_total", result="failure") == 1
        assert mt.value("moat_reloads_total", result="success") == 0
        # the next good reload applies
        serial2 = cm.leaf(cert, key)
        assert sighup(m) == "ok", m.stderr()
        assert peer_serial(m.port()) == serial2
        mt = scrape(m)
        assert mt.value("moat_reloads_total", result="failure") == 1
        assert mt.value("moat_reloads_total", result="success") == 1
        assert keep.request("GET", "/open-again").status == 200
    finally:
        keep.close()


@pytest.mark.parametrize("which", ["cert", "key"])
def test_a_fifo_in_place_of_a_certificate_fails_the_reload_at_once(certs, live, backend,
                                                                   moat_factory, which):
    """Opening a FIFO blocks until something writes to it: moat's main
    thread hung there, with /healthz and /metrics silent and later reloads
    queued.  It is refused as not a regular file, like any other."""
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    path = cert if which == "cert" else key
    os.unlink(path)
    os.mkfifo(path)
    assert sighup(m, timeout=5) == "failed", m.stderr()
    assert_failed_reload_reported(m, os.path.basename(path))
    assert http_get(m.port("@admin"), "/healthz", timeout=3)[0] == 200
    assert peer_serial(m.port()) == serial1


# ---------------------------------------------------------------- the watcher

def test_watch_picks_up_replaced_files_without_sighup(certs, cm, live, backend, moat_factory):
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True, workers=2))
    serial2 = cm.leaf(cert, key)  # rename over, cert then key
    wait_serial(m.port(), serial2, timeout=5)
    # written in place this time (truncate + write), key first
    k = cm.new_key()
    c = cm.issue(k)
    with open(key, "wb") as f:
        f.write(cm.key_pem(k))
    with open(cert, "wb") as f:
        f.write(cm.cert_pem(c))
    wait_serial(m.port(), c.serial_number, timeout=5)
    mt = scrape(m)
    assert mt.value("moat_reloads_total", result="failure") == 0, m.stderr()
    assert "certificate files changed" in m.stderr() or mt.value(
        "moat_reloads_total", result="success") >= 2


def test_watch_debounces_a_pair_written_slowly(certs, cm, live, backend, moat_factory):
    """Cert written in two halves, then the key, 150 ms apart: a reload in
    between would see a half PEM or a mismatched pair.  The debounce (500
    ms of quiet) must load the pair once, complete."""
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True))
    k = cm.new_key()
    c = cm.issue(k)
    pem = cm.cert_pem(c)
    with open(cert, "wb") as f:
        f.write(pem[:len(pem) // 2])
        f.flush()
        time.sleep(0.15)
        f.write(pem[len(pem) // 2:])
    time.sleep(0.15)
    with open(key, "wb") as f:
        f.write(cm.key_pem(k))
    wait_serial(m.port(), c.serial_number, timeout=5)
    time.sleep(1.0)  # any late reload would show now
    mt = scrape(m)
    assert mt.value("moat_reloads_total", result="failure") == 0, m.stderr()
    assert mt.value("moat_reloads_total", result="success") == 1, m.stderr()


def test_watch_loads_a_broken_pair_never_and_recovers(certs, cm, live, backend, moat_factory):
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True))
    before = reload_counts(m)
    _truncated(cm, cert, key)
    assert wait_reload(m, before, timeout=5) == "failed", m.stderr()
    assert m.running()
    assert_failed_reload_reported(m, "cert.pem")
    assert peer_serial(m.port()) == serial1
    assert scrape(m).value("moat_reloads_total", result="failure") == 1
    before = reload_counts(m)
    _mismatched_key(cm, cert, key)
    assert wait_reload(m, before, timeout=5) == "failed", m.stderr()
    assert peer_serial(m.port()) == serial1
    serial2 = cm.leaf(cert, key)
    wait_serial(m.port(), serial2, timeout=5)
    mt = scrape(m)
    assert mt.value("moat_reloads_total", result="failure") == 2
    assert mt.value("moat_reloads_total", result="success") == 1


def test_watch_ignores_other_files_in_the_directory(certs, cm, live, backend, moat_factory):
    # The access log next to the certificate, written by every request, used
    # to restart the quiet period each time: under steady traffic a renewed
    # certificate was not served until the traffic stopped.  And any other
    # file changed there reloaded everything.
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True,
                            access=os.path.join(d, "access.log")))
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("x")
    ctx = client_context(certs)
    for _ in range(10):
        tls_get(m.port(), ctx)
        time.sleep(0.1)
    assert reload_counts(m) == (0, 0), m.stderr()
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            tls_get(m.port(), ctx)
            time.sleep(0.1)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        serial2 = cm.leaf(cert, key)
        wait_serial(m.port(), serial2, timeout=3)
    finally:
        stop.set()
        t.join(T(10))
    assert reload_counts(m) == (1, 0), m.stderr()
    assert os.path.getsize(os.path.join(d, "access.log")) > 0


def k8s_secret(base, cm, stamp):
    """Writes a Kubernetes-style Secret volume update: a new timestamped
    directory, ..data_tmp -> it, renamed over ..data, old directory removed.
    Returns the new serial."""
    new = os.path.join(base, "..%s" % stamp)
    os.mkdir(new)
    serial = cm.leaf(os.path.join(new, "tls.crt"), os.path.join(new, "tls.key"))
    data = os.path.join(base, "..data")
    old = os.readlink(data) if os.path.islink(data) else None
    tmp = os.path.join(base, "..data_tmp")
    os.symlink(os.path.basename(new), tmp)
    os.rename(tmp, data)
    for name in ("tls.crt", "tls.key"):
        link = os.path.join(base, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    if old:
        old = os.path.join(base, old)
        for f in os.listdir(old):
            os.unlink(os.path.join(old, f))
        os.rmdir(old)
    return serial


def test_watch_follows_a_kubernetes_secret_symlink_swap(tmp_path, certs, cm, backend,
                                                        moat_factory):
    base = str(tmp_path / "secret")
    os.mkdir(base)
    serial1 = k8s_secret(base, cm, "2026_01_01_00_00_00.1")
    cert, key = os.path.join(base, "tls.crt"), os.path.join(base, "tls.key")
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True))
    assert peer_serial(m.port()) == serial1
    serial2 = k8s_secret(base, cm, "2026_02_01_00_00_00.2")
    wait_serial(m.port(), serial2, timeout=5)
    # and again: the watch outlives the directory it first resolved
    serial3 = k8s_secret(base, cm, "2026_03_01_00_00_00.3")
    wait_serial(m.port(), serial3, timeout=5)
    assert scrape(m).value("moat_reloads_total", result="failure") == 0, m.stderr()


def test_without_watch_files_are_not_reloaded(certs, cm, live, backend, moat_factory):
    d, cert, key, serial1 = live
    m = moat_factory(config(certs, [backend.addr], cert, key))
    cm.leaf(cert, key)
    time.sleep(1.5)
    assert peer_serial(m.port()) == serial1
    assert reload_counts(m) == (0, 0)


# ---------------------------------------------------------------- configuration by reload

def test_reload_adds_a_route_and_changes_an_upstream(certs, live, backend_factory,
                                                     moat_factory):
    d, cert, key, _ = live
    b1, b2, b3 = backend_factory(), backend_factory(), backend_factory()
    m = moat_factory(config(certs, [b1.addr], cert, key))
    old = Client(m.port(), certs)
    try:
        assert old.request("GET", "/a").status == 200
        with Client(m.port(), certs) as c:
            assert c.request("GET", "/new/1").status == 200  # "/" route, b1
        write_config(m, config(certs, [b2.addr], cert, key,
                               routes="  - path: /\n    upstream: app\n"
                                      "  - path: /new/\n    upstream: extra\n",
                               upstreams='  extra:\n    servers: ["%s"]\n' % b3.addr))
        assert sighup(m) == "ok", m.stderr()
        with Client(m.port(), certs) as c:
            assert c.request("GET", "/new/2").status == 200
            assert c.request("GET", "/b").status == 200
        assert [r.target for r in b3.requests] == ["/new/2"]
        assert [r.target for r in b2.requests] == ["/b"]
        # the connection opened before keeps the configuration it started with
        assert old.request("GET", "/c").status == 200
        assert old.request("GET", "/new/3").status == 200
        assert [r.target for r in b1.requests] == ["/a", "/new/1", "/c", "/new/3"]
    finally:
        old.close()


LISTENER = ('  - name: %s\n    bind: "%s"\n    tls:\n      certificates:\n'
            '        - cert: %s\n          key: %s\n')


def test_reload_opens_new_listeners_and_closes_removed_ones(certs, live, backend, moat_factory):
    d, cert, key, _ = live
    m = moat_factory(config(certs, [backend.addr], cert, key,
                            listeners=LISTENER % ("old", "127.0.0.1:0", cert, key)))
    public, oldport = m.port("public"), m.port("old")
    assert tls_served(oldport, certs)
    mark = len(m.stderr())
    write_config(m, config(certs, [backend.addr], cert, key,
                           listeners=LISTENER % ("second", "127.0.0.1:0", cert, key)))
    assert sighup(m) == "ok", m.stderr()
    addr = listener_addr_from_log(m, "second", after=mark)
    assert addr, "no 'listener \"second\" on https://ADDR' line after the reload:\n" + m.stderr()
    port = int(addr.rsplit(":", 1)[1])
    assert port != 0
    assert tls_served(port, certs), "the new listener does not serve"
    wait_for(lambda: connect_refused(oldport), 3, "the removed listener to close")
    # the unchanged listener kept its socket
    assert listener_addr_from_log(m, "public", after=mark) == "127.0.0.1:%d" % public
    assert tls_served(public, certs)
    # the listen file follows the reload (it used to keep "old" and lack "second")
    with open(m.listen_file) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("@")]
    assert lines == ["public 127.0.0.1:%d" % public, "second %s" % addr], lines


def test_reload_adds_and_removes_listeners_on_fixed_ports(certs, live, backend, moat_factory):
    from moatlib import free_port
    d, cert, key, _ = live
    p_old, p_new = free_port(), free_port()
    m = moat_factory(config(certs, [backend.addr], cert, key,
                            listeners=LISTENER % ("old", "127.0.0.1:%d" % p_old, cert, key)))
    assert tls_served(p_old, certs)
    mark = len(m.stderr())
    write_config(m, config(certs, [backend.addr], cert, key,
                           listeners=LISTENER % ("second", "127.0.0.1:%d" % p_new, cert, key)))
    assert sighup(m) == "ok", m.stderr()
    assert listener_addr_from_log(m, "second", after=mark) == "127.0.0.1:%d" % p_new
    assert tls_served(p_new, certs)
    wait_for(lambda: connect_refused(p_old), 3, "the removed listener to close")
    assert tls_served(m.port(), certs)


INVALID = {
    "unknown-key": ("bogus_key: 1\n", "bogus_key"),
    "undefined-upstream": None,  # filled in by the test
    "yaml-syntax": ("routes: [\n", None),
}


@pytest.mark.parametrize("kind", list(INVALID))
def test_invalid_config_on_reload_keeps_the_old_one(certs, live, backend, moat_factory, kind):
    d, cert, key, _ = live
    good = config(certs, [backend.addr], cert, key)
    m = moat_factory(good)
    if kind == "undefined-upstream":
        bad = good.replace("    upstream: app\n", "    upstream: nowhere\n", 1)
        word = "nowhere"
    else:
        tail, word = INVALID[kind]
        bad = good + tail
    write_config(m, bad)
    assert sighup(m) == "failed", m.stderr()
    assert m.running()
    report = failure_report(m)
    located = [l for l in report if re.match(r"^\S*moat\.yaml:\d+:\d+: \S", l)]
    assert located, "no moat.yaml:LINE:COL: line:\n" + m.stderr()
    if word:
        assert any(word in l for l in located), report
        lineno = [i for i, l in enumerate(bad.split("\n"), 1) if word in l][0]
        assert any(":%d:" % lineno in l for l in located), (lineno, report)
    with Client(m.port(), certs) as c:
        assert c.request("GET", "/still").status == 200
    assert scrape(m).value("moat_reloads_total", result="failure") == 1
    write_config(m, good.replace("  level: info\n", "  level: info\n", 1))
    assert sighup(m) == "ok"
    assert scrape(m).value("moat_reloads_total", result="success") == 1


# ---------------------------------------------------------------- reload storm

def _wait_quiet(m, timeout=10):
    """Until the last loaded reload was applied and nothing moved for 0.3 s."""
    def settled():
        err = m.stderr()
        loaded = re.findall(r"reload (\d+): configuration loaded", err)
        applied = re.findall(r"reload (\d+) applied by every worker", err)
        if loaded and (not applied or applied[-1] != loaded[-1]):
            return False
        time.sleep(0.3)
        return m.stderr() == err
    wait_for(settled, timeout, "reloads to settle")


def test_reload_storm_under_load(certs, cm, live, backend, moat_factory):
    d, cert, key, _ = live
    variants = [config(certs, [backend.addr], cert, key, workers=2),
                config(certs, [backend.addr], cert, key, workers=2,
                       routes="  - path: /\n    upstream: app\n  - path: /v/\n"
                              "    upstream: app\n")]
    m = moat_factory(variants[0])
    pid = m.proc.pid
    stop = threading.Event()
    results = {"ok": 0, "fail": []}
    last = {}
    lock = threading.Lock()

    def new_connections(version):
        ctx = client_context(certs, minv=version, maxv=version)
        while not stop.is_set():
            try:
                with Client(m.port(), ctx=ctx, timeout=5) as c:
                    r = c.request("GET", "/n")
                ok = r.status == 200
            except Exception as e:  # counted and shown below
                ok, r = False, e
            with lock:
                if ok:
                    results["ok"] += 1
                else:
                    results["fail"].append(repr(r))

    def keepalive():
        c = Client(m.port(), certs, timeout=5)
        try:
            while not stop.is_set():
                try:
                    r = c.request("GET", "/k")
                    ok = r.status == 200
                except Exception as e:
                    ok, r = False, e
                with lock:
                    if ok:
                        results["ok"] += 1
                    else:
                        results["fail"].append("keep-alive: %r" % r)
                if not ok:
                    c.close()
                    c = Client(m.port(), certs, timeout=5)
        finally:
            c.close()

    def storm(seconds, rate=40):
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            if i % 5 == 0:
                write_config(m, variants[(i // 5) % 2])
            if i % 17 == 0:
                last["serial"] = cm.leaf(cert, key)
            os.kill(pid, signal.SIGHUP)
            i += 1
            time.sleep(1.0 / rate)
        return i

    def run(seconds):
        stop.clear()
        threads = [threading.Thread(target=new_connections, args=(TLS13,)),
                   threading.Thread(target=new_connections, args=(TLS12,)),
                   threading.Thread(target=keepalive)]
        for t in threads:
            t.start()
        try:
            n = storm(seconds)
        finally:
            stop.set()
            for t in threads:
                t.join(T(15))
        assert not any(t.is_alive() for t in threads)
        return n

    run(1.0)  # warm-up: pools, caches, allocator arenas
    _wait_quiet(m)
    fds0, rss0 = fd_count(pid), rss_kib(pid)
    results["ok"], results["fail"] = 0, []
    sent = run(4.0)
    _wait_quiet(m)
    assert not results["fail"], "%d of %d requests failed during the storm: %r" % (
        len(results["fail"]), results["ok"] + len(results["fail"]), results["fail"][:5])
    assert results["ok"] > 50, results
    assert m.running()
    mt = scrape(m)
    assert mt.value("moat_reloads_total", result="failure") == 0, m.stderr()[-3000:]
    assert mt.value("moat_reloads_total", result="success") >= 5
    # the last configuration written is in force (coalesced, not lost)
    write_config(m, variants[1])
    assert sighup(m) == "ok"
    assert peer_serial(m.port()) == last["serial"]
    # resources back to where they were
    wait_for(lambda: fd_count(pid) <= fds0 + 2, 5,
             "file descriptors back to %d (now %d)" % (fds0, fd_count(pid)))
    rss1 = rss_kib(pid)
    print("storm: %d SIGHUPs, %d requests, reloads %d, fds %d -> %d, RSS %d -> %d KiB" % (
        sent, results["ok"], mt.value("moat_reloads_total", result="success"), fds0,
        fd_count(pid), rss0, rss1))
    if not SANITIZED:
        assert rss1 - rss0 < 3 * 1024, "RSS grew from %d to %d KiB over %d SIGHUPs" % (
            rss0, rss1, sent)


# ---------------------------------------------------------------- SIGTERM, SIGUSR1

def test_sigterm_drains_a_slow_request_healthz_503(certs, live, backend, moat_factory):
    d, cert, key, _ = live
    backend.handler = lambda req: Resp(200, b"slow and complete\n",
                                       delay=2 if req.target == "/slow" else 0)
    m = moat_factory(config(certs, [backend.addr], cert, key, workers=2))
    port, admin = m.port(), m.port("@admin")
    assert http_get(admin, "/healthz")[0] == 200
    result = {}

    def client():
        try:
            with Client(port, certs, timeout=10) as c:
                result["resp"] = c.request("GET", "/slow")
                result["at"] = time.monotonic()
        except Exception as e:
            result["error"] = e

    t = threading.Thread(target=client, daemon=True)
    t.start()
    backend.wait_requests(1)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    try:
        # healthz says draining while the request is in flight
        status, _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            http_get(admin, "/healthz")), 1, "/healthz 503 during the drain")
        assert time.monotonic() - t0 < T(1.5)
        # new connections are refused: the listener closed at once
        assert wait_for(lambda: connect_refused(port), 1, "the listener to close")
        assert http_get(admin, "/healthz")[0] == 503  # still answering
    finally:
        t.join(T(10))
    assert "error" not in result, result
    assert result["resp"].status == 200 and result["resp"].body == b"slow and complete\n"
    rc = m.wait(5)
    assert rc == 0, m.stderr()
    assert time.monotonic() - t0 < T(5), "exit later than shutdown_timeout"
    assert result["at"] - t0 >= 1.5  # it really was in flight


def test_sigusr1_reopens_the_access_log(tmp_path, certs, live, backend, moat_factory):
    d, cert, key, _ = live
    log = tmp_path / "access.log"
    m = moat_factory(config(certs, [backend.addr], cert, key, access=str(log)))
    keep = Client(m.port(), certs)
    try:
        assert keep.request("GET", "/one").status == 200
        wait_for(lambda: log.exists() and "/one" in log.read_text(), 5, "/one logged")
        for rot in (1, 2):
            os.rename(log, tmp_path / ("access.log.%d" % rot))
            m.signal(signal.SIGUSR1)
            wait_for(lambda: log.exists(), 5, "a new access.log")
            assert keep.request("GET", "/keep%d" % rot).status == 200
            with Client(m.port(), certs) as c:
                assert c.request("GET", "/new%d" % rot).status == 200
            wait_for(lambda: "/new%d" % rot in log.read_text()
                     and "/keep%d" % rot in log.read_text(), 5, "rotation %d logged" % rot)
        old1 = (tmp_path / "access.log.1").read_text()
        old2 = (tmp_path / "access.log.2").read_text()
        assert "/one" in old1 and "/keep1" not in old1 and "/new1" not in old1, old1
        assert "/keep1" in old2 and "/new1" in old2 and "/new2" not in old2, old2
        assert "/one" not in log.read_text()
        assert m.running()
    finally:
        keep.close()


def test_a_reload_keeps_the_generated_self_signed_certificate(certs, backend, moat_factory):
    # Without a certificate, every SIGHUP used to make a new key and
    # certificate: clients told to trust or pin it broke, and no session
    # resumed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    env.update(MOAT_UPSTREAM=backend.addr, MOAT_LISTEN="127.0.0.1:0", MOAT_ADMIN="off")
    m = moat_factory(None, args=[], env=env)
    port = m.port("https")
    ctx = client_context(None, verify=False, maxv=TLS12)
    _, session = tls_get(port, ctx)
    before = peer_cert(port)
    assert sighup(m) == "ok", m.stderr()
    assert peer_cert(port) == before
    assert tls_get(port, ctx, session=session)[0], "the session did not resume"


def test_watch_survives_its_directory_being_replaced(tmp_path, certs, cm, backend, moat_factory):
    # A deploy that ships a new directory (a new one renamed into place, or
    # rm -rf and a new one) left the watch on the old directory: that one
    # change was seen, none after it, until a restart.
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    cm.leaf(cert, key)
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True))
    new = tmp_path / "new"
    new.mkdir()
    serial2 = cm.leaf(str(new / "cert.pem"), str(new / "key.pem"))
    shutil.rmtree(str(live))
    os.rename(str(new), str(live))
    wait_serial(m.port(), serial2, timeout=5)
    serial3 = cm.leaf(cert, key)
    wait_serial(m.port(), serial3, timeout=5)
    shutil.rmtree(str(live))
    time.sleep(1.5)  # gone for a while: moat keeps serving what it has
    live.mkdir()
    serial4 = cm.leaf(cert, key)
    wait_serial(m.port(), serial4, timeout=5)
    assert "the directory is gone" in m.stderr(), m.stderr()
    # removed and made again at once: the new directory often gets the old
    # one's inode number back, but not the kernel's watch
    inodes = set()
    for _ in range(3):
        shutil.rmtree(str(live))
        live.mkdir()
        inodes.add(os.stat(str(live)).st_ino)
        serial = cm.leaf(cert, key)
        wait_serial(m.port(), serial, timeout=5)
        time.sleep(1.2)
        serial = cm.leaf(cert, key)  # and a renewal after the watch came back
        wait_serial(m.port(), serial, timeout=5)


def test_watch_follows_symlinks_into_other_directories(tmp_path, certs, cm, backend,
                                                      moat_factory):
    # certbot's layout: the configured path links to live/, which links to
    # archive/; a renewal adds archive files and replaces the live/ links.
    for d in ("etc", "live", "archive"):
        (tmp_path / d).mkdir()
    a = str(tmp_path / "archive")
    cm.leaf(os.path.join(a, "cert1.pem"), os.path.join(a, "key1.pem"))
    for name in ("cert", "key"):
        os.symlink("../archive/%s1.pem" % name, str(tmp_path / "live" / ("%s.pem" % name)))
        os.symlink(str(tmp_path / "live" / ("%s.pem" % name)),
                   str(tmp_path / "etc" / ("%s.pem" % name)))
    cert, key = str(tmp_path / "etc" / "cert.pem"), str(tmp_path / "etc" / "key.pem")
    m = moat_factory(config(certs, [backend.addr], cert, key, watch=True))
    for n in (2, 3):
        serial = cm.leaf(os.path.join(a, "cert%d.pem" % n), os.path.join(a, "key%d.pem" % n))
        for name in ("cert", "key"):
            tmp = str(tmp_path / "live" / ("%s.tmp" % name))
            os.symlink("../archive/%s%d.pem" % (name, n), tmp)
            os.rename(tmp, str(tmp_path / "live" / ("%s.pem" % name)))
        wait_serial(m.port(), serial, timeout=5)
    # the final file rewritten in place is seen too
    k = cm.new_key()
    c = cm.issue(k)
    with open(os.path.join(a, "key3.pem"), "wb") as f:
        f.write(cm.key_pem(k))
    with open(os.path.join(a, "cert3.pem"), "wb") as f:
        f.write(cm.cert_pem(c))
    wait_serial(m.port(), c.serial_number, timeout=5)
    assert scrape(m).value("moat_reloads_total", result="failure") == 0, m.stderr()
