"""The settings of a training run (`RunConfig`): every field, its default, its help and its check.

Owns: what a run can be told, with the shared-task system's defaults (AdamW lr 2e-5, weight
decay 0.001, linear decay, clipping at 1.0, batch 16, 15 epochs, seed 3407, patience 5, the kept
model the one with the lowest validation loss, the unified loss with variance penalty 5).
Field names are the command-line flags (the reference's names kept: --output_path is the
CLI's, the rest are here); each field's help and choices are written once, in its metadata,
and the CLI builds its flags from them. Every value is checked when a RunConfig is made, so a
bad flag fails before anything is created, with a `ConfigError` that names the flag.

Settings that only one model family reads are not RunConfig fields: each family declares them as a
`FamilyOptions` dataclass (fields made with `option`, the same help/choices metadata), and a
RunConfig carries its kind's as `config.options`. The flags stay one flat namespace
(`RunConfig(kind="nested", loss="ce")`, `--loss ce`, config.json's "run"): a name that is neither a
RunConfig field nor an option of the kind's family is refused, naming the flag.
No JAX here: readers, the CLI and the notebooks import this module cheaply (the built-in families'
options live in modules without JAX: `arner_jax.models.base.options_type`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from arner_jax.errors import URL_REFUSED, ConfigError, is_url, storage_url_problem
from arner_jax.models.base import FamilyOptions, kinds, options_type

# A from-scratch encoder needs a far larger step than fine-tuning a pretrained one (2e-5).
SCRATCH_LR = 5e-4
# AdamW's fixed values (not flags): torch.optim.AdamW's defaults, as the reference trains (SPEC 5)
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
# The encoder's choices (arner_jax.encoders.model: ATTENTION_IMPLEMENTATIONS, REMAT_POLICIES), written
# here too so that this module imports no JAX; tests/unit/test_config.py checks they agree.
ATTENTION = ("auto", "einsum", "xla", "cudnn")
REMAT = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")


def _field(default: Any, help: str, choices: tuple | None = None, **more: Any):
    metadata = {"help": help, "choices": choices, **more}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(init=False)
class RunConfig:
    """The settings of a training run. Field names are the CLI flags; `options` holds the settings of the
    kind's model family (FamilyOptions), given as flags of their own too: `RunConfig(kind="span_flat",
    marker_max_length=16)`."""

    # ------------------------------------------------------------------ model kind and data
    kind: str = _field("nested", "nested: one head per type; flat: one head over flat tags; mtn: per-type heads "
                       "on flat data; span_flat / span_nested: SpanMarker")
    train_path: str | None = _field(None, "training file (Wojood format); with --val_path and --test_path")
    val_path: str | None = _field(None, "validation file")
    test_path: str | None = _field(None, "test file")
    dataset: str | None = _field(None, "a `datasets` hub name (wikiann:ar) or a saved `datasets` folder, instead "
                                 "of the data paths")
    synthetic: bool = _field(False, "train on the offline synthetic corpus (tests, smoke runs) instead of the "
                             "Wojood sample shipped with arner_jax")
    synthetic_sizes: tuple[int, int, int] = _field((2000, 300, 500), "train/val/test sentences of the synthetic "
                                                   "corpus")
    tag_scheme: str = _field("iob2", "iob2: Wojood files, strictly; any: also IOB1, BIOES and BILOU tags "
                             "(converted to IOB2)", ("iob2", "any"))
    # ------------------------------------------------------------------ encoder
    bert_model: str | None = _field(None, "Hugging Face id or folder of the encoder to fine-tune (default: a small "
                                    "encoder trained from scratch)")
    max_length: int = _field(512, "subword tokens per window ([CLS] and [SEP] included); longer sentences are "
                             "split into overlapping windows (--recipe um6p: cut there, as the reference cuts at "
                             "512; span models: SpanMarker's model_max_length)")
    dropout: float = _field(0.1, "dropout before the heads")
    dtype: str = _field("float32", "compute dtype (parameters and optimizer stay float32)", ("float32", "bfloat16"))
    attention: str = _field("auto", "attention implementation: auto keeps BERT's attention dropout in training "
                            "(einsum) and uses jax.nn.dot_product_attention otherwise (cuDNN flash attention on "
                            "GPU in bfloat16); einsum, xla, cudnn force one (only einsum has attention dropout)",
                            ATTENTION)
    remat: str = _field("none", "recompute encoder activations in the backward pass to save memory: full (keep "
                        "each layer's input), dots_saveable (keep matmul outputs), dots_with_no_batch_dims_saveable "
                        "(keep the dense projections)", REMAT)
    scratch_vocab_size: int = _field(4000, "WordPiece vocabulary of the from-scratch encoder")
    scratch_hidden_size: int = _field(128, "hidden size of the from-scratch encoder")
    scratch_layers: int = _field(2, "layers of the from-scratch encoder")
    scratch_heads: int = _field(2, "attention heads of the from-scratch encoder")
    # ------------------------------------------------------------------ optimizer (SPEC 5)
    lr: float | None = _field(None, "peak learning rate (default: the model family's fine-tuning rate with "
                              "--bert_model, 5e-4 from scratch)")
    weight_decay: float = _field(0.001, "AdamW weight decay (not on biases and LayerNorm scales)")
    warmup_ratio: float = _field(0.0, "fraction of the updates spent warming the learning rate up from 0")
    clip_norm: float = _field(1.0, "global gradient-norm clipping (0: off)")
    grad_accum: int = _field(1, "micro-batches of --batch_size rows per update; the update equals that of the "
                             "whole batch, computed a micro-batch at a time (less memory)")
    # ------------------------------------------------------------------ loop
    batch_size: int = _field(16, "rows per micro-batch, split evenly over all devices (an update takes "
                             "--grad_accum of them)")
    eval_batch_size: int | None = _field(None, "evaluation batch size (default: --batch_size)")
    max_epochs: int = _field(15, "epochs at most")
    patience: int = _field(5, "stop after this many epochs without improvement")
    select_by: str = _field("loss", "keep the model with the lowest validation loss (the reference) or the highest "
                            "validation F1", ("loss", "f1"))
    seed: int = _field(3407, "seed of initialization, data order and dropout")
    parallel: str = _field("pmap", "data parallelism: jax.pmap, or jit of shard_map over a mesh",
                           ("pmap", "shard_map"))
    checkpoint_every: int = _field(0, "also save the resumable state every N steps (0: after each epoch only)")
    log_every: int = _field(20, "log the training loss every N steps")
    # ------------------------------------------------------------------ the family's own settings
    options: FamilyOptions = _field(None, "the model family's own settings (FamilyOptions of --kind)")

    def __init__(self, options: FamilyOptions | dict | None = None, **settings: Any):
        for f in settings_fields():
            value = settings.pop(f.name) if f.name in settings else (
                f.default_factory() if f.default is dataclasses.MISSING else f.default)
            setattr(self, f.name, value)
        kind_options = _options_type(self.kind)
        if isinstance(options, FamilyOptions):
            if type(options) is not kind_options:
                raise ConfigError(f"--kind {self.kind}: its settings are {kind_options.__name__}, not "
                                  f"{type(options).__name__}")
            options = options.to_dict()
        names = {f.name for f in dataclasses.fields(kind_options)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigError(f"--{unknown[0]}: not a setting of --kind {self.kind}; its own settings are "
                              f"{', '.join('--' + n for n in sorted(names)) or 'none'}")
        self.options = kind_options(**{**(options or {}), **settings})
        self.__post_init__()

    def __post_init__(self):
        self.synthetic_sizes = tuple(int(n) for n in self.synthetic_sizes)
        for f in settings_fields():
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ConfigError(f"--{f.name} {getattr(self, f.name)!r}: must be one of {', '.join(choices)}")
        positive = ("max_length", "scratch_vocab_size", "scratch_hidden_size", "scratch_layers", "scratch_heads",
                    "grad_accum", "batch_size", "max_epochs", "patience",
                    "log_every")
        for name in positive:
            _check(name, getattr(self, name), isinstance(getattr(self, name), int) and getattr(self, name) > 0,
                   "a positive whole number")
        _check("max_length", self.max_length, self.max_length >= 3, "at least 3 ([CLS], one subword, [SEP])")
        _check("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 0, "0 or a positive number")
        _check("eval_batch_size", self.eval_batch_size, self.eval_batch_size is None or self.eval_batch_size > 0,
               "a positive whole number")
        _check("synthetic_sizes", self.synthetic_sizes, len(self.synthetic_sizes) == 3
               and all(n > 0 for n in self.synthetic_sizes), "three positive numbers (train val test)")
        _check("lr", self.lr, self.lr is None or (_finite(self.lr) and self.lr > 0), "a positive number")
        for name, low, high, what in (("dropout", 0.0, 1.0, "in [0, 1)"), ("warmup_ratio", 0.0, 1.0, "in [0, 1)")):
            value = getattr(self, name)
            _check(name, value, _finite(value) and low <= value < high, what)
        for name in ("weight_decay", "clip_norm"):
            _check(name, getattr(self, name), _finite(getattr(self, name)) and getattr(self, name) >= 0,
                   "0 or a positive number")
        for name in ("bert_model", "dataset"):  # the data files may be gs:// URLs (arner_jax.data.files)
            if is_url(getattr(self, name)):
                raise ConfigError(f"--{name} {getattr(self, name)}: {URL_REFUSED}")
        for name in ("train_path", "val_path", "test_path"):
            if storage_url_problem(getattr(self, name)):
                raise ConfigError(f"--{name} {getattr(self, name)}: {storage_url_problem(getattr(self, name))}")
        paths = (self.train_path, self.val_path, self.test_path)
        if any(paths) and not all(paths):
            missing = [f"--{n}" for n, p in zip(("train_path", "val_path", "test_path"), paths) if not p]
            raise ConfigError(f"{' '.join(missing)}: missing; give all three data paths, or none")
        if sum((any(paths), bool(self.dataset), self.synthetic)) > 1:
            raise ConfigError("--dataset, --synthetic and the data paths exclude each other; give one of them")
        self.options.check(self)

    # ------------------------------------------------------------------ derived settings
    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size

    def learning_rate(self, fine_tune_lr: float) -> float:
        """The peak learning rate: --lr, else the family's fine-tuning rate, else SCRATCH_LR."""
        if self.lr is not None:
            return self.lr
        return fine_tune_lr if self.bert_model else SCRATCH_LR

    def with_absolute_inputs(self) -> RunConfig:
        """Input paths made absolute, so that a resume from another working directory reads the same files.

        Hub ids stay as they are; an encoder or `datasets` folder that exists here becomes absolute.
        """
        from pathlib import Path

        changes = {name: getattr(self, name) if is_url(getattr(self, name))
                   else str(Path(getattr(self, name)).expanduser().resolve())
                   for name in ("train_path", "val_path", "test_path") if getattr(self, name)}
        for name in ("bert_model", "dataset"):
            value = getattr(self, name)
            if value and Path(value).expanduser().is_dir():
                changes[name] = str(Path(value).expanduser().resolve())
        return self.replace(**changes)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` (settings and options by name); another family's kind starts from that
        family's default options."""
        settings = self.to_dict()
        if "kind" in changes and type(self.options) is not _options_type(changes["kind"]):
            settings = {f.name: settings[f.name] for f in settings_fields()}
        return RunConfig(**{**settings, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its flag name, the family's options among them (config.json's "run")."""
        return {**{f.name: getattr(self, f.name) for f in settings_fields()}, **self.options.to_dict()}

    def get(self, name: str) -> Any:
        """A setting or family option by its flag name."""
        return getattr(self.options if name in self.options.__dataclass_fields__ else self, name)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """A RunConfig from a dict (keys that are neither settings nor the kind's options, e.g. of a newer
        version or another family, are ignored)."""
        known = {f.name for f in settings_fields()}
        kind = raw.get("kind", cls.__dataclass_fields__["kind"].default)
        known |= {f.name for f in dataclasses.fields(_options_type(kind))} if isinstance(kind, str) else set()
        return cls(**{k: v for k, v in raw.items() if k in known})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"--{name} {value!r}: must be {what}")


def settings_fields() -> tuple[dataclasses.Field, ...]:
    """RunConfig's settings (every field but `options`): the flags every kind has."""
    return tuple(f for f in dataclasses.fields(RunConfig) if f.name != "options")


def _options_type(kind: str) -> type[FamilyOptions]:
    """The kind's FamilyOptions, checked not to take a RunConfig setting's name."""
    if kind not in kinds():
        raise ConfigError(f"--kind {kind!r}: must be one of {', '.join(kinds())}")
    found = options_type(kind)
    clash = sorted({f.name for f in dataclasses.fields(found)} & {f.name for f in settings_fields()})
    if clash:
        raise ValueError(f"{found.__name__} (the options of kind {kind!r}): {clash} are RunConfig settings already; "
                         "rename them")
    return found

