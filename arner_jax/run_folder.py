"""The run folder: its layout, config.json, atomic writes, and loading a trained run read-only.

Owns the one place that knows what a run folder (`--output_path`) holds:
  .arner_jax_run       marker: this folder was made by arner_jax (`--overwrite` deletes nothing else)
  config.json          format version, settings (RunConfig), encoder config, label space summary
  vocab.json           the model family's label space
  tokenizer/           the encoder's tokenizer (Hugging Face files)
  data/                corpus files written into the run (synthetic corpus, a `datasets` corpus)
  checkpoints/latest/  Orbax: the resumable train state (the newest two steps)
  checkpoints/best/    Orbax: the kept model's parameters
  predictions_val.txt, predictions_test.txt, metrics.json, train.log, tensorboard/
  eval/                outputs of `python -m arner_jax.evaluate` (one subfolder per file)

Input paths in config.json are absolute (a resume from another directory reads the same
files); files inside the folder are recorded relative to it (a moved folder still loads).
Every file is written through a temporary file and a rename, so a reader never sees half of
one. Loading is read-only: `load_run` never creates, deletes or cleans anything in the folder,
so predicting or evaluating while the run trains cannot disturb it.
Format versions: arner_jax-run/2 is written; arner_jax-run/1 (before model families, with the
encoder's layers saved one by one instead of stacked for the scan) is read.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from arner_jax.config import RunConfig
from arner_jax.encoders import EncoderConfig, stack_layer_params
from arner_jax.errors import UserError
from arner_jax.families import ModelFamily, family_for

log = logging.getLogger("arner_jax")
FORMAT = "arner_jax-run/2"
READABLE_FORMATS = ("arner_jax-run/1", FORMAT)
MARKER, CONFIG, VOCAB, TOKENIZER, METRICS = ".arner_jax_run", "config.json", "vocab.json", "tokenizer", "metrics.json"
LOG, TENSORBOARD, DATA, EVAL = "train.log", "tensorboard", "data", "eval"
CHECKPOINTS = "checkpoints"
LATEST, BEST = f"{CHECKPOINTS}/latest", f"{CHECKPOINTS}/best"
SPLITS = ("train", "val", "test")


class RunFolderError(UserError):
    """A run folder that cannot be used as asked; the message says which folder and what to do."""


def predictions_file(split: str) -> str:
    return f"predictions_{split}.txt"


# ---------------------------------------------------------------------- writing
def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


def mark(run_dir: Path) -> None:
    """Record that arner_jax made this folder (written first, before anything else in it)."""
    atomic_write_json(run_dir / MARKER, {"format": FORMAT})


def is_run_folder(path: str | Path) -> bool:
    """Made by arner_jax: it has the marker, or (format 1) a config.json of ours."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        return json.loads((path / CONFIG).read_text(encoding="utf-8")).get("format") in READABLE_FORMATS
    except (OSError, ValueError, AttributeError):
        return False


def check_output(run_dir: str | Path, overwrite: bool, resume: bool) -> None:
    """Refuse an --output_path that cannot be used as asked, before anything is written."""
    run_dir = Path(run_dir)
    if overwrite and resume:
        raise RunFolderError("--overwrite and --resume exclude each other; give one")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file; --output_path must be a folder")
    nonempty = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not is_run_folder(run_dir):
            raise RunFolderError(f"{run_dir}: nothing to resume (not a run folder of arner_jax); drop --resume "
                                 "to start a new run there, or pass the run's --output_path")
        if not (run_dir / CONFIG).is_file():
            raise RunFolderError(f"{run_dir}: the run stopped before it saved its settings; start it again with "
                                 "--overwrite")
    elif nonempty and not overwrite:
        raise RunFolderError(f"{run_dir}: the folder is not empty; pass --resume to continue its run, --overwrite "
                             "to delete it and start again, or another --output_path")
    elif nonempty and not is_run_folder(run_dir):
        raise RunFolderError(f"{run_dir}: not a run folder of arner_jax, so --overwrite will not delete it; "
                             "choose another --output_path")


def create(run_dir: str | Path, overwrite: bool) -> Path:
    """Make the folder of a new run (after `check_output`): an overwritten run folder is deleted first."""
    run_dir = Path(run_dir)
    if overwrite and run_dir.is_dir() and any(run_dir.iterdir()):
        if not is_run_folder(run_dir):  # checked before; checked again right before deleting
            raise RunFolderError(f"{run_dir}: not a run folder of arner_jax; not deleted")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mark(run_dir)
    return run_dir


def write_run(run_dir: Path, config: RunConfig, family: ModelFamily, labels: Any, encoder: EncoderConfig,
              tokenizer: Any, data: dict[str, Path]) -> None:
    """config.json, vocab.json and the tokenizer of a new run."""
    import platform

    import flax
    import jax
    import optax
    import tokenizers
    import transformers

    from arner_jax import __version__

    tokenizer.save_pretrained(str(run_dir / TOKENIZER))
    atomic_write_json(run_dir / VOCAB, family.labels_to_json(labels))
    payload = {
        "format": FORMAT,
        "kind": config.kind,
        "family": family.name,
        "run": config.to_dict(),
        "encoder": encoder.to_dict(),
        "data": {split: _relative(run_dir, path) for split, path in data.items()},
        "files": {"vocab": VOCAB, "tokenizer": TOKENIZER, "checkpoints": BEST},
        "versions": {"arner_jax": __version__, "jax": jax.__version__, "flax": flax.__version__,
                     "optax": optax.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "python": platform.python_version()},
    }
    atomic_write_json(run_dir / CONFIG, payload)


def _relative(run_dir: Path, path: Path) -> str:
    """Inside the run folder: relative to it; elsewhere: absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- reading
@dataclasses.dataclass
class RunRecord:
    """What config.json and vocab.json of a run folder say."""

    run_dir: Path
    config: RunConfig
    family: ModelFamily
    encoder: EncoderConfig
    labels: Any
    data: dict[str, Path]  # the data files the run was trained and scored on
    format: str


def read_run(run_dir: str | Path) -> RunRecord:
    """A run folder's settings (both formats); RunFolderError when it is not one."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder of arner_jax (no {CONFIG}); pass the --output_path "
                             "of a training run")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RunFolderError(f"{path}: not valid JSON ({err}); the run folder is damaged") from None
    fmt = raw.get("format")
    if fmt not in READABLE_FORMATS:
        raise RunFolderError(f"{path}: format {fmt!r} is not one this version reads ({', '.join(READABLE_FORMATS)})")
    settings = dict(raw["run"])
    paths = [settings.get(k) for k in ("train_path", "val_path", "test_path")]
    if fmt == READABLE_FORMATS[0] and not any(paths) and not settings.get("dataset"):
        settings["synthetic"] = True  # format 1 trained on the synthetic corpus when given no data
    config = RunConfig.from_dict(settings)
    family = family_for(config.kind)
    vocab = run_dir / VOCAB
    # format 1 span runs kept their labels in config.json's "span" section
    labels_json = json.loads(vocab.read_text(encoding="utf-8")) if vocab.is_file() else raw.get("span")
    if labels_json is None:
        raise RunFolderError(f"{run_dir}: no {VOCAB}; the run folder is incomplete")
    data = {split: run_dir / p for split, p in raw.get("data", {}).items()}  # absolute paths stay absolute
    return RunRecord(run_dir, config, family, EncoderConfig.from_dict(raw["encoder"]),
                     family.labels_from_json(labels_json), data, fmt)


def checkpoint_manager(folder: Path, keep: int):
    """The Orbax manager a writer of `folder` uses (the trainer; importers writing a kept model).

    cleanup_tmp_directories: a save cut short by a kill leaves a temporary folder, which the
    writer drops when it starts; readers use no manager (see `read_checkpoint`).
    """
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(folder.absolute(), options=options, item_names=("state", "meta"))


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
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.name.isdigit() and (p / "state").is_dir() and (p / "_CHECKPOINT_METADATA").is_file())


def read_checkpoint(step_dir: Path, template: Any) -> tuple[Any, dict]:
    """One checkpoint's state (shaped like `template`, as numpy) and its JSON metadata; read-only."""
    import jax
    import orbax.checkpoint as ocp

    meta = json.loads((step_dir / "meta" / "metadata").read_text(encoding="utf-8"))
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(step_dir.absolute() / "state", template)
    return jax.tree.map(np.asarray, jax.device_get(state)), meta


@dataclasses.dataclass
class LoadedRun:
    """A trained run's kept model, ready for inference (no training data)."""

    record: RunRecord
    tokenizer: Any
    encoder: EncoderConfig
    model: Any  # the family's Flax module
    params: dict  # float32 numpy
    max_length: int

    @property
    def config(self) -> RunConfig:
        return self.record.config

    @property
    def family(self) -> ModelFamily:
        return self.record.family

    @property
    def labels(self) -> Any:
        return self.record.labels


def load_tokenizer(run_dir: Path, family: ModelFamily):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER))
    family.prepare_tokenizer(tokenizer)
    return tokenizer


def init_params(family: ModelFamily, model: Any, labels: Any, seed: int) -> dict:
    """The model's parameters initialised from `seed` (random encoder, random heads)."""
    import jax

    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    return jax.jit(model.init)(key, **family.example_batch(labels))["params"]


def read_kept_params(record: RunRecord, template: Any, attempts: int = 5) -> dict:
    """The newest kept model's parameters.

    A run that is training saves each new best model and then deletes the previous one, so a reader
    may see its checkpoint vanish midway. When a read fails and the kept models changed meanwhile,
    the newest is read instead; a read that fails on an unchanged folder is a real fault and raised.
    """
    best = record.run_dir / BEST
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


def load_run(run_dir: str | Path, dtype: str | None = None) -> LoadedRun:
    """The kept (best) model of a run folder with its tokenizer and labels; reads only."""
    import jax

    record = read_run(run_dir)
    config = record.config if dtype is None else record.config.replace(dtype=dtype)
    tokenizer = load_tokenizer(record.run_dir, record.family)
    model = record.family.build(config, record.encoder, record.labels, tokenizer)
    template = jax.eval_shape(lambda: init_params(record.family, model, record.labels, 0))
    params = read_kept_params(record, template)
    record.config = config
    return LoadedRun(record, tokenizer, record.encoder, model, params, record.family.max_length(config, record.encoder))
