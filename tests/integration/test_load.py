"""Many clients at once: 200 concurrent TLS connections (Python threads, all
connected before any sends), and wrk with 200 connections."""
import re
import subprocess
import threading

import pytest

from moatlib import T, Client, Resp, basic_yaml, have, pattern_bytes


N = 200


@pytest.fixture
def loaded(certs, backend, moat_factory):
    body = pattern_bytes(20000, seed=9)
    backend.handler = lambda req: Resp(200, body + req.target.encode())
    m = moat_factory(basic_yaml(certs, [backend.addr], workers=2, upstream_extra="keepalive: 64"))
    return m, backend, body


def test_200_concurrent_tls_clients(loaded, certs):
    m, b, body = loaded
    barrier = threading.Barrier(N, timeout=T(60))
    results = [None] * N

    def one(i):
        try:
            with Client(m.port(), certs, timeout=60) as c:
                barrier.wait()  # every connection is open and handshaken
                r1 = c.request("GET", "/c%d" % i)
                r2 = c.request("POST", "/p%d" % i, body=b"q" * (i * 37))
                ok = (r1.status == 200 and r1.body == body + b"/c%d" % i
                      and r2.status == 200 and r2.body == body + b"/p%d" % i)
                results[i] = "ok" if ok else "bad response %r %r" % (r1, r2)
        except Exception as e:
            results[i] = repr(e)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T(120))
    assert not any(t.is_alive() for t in threads), "client threads still running"
    bad = [(i, r) for i, r in enumerate(results) if r != "ok"]
    assert not bad, "%d of %d clients failed, e.g. %r" % (len(bad), N, bad[:5])
    assert len(b.requests) == 2 * N
    posted = {q.target: q.body for q in b.requests if q.method == "POST"}
    assert all(posted["/p%d" % i] == b"q" * (i * 37) for i in range(N))


@pytest.mark.skipif(not have("wrk"), reason="wrk not installed")
def test_wrk_200_connections(loaded, certs):
    m, b, body = loaded
    r = subprocess.run(["wrk", "-t2", "-c200", "-d3s", "--timeout", "5s", "--latency",
                        "https://127.0.0.1:%d/wrk" % m.port()],
                       capture_output=True, timeout=T(60))
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    assert total >= 1000, out
    assert "Non-2xx or 3xx responses" not in out, out
    assert "Socket errors" not in out, out
    # every one of the 200 connections did requests; moat logged each
    assert len(b.requests) >= total
