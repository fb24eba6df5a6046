"""Orbax checkpoints of a run: the latest (to resume) and the kept best (to use).

Owns: two `orbax.checkpoint.CheckpointManager`s under `<run>/checkpoints/`:
  latest/<step>/  the full train state (parameters, optimizer state, step) and the loop's
                  bookkeeping as JSON (epoch, early-stopping counters, history); kept: 1.
  best/<step>/    the kept model's parameters and its validation metrics; kept: 1.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed while saving leaves the previous checkpoint intact and the partial one is ignored.
Saves are asynchronous (training goes on while the files are written, from copies taken at the
call); `close` waits.
All processes call these methods (Orbax synchronises them); the primary process writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import copy

import jax
import numpy as np
import orbax.checkpoint as ocp


def _manager(folder: Path) -> ocp.CheckpointManager:
    # cleanup_tmp_directories: a save cut short by a kill leaves a temporary folder; drop it.
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(folder.absolute(), options=options, item_names=("state", "meta"))


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


class RunCheckpoints:
    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / "checkpoints"
        self.latest = _manager(self.folder / "latest")
        self.best = _manager(self.folder / "best")

    # ------------------------------------------------------------------ saving
    def save_latest(self, step: int, state: Any, meta: dict) -> None:
        # A resume point must never refer to a kept model that is not on disk yet.
        self.best.wait_until_finished()
        self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_host(state)),
                                                        meta=ocp.args.JsonSave(copy.deepcopy(meta))))

    def save_best(self, step: int, params: Any, meta: dict) -> None:
        self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_host(params)),
                                                      meta=ocp.args.JsonSave(copy.deepcopy(meta))))

    # ------------------------------------------------------------------ loading
    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, template: Any) -> tuple[Any, dict]:
        """The latest train state (shaped like `template`) and its bookkeeping."""
        return _restore(self.latest, template, "latest")

    def restore_best(self, template: Any) -> tuple[Any, dict]:
        """The kept model's parameters (shaped like `template`) and its metadata."""
        return _restore(self.best, template, "best")

    def close(self) -> None:
        for m in (self.latest, self.best):
            m.wait_until_finished()
            m.close()


def _restore(manager: ocp.CheckpointManager, template: Any, what: str):
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{manager.directory}: no complete {what} checkpoint")
    abstract = jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
        template)
    out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                         meta=ocp.args.JsonRestore()))
    return _host(out["state"]), out["meta"]


def read_best_params(run_dir: str | Path, template: Any) -> tuple[Any, dict]:
    """The kept model of a finished run, without the rest of the trainer."""
    ckpt = RunCheckpoints(run_dir)
    try:
        return ckpt.restore_best(template)
    finally:
        ckpt.close()
