"""Orbax checkpoints written by a training run: the latest (to resume) and the kept best (to use).

Owns the trainer's two `orbax.checkpoint.CheckpointManager`s under `<run>/checkpoints/`:
  latest/<step>/  the full train state (parameters, optimizer state, step) and the loop's
                  state as JSON (epoch, early-stopping counters, history); the newest 2 kept;
  best/<step>/    the kept model's parameters and its validation figures; the newest kept.
Orbax writes each checkpoint into a temporary folder and renames it when complete (on Cloud
Storage it writes commit_success.txt last instead), so a run killed while saving leaves the
previous checkpoints intact; the trainer's managers drop such
temporary folders (readers never do: arner_jax.runs.checkpoints reads without a manager). Resuming
tries the newest latest checkpoint and falls back to the one before when it cannot be read, with
a one-line warning naming it. Saves are asynchronous (training goes on while the files are
written, from host copies taken at the call); `close` waits. All processes call these methods
(Orbax synchronises them).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from arner_jax.data import files
from arner_jax.runs import run_folder
from arner_jax.runs.checkpoints import checkpoint_args, checkpoint_manager

log = logging.getLogger("arner_jax")
KEEP_LATEST = 2


def _host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _abstract(template: Any) -> Any:
    return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct)
                        else jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template)


class RunCheckpoints:
    def __init__(self, run_dir: str | Path):
        run_dir = files.location(run_dir)
        self.latest = checkpoint_manager(run_dir / run_folder.LATEST, KEEP_LATEST)
        self.best = checkpoint_manager(run_dir / run_folder.BEST, 1)

    # ------------------------------------------------------------------ saving
    def save_latest(self, step: int, state: Any, meta: dict) -> None:
        # A resume point must never refer to a kept model that is not on disk yet.
        self.best.wait_until_finished()
        self.latest.save(step, args=checkpoint_args(state, meta))

    def save_best(self, step: int, params: Any, meta: dict) -> None:
        self.best.save(step, args=checkpoint_args(params, meta))

    def wait(self) -> None:
        """Until every save started so far is on disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    # ------------------------------------------------------------------ loading
    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, template: Any) -> tuple[Any, dict] | None:
        """The newest readable train state (shaped like `template`) and the loop's state; None if none is.

        A checkpoint that cannot be read is skipped with a warning naming it. Checkpoints newer
        than the one restored (best ones included) belong to the abandoned future of the run and
        are deleted, so that training again writes them anew.
        """
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                out = self.latest.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(template)), meta=ocp.args.JsonRestore()))
            except Exception as err:  # noqa: BLE001 - a damaged checkpoint fails in many ways; all mean "skip it"
                if files.is_url(str(self.latest.directory)) and files.is_storage_failure(err):
                    # unreachable storage is not a damaged checkpoint: starting over would lose the run
                    raise files.StorageError(f"{self.latest.directory / str(step)}: cannot be read ({err}); "
                                             "check access to the bucket and resume again") from None
                log.warning("checkpoint %s cannot be read (%s: %s); trying the one before",
                            self.latest.directory / str(step), type(err).__name__, str(err).splitlines()[0][:200])
                continue
            for manager in (self.latest, self.best):
                for newer in [s for s in manager.all_steps() if s > step]:
                    manager.delete(newer)
            return _host(out["state"]), out["meta"]
        if self.latest.all_steps():
            log.warning("no checkpoint in %s can be read: the run starts again from the beginning",
                        self.latest.directory)
        return None

    def restore_best(self, template: Any) -> tuple[Any, dict]:
        """The kept model's parameters (shaped like `template`) and its metadata."""
        step = self.best.latest_step()
        if step is None:
            raise FileNotFoundError(f"{self.best.directory}: no kept model was saved")
        out = self.best.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(template)),
                                                               meta=ocp.args.JsonRestore()))
        return _host(out["state"]), out["meta"]

    def close(self) -> None:
        for manager in (self.latest, self.best):
            manager.wait_until_finished()
            manager.close()
