"""The command line: -t (success and every kind of error, with
file:line:col), -V, -h, usage errors, and start-up errors."""
import os
import re
import shutil
import socket
import subprocess

import pytest

from moatlib import MOAT_BIN, T, basic_yaml


def run(args, cwd=None, env=None, timeout=20):
    return subprocess.run([MOAT_BIN] + list(args), capture_output=True, cwd=cwd, env=env,
                          timeout=T(timeout), stdin=subprocess.DEVNULL)


def check(tmp_path, yaml_text, name="moat.yaml", timeout=20):
    p = tmp_path / name
    p.write_text(yaml_text)
    r = run(["-t", "-c", str(p)], cwd=str(tmp_path), timeout=timeout)
    return r, r.stdout.decode(), r.stderr.decode()


def assert_clean(r):
    text = (r.stdout + r.stderr).decode()
    assert not re.search(r"\[alert\]|Sanitizer|runtime error:", text), text


def line_of(yaml_text, needle, start=False):
    """1-based line and column of needle's first occurrence (at the start
    of a line's text if start)."""
    for i, line in enumerate(yaml_text.split("\n"), 1):
        if line.lstrip().startswith(needle) if start else needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(needle)


def good_yaml(certs):
    return basic_yaml(certs, ["127.0.0.1:9"])


def test_t_ok(tmp_path, certs):
    r, out, err = check(tmp_path, good_yaml(certs))
    assert r.returncode == 0, err
    assert out.strip() == "configuration OK"
    assert_clean(r)


def test_t_ok_full_schema(tmp_path, certs):
    """Every supported key of PRODUCT.md's schema, with relative paths."""
    for f in ("site.pem", "site.key", "alt.pem", "alt.key"):
        shutil.copy("%s/%s" % (certs.dir, f), tmp_path / f)
    yaml_text = """workers: 2
shutdown_timeout: 30s
listeners:
  - name: public
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - cert: site.pem
          key: site.key
        - cert: alt.pem
          key: alt.key
      min_version: "1.2"
      ciphers: null
      alpn: ["http/1.1"]
      handshake_timeout: 10s
  - name: v6
    bind: "[::1]:0"
    tls:
      certificates:
        - cert: site.pem
          key: site.key
routes:
  - host: api.example.com
    path: /v1/
    upstream: api
  - host: "*.example.com"
    upstream: web
  - path: /
    upstream: web
upstreams:
  web:
    servers: ["127.0.0.1:3000", "localhost:3001"]
    balance: round_robin
    connect_timeout: 250ms
    response_timeout: 1m
    keepalive: 32
  api:
    servers: ["[::1]:3002"]
timeouts:
  client_header: 10s
  client_idle: 60s
limits:
  max_connections: 65536
  max_header_bytes: 16k
  max_body_bytes: 0
forwarding:
  trusted_proxies: ["10.0.0.0/8", "::1/128"]
  hsts: "max-age=63072000"
log:
  access: null
  format: combined
  level: debug
"""
    r, out, err = check(tmp_path, yaml_text)
    assert r.returncode == 0, err
    assert out.strip() == "configuration OK"


def test_t_warns_of_a_memory_budget_no_client_fits_under(tmp_path, certs):
    """max_memory under moat's own footprint refuses every client while
    /healthz says ok: -t says so (moat warns again when it runs)."""
    r, out, err = check(tmp_path, good_yaml(certs) + "limits:\n  max_memory: 1m\n")
    assert r.returncode == 0, err
    assert "warning: limits.max_memory (1024 KiB) is below the" in err, err
    r, out, err = check(tmp_path, good_yaml(certs) + "limits:\n  max_memory: 512m\n")
    assert r.returncode == 0 and "warning" not in err, err


@pytest.mark.parametrize("where", ["config", "access-log"])
def test_t_refuses_a_fifo_at_once(tmp_path, certs, where):
    """A FIFO blocks whoever opens it until its other end opens: -t used to
    hang for good."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if where == "config":
        r = run(["-t", "-c", str(fifo)], cwd=str(tmp_path), timeout=5)
        assert r.returncode == 1 and b"not a regular file" in r.stderr, r.stderr
    else:
        r, out, err = check(tmp_path, basic_yaml(certs, ["127.0.0.1:9"], access=str(fifo)),
                            timeout=5)
        assert r.returncode == 1 and "a FIFO that nothing reads" in err, err


def test_t_yaml_syntax_error(tmp_path, certs):
    text = good_yaml(certs) + "routes: [unclosed\n"
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r"moat\.yaml:\d+:\d+: ", err), err
    assert "configuration OK" not in out


def test_t_unknown_key_with_suggestion(tmp_path, certs):
    text = good_yaml(certs).replace("    servers:", "    conect_timeout: 1s\n    servers:")
    line, col = line_of(text, "conect_timeout")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r'moat\.yaml:%d:%d: .*"conect_timeout".*did you mean "connect_timeout"'
                     % (line, col), err), err


def test_t_unknown_top_level_key(tmp_path, certs):
    text = good_yaml(certs) + "timeout:\n  client_idle: 1s\n"
    line, col = line_of(text, "timeout:", start=True)
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r'moat\.yaml:%d:%d: .*"timeout".*"timeouts"' % (line, col), err), err


def test_t_undefined_upstream(tmp_path, certs):
    text = good_yaml(certs).replace("    upstream: app", "    upstream: api")
    line, col = line_of(text, "upstream: api")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    m = re.search(r'moat\.yaml:(\d+):(\d+): .*upstream "api" is not defined', err)
    assert m, err
    assert int(m.group(1)) == line, err
    assert int(m.group(2)) in (col, col + len("upstream: ")), err


@pytest.mark.parametrize("bad,what", [
    ("shutdown_timeout: 5s", "shutdown_timeout: 5 parsecs"),
    ("workers: 1", "workers: many"),
    ("  level: info", "  level: loud"),
    ('bind: "127.0.0.1:0"', 'bind: "127.0.0.1:99999"'),
], ids=["duration", "workers", "enum", "port"])
def test_t_bad_values(tmp_path, certs, bad, what):
    text = good_yaml(certs).replace(bad, what)
    line, _ = line_of(text, what.strip())
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1, out
    assert re.search(r"moat\.yaml:%d:\d+: " % line, err), err


def test_t_missing_cert_file(tmp_path, certs):
    text = good_yaml(certs).replace(certs.site_cert, str(tmp_path / "nope.pem"))
    line, _ = line_of(text, "nope.pem")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r"moat\.yaml:%d:\d+: .*nope\.pem" % line, err), err


def test_t_relative_cert_path_is_relative_to_config_dir(tmp_path, certs):
    sub = tmp_path / "conf"
    sub.mkdir()
    shutil.copy(certs.site_cert, sub / "c.pem")
    shutil.copy(certs.site_key, sub / "k.pem")
    text = good_yaml(certs).replace(certs.site_cert, "c.pem").replace(certs.site_key, "k.pem")
    (sub / "moat.yaml").write_text(text)
    r = run(["-t", "-c", str(sub / "moat.yaml")], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr.decode()


def test_t_missing_key_file_points_at_the_key(tmp_path, certs):
    text = good_yaml(certs).replace(certs.site_key, str(tmp_path / "gone.key"))
    key_line, _ = line_of(text, "key: ")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r"moat\.yaml:%d:\d+: listener \"public\": certificates\[0\]\.key: .*gone\.key: "
                     r"cannot open" % key_line, err), err


def test_t_certificate_file_errors_name_the_cert_key(tmp_path, certs):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for path, why in ((tmp_path / "gone.pem", "cannot open"), (junk, "not a PEM certificate")):
        text = good_yaml(certs).replace(certs.site_cert, str(path))
        cert_line, _ = line_of(text, "- cert:")
        r, out, err = check(tmp_path, text)
        assert r.returncode == 1
        assert re.search(r"moat\.yaml:%d:\d+: listener \"public\": certificates\[0\]\.cert: "
                         r".*%s: %s" % (cert_line, path.name, why), err), err


def test_t_a_key_that_does_not_decode_points_at_the_key(tmp_path, certs):
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    text = good_yaml(certs).replace(certs.site_key, str(bad))
    key_line, _ = line_of(text, "key: ")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r"moat\.yaml:%d:\d+: listener \"public\": certificates\[0\]\.key: .*bad\.key: "
                     r"the private key does not load" % key_line, err), err


def test_t_checks_the_access_log_file(tmp_path, certs):
    text = basic_yaml(certs, ["127.0.0.1:9"], access=str(tmp_path / "no-such-dir" / "a.log"))
    line, _ = line_of(text, "access: ")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    assert re.search(r"moat\.yaml:%d:\d+: log\.access: .*a\.log: No such file" % line, err), err


def test_t_key_does_not_match_cert(tmp_path, certs):
    text = good_yaml(certs).replace(certs.site_key, certs.other_key)
    cert_line, _ = line_of(text, "- cert:")
    r, out, err = check(tmp_path, text)
    assert r.returncode == 1
    m = re.search(r"moat\.yaml:(\d+):\d+: .*(match)", err)
    assert m, err
    assert cert_line - 1 <= int(m.group(1)) <= cert_line + 1, err


def test_t_client_auth_error_points_at_the_ca_key(tmp_path, certs):
    yaml_text = basic_yaml(certs, ["127.0.0.1:9"], tls_extra="client_auth:\n  ca: clients-ca.pem")
    line, _ = line_of(yaml_text, "ca: clients-ca.pem")
    r, out, err = check(tmp_path, yaml_text)
    assert r.returncode == 1, out
    assert re.search(r"moat\.yaml:%d:\d+: listener \"public\": client_auth\.ca: .*clients-ca\.pem: "
                     r"cannot open" % line, err), err


def test_t_listener_needs_tls_or_redirect(tmp_path, certs):
    yaml_text = basic_yaml(certs, ["127.0.0.1:9"]).replace(
        "routes:", "  - name: both\n    bind: \"127.0.0.1:0\"\n    redirect_to_https: 443\n"
        "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n"
        "  - name: neither\n    bind: \"127.0.0.1:0\"\nroutes:" % (certs.site_cert, certs.site_key))
    r, out, err = check(tmp_path, yaml_text)
    assert r.returncode == 1
    assert 'listener "both": needs exactly one of "tls"' in err, err
    assert 'listener "neither": needs exactly one of "tls"' in err, err
    assert re.search(r"moat\.yaml:\d+:\d+: ", err), err


def test_startup_config_error_exits_1(tmp_path, certs):
    p = tmp_path / "moat.yaml"
    p.write_text(good_yaml(certs).replace("upstream: app", "upstream: nope"))
    r = run(["-c", str(p)], timeout=10)
    assert r.returncode == 1
    assert 'upstream "nope" is not defined' in r.stderr.decode()


def test_missing_config_file_exits_1(tmp_path):
    r = run(["-c", str(tmp_path / "absent.yaml")])
    assert r.returncode == 1
    assert "absent.yaml" in r.stderr.decode()
    r = run(["-t", "-c", str(tmp_path / "absent.yaml")])
    assert r.returncode == 1


def test_bind_in_use_exits_1(tmp_path, certs):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        p = tmp_path / "moat.yaml"
        p.write_text(good_yaml(certs).replace('"127.0.0.1:0"', '"127.0.0.1:%d"' % port))
        r = run(["-c", str(p)], timeout=10)
        assert r.returncode == 1, r.stderr.decode()
        assert str(port) in r.stderr.decode()
    finally:
        s.close()


def test_version(tmp_path):
    r = run(["-V"])
    assert r.returncode == 0
    out = r.stdout.decode()
    for lib in ("moat", "libuv", "wolfSSL", "llhttp", "libyaml"):
        assert re.search(r"%s\S* v?\d+\.\d+" % lib, out, re.I), out
    r2 = run(["--version"])
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_help(tmp_path):
    for flag in ("-h", "--help"):
        r = run([flag])
        assert r.returncode == 0
        out = r.stdout.decode()
        assert "usage" in out.lower()
        for opt in ("-c", "--config", "-t", "-V", "-h"):
            assert opt in out


@pytest.mark.parametrize("args", [["--bogus"], ["-x"], ["-c"], ["extra-arg"],
                                  ["-t", "-c", "a.yaml", "b.yaml"], ["-V", "extra"],
                                  ["extra", "--version"], ["-h", "--bogus"], ["-V", "-c"]],
                         ids=["long", "short", "missing-arg", "positional", "two-files",
                              "version-extra", "extra-version", "help-bogus", "version-missing-arg"])
def test_usage_error_exits_2(tmp_path, args):
    r = run(args, cwd=str(tmp_path))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr, "usage error must say why on stderr"
    assert r.stdout == b""


@pytest.mark.parametrize("args,named", [(["-xt"], "unknown option -x"),
                                        (["-tx"], "unknown option -x"),
                                        (["--bogus=1"], "unknown option --bogus=1"),
                                        (["-t", "--config"], "option --config needs an argument"),
                                        (["-tc"], "option -c needs an argument")])
def test_usage_error_names_the_option(tmp_path, args, named):
    # "-xt" used to be reported as "unknown option ./moat"
    r = run(args, cwd=str(tmp_path))
    assert r.returncode == 2 and r.stderr.decode().startswith("moat: %s\n" % named), r


def test_moat_config_env(tmp_path, certs):
    p = tmp_path / "env.yaml"
    p.write_text(good_yaml(certs))
    env = dict(os.environ, MOAT_CONFIG=str(p))
    r = run(["-t"], env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    p.write_text(good_yaml(certs).replace("upstream: app", "upstream: nope"))
    r = run(["-t"], env=env, cwd=str(tmp_path))
    assert r.returncode == 1
    assert "env.yaml:" in r.stderr.decode()


def _env_without_moat(**kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    env.update(kw)
    return env


def test_sidecar_flags_and_variables_check(tmp_path, certs):
    r = run(["-t", "--upstream", "127.0.0.1:3000", "--listen", "127.0.0.1:0", "--admin", "off",
             "--cert", certs.site_cert, "--key", certs.site_key], env=_env_without_moat(),
            cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout == b"configuration OK\n", r
    r = run(["-t"], env=_env_without_moat(MOAT_UPSTREAM="127.0.0.1:3000", MOAT_ADMIN="off",
                                          MOAT_LISTEN="127.0.0.1:0"), cwd=str(tmp_path))
    assert r.returncode == 0, r


@pytest.mark.parametrize("extra", [{}, {"MOAT_UPSTREAM": ""}, {"MOAT_UPSTRAEM": "127.0.0.1:3000"}],
                         ids=["unset", "empty", "misspelt"])
def test_sidecar_variables_without_an_upstream_are_an_error(tmp_path, certs, extra):
    # They used to give the embedded default (a self-signed certificate on
    # 127.0.0.1:8443 forwarding to 8080) without a word, and -t said OK.
    if os.path.exists("/etc/moat/moat.yaml"):
        pytest.skip("/etc/moat/moat.yaml exists: moat would use it")
    env = _env_without_moat(MOAT_LISTEN="127.0.0.1:0", MOAT_CERT=certs.site_cert,
                            MOAT_KEY=certs.site_key, **extra)
    for args in (["-t"], []):
        r = run(args, env=env, cwd=str(tmp_path))
        err = r.stderr.decode()
        assert r.returncode == 1, (args, r.returncode, err)
        names = "MOAT_LISTEN, MOAT_CERT, MOAT_KEY"
        if extra.get("MOAT_UPSTREAM") == "":
            names = "MOAT_UPSTREAM (empty), " + names
        assert ("moat: %s set, but no upstream: the sidecar mode needs MOAT_UPSTREAM" % names) \
            in err, err


def test_sidecar_variables_beside_a_yaml_file_are_warned_of(tmp_path, certs):
    p = tmp_path / "moat.yaml"
    p.write_text(good_yaml(certs))
    r = run(["-t", "-c", str(p)], env=_env_without_moat(MOAT_CERT="x.pem", MOAT_ADMIN="off"),
            cwd=str(tmp_path))
    assert r.returncode == 0, r
    assert r.stderr.decode() == "moat: warning: MOAT_CERT ignored: the configuration is %s\n" % p


def test_moat_config_and_sidecar_flags_do_not_mix(tmp_path, certs):
    # $MOAT_CONFIG used to win silently over an explicit --upstream
    p = tmp_path / "moat.yaml"
    p.write_text(good_yaml(certs))
    r = run(["-t", "--upstream", "127.0.0.1:3000"], env=_env_without_moat(MOAT_CONFIG=str(p)),
            cwd=str(tmp_path))
    assert r.returncode == 2, r
    assert b"$MOAT_CONFIG and the sidecar flags (--upstream, ...) do not mix" in r.stderr, r


def test_small_sidecar_variable_checks(tmp_path):
    base = dict(MOAT_UPSTREAM="127.0.0.1:3000", MOAT_LISTEN="127.0.0.1:0", MOAT_ADMIN="off")
    r = run(["-t"], env=_env_without_moat(MOAT_WATCH="true", **base), cwd=str(tmp_path))
    assert r.returncode == 1 and b"MOAT_WATCH: true, but there is no certificate file" \
        in r.stderr, r
    # "null", the YAML word for no access log, is no file name; nor are
    # false, none or no in any case
    for off in ("null", "false", "OFF", "none", "No", "n", "~", " off", "STDOUT", "Stderr "):
        r = run(["-t"], env=_env_without_moat(MOAT_ACCESS_LOG=off, **base), cwd=str(tmp_path))
        assert r.returncode == 0, r
        assert not os.path.exists(str(tmp_path / off))
    r = run(["-t"], env=_env_without_moat(MOAT_ACCESS_LOG="true", **base), cwd=str(tmp_path))
    assert r.returncode == 1 and b'MOAT_ACCESS_LOG: "true" is no place to log to' in r.stderr, r
    r = run(["--healthcheck"], env=_env_without_moat(MOAT_ADMIN="off"), cwd=str(tmp_path))
    assert r.returncode == 1 and b"the admin endpoint is off" in r.stderr, r


@pytest.mark.parametrize("empty", [("MOAT_CLIENT_CA",), ("MOAT_CERT", "MOAT_KEY"),
                                   ("MOAT_TICKET_KEY_FILE",), ("MOAT_LISTEN",), ("MOAT_ADMIN",)])
def test_an_empty_sidecar_variable_is_an_error(tmp_path, empty):
    # MOAT_CLIENT_CA=${UNSET} used to turn mutual TLS off without a word, and
    # MOAT_CERT= MOAT_KEY= served the self-signed certificate.
    env = _env_without_moat(MOAT_UPSTREAM="127.0.0.1:3000", **{k: "" for k in empty})
    r = run(["-t"], env=env, cwd=str(tmp_path))
    assert r.returncode == 1, r
    assert ("moat: %s: set but empty" % empty[0]).encode() in r.stderr, r
