"""One training run in one folder, callable from Python: `train_and_evaluate(config, output_path)`.

Owns the order of a run's start, which is what makes a failed start cost nothing:
  1. the settings (a RunConfig checks its own values; a resumed run reads its saved ones),
  2. the output folder (refused when it cannot be used as asked),
  3. every input (data files, the pretrained encoder): read and checked, read-only,
  4. only then the folder is created (or an earlier run folder deleted, with --overwrite),
  5. logging, the tokenizer, labels, model and splits (train.prepare), and the loop (train.loop).
The experiments' command line (train.cli), the sweeps and the notebooks all call it.

    from arner_jax.config import RunConfig
    from arner_jax.train.experiment import train_and_evaluate
    metrics = train_and_evaluate(RunConfig(kind="nested", train_path=..., val_path=..., test_path=...,
                                           bert_model="UBC-NLP/ARBERTv2"), "runs/nested")
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from arner_jax.config import RunConfig
from arner_jax.data import files
from arner_jax.runs import run_folder
from arner_jax.runs.checkpoints import complete_steps
from arner_jax.system import distributed, host_memory
from arner_jax.train import runtime
from arner_jax.train.loop import Trainer, open_program_store
from arner_jax.train.prepare import agree_across_processes, check_inputs, prepare

log = logging.getLogger("arner_jax")


def train_and_evaluate(config: RunConfig | None, output_path: str | Path, *, overwrite: bool = False,
                       resume: bool = False) -> dict:
    """Train `config` in `output_path` and return its metrics (also in output_path/metrics.json).

    A non-empty folder is refused (run_folder.RunFolderError) unless `overwrite` (a run folder
    only: start again) or `resume` (continue from the latest checkpoint with the run's saved
    settings; `config` may then be None). Every input is checked before anything is written.
    """
    run_dir = files.location(output_path)  # a local folder or gs://bucket/run
    run_folder.check_output(run_dir, overwrite, resume)
    changed: list[str] = []
    if resume:  # a resumed run is the saved run: its schedule and data must not change
        saved = run_folder.read_run(run_dir).config
        given, kept = ({}, {}) if config is None else (config.to_dict(), saved.to_dict())
        changed = [name for name in given if given[name] != kept.get(name)]
        config = saved
    elif config is None:
        raise ValueError("a new run needs its RunConfig (config=None only resumes)")
    else:
        config = config.with_absolute_inputs()
    # a resume with checkpoints can do without the pretrained weights; one without starts from them
    has_checkpoints = resume and bool(complete_steps(run_dir / run_folder.LATEST))
    inputs = check_inputs(config, run_dir if resume else None, encoder_required=not has_checkpoints)
    agree_across_processes(config, inputs)
    if not resume and distributed.is_primary():
        run_folder.create(run_dir, overwrite)
    distributed.barrier("run folder ready")
    runtime.setup_logging(run_dir, run_folder.LOG)
    try:
        if changed:
            log.warning("resuming with the run's saved settings; ignoring the new %s", ", ".join(changed))
        log.info("run folder %s (%s)", files.absolute(run_dir), "resumed" if resume else "new")
        log.info("settings: %s", json.dumps(config.to_dict(), ensure_ascii=False))
        log.info("%s", host_memory.describe())
        # the last such run's compiled programs load (and run once) in the background during the set-up
        programs = open_program_store(config, inputs.corpora)
        try:
            return Trainer(prepare(config, run_dir, inputs, resume=resume), programs=programs).fit(resume=resume)
        finally:
            if programs is not None:
                programs.close()
    finally:
        runtime.close_logging()
