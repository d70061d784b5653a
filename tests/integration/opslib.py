"""Helpers for the operations tests (reload, admin, redirect, health):
certificates made on demand with chosen serials and validity, the peer
certificate a handshake got, the admin endpoint, a strict parser of the
Prometheus text format, and reload bookkeeping from moat's stderr.

Everything is loopback only; every wait is bounded (moatlib.T/wait_for).
"""
import datetime
import os
import re
import signal
import socket
import ssl

from moatlib import T, client_context, rss_kib, wait_for  # noqa: F401 (rss_kib re-exported)

# --------------------------------------------------------------------------
# certificates (python3-cryptography; the CA is the session's moatlib.Certs)


def _x509():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class CertMaker:
    """Issues certificates from the test CA of a moatlib.Certs.

    leaf() writes a PEM certificate (optionally followed by chain certs) and
    its key, and returns the serial number."""

    _serial = 0x5E1A0000

    def __init__(self, certs):
        x509, _, serialization, _, _, _ = _x509()
        with open(os.path.join(certs.dir, "ca.key"), "rb") as f:
            self.ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(certs.ca, "rb") as f:
            self.ca_cert = x509.load_pem_x509_certificate(f.read())

    @classmethod
    def next_serial(cls):
        cls._serial += 1
        return cls._serial

    @staticmethod
    def new_key():
        _, _, _, ec, _, _ = _x509()
        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def key_pem(key):
        _, _, serialization, _, _, _ = _x509()
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    @staticmethod
    def cert_pem(cert):
        _, _, serialization, _, _, _ = _x509()
        return cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, key, *, cn="site.test", dns=("localhost", "site.test"), ips=("127.0.0.1",),
              not_before=None, not_after=None, days=30, serial=None, issuer=None,
              issuer_key=None, ca=False):
        """A certificate object for key's public key."""
        import ipaddress
        x509, hashes, _, _, eku, NameOID = _x509()
        serial = serial or self.next_serial()
        nb = not_before or (_now() - datetime.timedelta(hours=1))
        na = not_after or (_now() + datetime.timedelta(days=days))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else
                            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "moat tests")])
        issuer = issuer or self.ca_cert
        issuer_key = issuer_key or self.ca_key
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(nb).not_valid_after(na))
        if ca:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
        else:
            b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            sans = [x509.DNSName(d) for d in dns] + \
                   [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            if sans:
                b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([eku.SERVER_AUTH]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def leaf(self, cert_path, key_path, *, key=None, extra_chain=(), chain_first=False, **kw):
        """Writes cert_path (leaf, then extra_chain; chain_first puts the
        chain before the leaf) and key_path; returns the serial."""
        key = key or self.new_key()
        cert = self.issue(key, **kw)
        pems = [self.cert_pem(cert)] + [self.cert_pem(c) for c in extra_chain]
        if chain_first:
            pems = pems[1:] + pems[:1]
        write_atomic(cert_path, b"".join(pems))
        if key_path is not None:
            write_atomic(key_path, self.key_pem(key))
        return cert.serial_number

    def intermediate(self):
        """(certificate, key) of an intermediate CA under the test CA."""
        key = self.new_key()
        return self.issue(key, cn="moat test intermediate", ca=True), key


def write_atomic(path, data):
    """Writes a file the way careful tools do: a temporary file renamed over."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def serial_of_pem_file(path):
    x509 = _x509()[0]
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).serial_number


def peer_cert(port, sni="localhost", version=None):
    """The DER certificate a new full handshake gets (no verification)."""
    ctx = client_context(None, verify=False, minv=version, maxv=version)
    with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.getpeercert(binary_form=True)


def peer_serial(port, sni="localhost"):
    x509 = _x509()[0]
    return x509.load_der_x509_certificate(peer_cert(port, sni)).serial_number


def wait_serial(port, serial, timeout=5, sni="localhost"):
    """Waits until new handshakes get the certificate with this serial."""
    seen = []

    def ok():
        s = peer_serial(port, sni)
        seen.append(s)
        return s == serial

    try:
        wait_for(ok, timeout, "certificate serial %x" % serial, interval=0.1)
    except AssertionError:
        raise AssertionError("new handshakes still get serial %x (wanted %x)"
                             % (seen[-1], serial)) from None


def copy_site_pair(certs, d, cert_name="cert.pem", key_name="key.pem"):
    """Copies the session's site certificate and key into directory d; returns
    (cert_path, key_path, serial)."""
    os.makedirs(d, exist_ok=True)
    cp, kp = os.path.join(str(d), cert_name), os.path.join(str(d), key_name)
    for src, dst in ((certs.site_cert, cp), (certs.site_key, kp)):
        with open(src, "rb") as f:
            write_atomic(dst, f.read())
    return cp, kp, serial_of_pem_file(cp)


def tls_yaml(certs, servers, cert, key, **kw):
    """moatlib.basic_yaml with the listener's certificate pair replaced."""
    from moatlib import basic_yaml
    y = basic_yaml(certs, servers, **kw)
    return y.replace("cert: %s\n" % certs.site_cert, "cert: %s\n" % cert, 1) \
            .replace("key: %s\n" % certs.site_key, "key: %s\n" % key, 1)


ADMIN = 'admin:\n  bind: "127.0.0.1:0"\n'


# --------------------------------------------------------------------------
# the admin endpoint


def http_get(port, path, timeout=5, head_only=False, raw=None):
    """A plain HTTP/1.1 request on a new connection, read until the server
    closes it (fails if it does not within timeout).  Returns (status,
    headers [(name, value)], body)."""
    data = raw if raw is not None else (
        "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
        % ("HEAD" if head_only else "GET", path, port)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=T(timeout)) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError("%s: connection still open after %.1fs; got %r"
                                     % (path, T(timeout), out[:300]))
            if not d:
                break
            out += d
    head, sep, body = out.partition(b"\r\n\r\n")
    assert sep, "no complete response head: %r" % out[:300]
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
    assert m, lines[0]
    headers = []
    for l in lines[1:]:
        n, _, v = l.partition(":")
        headers.append((n.strip(), v.strip()))
    return int(m.group(1)), headers, body


def header(headers, name):
    v = [val for n, val in headers if n.lower() == name.lower()]
    return v[0] if v else None


def scrape(m):
    """GET /metrics on moat m's admin listener, parsed strictly."""
    status, headers, body = http_get(m.port("@admin"), "/metrics")
    assert status == 200, (status, body[:300])
    return parse_prometheus(body.decode("utf-8"))


# --------------------------------------------------------------------------
# Prometheus text format 0.0.4, strictly

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (%s)(?: (-?\d+))?$" % (_NAME, _VALUE))
_LABEL_RE = re.compile(r'(%s)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"' % _LABEL)
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Metrics:
    """Parsed exposition: families {name: {"type", "help", "samples"}} and
    samples [(name, labels dict, value)] in order."""

    def __init__(self, families, samples, text):
        self.families, self.samples, self.text = families, samples, text

    def find(self, metric, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == metric and all(l.get(k) == str(val) for k, val in labels.items())]

    def value(self, metric, **labels):
        """The one sample's value; 0 when the sample is absent (a labelled
        counter that has not been incremented yet need not be shown)."""
        found = self.find(metric, **labels)
        assert len(found) <= 1, "several samples %s %r: %r" % (metric, labels, found)
        return found[0][1] if found else 0.0

    def has(self, metric, **labels):
        return bool(self.find(metric, **labels))

    def sum(self, metric, **labels):
        return sum(v for _, v in self.find(metric, **labels))


def _unescape(v):
    return re.sub(r'\\(\\|"|n)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def _family_of(name, families):
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in families and \
                families[name[:-len(suffix)]]["type"] in ("histogram", "summary"):
            return name[:-len(suffix)]
    return None


def parse_prometheus(text):
    """Parses and checks text; raises AssertionError naming the bad line."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families, samples, seen = {}, [], set()
    order = []  # family of each sample run, to detect interleaving
    for no, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (no, line)
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % _NAME, line)
            if not m:
                assert not re.match(r"^#\s*(HELP|TYPE)\b", line), "malformed " + where
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if kind == "HELP":
                assert fam["help"] is None, "second HELP for %s, %s" % (name, where)
                fam["help"] = rest
            else:
                assert fam["type"] is None, "second TYPE for %s, %s" % (name, where)
                assert rest in TYPES, "unknown type, " + where
                assert not fam["samples"], "TYPE after samples, " + where
                fam["type"] = rest
            continue
        m = _SAMPLE.match(line)
        assert m, "malformed sample, " + where
        name, labeltext, value = m.group(1), m.group(2), m.group(3)
        labels = {}
        if labeltext:
            pos = 0
            while pos < len(labeltext):
                lm = _LABEL_RE.match(labeltext, pos)
                assert lm, "malformed labels, " + where
                assert lm.group(1) not in labels, "duplicate label, " + where
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
                if pos < len(labeltext):
                    assert labeltext[pos] == ",", "malformed labels, " + where
                    pos += 1
        fname = _family_of(name, families)
        assert fname is not None and families[fname]["type"] is not None, \
            "sample without a TYPE line, " + where
        if order and order[-1] != fname:
            assert fname not in order, "family %s interleaved, %s" % (fname, where)
        if not order or order[-1] != fname:
            order.append(fname)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "duplicate sample, " + where
        seen.add(key)
        v = float(value.replace("Inf", "inf"))
        ftype = families[fname]["type"]
        if ftype == "counter" or name.endswith(("_bucket", "_count")):
            assert v >= 0 and v == v, "negative or NaN counter, " + where
        if ftype == "histogram":
            assert name != fname, "bare sample in histogram family, " + where
            if name.endswith("_bucket"):
                assert "le" in labels, "bucket without le, " + where
        families[fname]["samples"].append((name, labels, v))
        samples.append((name, labels, v))
    for fname, fam in families.items():
        if fam["type"] == "histogram":
            _check_histogram(fname, fam["samples"])
    return Metrics(families, samples, text)


def _check_histogram(fname, samples):
    groups = {}
    for name, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fname + "_bucket":
            le = labels["le"]
            g["buckets"].append((float(le.replace("Inf", "inf")), v))
        elif name == fname + "_sum":
            g["sum"] = v
        elif name == fname + "_count":
            g["count"] = v
    for rest, g in groups.items():
        b = g["buckets"]
        assert b, "%s%r: no buckets" % (fname, rest)
        assert [le for le, _ in b] == sorted(le for le, _ in b), "%s: le not ascending" % fname
        assert b[-1][0] == float("inf"), "%s: no +Inf bucket" % fname
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), \
            "%s: buckets not cumulative: %r" % (fname, b)
        assert g["count"] is not None and g["sum"] is not None, "%s: no _sum/_count" % fname
        assert b[-1][1] == g["count"], "%s: +Inf bucket %s != _count %s" % (fname, b[-1][1],
                                                                           g["count"])


# --------------------------------------------------------------------------
# reloads, from moat's stderr

_APPLIED = re.compile(r"reload (\d+) applied by every worker")
_FAILED = "reload failed, still serving the previous configuration:"


def reload_counts(m):
    err = m.stderr()
    return len(_APPLIED.findall(err)), err.count(_FAILED)


def wait_reload(m, before, timeout=10):
    """Waits until a reload after the counts `before` (reload_counts)
    finished; returns "ok" or "failed"."""
    def done():
        ok, failed = reload_counts(m)
        if failed > before[1]:
            return "failed"
        if ok > before[0]:
            return "ok"
        return None
    return wait_for(done, timeout, "a reload to finish (applied or failed)", interval=0.02)


def sighup(m, timeout=10):
    """SIGHUP and wait for the outcome: "ok" or "failed"."""
    before = reload_counts(m)
    m.signal(signal.SIGHUP)
    return wait_reload(m, before, timeout)


def failure_report(m):
    """The error lines under the last "reload failed" line."""
    lines = m.stderr().splitlines()
    idx = max(i for i, l in enumerate(lines) if _FAILED in l)
    out = []
    for l in lines[idx + 1:]:
        m2 = re.match(r"^\S+ \[\w+\]   (.*)$", l) or re.match(r"^  (\S.*)$", l)
        if not m2:
            break
        out.append(m2.group(1))
    return out


def listener_addr_from_log(m, name, after=0):
    """The address in the last `listener "NAME" on https://ADDR` line of
    stderr (only looking past character offset `after`)."""
    found = re.findall(r'listener "%s" on https?://(\S+)' % re.escape(name), m.stderr()[after:])
    return found[-1] if found else None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))



def connect_refused(port, timeout=2):
    """True when a TCP connection to the port is refused (nobody listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=T(timeout)).close()
        return False
    except ConnectionRefusedError:
        return True


def tls_served(port, certs, timeout=3):
    """True when a TLS handshake and one request succeed on the port."""
    from moatlib import Client
    try:
        with Client(port, certs, timeout=timeout) as c:
            return c.request("GET", "/probe").status < 500
    except (OSError, EOFError, ssl.SSLError, AssertionError):
        return False
