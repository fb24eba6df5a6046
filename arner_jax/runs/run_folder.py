"""The run folder: its layout, config.json, refusing or creating a folder, and reading a run's settings.

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

A run folder may be local or on Cloud Storage (`gs://bucket/run`): paths go through
arner_jax.data.files.location, so the same code reads and writes both. Input paths in config.json
are absolute or URLs (a resume from another directory reads the same files); files inside the
folder are recorded relative to it (a moved folder still loads). Every file is written through
arner_jax.data.files (locally a temporary file and a rename, on Cloud Storage one upload, so a
reader never sees half of one); the Orbax checkpoints are arner_jax.runs.checkpoints'; loading a
trained run, read-only, is arner_jax.runs.loading's.
Format versions: arner_jax-run/2 is written; arner_jax-run/1 (before model families, with the
encoder's layers saved one by one instead of stacked for the scan) is read.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from arner_jax.config import RunConfig
from arner_jax.data import files
from arner_jax.data.files import atomic_write_json, location, remove_tree, storage_errors
from arner_jax.encoders import EncoderConfig
from arner_jax.errors import UserError
from arner_jax.models.base import ModelFamily, family_for

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


def mark(run_dir: Path) -> None:
    """Record that arner_jax made this folder (written first, before anything else in it)."""
    atomic_write_json(run_dir / MARKER, {"format": FORMAT})


def is_run_folder(path: str | Path) -> bool:
    """Made by arner_jax: it has the marker, or (format 1) a config.json of ours."""
    path = location(path)
    with storage_errors(path):
        if (path / MARKER).is_file():
            return True
    try:
        return json.loads(files.read_text(path / CONFIG)).get("format") in READABLE_FORMATS
    except (OSError, ValueError, AttributeError):
        return False


def check_output(run_dir: str | Path, overwrite: bool, resume: bool) -> None:
    """Refuse an --output_path that cannot be used as asked, before anything is written."""
    run_dir = location(run_dir)
    if overwrite and resume:
        raise RunFolderError("--overwrite and --resume exclude each other; give one")
    files.check_reachable(run_dir)
    with storage_errors(run_dir):
        if run_dir.exists() and not run_dir.is_dir():
            raise RunFolderError(f"{run_dir}: is a file; --output_path must be a folder")
        nonempty = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not is_run_folder(run_dir):
            raise RunFolderError(f"{run_dir}: nothing to resume (not a run folder of arner_jax); drop --resume "
                                 "to start a new run there, or pass the run's --output_path")
        if not files.is_file(run_dir / CONFIG):
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
    run_dir = location(run_dir)
    with storage_errors(run_dir):
        nonempty = run_dir.is_dir() and any(run_dir.iterdir())
    if overwrite and nonempty:
        if not is_run_folder(run_dir):  # checked before; checked again right before deleting
            raise RunFolderError(f"{run_dir}: not a run folder of arner_jax; not deleted")
        remove_tree(run_dir)
    files.make_folder(run_dir)
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

    save_tokenizer(run_dir, tokenizer)
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
    """Inside the run folder: relative to it; elsewhere: absolute (or the URL)."""
    folder, path = files.absolute(run_dir).rstrip("/") + "/", files.absolute(path)
    return path[len(folder):] if path.startswith(folder) else path


def data_path(run_dir: Path, recorded: str) -> Path:
    """A data file config.json records: relative to the run folder, or absolute, or a URL."""
    if files.is_url(recorded) or Path(recorded).is_absolute():
        return location(recorded)
    return location(run_dir) / recorded


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
    run_dir = location(run_dir)
    path = run_dir / CONFIG
    if not files.is_file(path):
        raise RunFolderError(f"{run_dir}: not a run folder of arner_jax (no {CONFIG}); pass the --output_path "
                             "of a training run")
    try:
        raw = json.loads(files.read_text(path))
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
    labels_json = json.loads(files.read_text(vocab)) if files.is_file(vocab) else raw.get("span")
    if labels_json is None:
        raise RunFolderError(f"{run_dir}: no {VOCAB}; the run folder is incomplete")
    data = {split: data_path(run_dir, p) for split, p in raw.get("data", {}).items()}
    return RunRecord(run_dir, config, family, EncoderConfig.from_dict(raw["encoder"]),
                     family.labels_from_json(labels_json), data, fmt)


def save_tokenizer(run_dir: Path, tokenizer: Any) -> None:
    with files.staged(location(run_dir) / TOKENIZER) as folder:
        tokenizer.save_pretrained(str(folder))


def load_tokenizer(run_dir: Path, family: ModelFamily):
    from transformers import AutoTokenizer

    with files.local_copy(location(run_dir) / TOKENIZER) as folder:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    family.prepare_tokenizer(tokenizer)
    return tokenizer
