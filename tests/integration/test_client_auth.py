"""Mutual TLS (tls.client_auth) through the real moat binary, with curl,
openssl s_client and Python's ssl module: who gets in, what a refused
client is told, and that neither resumption nor a reload lets a client past
the check."""
import os
import ssl
import subprocess

import pytest

from moatlib import (MOAT_BIN, T, KeyDir, _openssl, basic_yaml, client_context, curl, s_client,
                     tls_get)
from opslib import ADMIN, reload_counts, scrape, sighup, wait_reload, write_atomic

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])


class ClientPKI(KeyDir):
    """Two client CAs and a client certificate from each, ECDSA P-256:
    alice (clients CA), mallory (other CA)."""

    def __init__(self, d):
        super().__init__(d)
        for ca in ("clients", "other"):
            self._key(ca + "-ca.key")
            _openssl(["req", "-x509", "-new", "-key", ca + "-ca.key", "-subj",
                      "/CN=moat test %s CA" % ca, "-days", "30", "-sha256",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign", "-out", ca + "-ca.pem"],
                     self.dir)
        self._client("alice", "clients")
        self._client("mallory", "other")
        # from the trusted CA, but not for signing, or not for clients
        self._client("trudy", "clients", usage="keyUsage=keyEncipherment\n")
        self._client("webby", "clients", usage="keyUsage=digitalSignature\n"
                     "extendedKeyUsage=serverAuth\n")
        with open(self.path("both-ca.pem"), "wb") as f:
            for ca in ("clients", "other"):
                with open(self.path(ca + "-ca.pem"), "rb") as g:
                    f.write(g.read())
        self.ca = self.path("clients-ca.pem")
        self.other_ca = self.path("other-ca.pem")
        self.both_ca = self.path("both-ca.pem")

    path = KeyDir._path

    def _client(self, name, ca, usage="keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"):
        self._key(name + ".key")
        _openssl(["req", "-new", "-key", name + ".key", "-subj", "/CN=" + name,
                  "-out", name + ".csr"], self.dir)
        with open(self.path(name + ".ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + usage)
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", ca + "-ca.pem", "-CAkey",
                  ca + "-ca.key", "-CAcreateserial", "-days", "30", "-sha256", "-extfile",
                  name + ".ext", "-out", name + ".pem"], self.dir)

    def pair(self, name):
        return self.path(name + ".pem"), self.path(name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return ClientPKI(tmp_path_factory.mktemp("client-pki"))


def mtls_yaml(certs, backend, ca, required=True):
    auth = "client_auth:\n  ca: %s\n  required: %s" % (ca, "true" if required else "false")
    return basic_yaml(certs, [backend.addr], tls_extra=auth if ca else "", extra=ADMIN)


def ctx_for(certs, pki, version, who=None, tickets=True):
    ctx = client_context(certs, minv=version, maxv=version)
    if who:
        ctx.load_cert_chain(*pki.pair(who))
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def attempt(port, ctx, session=None):
    """One GET over a fresh connection: ("ok", reused, session), or
    ("refused", why, None) when the handshake or the first read fails (under
    TLS 1.3 a refused client certificate shows on the first read)."""
    try:
        reused, sess = tls_get(port, ctx, session)
        return "ok", reused, sess
    except (ssl.SSLError, ConnectionError) as e:
        return "refused", str(e), None


def handshake_errors(m):
    return scrape(m).value("moat_tls_handshake_errors_total", listener="public")


# ---- who gets in -----------------------------------------------------------


@VERSIONS
def test_required_admits_only_clients_the_ca_signed(certs, backend, moat_factory, pki, version):
    m = moat_factory(mtls_yaml(certs, backend, pki.ca))
    r = attempt(m.port(), ctx_for(certs, pki, version, "alice"))
    assert r[0] == "ok", r
    for who in (None, "mallory"):
        r = attempt(m.port(), ctx_for(certs, pki, version, who))
        assert r[0] == "refused", (who, r)
    assert handshake_errors(m) == 2
    # at the default level, naming the listener and wolfSSL's reason
    refusals = [l for l in m.stderr().splitlines()
                if '[info] connection from 127.0.0.1 to listener "public": client certificate '
                   'refused: ' in l]
    assert len(refusals) == 2, m.stderr()
    assert backend.connections == 1  # nothing of a refused client went upstream


@VERSIONS
@pytest.mark.parametrize("who", ["trudy", "webby"], ids=["no-digitalSignature", "serverAuth-only"])
def test_a_certificate_not_meant_for_client_signing_is_refused(certs, backend, moat_factory,
                                                               pki, version, who):
    """Signed by the trusted CA, but its keyUsage forbids signing (TLS 1.3
    let it in before moat patched wolfSSL) or its extendedKeyUsage names
    servers only: refused, as OpenSSL servers refuse it."""
    m = moat_factory(mtls_yaml(certs, backend, pki.ca, required=False))
    r = attempt(m.port(), ctx_for(certs, pki, version, who))
    assert r[0] == "refused", r
    assert handshake_errors(m) == 1
    assert backend.connections == 0


@VERSIONS
def test_optional_admits_clients_without_a_certificate(certs, backend, moat_factory, pki,
                                                      version):
    m = moat_factory(mtls_yaml(certs, backend, pki.ca, required=False))
    for who in (None, "alice"):
        r = attempt(m.port(), ctx_for(certs, pki, version, who))
        assert r[0] == "ok", (who, r)
    # A certificate that is presented must still verify.
    r = attempt(m.port(), ctx_for(certs, pki, version, "mallory"))
    assert r[0] == "refused", r


def test_a_ca_file_may_hold_several_cas(certs, backend, moat_factory, pki):
    m = moat_factory(mtls_yaml(certs, backend, pki.both_ca))
    for who in ("alice", "mallory"):
        r = attempt(m.port(), ctx_for(certs, pki, TLS13, who))
        assert r[0] == "ok", (who, r)


def test_curl_with_and_without_a_client_certificate(certs, backend, moat_factory, pki):
    m = moat_factory(mtls_yaml(certs, backend, pki.ca))
    url = "https://localhost:%d/" % m.port()
    cert, key = pki.pair("alice")
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "--cert", cert, "--key", key, url,
             certs=certs)
    assert r.returncode == 0 and r.stdout == b"200", r
    r = curl("-o", "/dev/null", url, certs=certs)
    assert r.returncode in (35, 56), r  # handshake failure / alert on the first read


@pytest.mark.parametrize("flag,alert", [("-tls1_2", "handshake failure"),
                                        ("-tls1_3", "certificate required")])
def test_a_client_without_a_certificate_gets_an_alert(certs, backend, moat_factory, pki, flag,
                                                      alert):
    # The alert tells the client why; a bare close would read as a network fault.
    m = moat_factory(mtls_yaml(certs, backend, pki.ca))
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    r = s_client(m.port(), flag, "-CAfile", certs.ca, "-ign_eof", data=req)
    err = r.stderr.decode()
    assert "alert " + alert in err, err
    r = s_client(m.port(), flag, "-CAfile", pki.other_ca, "-cert", pki.path("mallory.pem"),
                 "-key", pki.path("mallory.key"), "-ign_eof", data=req)
    assert "alert unknown ca" in r.stderr.decode(), r.stderr.decode()


# ---- resumption --------------------------------------------------------------


@pytest.mark.parametrize("version,tickets", [(TLS12, False), (TLS12, True), (TLS13, True)],
                         ids=["tls12-id", "tls12-ticket", "tls13"])
def test_clients_with_certificates_resume(certs, backend, moat_factory, pki, version, tickets):
    m = moat_factory(mtls_yaml(certs, backend, pki.ca))
    ctx = ctx_for(certs, pki, version, "alice", tickets)
    r = attempt(m.port(), ctx)
    assert r[:2] == ("ok", False), r
    for _ in range(2):
        r = attempt(m.port(), ctx, r[2])
        assert r[:2] == ("ok", True), r


@pytest.mark.parametrize("version,tickets", [(TLS12, False), (TLS12, True), (TLS13, True)],
                         ids=["tls12-id", "tls12-ticket", "tls13"])
def test_reload_to_client_auth_does_not_resume_older_sessions(certs, backend, moat_factory,
                                                              pki, version, tickets):
    # A session from before client_auth was turned on would otherwise let a
    # client without a certificate in.
    m = moat_factory(mtls_yaml(certs, backend, None))
    anon = ctx_for(certs, pki, version, None, tickets)
    r = attempt(m.port(), anon)
    assert r[:2] == ("ok", False), r
    old = r[2]
    assert attempt(m.port(), anon, old)[:2] == ("ok", True)
    write_atomic(m.config, mtls_yaml(certs, backend, pki.ca).encode())
    assert sighup(m) == "ok"
    r = attempt(m.port(), anon, old)
    assert r[0] == "refused", r
    anon.load_cert_chain(*pki.pair("alice"))  # Python resumes only in the same context
    r = attempt(m.port(), anon, old)
    assert r[:2] == ("ok", False), r


@pytest.mark.parametrize("version,tickets", [(TLS12, False), (TLS13, True)],
                         ids=["tls12-id", "tls13"])
def test_reload_to_other_cas_does_not_resume_older_sessions(certs, backend, moat_factory, pki,
                                                            tmp_path, version, tickets):
    # The same ticket key file on both sides of the reload: only the CAs change.
    key = tmp_path / "ticket.key"
    key.write_bytes(os.urandom(64))
    os.chmod(key, 0o600)

    def conf(ca):
        return mtls_yaml(certs, backend, ca).replace(
            "client_auth:", "session_tickets:\n        key_file: %s\n      client_auth:" % key)

    m = moat_factory(conf(pki.both_ca))
    ctx = ctx_for(certs, pki, version, "mallory", tickets)
    r = attempt(m.port(), ctx)
    assert r[:2] == ("ok", False), r
    old = r[2]
    assert attempt(m.port(), ctx, old)[:2] == ("ok", True)
    write_atomic(m.config, conf(pki.ca).encode())
    assert sighup(m) == "ok"
    r = attempt(m.port(), ctx, old)
    assert r[0] == "refused", r


def test_watch_reloads_a_replaced_ca_file(certs, backend, moat_factory, pki, tmp_path):
    ca = tmp_path / "ca" / "clients.pem"
    ca.parent.mkdir()
    with open(pki.ca, "rb") as f:
        write_atomic(str(ca), f.read())
    m = moat_factory(mtls_yaml(certs, backend, str(ca)).replace(
        "client_auth:", "watch: true\n      client_auth:"))
    assert attempt(m.port(), ctx_for(certs, pki, TLS13, "alice"))[0] == "ok"
    assert attempt(m.port(), ctx_for(certs, pki, TLS13, "mallory"))[0] == "refused"
    before = reload_counts(m)
    with open(pki.other_ca, "rb") as f:
        write_atomic(str(ca), f.read())
    assert wait_reload(m, before) == "ok"
    assert attempt(m.port(), ctx_for(certs, pki, TLS13, "alice"))[0] == "refused"
    assert attempt(m.port(), ctx_for(certs, pki, TLS13, "mallory"))[0] == "ok"


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_sidecar_variables(certs, backend, moat_factory, pki, mode):
    # No YAML: the sidecar settings (MOAT_UPSTREAM, ...) with MOAT_CLIENT_CA.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    env.update(MOAT_UPSTREAM=backend.addr, MOAT_LISTEN="127.0.0.1:0", MOAT_ADMIN="off",
               MOAT_CERT=certs.site_cert, MOAT_KEY=certs.site_key, MOAT_CLIENT_CA=pki.ca,
               MOAT_CLIENT_AUTH=mode)
    m = moat_factory(None, args=[], env=env)
    port = m.port("https")
    assert attempt(port, ctx_for(certs, pki, TLS13, "alice"))[0] == "ok"
    assert attempt(port, ctx_for(certs, pki, TLS13, "mallory"))[0] == "refused"
    r = attempt(port, ctx_for(certs, pki, TLS13, None))
    assert r[0] == ("refused" if mode == "required" else "ok"), r


def test_sidecar_client_auth_needs_a_ca(certs, backend):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    env.update(MOAT_UPSTREAM=backend.addr, MOAT_CLIENT_AUTH="optional")
    r = subprocess.run([MOAT_BIN, "-t"], env=env, capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "MOAT_CLIENT_AUTH: needs MOAT_CLIENT_CA" in r.stderr, r
    env.update(MOAT_CLIENT_CA="ca.pem", MOAT_CLIENT_AUTH="sometimes")
    r = subprocess.run([MOAT_BIN, "-t"], env=env, capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "MOAT_CLIENT_AUTH: \"sometimes\"" in r.stderr, r
    env.update(MOAT_CLIENT_CA="/nonexistent/ca.pem", MOAT_CLIENT_AUTH="required")
    r = subprocess.run([MOAT_BIN, "-t"], env=env, capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "MOAT_CLIENT_CA" in r.stderr and "cannot open" in r.stderr, r


# ---- configuration ------------------------------------------------------------


def check(tmp_path, text):
    cfg = tmp_path / "moat.yaml"
    cfg.write_text(text)
    return subprocess.run([MOAT_BIN, "-t", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=T(30))


def test_configuration_check_reads_the_ca_file(certs, backend, pki, tmp_path):
    r = check(tmp_path, mtls_yaml(certs, backend, pki.ca))
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    damaged = tmp_path / "damaged-ca.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n")
    for ca, why in ((tmp_path / "missing.pem", "cannot open"),
                    (not_pem, "no PEM certificate"),
                    (damaged, "do not load")):
        r = check(tmp_path, mtls_yaml(certs, backend, ca))
        assert r.returncode == 1, r
        assert "client_auth.ca" in r.stderr and why in r.stderr, r.stderr
        assert "moat.yaml:" in r.stderr, r.stderr
    r = check(tmp_path, basic_yaml(certs, [backend.addr], tls_extra="client_auth:\n  required: true"))
    assert r.returncode == 1 and "\"ca\"" in r.stderr, r.stderr
