"""Faults, injected for real: workers killed at each phase of a trial, a candidate that kills every
worker that scores it, SIGTERM, a PostgreSQL server that restarts or stays down, a full or
read-only disk, stale lock files, and passwords in storage URLs.

Each test waits on the storage's state (a trial running with its parameters, a trial gone stale)
before it injects the next fault, never on a clock. Workers beat every second with a grace of two
or three, so a dead worker's trial comes back within seconds.
"""

import contextlib
import json
import os
import resource
import shlex
import signal
import subprocess
import sys

import pytest

import ntknas
from ntknas.study import _heartbeat, _storage, _workers
from tests.search._toys import Poison, Slow, Tiny

from . import _harness as harness
from ._harness import postgres_url, storage_url  # noqa: F401 (fixtures)

# Every test that uses the shared PostgreSQL server runs on one xdist worker (`--dist
# loadgroup`): the restart tests stop that server, which would fail a neighbour's connection.
pytestmark = pytest.mark.xdist_group("postgres")

FAST = dict(sampler="random", heartbeat=1, grace=2, batch=2)


def _assert_nothing_lost_or_counted_twice(trials):
    """Every trial is finished; every chain of a dead trial and its retries ends COMPLETE once, or
    failed by its candidate (a ``fail_reason``: an error, or "killed its worker N times"), or is a
    claim that never drew parameters."""
    assert not [t.number for t in trials if not t.state.is_finished()]
    for root, chain in _heartbeat.chains(trials).items():
        complete = [t for t in chain if t.state.name == "COMPLETE"]
        assert len(complete) <= 1, f"chain {root} counted twice: {[t.number for t in complete]}"
        failed = "fail_reason" in chain[-1].user_attrs
        unclaimed = all(not t.params and _heartbeat.RUN_ATTR not in t.system_attrs for t in chain)
        assert complete or failed or unclaimed, f"chain {root} lost: {chain}"


def _snapshot(trials):
    return [(t.number, t.state.name, t.values, dict(t.user_attrs), t.params) for t in trials]


def _url(kind, request, tmp_path):
    if kind == "journal":
        return f"journal:{tmp_path / 'studies.log'}"
    return request.getfixturevalue("postgres_url")


# --- 1. no trial left behind ---------------------------------------------------------------------

# Each kills the worker (exit code 9) in one phase of its first trial.
PHASES = {
    # between creating the trial and its first heartbeat (the claim never finishes)
    "claim": "from ntknas.study import _heartbeat\n_heartbeat.beat = lambda *a: os._exit(9)\n",
    # after the sampler drew the parameters
    "draw": (
        "draw = Tiny.suggest\n"
        "Tiny.suggest = lambda self, trial: (draw(self, trial), os._exit(9))[0]\n"
    ),
    # in the middle of scoring
    "score": "import ntknas.scoring\nntknas.scoring.Scorer.score = lambda *a, **k: os._exit(9)\n",
    # with the scores written, before the result is
    "tell": "import optuna\noptuna.study.Study.tell = lambda *a, **k: os._exit(9)\n",
}


@pytest.mark.parametrize(
    "kind, phase",
    [("journal", p) for p in PHASES] + [("postgresql", "tell")],
)
def test_a_trial_killed_in_any_phase_is_failed_and_retried_once(kind, phase, request, tmp_path):
    url = _url(kind, request, tmp_path)
    proc = harness.search("Tiny()", 1, url, "s", before=PHASES[phase], **FAST)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 9, err
    store = _storage.open_storage(url, heartbeat=1, grace=2)
    (dead,) = harness.trials(url, "s")
    assert dead.state.name == "RUNNING"
    if phase != "claim":  # it beat: it is dead once its grace period has passed
        study_id = store.get_study_id_from_name("s")
        harness.wait_for(lambda: store._get_stale_trial_ids(study_id), "the trial to go stale")
    # the next run fails it (at once if its claim never finished) and retries it first
    ntknas.search(Tiny(), 1, storage=url, study_name="s", **FAST)
    trials = harness.trials(url, "s")
    _assert_nothing_lost_or_counted_twice(trials)
    assert trials[0].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    if phase == "claim":  # no parameters, no run: nothing to retry, no budget counted it
        assert not retries and not dead.params
        assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    else:
        (retry,) = retries
        assert retry.state.name == "COMPLETE" and retry.params == dead.params
        assert trials[0].system_attrs[_heartbeat.KILLED_ATTR] is True
        assert _heartbeat.KILLED_ATTR not in retry.system_attrs
        assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "FAIL"]


def test_an_unfinished_claim_is_failed_only_under_the_claim_lock_or_after_grace(tmp_path):
    import optuna

    url = f"journal:{tmp_path / 'c.log'}"
    store = _storage.open_storage(url, heartbeat=1, grace=30)
    study = optuna.create_study(storage=store, study_name="c")
    study.ask()  # a claim that never finished: no worker attribute
    assert _heartbeat.fail_stale_trials(study, store, retries=3) == 0  # may still be claiming
    assert _heartbeat.fail_stale_trials(study, store, retries=3, claims_locked=True) == 1
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL"]


# --- 2. poison candidates ------------------------------------------------------------------------


def test_a_candidate_that_kills_every_worker_is_given_up_and_the_workers_go_on(tmp_path):
    url = f"journal:{tmp_path / 'p.log'}"
    # the 4 configs of the space (grid); one of them kills its process when scored. It is queued
    # first: two workers whose grid samplers draw at once can draw the same point, so the grid
    # alone need not reach it within the budget.
    settings = dict(jobs=2, retries=1, sampler="grid", heartbeat=1, grace=2, batch=2)
    created = harness.search("Poison()", 0, url, "p", **settings)
    assert created.wait(timeout=300) == 0
    harness.load(url, "p").enqueue_trial({"width": 8, "depth": 2})
    proc = harness.search(
        "Poison()", 4, url, "p", env=harness.env(NTKNAS_TEST_KILL="1"), **settings
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert err.count("ended with signal 9") == 2 and "starting another" in err, err
    trials = harness.trials(url, "p")
    _assert_nothing_lost_or_counted_twice(trials)
    assert len(_heartbeat.chains(trials)) == 4  # the budget: a dead trial and its retry count once
    poison = [t for t in trials if t.params == {"width": 8, "depth": 2}]
    assert all(t.state.name == "FAIL" for t in poison)
    # killed twice (a try and a retry, or two workers that drew it at once), then given up
    killed = [t for t in poison if t.system_attrs.get(_heartbeat.KILLED_ATTR)]
    assert len(killed) == 2
    assert [t for t in poison if t.system_attrs.get(_heartbeat.POISON_ATTR)] == [killed[-1]]
    assert killed[-1].user_attrs["fail_reason"] == "killed its worker 2 times"
    for t in poison:  # drawn again, or its retry: refused, not scored
        if t not in killed:
            assert t.user_attrs["fail_reason"].startswith("PoisonedCandidate: not scored again")
    others = [t for t in trials if t.params != {"width": 8, "depth": 2}]
    assert all(t.state.name == "COMPLETE" for t in others) and others
    # drawn again, it is not scored (the scorer would raise here, not kill this process)
    store = _storage.open_storage(url)
    guard = _workers.PoisonGuard(None, store, store.get_study_id_from_name("p"))
    with pytest.raises(_workers.PoisonedCandidate, match="killed its worker 2 times"):
        guard.score(Poison(), {"width": 8, "depth": 2}, None)


# --- 3. SIGTERM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, jobs", [("journal", 2), ("postgresql", 1)])
def test_sigterm_fails_and_requeues_the_running_trials_and_exits_143(kind, jobs, request, tmp_path):
    url = _url(kind, request, tmp_path)
    # the CLI, with a space whose candidates take 60 s after their draw (registered in the child
    # only): SIGTERM arrives while every worker is inside a candidate
    argv = ["worker", "--space", "slow", "--trials", "3", "--storage", url, "--study", "t"]
    argv += ["--sampler", "random", "--no-progress", "--heartbeat", "1", "--grace", "3"]
    argv += ["--batch", "2", "--jobs", str(jobs)]
    code = (
        "import sys, cli\nfrom search_spaces import register\n"
        "from tests.search._toys import SlowMinute\nregister(SlowMinute)\n"
        f"sys.exit(cli.main({argv!r}))\n"
    )
    proc = harness.python(code)

    def running_with_params():
        trials = harness.trials(url, "t")
        running = [t for t in trials if t.state.name == "RUNNING" and len(t.params) == 2]
        running = [t for t in running if _heartbeat.WORKER_ATTR in t.system_attrs]
        return running if len(running) == jobs else None

    running = harness.wait_for(running_with_params, f"{jobs} trials inside a candidate", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert [s for s in err.splitlines() if s.strip()] == ["ntknas worker: terminated (SIGTERM)"]
    trials = harness.trials(url, "t")
    for dead in running:
        dead = trials[dead.number]
        assert dead.state.name == "FAIL"
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
        assert retry.state.name == "WAITING" and retry.params == dead.params
        assert _heartbeat.KILLED_ATTR not in dead.system_attrs  # not the candidate's fault
    # the next run takes the re-queued trials first
    ntknas.search(Slow(0), 1, storage=url, study_name="t", sampler="random", heartbeat=1, batch=2)
    trials = harness.trials(url, "t")
    _assert_nothing_lost_or_counted_twice(trials)
    assert sum(t.state.name == "COMPLETE" for t in trials) == jobs + 1


# --- 4. PostgreSQL restarts ----------------------------------------------------------------------


def _server(action: str) -> None:
    command = os.environ.get(f"NTKNAS_TEST_POSTGRES_{action.upper()}")
    if not command:
        pytest.skip(f"NTKNAS_TEST_POSTGRES_{action.upper()} is not set (.ci/postgres.sh sets it)")
    subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=120)


def test_workers_wait_out_a_postgresql_restart_and_finish_the_budget(postgres_url):  # noqa: F811
    proc = harness.search(
        "Slow(0.5)", 6, postgres_url, "r", jobs=3, sampler="random", heartbeat=1, grace=3, batch=2
    )
    harness.wait_for(
        lambda: sum(t.state.name == "COMPLETE" for t in harness.trials(postgres_url, "r")) >= 2,
        "two complete trials",
        proc,
    )
    _server("stop")
    _server("start")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = harness.trials(postgres_url, "r")
    _assert_nothing_lost_or_counted_twice(trials)
    chains = _heartbeat.chains(trials)
    assert sum(any(t.state.name == "COMPLETE" for t in c) for c in chains.values()) == 6


def test_a_server_down_past_the_bound_ends_each_worker_with_one_line(postgres_url):  # noqa: F811
    # The CLI's worker processes with a 3 s bound (the default is a minute).
    argv = ["worker", "--space", "slow", "--trials", "20", "--storage", postgres_url]
    argv += ["--study", "d", "--sampler", "random", "--no-progress", "--heartbeat", "1"]
    argv += ["--grace", "3", "--batch", "2", "--jobs", "2", "--reconnect", "3"]
    code = (
        "import sys, cli\nfrom search_spaces import register\n"
        "from tests.search._toys import SlowHalf\nregister(SlowHalf)\n"
        f"sys.exit(cli.main({argv!r}))\n"
    )
    proc = harness.python(code)
    before = harness.wait_for(
        lambda: [t for t in harness.trials(postgres_url, "d") if t.state.name == "COMPLETE"],
        "a complete trial",
        proc,
    )
    _server("stop")
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        _server("start")
    assert proc.returncode == 2, err
    lines = [s for s in err.splitlines() if s.strip()]
    workers = [s for s in lines if s.startswith("worker ") and "unreachable for" in s]
    assert len(workers) == 2, err  # one line each
    assert lines[-1].startswith("ntknas worker: error: storage 'postgresql://"), err
    assert all("Traceback" not in s for s in lines), err
    # what was complete is intact
    after = {t.number: t for t in harness.trials(postgres_url, "d")}
    assert _snapshot(after[t.number] for t in before) == _snapshot(before)


# --- 5. full or read-only storage ----------------------------------------------------------------


@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG (a full disk, as a file sees it); Python ignores
    the SIGXFSZ that would otherwise kill the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def _read_only(folder):
    """``folder`` read-only: a read-only bind mount when root (whom permissions do not stop),
    permissions otherwise."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount as root here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)  # lazy: open engines


def _storage_kinds(tmp_path):
    return {
        "journal": f"journal:{tmp_path / 'd' / 'studies.log'}",
        "sqlite": f"sqlite:///{tmp_path / 'd' / 'studies.db'}",
    }


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_disk_is_one_line_and_the_study_survives(kind, fault, tmp_path):
    (tmp_path / "d").mkdir()
    url = _storage_kinds(tmp_path)[kind]
    ntknas.search(Tiny(), 2, storage=url, study_name="f", **FAST)
    before = _snapshot(harness.trials(url, "f"))
    fault_ctx = _file_size_limit(1) if fault == "full" else _read_only(tmp_path / "d")
    with fault_ctx, pytest.raises(ValueError) as e:
        ntknas.search(Tiny(), 2, storage=url, study_name="f", **FAST)
    msg = str(e.value)
    assert "\n" not in msg and f"storage {url!r}" in msg, msg
    assert _snapshot(harness.trials(url, "f")) == before
    assert not list((tmp_path / "d").glob("*.lock")), list((tmp_path / "d").iterdir())


# --- 6. lock files -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_no_lock_file_is_left_and_a_stale_one_is_taken_over(kind, tmp_path):
    (tmp_path / "d").mkdir()
    url = _storage_kinds(tmp_path)[kind]
    ntknas.search(Tiny(), 1, storage=url, study_name="l", **FAST)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [url.rsplit("/", 1)[-1]]
    # a process that held the study's lock is killed: its lock file stays behind
    lock = _workers.ClaimLock(_storage.open_storage(url), url, "l")
    holder = harness.python(
        "import fcntl, os, sys, time\n"
        f"fd = os.open({lock.path!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(600)\n"
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.communicate()
    assert os.path.exists(lock.path)
    ntknas.search(Tiny(), 1, storage=url, study_name="l", **FAST)  # would hang on a live lock
    assert [t.state.name for t in harness.trials(url, "l")] == ["COMPLETE", "COMPLETE"]
    assert not os.path.exists(lock.path)


def test_the_lock_file_still_excludes_while_held(tmp_path):
    url = f"journal:{tmp_path / 'x.log'}"
    lock = _workers.ClaimLock(_storage.open_storage(url), url, "x")
    with lock():
        probe = harness.python(
            "import fcntl, os, sys\n"
            f"fd = os.open({lock.path!r}, os.O_RDWR)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError:\n    sys.exit(3)\n"
        )
        assert probe.wait(timeout=60) == 3
    assert not os.path.exists(lock.path)


# --- 7. secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://me:s3cr3t@db.example/x", "postgresql://me:***@db.example/x"),
        ("postgresql+psycopg2://me:s3/cr@t@db:5432/x", "postgresql+psycopg2://me:***@db:5432/x"),
        ("mysql://me:s3cr3t@db/x?charset=utf8", "mysql://me:***@db/x?charset=utf8"),
        ("postgresql://db/x?user=me&password=s3cr3t", "postgresql://db/x?user=me&password=***"),
        ("postgresql://me@db/x", "postgresql://me@db/x"),
        ("sqlite:///ntknas.db", "sqlite:///ntknas.db"),
        ("journal:a:b@c.log", "journal:a:b@c.log"),
    ],
)
def test_mask_url(url, masked):
    assert _storage.mask_url(url) == masked
    assert _storage.mask_text(f"cannot reach {url}", url) == f"cannot reach {masked}"
    if "s3cr3t" in url:  # the password alone, as a driver may quote it
        assert "s3cr3t" not in _storage.mask_text("password 's3cr3t' rejected", url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me:s3cr3t@127.0.0.1:1/none",  # unreachable
        "postgresql://me:s3cr3t@127.0.0.1:port/none",  # malformed
        "postgresql://me:s3cr3t@127.0.0.1:1/none?password=s3cr3t",
    ],
)
def test_a_password_never_reaches_the_terminal(url, capsys):
    import cli

    argv = ["worker", "--space", "mlp", "--storage", url, "--no-progress", "--trials", "1"]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert "s3cr3t" not in out + err and "me:***@" in err
    assert len([s for s in err.splitlines() if s.strip()]) == 1


def test_a_password_is_stored_nowhere_in_the_study(postgres_url, capsys):  # noqa: F811
    import cli

    # the test server trusts loopback, so any password connects
    url = postgres_url.replace("postgresql://ntknas@", "postgresql://ntknas:s3cr3t@")
    study = ntknas.search(Tiny(), 1, storage=url, study_name="pw", **FAST)
    trial = study.get_trials(deepcopy=False)[0]
    store = _storage.open_storage(url)
    system = store.get_study_system_attrs(store.get_study_id_from_name("pw"))
    stored = [study.user_attrs, system, trial.user_attrs, trial.system_attrs]
    assert "s3cr3t" not in json.dumps(stored, default=str)
    assert cli.main(["leaderboard", "--storage", url, "--study", "pw"]) == 0
    assert cli.main(["leaderboard", "--storage", url, "--study", "nope"]) == 2
    out, err = capsys.readouterr()
    assert "s3cr3t" not in out + err and out.strip() and "no study 'nope'" in err


def test_the_python_api_masks_the_password_too():
    with pytest.raises(ValueError) as e:
        ntknas.search(Tiny(), 1, storage="postgresql://me:s3cr3t@127.0.0.1:1/none")
    assert "s3cr3t" not in str(e.value) and "me:***@" in str(e.value)


def test_storage_errors_are_retried_only_for_servers():
    import optuna

    calls = []

    def down():
        calls.append(1)
        raise optuna.exceptions.StorageInternalError("connection refused")

    waits = []
    clock = iter(range(0, 1000)).__next__  # one second per look at the clock
    with pytest.raises(ValueError, match="unreachable for"):
        _storage.persistent(
            down, "postgresql://me:pw@h/db", bound=10, sleep=waits.append, clock=clock
        )
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and len(calls) == len(waits) + 1

    def read_only():
        raise OSError(30, "Read-only file system")

    with pytest.raises(ValueError, match=r"storage 'journal:x.log' failed: Read-only"):
        _storage.persistent(read_only, "journal:x.log")
    assert _storage.persistent(lambda: 7, "postgresql://h/db") == 7


if sys.platform != "linux":  # flock, bind mounts, /proc
    pytestmark = pytest.mark.skip("fault tests need Linux")
