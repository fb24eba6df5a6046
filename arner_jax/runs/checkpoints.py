"""The Orbax checkpoints of a run folder: how they are laid out, written and read.

Owns: `checkpoints/latest/<step>/` and `checkpoints/best/<step>/` (each: `state/`, the arrays, and
`meta/`, JSON), in a local or a gs:// run folder (Orbax writes Cloud Storage itself); the Orbax
manager a writer uses; which steps are complete (the temporary folder of a save cut short is
ignored, and on Cloud Storage a step folder without Orbax's commit_success.txt); reading one
checkpoint read-only (no manager: a reader never cleans or deletes); and the newest kept model of
a run that may be training meanwhile. The trainer's two managers are arner_jax.train.checkpoints'.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from arner_jax.data import files
from arner_jax.encoders import stack_layer_params
from arner_jax.runs.run_folder import BEST, READABLE_FORMATS, RunFolderError, RunRecord


def checkpoint_manager(folder: Path, keep: int):
    """The Orbax manager a writer of `folder` uses (the trainer; importers writing a kept model).

    cleanup_tmp_directories: a save cut short by a kill leaves a temporary folder, which the
    writer drops when it starts; readers use no manager (see `read_checkpoint`).
    """
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(_orbax_path(folder), options=options, item_names=("state", "meta"))


def _orbax_path(folder: str | Path):
    """A folder as Orbax takes it: an absolute local path, or the gs:// URL (an etils.epath.Path)."""
    from etils import epath

    return epath.Path(folder) if files.is_url(str(folder)) else Path(folder).absolute()


def checkpoint_args(state: Any, meta: dict):
    """What a writer saves at a step: the state (numpy on the host) and JSON metadata."""
    import copy

    import jax
    import orbax.checkpoint as ocp

    host = jax.tree.map(np.asarray, jax.device_get(state))
    return ocp.args.Composite(state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(copy.deepcopy(meta)))


def save_params(run_dir: Path, params: Any, meta: dict) -> None:
    """Write `params` as the kept model of a run folder made without training (an imported model)."""
    manager = checkpoint_manager(run_dir / BEST, keep=1)
    manager.save(0, args=checkpoint_args(params, meta))
    manager.wait_until_finished()
    manager.close()


def complete_steps(folder: str | Path) -> list[int]:
    """Steps of the complete Orbax checkpoints in `folder`, oldest first (temporary folders ignored)."""
    folder = files.location(folder)
    with files.storage_errors(folder):
        if not folder.is_dir():
            return []
        if files.is_url(str(folder)):  # no temporary folders there: a step is complete once Orbax committed it
            from orbax.checkpoint.path import step as orbax_step

            return sorted(int(p.name) for p in folder.iterdir()
                          if p.name.isdigit() and orbax_step.is_path_finalized(p))
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / "state").is_dir() and (p / "_CHECKPOINT_METADATA").is_file())


def read_checkpoint(step_dir: Path, template: Any) -> tuple[Any, dict]:
    """One checkpoint's state (shaped like `template`, as numpy) and its JSON metadata; read-only."""
    import jax
    import orbax.checkpoint as ocp

    meta = json.loads(files.read_text(files.location(step_dir) / "meta" / "metadata"))
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(_orbax_path(step_dir) / "state", template)
    return jax.tree.map(np.asarray, jax.device_get(state)), meta


def read_kept_params(record: RunRecord, template: Any, attempts: int = 5) -> dict:
    """The newest kept model's parameters.

    A run that is training saves each new best model and then deletes the previous one, so a reader
    may see its checkpoint vanish midway. When a read fails and the kept models changed meanwhile,
    the newest is read instead; a read that fails on an unchanged folder is a real fault and raised.
    """
    best = files.location(record.run_dir) / BEST
    for attempt in range(attempts):
        steps = complete_steps(best)
        if not steps:
            raise RunFolderError(f"{record.run_dir}: no kept model in {BEST} yet; wait for the first validation of "
                                 "the run, or train it")
        step_dir = best / str(steps[-1])
        try:
            if record.format == READABLE_FORMATS[0]:  # format 1 saved the encoder's layers one by one
                return stack_layer_params(read_checkpoint(step_dir, None)[0])
            return read_checkpoint(step_dir, template)[0]
        except Exception:
            if attempt + 1 == attempts or complete_steps(best) == steps:
                raise
    raise AssertionError("unreachable")
