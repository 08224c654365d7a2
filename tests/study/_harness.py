"""What the worker and fault tests share: real storages (a journal file, a database of its own on
the PostgreSQL test server), worker processes, and waiting on the storage's state (never on a
clock) before the next step.

``.ci/postgres.sh`` starts the server and exports ``NTKNAS_TEST_POSTGRES_URL`` (and the commands
that stop and start it); without it the PostgreSQL cases are skipped, except on CI.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ntknas.study import _storage

ROOT = Path(__file__).resolve().parents[2]


def env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **extra}


def python(code: str, **popen):
    """A Python process running ``code`` from the repository root."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("env", env())
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True, **popen)


def search(space: str, n_trials: int, url: str, study: str, before: str = "", **kwargs):
    """``ntknas.search`` in a Python process: ``space`` is an expression over the toys of
    ``tests.search._toys``, ``before`` code to run first (a fault to inject), ``kwargs`` the
    search's keywords; ``env`` (if given) the process's environment."""
    popen = {"env": kwargs.pop("env")} if "env" in kwargs else {}
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return python(
        "import os\nimport ntknas\nfrom tests.search._toys import *  # noqa: F403\n"
        + before
        + f"ntknas.search({space}, {n_trials}, storage={url!r}, study_name={study!r}{args})\n",
        **popen,
    )


def cli(*argv, **popen):
    return python(f"import sys, cli; sys.exit(cli.main({list(argv)!r}))", **popen)


def load(url, study):
    return _storage.load_study(_storage.open_storage(url), study)


def trials(url, study):
    return load(url, study).get_trials(deepcopy=False)


def wait_for(predicate, what: str, proc=None, timeout: float = 180):
    """Polls ``predicate()`` (reading the storage) until it returns something true; fails after
    ``timeout`` seconds or when ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except ValueError:  # the study does not exist yet
            found = None
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (code {proc.returncode}) before {what}: {err}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def postgres_url():
    """A fresh database on the test server, dropped afterwards."""
    base = os.environ.get("NTKNAS_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI must run the PostgreSQL tests: source .ci/postgres.sh before pytest")
        pytest.skip("no PostgreSQL server: `source .ci/postgres.sh` starts one for these tests")
    import sqlalchemy

    name = f"ntknas_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        _storage._with_postgres_driver(base), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + "/" + name
    _wait_for_server(admin)
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def _wait_for_server(engine, timeout: float = 60):
    """After a test that stopped the server: it is back (the test started it again)."""
    import sqlalchemy

    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as c:
                c.execute(sqlalchemy.text("SELECT 1"))
            return
        except sqlalchemy.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'studies.log'}"
    return request.getfixturevalue("postgres_url")
