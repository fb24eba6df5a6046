"""One training run in one folder, callable from Python: `train_and_evaluate(config, output_path)`.

Owns: the order of a run's set-up (the run folder, the saved settings of a resumed run, logging,
assembling the data and model) before the loop (`train.loop.Trainer`) takes over. The
experiments' command line (`train.cli`) and the notebooks both call it.

    from arner_jax.train import RunConfig, train_and_evaluate
    metrics = train_and_evaluate(RunConfig(kind="nested", train_path=..., val_path=..., test_path=...,
                                           bert_model="UBC-NLP/ARBERTv2"), "runs/nested")
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from arner_jax.train import runtime
from arner_jax.train.config import RunConfig, read_run_config

log = logging.getLogger("arner_jax")


def train_and_evaluate(config: RunConfig | None, output_path: str | Path, *, overwrite: bool = False,
                       resume: bool = False) -> dict:
    """Train `config` in `output_path` and return its metrics (also in output_path/metrics.json).

    A non-empty folder is refused (runtime.RunFolderError) unless `overwrite` (start again) or `resume` (continue from the
    latest checkpoint with the run's saved settings; `config` may then be None).
    """
    run_dir = runtime.prepare_run_dir(output_path, overwrite, resume)
    runtime.barrier("run folder ready")
    if resume:  # a resumed run is the saved run: its schedule and data must not change
        try:
            saved = RunConfig.from_dict(read_run_config(run_dir)["run"])
        except (FileNotFoundError, ValueError) as err:
            raise runtime.RunFolderError(f"cannot resume: {err}") from err
        changed = [] if config is None else [f.name for f in dataclasses.fields(RunConfig)
                                             if getattr(config, f.name) != getattr(saved, f.name)]
        config = saved
    elif config is None:
        raise ValueError("a new run needs its RunConfig (config=None only resumes)")
    runtime.setup_logging(run_dir, "train.log")
    if resume and changed:
        log.warning("resuming with the run's saved settings; ignoring the new %s", ", ".join(changed))
    log.info("run folder %s (%s)", run_dir.resolve(), "resumed" if resume else "new")
    log.info("settings: %s", json.dumps(dataclasses.asdict(config), ensure_ascii=False))

    from arner_jax.train.assemble import assemble
    from arner_jax.train.loop import Trainer

    return Trainer(assemble(config, run_dir, resume=resume)).fit(resume=resume)
