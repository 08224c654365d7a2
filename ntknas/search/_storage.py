"""Where studies live: an Optuna storage URL, checked before use so bad ones fail in one line."""

from __future__ import annotations

import os

DEFAULT_STORAGE = "sqlite:///ntknas.db"


def open_storage(url: str, must_exist: bool = False):
    """An Optuna storage for ``url`` (any RDB URL, or ``memory`` for a throwaway one).

    Args:
      url: e.g. ``sqlite:///ntknas.db`` (relative to the working directory),
        ``sqlite:////abs/path.db``, ``postgresql://user@host/db``, or ``memory``.
      must_exist: for reading commands: a SQLite file that does not exist is an error rather than
        a new, empty database.

    Raises:
      ValueError: a malformed or unreachable URL, a missing directory or file, a file that is not
        an Optuna database; the message names the URL and the reason.
    """
    import optuna

    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if "://" not in url:
        raise ValueError(
            f"storage {url!r} is not a URL; use e.g. sqlite:///ntknas.db or postgresql://host/db"
        )
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ValueError(f"storage {url!r}: directory {folder} does not exist")
            if must_exist and not os.path.exists(path):
                raise ValueError(f"storage {url!r}: no such file {path}")
    try:
        return optuna.storages.RDBStorage(url, skip_compatibility_check=False)
    except Exception as e:  # sqlalchemy/driver errors vary by backend: report them in one line
        reason = " ".join(str(e).split("\n")[0].split())[:200] or type(e).__name__
        raise ValueError(f"cannot open storage {url!r}: {reason}") from None


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
