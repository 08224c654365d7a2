"""JAX's persistent compilation cache, on by default: a rerun, a resumed study or a second worker
process loads compiled kernels from disk instead of compiling them again.

Where: ``$NTKNAS_COMPILE_CACHE`` when it names a directory, else ``$XDG_CACHE_HOME/ntknas/jax``,
else ``~/.cache/ntknas/jax``. Off: ``NTKNAS_COMPILE_CACHE=0`` (or ``off``/``false``/``no``), or the
CLI's ``--no-compile-cache``. A cache directory set through JAX itself
(``JAX_COMPILATION_CACHE_DIR``) is kept. A directory that cannot be created or written is one
warning, and scoring goes on without the cache; an unreadable entry is JAX's own warning, and that
kernel is compiled again. The cache is not trimmed: delete the directory to empty it.

Hits and misses are counted from JAX's monitoring events (:func:`cache_stats`).
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "NTKNAS_COMPILE_CACHE"
_OFF = ("0", "off", "false", "no")
# Compilations shorter than this are not written: the kernels and initializers take longer, and
# the many eager one-op compilations would only fill the directory.
MIN_COMPILE_SECONDS = 0.1

_HITS = "/jax/compilation_cache/cache_hits"
_WRITES = "/jax/compilation_cache/cache_misses"  # JAX records it when it writes a new entry
_REQUESTS = "/jax/compilation_cache/compile_requests_use_cache"
_SAVED = "/jax/compilation_cache/compile_time_saved_sec"


@dataclass(frozen=True)
class CacheStats:
    """Persistent-cache events of this process since it started.

    Attributes:
      directory: the cache directory, or None when the cache is off.
      requests: compilations that looked in the cache.
      hits: compilations loaded from it.
      writes: compilations written to it (misses long enough to keep).
      seconds_saved: compile time the hits saved, as JAX estimates it.
    """

    directory: str | None
    requests: int
    hits: int
    writes: int
    seconds_saved: float

    @property
    def hit_rate(self) -> float | None:
        """hits / requests, None before any request."""
        return self.hits / self.requests if self.requests else None


class _Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {_HITS: 0, _WRITES: 0, _REQUESTS: 0}
        self.saved = 0.0

    def event(self, event: str, **kwargs) -> None:
        if event in self.counts:
            with self.lock:
                self.counts[event] += 1

    def duration(self, event: str, duration: float, **kwargs) -> None:
        if event == _SAVED:
            with self.lock:
                self.saved += duration


_state: dict = {}  # "directory" and "counter" once set up in this process
_setup_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ntknas/jax``, or ``~/.cache/ntknas/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ntknas" / "jax"


def enable_compile_cache() -> str | None:
    """Turns the persistent compilation cache on for this process (once; later calls return
    the same answer), unless ``NTKNAS_COMPILE_CACHE`` turns it off.

    Returns:
      The cache directory, or None when the cache is off or unusable (then one warning says why).
    """
    with _setup_lock:
        if "directory" not in _state:
            _state["directory"] = _setup()
        return _state["directory"]


def _setup() -> str | None:
    import jax

    _count_events(jax)
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting.lower() in _OFF:
        return None
    configured = jax.config.jax_compilation_cache_dir
    directory = Path(configured or setting or default_cache_dir()).expanduser()
    problem = _unusable(directory)
    if problem is not None:
        warnings.warn(
            f"compilation cache off: {directory} {problem} (set {ENV_VAR}=0 to silence)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    # -1: no minimum entry size (small kernels are cached too), and JAX does not override it
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return str(directory)


def _unusable(directory: Path) -> str | None:
    """Why ``directory`` cannot hold the cache (None when it can): created, written, read."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-") as f:
            f.write(b"ntknas")
            f.flush()
            f.seek(0)
            if f.read() != b"ntknas":
                return "does not read back what was written"
    except OSError as e:
        return f"is not a writable directory ({e.strerror or type(e).__name__})"
    return None


def _count_events(jax) -> None:
    if "counter" in _state:
        return
    counter = _Counter()
    jax.monitoring.register_event_listener(counter.event)
    jax.monitoring.register_event_duration_secs_listener(counter.duration)
    _state["counter"] = counter


def cache_stats() -> CacheStats:
    """This process's persistent-cache hits, writes and requests so far."""
    counter = _state.get("counter")
    if counter is None:
        return CacheStats(_state.get("directory"), 0, 0, 0, 0.0)
    with counter.lock:
        c = dict(counter.counts)
        saved = counter.saved
    return CacheStats(
        directory=_state.get("directory"),
        requests=c[_REQUESTS],
        hits=c[_HITS],
        writes=c[_WRITES],
        seconds_saved=saved,
    )
