"""pytest fixtures for moat's integration tests: certificates (once per
session, in pytest's temp dir), a scripted backend, and a moat starter whose
teardown stops moat with SIGTERM and checks exit status and logs."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moatlib  # noqa: E402


def pytest_configure(config):
    if not os.access(moatlib.MOAT_BIN, os.X_OK):
        raise pytest.UsageError("moat binary not found: %s (set MOAT_BIN)" % moatlib.MOAT_BIN)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return moatlib.Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def backend_factory():
    started = []

    def make(handler=None, **kw):
        b = moatlib.Backend(handler, **kw)
        started.append(b)
        return b

    yield make
    errors = []
    for b in started:
        b.stop()
        errors += b.errors
    assert not errors, "backend errors: %r" % errors


@pytest.fixture
def backend(backend_factory):
    return backend_factory()


@pytest.fixture
def moat_factory(tmp_path):
    """start(yaml_text, expect_rc=0, **kw) -> a running moat.  At teardown
    every moat is stopped with SIGTERM; the test fails if one does not exit
    with expect_rc, or if its stderr holds alerts or sanitizer reports."""
    started = []

    def start(yaml_text=None, expect_rc=0, **kw):
        m = moatlib.Moat(tmp_path / ("moat%d" % len(started)), yaml_text, **kw)
        m.expect_rc = expect_rc
        started.append(m)
        return m.start()

    yield start
    problems = []
    for m in started:
        rc = m.stop()
        if rc != m.expect_rc:
            problems.append("moat exited with %r, expected %r" % (rc, m.expect_rc))
        bad = m.bad_log_lines()
        if bad:
            problems.append("moat logged alerts or sanitizer reports:\n" + "\n".join(bad[:20]))
        m.dump()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def proxy(certs, backend, moat_factory):
    """moat in front of the default backend: (moat, backend)."""
    m = moat_factory(moatlib.basic_yaml(certs, [backend.addr]))
    return m, backend
