"""A strict, independent HTTP/1.1 request parser (RFC 9112, RFC 9110,
RFC 3986) for the differential checks of what moat forwards.

It shares nothing with moat or with moatlib's backend: it reads a byte
stream as a sequence of requests and refuses anything that a careful
server could read in more than one way -- bare CR or LF, obs-fold,
whitespace before a colon, control bytes, invalid tokens, ambiguous or
invalid framing, a request target outside RFC 3986's grammar, a Host that
is not a valid uri-host[:port].  parse_stream() returns the requests and
the bytes left over (an incomplete message at the end).
"""
import re

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                  b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGIT = frozenset(b"0123456789")
HEXDIG = frozenset(b"0123456789abcdefABCDEF")
# field-vchar = VCHAR / obs-text; SP and HTAB allowed inside a value
VALUE_CHAR = frozenset([0x09, 0x20] + list(range(0x21, 0x7f)) + list(range(0x80, 0x100)))
QDTEXT = frozenset([0x09, 0x20, 0x21] + list(range(0x23, 0x5c)) + list(range(0x5d, 0x7f))
                   + list(range(0x80, 0x100)))
# RFC 3986
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
SUB_DELIMS = frozenset(b"!$&'()*+,;=")
PCHAR = UNRESERVED | SUB_DELIMS | frozenset(b":@")

# Headers that concern one hop only (RFC 9110 7.6.1) plus the ones moat
# documents as removed.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "proxy-authorization", "http2-settings"}


class ParseError(Exception):
    pass


class Incomplete(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, body, framing, chunk_exts, trailers,
                 raw):
        self.method, self.target, self.version = method, target, version
        self.headers = headers          # [(name bytes, value bytes)] in order, value trimmed
        self.body = body
        self.framing = framing          # "none" | "length" | "chunked"
        self.chunk_exts = chunk_exts    # [bytes] one per chunk (b"" for none)
        self.trailers = trailers
        self.raw = raw

    def all(self, name):
        n = name.lower().encode() if isinstance(name, str) else name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def header(self, name):
        v = self.all(name)
        return v[0] if v else None

    def __repr__(self):
        return "<ref.Request %s %s %d headers, %d body bytes, %s>" % (
            self.method, self.target, len(self.headers), len(self.body), self.framing)


def _line(data, pos, what):
    """The line at pos, ending in CRLF; no bare CR or LF inside."""
    end = data.find(b"\n", pos)
    if end < 0:
        if b"\r" in data[pos:-1]:
            raise ParseError("bare CR in %s" % what)
        raise Incomplete()
    if end == pos or data[end - 1] != 0x0d:
        raise ParseError("bare LF in %s at %d" % (what, end))
    line = data[pos:end - 1]
    if b"\r" in line:
        raise ParseError("bare CR in %s: %r" % (what, line[:80]))
    return line, end + 1


def _is_token(b):
    return len(b) > 0 and all(c in TCHAR for c in b)


def _check_pct(b, allowed, what):
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x25:  # %
            if i + 2 >= len(b):
                raise ParseError("truncated pct-encoding in %s: %r" % (what, b[:100]))
            if b[i + 1] not in HEXDIG or b[i + 2] not in HEXDIG:
                raise ParseError("bad pct-encoding in %s: %r" % (what, b[:100]))
            i += 3
            continue
        if c not in allowed:
            raise ParseError("byte %#x not allowed in %s: %r" % (c, what, b[:100]))
        i += 1


def check_origin_form(t):
    """origin-form = absolute-path [ "?" query ]"""
    if not t.startswith(b"/"):
        raise ParseError("target is not origin-form: %r" % t[:100])
    path, q, query = t.partition(b"?")
    _check_pct(path, PCHAR | frozenset(b"/"), "path")
    if q:
        _check_pct(query, PCHAR | frozenset(b"/?"), "query")


_IPV4 = re.compile(rb"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


def check_host(h):
    """Host = uri-host [ ":" port ]; returns the host part, lowercased."""
    if not h:
        raise ParseError("empty Host")
    if h.startswith(b"["):
        close = h.find(b"]")
        if close < 0:
            raise ParseError("unclosed IP literal in Host %r" % h)
        lit, rest = h[1:close], h[close + 1:]
        import ipaddress
        try:
            ipaddress.IPv6Address(lit.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise ParseError("bad IPv6 literal in Host %r" % h) from None
        host = h[:close + 1]
    else:
        host, _, rest = h.partition(b":")
        rest = (b":" + rest) if _ else b""
        if not host:
            raise ParseError("empty host in %r" % h)
        _check_pct(host, UNRESERVED | SUB_DELIMS, "Host")
    if rest:
        if not rest.startswith(b":") or not all(c in DIGIT for c in rest[1:]):
            raise ParseError("bad port in Host %r" % h)
        if len(rest) > 1 and int(rest[1:]) > 65535:
            raise ParseError("port out of range in Host %r" % h)
    return host.lower()


def check_target(method, t):
    """Returns the form of request-target t for method."""
    if not t:
        raise ParseError("empty request target")
    if t == b"*":
        if method != b"OPTIONS":
            raise ParseError("asterisk-form outside OPTIONS")
        return "asterisk"
    if method == b"CONNECT":
        check_host(t)
        return "authority"
    if t.startswith(b"/"):
        check_origin_form(t)
        return "origin"
    m = re.match(rb"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$", t)
    if not m:
        raise ParseError("target is neither origin- nor absolute-form: %r" % t[:100])
    if b"@" in m.group(2):
        raise ParseError("userinfo in absolute-form")
    check_host(m.group(2))
    rest = m.group(3)
    if rest:
        check_origin_form(rest if rest.startswith(b"/") else b"/" + rest)
    return "absolute"


def _parse_head(data, pos):
    line, pos = _line(data, pos, "request line")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise ParseError("request line is not method SP target SP version: %r" % line[:200])
    method, target, version = parts
    if not _is_token(method):
        raise ParseError("method is not a token: %r" % method[:50])
    if not re.match(rb"^HTTP/\d\.\d$", version):
        raise ParseError("bad version %r" % version)
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ParseError("unsupported version %r" % version)
    form = check_target(method, target)
    headers = []
    while True:
        line, pos = _line(data, pos, "header section")
        if not line:
            break
        if line[0] in (0x20, 0x09):
            raise ParseError("obs-fold or leading whitespace: %r" % line[:100])
        name, colon, value = line.partition(b":")
        if not colon:
            raise ParseError("header line without colon: %r" % line[:100])
        if not _is_token(name):
            raise ParseError("header name is not a token: %r" % name[:100])
        value = value.strip(b" \t")
        if any(c not in VALUE_CHAR for c in value):
            raise ParseError("control byte in value of %r: %r" % (name, value[:100]))
        headers.append((name, value))
    return method, target, version, form, headers, pos


def parse_head(data):
    """Parses just the request head at the start of data: (method, target,
    version, form, headers, end offset).  Raises ParseError / Incomplete."""
    return _parse_head(bytes(data), 0)


def _parse_chunked(data, pos):
    body, exts, trailers = bytearray(), [], []
    while True:
        line, pos = _line(data, pos, "chunk line")
        size_s, semi, ext = line.partition(b";")
        size_s = size_s.rstrip(b" \t")  # BWS before ';'
        if not size_s or any(c not in HEXDIG for c in size_s):
            raise ParseError("bad chunk size %r" % line[:100])
        if semi:
            _check_chunk_ext(b";" + ext)
        elif size_s != line:
            raise ParseError("whitespace after chunk size without extension: %r" % line[:100])
        size = int(size_s, 16)
        exts.append(b";" + ext if semi else b"")
        if size == 0:
            break
        if len(data) < pos + size + 2:
            raise Incomplete()
        body += data[pos:pos + size]
        pos += size
        if data[pos:pos + 2] != b"\r\n":
            raise ParseError("chunk data not followed by CRLF: %r" % data[pos:pos + 20])
        pos += 2
    while True:
        line, pos = _line(data, pos, "trailer section")
        if not line:
            break
        name, colon, value = line.partition(b":")
        if not colon or not _is_token(name) or line[0] in (0x20, 0x09):
            raise ParseError("bad trailer line %r" % line[:100])
        value = value.strip(b" \t")
        if any(c not in VALUE_CHAR for c in value):
            raise ParseError("control byte in trailer %r" % line[:100])
        trailers.append((name, value))
    return bytes(body), exts, trailers, pos


def _check_chunk_ext(ext):
    """chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )"""
    i, n = 0, len(ext)

    def ws(i):
        while i < n and ext[i] in (0x20, 0x09):
            i += 1
        return i

    def token(i):
        j = i
        while j < n and ext[j] in TCHAR:
            j += 1
        if j == i:
            raise ParseError("bad chunk extension %r" % ext[:100])
        return j

    while True:
        i = ws(i)
        if i == n:
            return
        if ext[i] != 0x3b:
            raise ParseError("bad chunk extension %r" % ext[:100])
        i = token(ws(i + 1))
        j = ws(i)
        if j < n and ext[j] == 0x3d:  # =
            i = ws(j + 1)
            if i < n and ext[i] == 0x22:
                i += 1
                while True:
                    if i >= n:
                        raise ParseError("unterminated quoted chunk-ext-val")
                    if ext[i] == 0x22:
                        i += 1
                        break
                    if ext[i] == 0x5c:
                        if i + 1 >= n or ext[i + 1] not in VALUE_CHAR:
                            raise ParseError("bad quoted-pair in chunk extension")
                        i += 2
                        continue
                    if ext[i] not in QDTEXT:
                        raise ParseError("bad byte in quoted chunk-ext-val")
                    i += 1
            else:
                i = token(i)
        else:
            i = j


def parse_one(data, pos=0):
    """Parses one request at data[pos:]; returns (Request, new pos).
    Raises ParseError, or Incomplete when the data ends inside it."""
    start = pos
    method, target, version, form, headers, pos = _parse_head(data, pos)
    lower = [(n.lower(), v) for n, v in headers]
    hosts = [v for n, v in lower if n == b"host"]
    if version == b"HTTP/1.1" and len(hosts) != 1:
        raise ParseError("HTTP/1.1 request with %d Host headers" % len(hosts))
    if len(hosts) > 1:
        raise ParseError("several Host headers")
    if hosts:
        check_host(hosts[0])
    te = [v for n, v in lower if n == b"transfer-encoding"]
    cl = [v for n, v in lower if n == b"content-length"]
    framing, body, exts, trailers = "none", b"", [], []
    if te:
        if cl:
            raise ParseError("both Transfer-Encoding and Content-Length")
        if version == b"HTTP/1.0":
            raise ParseError("Transfer-Encoding in HTTP/1.0")
        codings = [c.strip(b" \t").lower() for c in b",".join(te).split(b",")]
        if codings != [b"chunked"]:
            raise ParseError("transfer codings %r (only a single chunked is unambiguous)"
                             % codings)
        body, exts, trailers, pos = _parse_chunked(data, pos)
        framing = "chunked"
    elif cl:
        if len(cl) != 1:
            raise ParseError("several Content-Length headers: %r" % cl)
        if not cl[0] or any(c not in DIGIT for c in cl[0]):
            raise ParseError("bad Content-Length %r" % cl[0])
        n = int(cl[0])
        if len(data) < pos + n:
            raise Incomplete()
        body = data[pos:pos + n]
        pos += n
        framing = "length"
    req = Request(method.decode("latin-1"), target.decode("latin-1"),
                  version.decode("latin-1"), headers, bytes(body), framing, exts, trailers,
                  data[start:pos])
    req.form = form
    return req, pos


def parse_stream(data):
    """All complete requests in data, and the leftover bytes (an
    incomplete request).  Raises ParseError on the first violation."""
    data = bytes(data)
    out, pos = [], 0
    while pos < len(data):
        try:
            req, pos = parse_one(data, pos)
        except Incomplete:
            return out, data[pos:]
        out.append(req)
    return out, b""


def end_to_end(headers):
    """The headers a proxy passes on: hop-by-hop ones and those named in
    Connection removed.  headers: [(name, value)] as bytes or str."""
    def b(x):
        return x if isinstance(x, bytes) else x.encode("latin-1")
    hs = [(b(n), b(v)) for n, v in headers]
    named = set()
    for n, v in hs:
        if n.lower() == b"connection":
            named |= {t.strip(b" \t").lower() for t in v.split(b",") if t.strip(b" \t")}
    return [(n, v) for n, v in hs
            if n.lower().decode("latin-1") not in HOP_BY_HOP and n.lower() not in named]


# --------------------------------------------------------------------------
# what a proxy that follows moat's README must forward for a request

FORWARDING = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
              b"x-forwarded-port", b"forwarded", b"x-real-ip", b"true-client-ip", b"x-client-ip",
              b"client-ip", b"x-cluster-client-ip", b"cf-connecting-ip", b"fastly-client-ip",
              b"x-forwarded", b"x-original-forwarded-for"}


class Expected:
    """What the upstream must receive for client request `req` (a Request
    from parse_one of what the client sent, or of an equivalent canonical
    form)."""

    def __init__(self, req, listener_port, client_ip="127.0.0.1"):
        self.method = req.method
        if req.form == "absolute":
            m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)(.*)$", req.target)
            self.host = m.group(1).encode("latin-1")
            rest = m.group(2)
            self.target = rest if rest.startswith("/") else "/" + rest
        else:
            self.target = req.target
            self.host = req.header("Host")
        self.body = req.body
        self.had_body_framing = req.framing != "none"
        self.client_framing = req.framing
        self.headers = [(n, v) for n, v in end_to_end(req.headers)
                        if n.lower() not in FORWARDING
                        and n.lower() not in (b"host", b"content-length", b"expect")]
        self.port = listener_port
        self.client_ip = client_ip.encode()


def compare(fwd, exp):
    """Differences between forwarded Request fwd and Expected exp (a list
    of strings; empty when fwd is exactly what must be forwarded)."""
    d = []
    if fwd.method != exp.method:
        d.append("method %r, expected %r" % (fwd.method, exp.method))
    if fwd.target != exp.target:
        d.append("target %r, expected %r" % (fwd.target, exp.target))
    if fwd.version != "HTTP/1.1":
        d.append("version %r" % fwd.version)
    hosts = fwd.all("Host")
    if exp.host is not None and hosts != [exp.host]:
        d.append("Host %r, expected [%r]" % (hosts, exp.host))
    for name, want in ((b"X-Forwarded-For", exp.client_ip), (b"X-Forwarded-Proto", b"https"),
                       (b"X-Forwarded-Port", str(exp.port).encode())):
        if fwd.all(name) != [want]:
            d.append("%s %r, expected [%r]" % (name.decode(), fwd.all(name), want))
    if exp.host is not None and fwd.all("X-Forwarded-Host") != [exp.host]:
        d.append("X-Forwarded-Host %r, expected [%r]" % (fwd.all("X-Forwarded-Host"), exp.host))
    if fwd.all("Forwarded"):
        d.append("Forwarded from an untrusted client passed on")
    got = [(n, v) for n, v in fwd.headers
           if n.lower() not in FORWARDING
           and n.lower() not in (b"host", b"content-length", b"transfer-encoding", b"expect")
           and not (n.lower() == b"connection" and v.lower() in (b"close", b"keep-alive"))]
    if got != exp.headers:
        d.append("end-to-end headers differ:\n   got      %r\n   expected %r" % (got, exp.headers))
    hop = [n for n, v in fwd.headers if n.lower().decode("latin-1") in HOP_BY_HOP
           and n.lower() not in (b"transfer-encoding", b"connection")]
    if hop:
        d.append("hop-by-hop headers forwarded: %r" % hop)
    if fwd.body != exp.body:
        d.append("body %r..., expected %r... (%d vs %d bytes)" % (
            fwd.body[:60], exp.body[:60], len(fwd.body), len(exp.body)))
    if exp.had_body_framing and fwd.framing == "none":
        d.append("body framing lost")
    if fwd.trailers:
        d.append("trailers forwarded: %r" % fwd.trailers)
    if any(fwd.chunk_exts):
        d.append("chunk extensions forwarded: %r" % [e for e in fwd.chunk_exts if e][:3])
    return d


class ForwardChecker:
    """Differential check of everything a moatlib.Backend received.

    Every upstream connection's byte stream must parse under the strict
    parser as a sequence of complete requests with nothing left over, as
    many as the backend itself counted on that connection (a disagreement
    is a smuggled or swallowed request); each request the test expects,
    identified by its X-Diff-Id header, must appear exactly once and be
    exactly the Expected forwarding of what the client sent."""

    def __init__(self, backend, port):
        self.backend, self.port = backend, port
        self.expected = {}

    def expect(self, diff_id, client_bytes, canonical=None):
        """Registers the client's request; canonical: an equivalent strict
        form when client_bytes is valid but outside the strict grammar."""
        req, end = parse_one(canonical if canonical is not None else client_bytes)
        self.expected[str(diff_id)] = Expected(req, self.port)

    def parse_all(self):
        """{diff id: [forwarded Request]}, and a list of problems."""
        problems, by_id = [], {}
        with self.backend._lock:
            streams = [bytes(b) for b in self.backend.conn_bytes]
            counts = {}
            for r in self.backend.requests:
                counts[r.conn_id] = counts.get(r.conn_id, 0) + 1
            closed = set(self.backend.closed)
        for cid, data in enumerate(streams):
            try:
                reqs, rest = parse_stream(data)
            except ParseError as e:
                problems.append("upstream connection %d: strict parse error: %s\n   stream: %r"
                                % (cid, e, data[:600]))
                continue
            if rest:
                problems.append("upstream connection %d: %d bytes left over (an incomplete or "
                                "unparseable request): %r" % (cid, len(rest), rest[:300]))
            if len(reqs) != counts.get(cid, 0) and (cid in closed or not rest):
                problems.append("upstream connection %d: strict parser reads %d requests, the "
                                "backend counted %d: %r" % (cid, len(reqs), counts.get(cid, 0),
                                                            [(r.method, r.target) for r in reqs]))
            for r in reqs:
                ids = r.all("X-Diff-Id")
                key = ids[0].decode("latin-1") if len(ids) == 1 else None
                by_id.setdefault(key, []).append(r)
        return by_id, problems

    def check(self, ids=None, allow_unexpected=False):
        """Asserts the differential property for ids (default: all expected)."""
        by_id, problems = self.parse_all()
        for key in (ids if ids is not None else list(self.expected)):
            key = str(key)
            got = by_id.get(key, [])
            if len(got) != 1:
                problems.append("request %s forwarded %d times" % (key, len(got)))
                continue
            diff = compare(got[0], self.expected[key])
            if diff:
                problems.append("request %s (%s %s):\n  - %s" % (
                    key, got[0].method, got[0].target, "\n  - ".join(diff)))
        if not allow_unexpected:
            extra = [k for k in by_id if k not in self.expected]
            for k in extra:
                problems.append("unexpected request(s) reached the backend: %r"
                                % [(r.method, r.target, r.raw[:200]) for r in by_id[k]])
        assert not problems, "differential check failed:\n" + "\n".join(problems)
        return by_id
