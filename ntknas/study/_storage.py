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

Secrets: a password in a URL (``postgresql://user:PASSWORD@host/db``) is shown as ``***`` in
every message (:func:`mask_url`); better still, leave it out of the URL and let the driver read
it from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings

DEFAULT_STORAGE = "sqlite:///ntknas.db"
DEFAULT_HEARTBEAT = 15  # seconds between heartbeats of a running trial
DEFAULT_RETRIES = 3  # a candidate that killed its worker is retried at most this many times
CONNECT_TIMEOUT = 5  # seconds to reach a database server before giving up

RECONNECT_SECONDS = 60  # how long a worker retries a database server that went away
JOURNAL_PREFIX = "journal:"
_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*://[^:@/]*:)(.*)@")  # greedy: the last @ ends it
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)([^&]*)")


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***``: ``postgresql://user:***@host/db`` (also a
    ``?password=`` query parameter). Every message that names a storage goes through this."""
    url = _USERINFO.sub(r"\1***@", url)
    return _QUERY_SECRET.sub(r"\1***", url)


def mask_text(text: str, url: str) -> str:
    """``text`` (an error message, say) with ``url`` and its password masked wherever they
    appear, percent-encoded or not."""
    from urllib.parse import unquote

    secrets = [m.group(2) for m in (_USERINFO.match(url),) if m]
    secrets += [m.group(2) for m in _QUERY_SECRET.finditer(url)]
    text = text.replace(url, mask_url(url))
    for secret in secrets:
        for s in {secret, unquote(secret)}:
            if s and s != "***":
                text = text.replace(s, "***")
    return text


def storage_kind(url: str) -> str:
    """``memory``, ``journal``, ``sqlite``, or another SQLAlchemy dialect (``postgresql``)."""
    if url == "memory":
        return "memory"
    if url.startswith(JOURNAL_PREFIX) or (url.endswith(".log") and "://" not in url):
        return "journal"
    if "://" not in url:
        raise ValueError(
            f"storage {mask_url(url)!r} is not a URL; use e.g. sqlite:///ntknas.db, "
            "journal:ntknas.log or postgresql://user@host/db"
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
        raise ValueError(
            f"cannot open storage {mask_url(url)!r}: no driver {e.name!r}{hint}"
        ) from None
    except Exception as e:  # sqlalchemy/driver errors vary by backend: report them in one line
        raise ValueError(f"cannot open storage {mask_url(url)!r}: {_first_line(e, url)}") from None


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
        f"cannot open storage {mask_url(url)!r}: no PostgreSQL driver (pip install psycopg2-binary)"
    )


def _check_sqlite_path(url: str, must_exist: bool) -> None:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if path and path != ":memory:":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"storage {mask_url(url)!r}: directory {folder} does not exist")
        if must_exist and not os.path.exists(path):
            raise ValueError(f"storage {mask_url(url)!r}: no such file {path}")


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
    except Exception as e:  # a file that is not a journal, or one we may not create
        raise ValueError(f"cannot open storage {url!r}: {_first_line(e, url)}") from None


def _stale_callback_arg() -> str:
    """Optuna 4.9 renamed ``failed_trial_callback`` to ``heartbeat_stale_trial_callback``."""
    import inspect

    import optuna

    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in params:
        return "heartbeat_stale_trial_callback"
    return "failed_trial_callback"


def _first_line(e: BaseException, url: str = "") -> str:
    text = " ".join(str(e).split("\n")[0].split())
    text = mask_text(text, url) if url else text
    return text[:200] or type(e).__name__


# --- a storage that fails while a search runs ------------------------------------------------


def is_storage_error(e: BaseException) -> bool:
    """An error of the storage itself (a lost server, a full or read-only disk), not of a
    candidate: Optuna's wrapped database errors, SQLAlchemy's and the file system's."""
    import optuna

    if isinstance(e, (OSError, optuna.exceptions.StorageInternalError)):
        return True
    try:
        import sqlalchemy.exc
    except ModuleNotFoundError:
        return False
    return isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def caused_by_storage(e: BaseException) -> bool:
    """``e`` or an exception it was raised from is a storage error."""
    seen = 0
    while e is not None and seen < 20:
        if is_storage_error(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def persistent(
    fn, url: str, bound: float = RECONNECT_SECONDS, *, sleep=time.sleep, clock=time.monotonic
):
    """``fn()``, retried with backoff while a database server is unreachable.

    A server (PostgreSQL, MySQL) that restarts comes back within seconds: ``fn`` is retried after
    0.5, 1, 2, 4, then every 5 seconds, for ``bound`` seconds in all. A file storage's error (a
    read-only directory, a full disk) does not pass with time and is reported at once.

    Raises:
      ValueError: the storage failed for good; one line naming the (masked) URL and the reason.
    """
    retry = storage_kind(url) not in ("memory", "journal", "sqlite")
    start, wait = clock(), 0.5
    while True:
        try:
            return fn()
        except Exception as e:
            if not is_storage_error(e):
                raise
            waited = clock() - start
            if not retry or waited + wait > bound:
                how = f"unreachable for {waited:.0f} s" if retry else "failed"
                raise storage_failure(e, url, how) from None
            sleep(wait)
            wait = min(2 * wait, 5.0)


def storage_failure(e: BaseException, url: str, how: str = "failed") -> ValueError:
    """The one-line error for storage error ``e``: the masked URL and the driver's or the OS's
    reason (the innermost cause, under Optuna's and SQLAlchemy's wrappers)."""
    while e.__cause__ is not None:
        e = e.__cause__
    reason = e.strerror if isinstance(e, OSError) and e.strerror else _first_line(e, url)
    where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
    return ValueError(f"storage {mask_url(url)!r} {how}: {reason}{where}")


@contextlib.contextmanager
def storage_errors(url: str):
    """Turns a storage error raised in the block into a one-line ``ValueError``."""
    try:
        yield
    except Exception as e:
        if not is_storage_error(e):
            raise
        raise storage_failure(e, url) from None


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
