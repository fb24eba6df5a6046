"""The process around a run: logs, compilation counts, preemption.

Owns: the logger writing `train.log` (primary process only; in a gs:// run folder re-uploaded whole,
since an object cannot be appended to); counting XLA compilations; and
noticing SIGTERM (preemption) so that the loop can save and stop at a step boundary. Starting
several processes, barriers and "am I process 0" are arner_jax.system.distributed's; the
compilation cache and the compiled programs kept on disk are arner_jax.system.executables'.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jax

from arner_jax.data import files
from arner_jax.system.distributed import is_primary

log = logging.getLogger("arner_jax")


def setup_logging(run_dir: Path, filename: str) -> None:
    """Log to the console and to run_dir/filename (appending: a resumed run continues the log)."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = False
    if not is_primary():
        log.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    path = files.location(run_dir) / filename
    to_file = UploadedLog(path) if files.is_url(str(path)) else logging.FileHandler(path, encoding="utf-8")
    for handler in (logging.StreamHandler(sys.stderr), to_file):
        handler.setFormatter(fmt)
        log.addHandler(handler)


class UploadedLog(logging.Handler):
    """A log file on Cloud Storage, where an object cannot be appended to: the whole text is uploaded again (one
    upload: the object is always a complete earlier version) at the first record, then at most every `every`
    seconds, and when flushed or closed; a kill loses at most the last `every` seconds of lines. A resumed run
    continues the uploaded text."""

    def __init__(self, url, every: float = 30.0):
        super().__init__()
        self.url, self.every = str(url), every
        self.text = files.read_text(self.url) if files.is_file(self.url) else ""
        self.uploaded_at: float | None = None
        self.pending = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.text += self.format(record) + "\n"
            self.pending = True
            if self.uploaded_at is None or time.monotonic() - self.uploaded_at >= self.every:
                self.flush()
        except Exception:  # noqa: BLE001 - logging's own policy: report, never stop the run
            self.handleError(record)

    def flush(self) -> None:
        if self.pending:
            files.atomic_write_text(self.url, self.text)
            self.pending, self.uploaded_at = False, time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001 - the run's own outcome (a Preempted stop, an error) must stand
            print(f"warning: {self.url}: the last lines of the log were not uploaded ({err})", file=sys.stderr)
        finally:
            super().close()


def close_logging() -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


class CompileCounter:
    """Counts XLA compilations while active; programs loaded from the persistent cache are
    counted apart (`cache_hits`), since JAX times a cache load as a backend compile."""

    COMPILE = "/jax/core/compile/backend_compile_duration"
    CACHE_HIT = "/jax/compilation_cache/cache_hits"

    def __init__(self):
        self.requests = 0
        self.cache_hits = 0

    @property
    def count(self) -> int:
        return self.requests - self.cache_hits

    def _on_duration(self, event: str, duration: float, **_kwargs) -> None:
        if event == self.COMPILE:
            self.requests += 1

    def _on_event(self, event: str, **_kwargs) -> None:
        if event == self.CACHE_HIT:
            self.cache_hits += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_listener(self._on_event)


# ---------------------------------------------------------------------- preemption
_sigterm_received = False


@contextlib.contextmanager
def watch_preemption() -> Iterator[None]:
    """While active, SIGTERM does not kill the process: it asks the loop to save and stop."""
    global _sigterm_received
    _sigterm_received = False

    def on_sigterm(signum, frame):
        global _sigterm_received
        _sigterm_received = True
        log.warning("SIGTERM received: saving a checkpoint at the next step, then stopping")

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. a notebook's worker): SIGTERM keeps its default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def preemption_requested(step: int) -> bool:
    """Whether to save and stop after `step`: the same answer in every process.

    Several processes: JAX's preemption sync point (the coordination service agrees on a step
    once any process got SIGTERM). One process: whether SIGTERM arrived.
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)
    return _sigterm_received
