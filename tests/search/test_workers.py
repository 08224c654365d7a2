"""Many workers on one study: exact budgets, dead workers' trials retried, a shared score cache.

Real parts, no mocks: worker processes (``ntknas worker``, ``--jobs``), a journal file, and a
PostgreSQL server (``.ci/postgres.sh`` starts one and exports ``NTKNAS_TEST_POSTGRES_URL``; each
test gets a database of its own). Heartbeats every second, a grace of three, so a killed worker's
trial comes back within seconds.
"""

import json
import os
import signal
import time

import pytest

import ntknas
from ntknas.study import _heartbeat, _processes, _storage, out_of_budget
from tests.study import _harness as harness
from tests.study._harness import postgres_url, storage_url  # noqa: F401 (fixtures)

from ._toys import Tiny

# Every test that uses the shared PostgreSQL server runs on one xdist worker (`--dist
# loadgroup`): the restart tests stop that server, which would fail a neighbour's connection.
pytestmark = pytest.mark.xdist_group("postgres")

MLP = ["--space", "mlp", "--batch", "2", "--input-size", "2", "--max-params", "20000"]
FAST = ["--sampler", "random", "--no-progress", "--heartbeat", "1", "--grace", "3"]


def _cli(*argv):
    return harness.cli(*argv)


def _finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out, err


_trials = harness.trials


def _snapshot(trials):
    return [(t.number, t.state.name, t.values, dict(t.user_attrs), t.params) for t in trials]


def _assert_each_config_scored_once(trials):
    done = [t for t in trials if t.state.name == "COMPLETE" and "ntk_cond" in t.user_attrs]
    scored = [t for t in done if "reused_from" not in t.user_attrs]
    configs = [t.user_attrs["config"] for t in scored]
    assert len(configs) == len(set(configs)), configs  # no architecture scored twice
    by_number = {t.number: t for t in scored}
    for t in done:
        if "reused_from" in t.user_attrs:
            source = by_number[t.user_attrs["reused_from"]]
            assert source.user_attrs["config"] == t.user_attrs["config"]
            assert t.values == source.values


def test_three_workers_reach_the_budget_exactly_and_leave_other_studies_alone(storage_url):  # noqa: F811
    # another study in the same storage, made first; it must come out unchanged
    ntknas.search(
        Tiny(), 2, storage=storage_url, study_name="other", sampler="random", batch=2, heartbeat=1
    )
    other = _snapshot(_trials(storage_url, "other"))
    # three worker processes on one study: a run of 4 trials in two processes (--jobs 2) and a
    # run of 3 in a third process, at the same time
    common = [*MLP, *FAST, "--storage", storage_url, "--study", "shared"]
    pair = _cli("worker", *common, "--trials", "4", "--jobs", "2")
    single = _cli("worker", *common, "--trials", "3")
    out, _ = _finish(pair)
    single_out, _ = _finish(single)
    every = _trials(storage_url, "shared")
    assert all(t.state.name == "COMPLETE" for t in every), out
    # the budget counts the candidates scored; those outside --max-params are not
    trials = [t for t in every if not out_of_budget(t)]
    assert len(trials) == 7, out
    runs = {}
    for t in trials:
        runs.setdefault(t.system_attrs[_heartbeat.RUN_ATTR], []).append(t)
    assert sorted(len(v) for v in runs.values()) == [3, 4]
    (three,) = [v for v in runs.values() if len(v) == 3]
    assert len({t.system_attrs[_heartbeat.WORKER_ATTR] for t in three}) == 1
    # whichever run ends last sees every trial complete (the other may still be running one)
    assert any("study shared: 7 complete" in o for o in (out, single_out)), (out, single_out)
    _assert_each_config_scored_once(trials)
    assert _snapshot(_trials(storage_url, "other")) == other


def test_a_killed_worker_has_its_trial_retried_and_nothing_is_lost(storage_url):  # noqa: F811
    # Six trials of a 4-config space in two processes: some configs are drawn twice (and must be
    # scored once). Each candidate waits 1.5 s after its draw, a window to SIGKILL a worker in
    # mid-trial once its parameters are stored (so the retry must carry the same parameters).
    parent = harness.search(
        "Slow(1.5)", 6, storage_url, "kill", jobs=2, sampler="random", heartbeat=1, grace=3, batch=2
    )
    store = None
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.1)
        try:
            store = store or _storage.open_storage(storage_url)
            trials = _storage.load_study(store, "kill").get_trials(deepcopy=False)
        except ValueError:  # the study is not created yet
            continue
        running = [t for t in trials if t.state.name == "RUNNING"]
        running = [t for t in running if _heartbeat.WORKER_ATTR in t.system_attrs and t.params]
        if running and sum(t.state.name == "COMPLETE" for t in trials) >= 1:
            candidate = running[0]
            pid = int(candidate.system_attrs[_heartbeat.WORKER_ATTR].rsplit(":", 1)[1])
            assert pid not in (os.getpid(), parent.pid)
            # Freeze the worker, then read its trial again: what the storage says now is what it
            # says when the worker dies, so the trial killed is surely one in mid-run (without the
            # freeze, a loaded machine could let it finish between the read and the kill).
            os.kill(pid, signal.SIGSTOP)
            trials = _storage.load_study(store, "kill").get_trials(deepcopy=False)
            fresh = next(t for t in trials if t.number == candidate.number)
            if fresh.state.name != "RUNNING":
                os.kill(pid, signal.SIGCONT)  # it finished meanwhile: pick again
                continue
            victim = fresh
            os.kill(pid, signal.SIGKILL)
            before = _snapshot(t for t in trials if t.state.name == "COMPLETE")
    assert victim is not None, "no trial to kill"
    _, err = parent.communicate(timeout=240)
    assert parent.returncode == 0, err
    assert f"pid {pid}) ended with signal 9" in err
    trials = _trials(storage_url, "kill")
    by_number = {t.number: t for t in trials}
    dead = by_number[victim.number]
    assert dead.state.name == "FAIL" and "fail_reason" not in dead.user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE" and retries[0].params == dead.params
    # the budget counts the dead trial and its retry once: six complete trials, one failed
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 6 + ["FAIL"]
    # what was complete when the worker died is still there, unchanged
    assert _snapshot(by_number[n] for n, *_ in before) == before
    _assert_each_config_scored_once(trials)


def test_journal_heartbeat_fails_and_requeues_a_silent_trial(tmp_path):
    url = f"journal:{tmp_path / 'hb.log'}"
    store = _storage.open_storage(url, heartbeat=1, grace=2)
    import optuna

    study = optuna.create_study(storage=store, study_name="hb")
    trial = study.ask()
    x = trial.suggest_int("x", 0, 9)
    trial_id = store.get_trial_id_from_study_id_trial_number(
        store.get_study_id_from_name("hb"), trial.number
    )
    store.set_trial_system_attr(trial_id, _heartbeat.RUN_ATTR, "r")
    _heartbeat.beat(store, trial_id)
    store.set_trial_system_attr(trial_id, _heartbeat.WORKER_ATTR, "me")  # the claim is done
    assert _heartbeat.fail_stale_trials(study, store, retries=3) == 0  # it just beat
    time.sleep(2.5)
    assert _heartbeat.fail_stale_trials(study, store, retries=3) == 1
    dead, retry = study.get_trials(deepcopy=False)
    assert dead.state.name == "FAIL" and retry.state.name == "WAITING"
    assert retry.params == {"x": x} and retry.system_attrs["failed_trial"] == dead.number
    assert retry.system_attrs[_heartbeat.RUN_ATTR] == "r"
    assert study.get_trials(deepcopy=False)[0].system_attrs[_heartbeat.KILLED_ATTR] is True
    assert _heartbeat.fail_stale_trials(study, store, retries=3) == 0  # waiting is not stale


def test_unreachable_storage_is_a_clear_error_not_a_hang():
    proc = _cli("worker", *MLP, "--storage", "postgresql://nobody@127.0.0.1:1/none")
    _, err = proc.communicate(timeout=120)  # a hang fails here
    assert proc.returncode == 2
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1 and "cannot open storage 'postgresql://nobody@127.0.0.1:1/none'" in err


@pytest.mark.parametrize("url", ["memory", "sqlite:///parallel.db"])
def test_jobs_need_a_storage_for_parallel_writers(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not for parallel writers"):
        ntknas.search(Tiny(), 2, storage=url, jobs=2)
    assert not (tmp_path / "parallel.db").exists()


def test_placement_one_accelerator_per_worker_and_disjoint_cores():
    places = _processes.plan(4, gpus=["0", "1"], cores=list(range(8)))
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in places] == ["0", "1", "0", "1"]
    assert all(p.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for p in places)  # shared
    assert [p.cpus for p in places] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    two = _processes.plan(2, gpus=["3", "5"], cores=[0, 1, 2])
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in two] == ["3", "5"]
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in two[0].env  # a device each: preallocate
    assert [p.cpus for p in two] == [(0, 1), (2,)] and two[1].env["OMP_NUM_THREADS"] == "1"
    cpu = _processes.plan(3, gpus=[], cores=[0, 1])
    assert [p.cpus for p in cpu] == [(0,), (1,), (0,)]
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in cpu)


def test_storage_kinds_and_journal_paths(tmp_path):
    assert _storage.storage_kind("journal:x.log") == "journal"
    assert _storage.storage_kind("studies.log") == "journal"
    assert _storage.storage_kind("postgresql+psycopg2://u@h/d") == "postgresql"
    assert _storage.storage_kind("sqlite:///a.db") == "sqlite"
    with pytest.raises(ValueError, match="not a URL"):
        _storage.storage_kind("studies.db")
    with pytest.raises(ValueError, match="does not exist"):
        _storage.open_storage("journal:/no/such/dir/x.log")
    with pytest.raises(ValueError, match="grace"):
        _storage.open_storage(f"journal:{tmp_path / 'a.log'}", heartbeat=5, grace=5)
    path = tmp_path / "b.log"
    study = ntknas.search(Tiny(), 1, storage=str(path), sampler="random", batch=2)
    assert path.exists() and json.loads(path.read_text().splitlines()[0])["op_code"] == 0
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
