"""The process around a run: multi-host start, compilation cache, run folder, logs, compiles.

Owns: `jax.distributed.initialize()` when the environment asks for it; the JAX persistent
compilation cache (on by default, in the user cache folder); creating or refusing the run
folder; the logger writing `train.log` (primary process only); and counting XLA compilations.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import jax

log = logging.getLogger("arner_jax")


def maybe_initialize_distributed(mode: str = "auto") -> None:
    """Start multi-process JAX when asked ("on") or when the environment is a multi-host job.

    "auto" starts it when a coordinator address is set (JAX_COORDINATOR_ADDRESS), on a
    multi-host TPU slice (TPU_WORKER_HOSTNAMES lists several hosts), or in a SLURM job of several
    tasks; jax.distributed.initialize() then finds the rest of its settings itself.
    """
    if mode == "off":
        return
    multi = (
        bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
        or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
        or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    )
    if mode == "on" or multi:
        jax.distributed.initialize()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "arner_jax" / "jax_compilation_cache"


def enable_compilation_cache(folder: str | Path | None) -> Path | None:
    """Use the persistent compilation cache in `folder` (None or "": off)."""
    if not folder:
        return None
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program, small ones included, so that a second run compiles nothing.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def is_primary() -> bool:
    return jax.process_index() == 0


class RunFolderError(Exception):
    """The run folder cannot be used as asked (not empty, nothing to resume, a file)."""


def prepare_run_dir(run_dir: str | Path, overwrite: bool, resume: bool) -> Path:
    """Create the run folder; refuse a non-empty one unless told to overwrite or resume it."""
    run_dir = Path(run_dir)
    if overwrite and resume:
        raise RunFolderError("--overwrite and --resume exclude each other")
    nonempty = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not nonempty:
            raise RunFolderError(f"{run_dir}: nothing to resume (the folder is missing or empty); "
                                    "drop --resume to start a new run.")
        return run_dir
    if nonempty:
        if not overwrite:
            raise RunFolderError(f"{run_dir}: the folder is not empty. Pass --resume to continue that run, "
                                  "--overwrite to delete it and start again, or another --output_path.")
        if is_primary():
            shutil.rmtree(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file; --output_path must be a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def setup_logging(run_dir: Path, filename: str) -> None:
    """Log to the console and to run_dir/filename (appending: a resumed run continues the log)."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    if not is_primary():
        log.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / filename, encoding="utf-8")):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.propagate = False


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

    def __enter__(self) -> "CompileCounter":
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_listener(self._on_event)


def barrier(name: str) -> None:
    """Wait for every process (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
