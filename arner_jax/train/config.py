"""What a run is: its settings (RunConfig), and the run folder's layout and config.json.

Owns: every setting of a training run with its default (SPEC 5 for the shared-task system),
the run folder's file names, and `config.json`, which holds everything needed to rebuild the
model without the training code (model kind, encoder config, head shape, file names).

Run folder (`--output_path`), like the reference's:
  config.json          settings, encoder config, head shape, versions
  vocab.json           label vocabulary (types, classes per type, flat tags)
  tokenizer/           the encoder's tokenizer (Hugging Face files)
  data/                the synthetic corpus, when no data files were given
  checkpoints/latest/  the last state, to resume;  checkpoints/best/  the kept model
  predictions_val.txt, predictions_test.txt   the kept model's predictions (SPEC 6 layout)
  metrics.json         val/test metrics of the kept model, per-epoch history, timings
  train.log            the log;  tensorboard/  TensorBoard events
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

FORMAT = "arner_jax-run/1"
CONFIG, VOCAB, TOKENIZER, METRICS, LOG, TENSORBOARD, DATA = (
    "config.json", "vocab.json", "tokenizer", "metrics.json", "train.log", "tensorboard", "data")
SCRATCH_LR = 5e-4  # a from-scratch encoder needs a far larger step than fine-tuning (2e-5)
TAGGER_KINDS = ("nested", "flat", "mtn")
SPAN_KINDS = ("span_flat", "span_nested")
ALL_KINDS = TAGGER_KINDS + SPAN_KINDS
# Settings that mean nothing to the other family (the CLI of each experiment leaves them out).
TAGGER_ONLY = ("reference_labels", "loss", "var_penalty", "head_reduction")
SPAN_ONLY = ("marker_max_length", "entity_max_length", "threshold")


def predictions_file(split: str) -> str:
    return f"predictions_{split}.txt"


@dataclasses.dataclass
class RunConfig:
    """The settings of a training run. Field names are the CLI flags (reference names kept)."""

    kind: str = "nested"  # nested | flat | mtn (token taggers) | span_flat | span_nested (SpanMarker)
    train_path: str | None = None  # None (all three): the synthetic corpus
    val_path: str | None = None
    test_path: str | None = None
    dataset: str | None = None  # a `datasets` hub name ("wikiann:ar") or a saved `datasets` folder
    tag_scheme: str = "iob2"  # iob2: Wojood's format, strictly; any: also IOB1/BIOES/BILOU, read as IOB2
    bert_model: str | None = None  # Hugging Face id or folder; None: a small encoder from scratch
    max_length: int = 512  # subword tokens per window, [CLS] and [SEP] included
    reference_labels: bool = False  # train on every subword/[CLS]/[SEP]/pad as O, no attention mask
    # model
    dropout: float = 0.1
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    scratch_vocab_size: int = 4000
    scratch_hidden_size: int = 128
    scratch_layers: int = 2
    scratch_heads: int = 2
    # span models (SPEC 7); max_length is SpanMarker's model_max_length M
    marker_max_length: int = 128  # marker pairs (spans) per row
    entity_max_length: int = 8  # longest candidate span, in words
    threshold: float = 0.0  # decoding: drop entities scoring lower
    # loss (SPEC 4)
    loss: str = "unified"
    var_penalty: float = 5.0
    head_reduction: str = "sum"
    # optimizer (SPEC 5)
    lr: float | None = None  # None: 2e-5 fine-tuning, SCRATCH_LR from scratch
    weight_decay: float = 0.001
    warmup_ratio: float = 0.0
    clip_norm: float = 1.0
    grad_accum: int = 1
    # loop
    batch_size: int = 16
    eval_batch_size: int | None = None  # None: batch_size
    max_epochs: int = 15
    patience: int = 5
    select_by: str = "loss"  # loss (the reference: lowest validation loss) | f1
    seed: int = 3407
    parallel: str = "pmap"  # pmap | shard_map
    checkpoint_every: int = 0  # also save `latest` every N steps (0: at the end of each epoch only)
    log_every: int = 20
    synthetic_sizes: tuple[int, int, int] = (2000, 300, 500)

    def __post_init__(self):
        checks = [
            (self.kind in ALL_KINDS, f"kind must be one of {ALL_KINDS}"),
            (self.tag_scheme in ("iob2", "any"), "tag_scheme must be iob2 or any"),
            (self.marker_max_length > 0 and self.entity_max_length > 0, "span lengths must be positive"),
            (self.dtype in ("float32", "bfloat16"), "dtype must be float32 or bfloat16"),
            (self.select_by in ("loss", "f1"), "select_by must be loss or f1"),
            (self.batch_size > 0 and self.max_epochs > 0 and self.grad_accum > 0, "sizes must be positive"),
            (self.patience > 0, "patience must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        paths = (self.train_path, self.val_path, self.test_path)
        if any(paths) and not all(paths):
            raise ValueError("give all of --train_path --val_path --test_path, or none (the synthetic corpus)")
        if any(paths) and self.dataset:
            raise ValueError("give either --dataset or the three data paths, not both")
        self.synthetic_sizes = tuple(self.synthetic_sizes)

    @property
    def is_span(self) -> bool:
        return self.kind in SPAN_KINDS

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if not self.bert_model:
            return SCRATCH_LR
        return 1e-5 if self.is_span else 2e-5  # SpanMarker's WikiANN setting; the Wojood reference

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def write_run_config(run_dir: Path, config: RunConfig, encoder: dict, heads: tuple[int, int],
                     extra: dict | None = None) -> None:
    import flax
    import jax
    import optax
    import transformers

    payload = {
        "format": FORMAT,
        "kind": config.kind,
        "run": dataclasses.asdict(config),
        "encoder": encoder,
        "heads": {"num_heads": heads[0], "num_classes": heads[1]},
        "files": {"vocab": VOCAB, "tokenizer": TOKENIZER, "checkpoints": "checkpoints/best"},
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                     "transformers": transformers.__version__},
        **(extra or {}),
    }
    atomic_write_text(run_dir / CONFIG, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


def read_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder of arner_jax (no {CONFIG}); pass the "
                                "--output_path of a training run.")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: format {raw.get('format')!r} is not {FORMAT!r}")
    return raw


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
