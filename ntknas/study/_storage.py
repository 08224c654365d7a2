"""Where studies live: an Optuna storage URL, checked before use so bad ones fail in one line.

Which storage when:

* ``sqlite:///ntknas.db`` (the default): one process on one machine. SQLite locks the whole file
  per write, so parallel writers stall and fail with "database is locked"; ``--jobs`` refuses it.
* ``journal:PATH`` or a path ending in ``.log``: several processes on one machine (or a shared
  file system with working locks), no server: Optuna's append-only journal file.
* ``postgresql://USER@HOST/DB`` (or ``mysql://``): many workers on many machines. Needs a driver
  (``pip install psycopg2-binary``).
* ``memory``: throwaway, this process only.

Persistent storages get heartbeats: a worker that dies mid-candidate leaves no trial RUNNING
forever; after ``grace`` seconds without a heartbeat the trial is failed and re-queued
(:mod:`ntknas.study._heartbeat`).
"""

from __future__ import annotations

import os
import warnings

DEFAULT_STORAGE = "sqlite:///ntknas.db"
DEFAULT_HEARTBEAT = 15  # seconds between heartbeats of a running trial
CONNECT_TIMEOUT = 5  # seconds to reach a database server before giving up

JOURNAL_PREFIX = "journal:"


def storage_kind(url: str) -> str:
    """``memory``, ``journal``, ``sqlite``, or another SQLAlchemy dialect (``postgresql``)."""
    if url == "memory":
        return "memory"
    if url.startswith(JOURNAL_PREFIX) or (url.endswith(".log") and "://" not in url):
        return "journal"
    if "://" not in url:
        raise ValueError(
            f"storage {url!r} is not a URL; use e.g. sqlite:///ntknas.db, journal:ntknas.log "
            "or postgresql://user@host/db"
        )
    return url.split("://", 1)[0].split("+", 1)[0]


def journal_path(url: str) -> str:
    return url[len(JOURNAL_PREFIX) :] if url.startswith(JOURNAL_PREFIX) else url


def open_storage(
    url: str,
    must_exist: bool = False,
    *,
    heartbeat: int | None = None,
    grace: int | None = None,
):
    """An Optuna storage for ``url``.

    Args:
      url: ``sqlite:///ntknas.db`` (relative to the working directory), ``sqlite:////abs/path.db``,
        ``journal:PATH`` or ``PATH.log`` (journal file), ``postgresql://user@host/db`` (any
        SQLAlchemy URL), or ``memory`` for a throwaway one.
      must_exist: for reading commands: a SQLite or journal file that does not exist is an error
        rather than a new, empty study store.
      heartbeat: seconds between heartbeats of running trials (None: no heartbeats). Ignored for
        ``memory``, which no other process can see.
      grace: seconds without a heartbeat after which a running trial counts as dead (default
        four heartbeats).

    Raises:
      ValueError: a malformed or unreachable URL (within :data:`CONNECT_TIMEOUT` seconds), a
        missing driver, directory or file, a file that is not an Optuna database, or a bad
        heartbeat; the message names the URL and the reason.
    """
    import optuna

    kind = storage_kind(url)
    for name, v in (("heartbeat", heartbeat), ("grace", grace)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int of seconds, got {v!r}")
    if heartbeat is not None and grace is not None and grace <= heartbeat:
        raise ValueError(f"grace ({grace} s) must be longer than the heartbeat ({heartbeat} s)")
    if heartbeat is not None and grace is None:
        grace = 4 * heartbeat
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "journal":
        return _open_journal(url, must_exist, heartbeat, grace)
    if kind == "sqlite":
        _check_sqlite_path(url, must_exist)
    rdb_url = _with_postgres_driver(url) if kind == "postgresql" else url
    from ._heartbeat import retry_stale_trial

    engine_kwargs: dict = {"pool_pre_ping": True}
    if kind in ("postgresql", "mysql"):  # both drivers take connect_timeout (seconds)
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    kwargs: dict = {}
    if heartbeat is not None:
        kwargs = dict(heartbeat_interval=heartbeat, grace_period=grace)
        kwargs[_stale_callback_arg()] = retry_stale_trial
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: known
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(rdb_url, engine_kwargs=engine_kwargs, **kwargs)
    except ModuleNotFoundError as e:
        hint = " (pip install psycopg2-binary)" if kind == "postgresql" else ""
        raise ValueError(f"cannot open storage {url!r}: no driver {e.name!r}{hint}") from None
    except Exception as e:  # sqlalchemy/driver errors vary by backend: report them in one line
        raise ValueError(f"cannot open storage {url!r}: {_first_line(e)}") from None


def _with_postgres_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 means psycopg (3) by
    it, older versions psycopg2; either works."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url  # the user named a driver
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://" + url[len("postgresql://") :]
    raise ValueError(
        f"cannot open storage {url!r}: no PostgreSQL driver (pip install psycopg2-binary)"
    )


def _check_sqlite_path(url: str, must_exist: bool) -> None:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if path and path != ":memory:":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"storage {url!r}: directory {folder} does not exist")
        if must_exist and not os.path.exists(path):
            raise ValueError(f"storage {url!r}: no such file {path}")


def _open_journal(url: str, must_exist: bool, heartbeat: int | None, grace: int | None):
    from ._heartbeat import HeartbeatJournalStorage

    path = journal_path(url)
    if not path:
        raise ValueError(f"storage {url!r} names no file; use e.g. journal:ntknas.log")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"storage {url!r}: directory {folder} does not exist")
    if must_exist and not os.path.exists(path):
        raise ValueError(f"storage {url!r}: no such file {path}")
    try:
        return HeartbeatJournalStorage(path, heartbeat=heartbeat, grace=grace)
    except Exception as e:  # a file that is not a journal
        raise ValueError(f"cannot open storage {url!r}: {_first_line(e)}") from None


def _stale_callback_arg() -> str:
    """Optuna 4.9 renamed ``failed_trial_callback`` to ``heartbeat_stale_trial_callback``."""
    import inspect

    import optuna

    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in params:
        return "heartbeat_stale_trial_callback"
    return "failed_trial_callback"


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")[0].split())[:200] or type(e).__name__


def study_names(storage) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage, study_name: str | None):
    """The study ``study_name`` (or the only study in ``storage`` when None).

    Raises:
      ValueError: no such study, or several and none named; the message lists the names.
    """
    import optuna

    names = study_names(storage)
    if study_name is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise ValueError(f"name a study with --study; studies in this storage: {listed}")
        study_name = names[0]
    if study_name not in names:
        listed = ", ".join(names) if names else "none"
        raise ValueError(f"no study {study_name!r} in this storage; studies: {listed}")
    return optuna.load_study(study_name=study_name, storage=storage)
