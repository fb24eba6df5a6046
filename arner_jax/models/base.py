"""Model families: the interface each one implements, and the registry from model kind to family.

Owns: `ModelFamily` (what the trainer, the parallel steps, inference, evaluation, prediction,
conversion and the CLI may ask of a model family), `FamilyOptions` (a family's own settings, which
a RunConfig carries), `EncodedSplit` (sentences made ready for a family's model), `Objective` (what
the data-parallel steps need), and the registry. Nothing
outside a family module tests a model kind: it asks the family.

A family is registered for one or more kinds. The built-in families are named here by module
(the token taggers in `arner_jax.models.tagger.family`, SpanMarker in `arner_jax.models.span_marker.family`) and
imported on first use, so that this module depends on none of them; other families register
with `register_family`.

Adding a family: subclass `ModelFamily` and `EncodedSplit`, give the model an `Objective`, its own
settings a `FamilyOptions` dataclass (`Options`; flags and config.json entries of their own), its
export formats an `export` method, and `register_family(MyFamily())`; the trainer, `NERTagger`,
`evaluate`, `convert` and the CLI then handle its kinds (tests/integration/test_families.py trains,
reloads, predicts and exports with a toy family defined inside the test).
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from arner_jax.errors import ConfigError

# (label, first word, end word exclusive, score) of a decoded entity
Entity = tuple[str, int, int, float]
# sentence -> word -> Wojood tags (the non-O tags, outermost first, or ["O"])
WordTags = list[list[list[str]]]

_BUILTIN = {
    **dict.fromkeys(("nested", "flat", "mtn"), "arner_jax.models.tagger.family"),
    **dict.fromkeys(("span_flat", "span_nested"), "arner_jax.models.span_marker.family"),
}
# Where the built-in families' options live (modules without JAX, so that a RunConfig is cheap to make)
_BUILTIN_OPTIONS = {
    **dict.fromkeys(("nested", "flat", "mtn"), "arner_jax.models.tagger.options:TaggerOptions"),
    **dict.fromkeys(("span_flat", "span_nested"), "arner_jax.models.span_marker.options:SpanOptions"),
}
_REGISTRY: dict[str, ModelFamily] = {}


# ---------------------------------------------------------------------- a family's own settings
def option(default: Any, help: str, choices: tuple | None = None, *, minimum: float | None = None,
           maximum: float | None = None):
    """A field of a family's `FamilyOptions`: its default, help (the flag's), and what values it takes
    (`choices`, or a number of the default's type within [minimum, maximum])."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class FamilyOptions:
    """Settings one model family reads, carried by `RunConfig.options` (subclass as a dataclass whose
    fields are made with `option`). Each value is checked when made; `check` sees the whole run."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") is not None:
                if value not in meta["choices"]:
                    raise ConfigError(f"--{f.name} {value!r}: must be one of {', '.join(meta['choices'])}")
                continue
            low, high = meta.get("minimum"), meta.get("maximum")
            if low is None and high is None:
                continue
            whole = isinstance(f.default, int) and not isinstance(f.default, bool)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and (isinstance(value, int) if whole else math.isfinite(value))
            ok = ok and (low is None or value >= low) and (high is None or value <= high)
            if not ok:
                raise ConfigError(f"--{f.name} {value!r}: must be {_range_text(whole, low, high)}")

    def check(self, config: Any) -> None:
        """Checks that need the rest of the run's settings (a RunConfig: e.g. its kind); raise ConfigError."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NoOptions(FamilyOptions):
    """A family without settings of its own."""


def _range_text(whole: bool, low: float | None, high: float | None) -> str:
    if whole and low == 1 and high is None:
        return "a positive whole number"
    if low == 0 and high is None:
        return "0 or a positive number"
    kind = "a whole number" if whole else "a number"
    if high is None:
        return f"{kind} of at least {low:g}"
    return f"in [{low:g}, {high:g}]" if low is not None else f"{kind} of at most {high:g}"


class Objective(Protocol):
    """What the data-parallel steps (arner_jax.models.parallel.StepBodies) need of a model.

    `statistics` returns additive loss statistics of a shard of the batch (a dict of arrays with
    "n", the number of positions that count; summed over devices by the caller) and the model's
    outputs; `loss` turns summed statistics into (scalar loss, details); `predict` turns outputs
    into the per-row predictions returned to the host. `batch_keys` are the batch entries the
    device needs (the rest of a batch stays on the host); every batch has "label_mask".
    """

    batch_keys: tuple[str, ...]

    def statistics(self, params: Any, batch: dict, rngs: dict | None, deterministic: bool,
                   rank_offset: Any) -> tuple[dict, Any]: ...

    def loss(self, stats: dict) -> tuple[Any, dict]: ...

    def predict(self, outputs: Any) -> dict: ...


@dataclasses.dataclass(frozen=True)
class BatchShare:
    """How a training batch is spread: over `processes` processes, each feeding the rows `local` of
    the plan's `rows`-row batches, and within a process over its devices and micro-batches, so that
    a process's rows must come in multiples of `quantum` (its devices x gradient accumulation)."""

    local: slice
    rows: int  # every process's rows in a batch of the plan: update rows / processes
    processes: int = 1
    quantum: int = 1

    @property
    def process(self) -> int:
        return self.local.start // self.rows if self.rows else 0


class EncodedSplit(abc.ABC):
    """Sentences made ready for one family's model: items (encoder rows) of known token length.

    Items are what a batch row holds (a tagger's window of a sentence, a span model's row of
    candidate spans). Inference runs items in length buckets and hands back, per item, the
    row of each prediction array (`outputs[i] = {name: array}`); the split turns those into
    word tags and entities of its sentences.
    """

    def __init__(self, sentences: Sequence):
        self.sentences = list(sentences)  # arner_jax.data.wojood.Sentence (gold tags when labelled)

    @abc.abstractmethod
    def lengths(self) -> list[int]:
        """Tokens of each item (the length bucket it needs)."""

    @abc.abstractmethod
    def collate(self, indices: Sequence[int], rows: int, length: int) -> dict[str, np.ndarray]:
        """A batch of `rows` rows (items `indices`, then empty rows) padded to `length` tokens."""

    def collate_group(self, group: Sequence[int], local: slice, rows: int, length: int) -> dict[str, np.ndarray]:
        """This process's rows `group[local]` of the batch `group` (a split whose batches depend on the
        whole group, e.g. padded to its longest row, overrides this)."""
        return self.collate(list(group)[local], rows, length)

    def train_batch(self, group: Sequence[int], length: int, share: BatchShare) -> dict[str, np.ndarray]:
        """This process's part of the training batch `group` (a step of `train_plan`). By default its rows
        `group[share.local]` padded to `share.rows` rows of `length` tokens (`collate_group`); a split may lay
        the group out in other rows (fewer, a multiple of share.quantum, as many in every process) as long as
        the step's loss and gradient stay those of the group's items."""
        return self.collate_group(group, share.local, share.rows, length)

    # ------------------------------------------------------------------ batching
    def train_buckets(self, rows: int, max_length: int) -> tuple[int, ...]:
        """The lengths training batches of `rows` rows are padded to (fitted to the items' lengths)."""
        from arner_jax.data.batching import fit_buckets

        key = (rows, max_length)
        if getattr(self, "_buckets", (None, None))[0] != key:
            self._buckets = (key, fit_buckets(self.lengths(), rows, self.max_item_length(max_length)))
        return self._buckets[1]

    def train_plan(self, rows: int, seed: int, epoch: int, max_length: int) -> list[tuple[int, list[int]]]:
        """The epoch's training batches as (length, item indices): a pure function of (seed, epoch)."""
        from arner_jax.data.batching import train_batches

        return train_batches(self.lengths(), rows, seed, epoch, self.train_buckets(rows, max_length))

    def eval_plan(self, rows: int, max_length: int) -> list[tuple[int, list[int]]]:
        """Evaluation batches as (length, item indices): length-sorted, on the fixed evaluation ladder."""
        from arner_jax.data.batching import bucket_lengths, eval_batches

        return eval_batches(self.lengths(), rows, bucket_lengths(self.max_item_length(max_length)))

    def max_item_length(self, max_length: int) -> int:
        """The longest an item can be when the sentences were encoded with `max_length` (the largest
        length bucket). An item is a window of at most max_length tokens unless the family adds
        tokens of its own to a row (a span model's markers)."""
        return max_length

    @abc.abstractmethod
    def word_tags(self, outputs: Sequence[dict]) -> WordTags:
        """Each sentence's predicted Wojood word tags (what the scorer and predictions files read)."""

    @abc.abstractmethod
    def entities(self, outputs: Sequence[dict]) -> list[list[Entity]]:
        """Each sentence's predicted entities, outer before inner, in reading order."""

    def extra_predicted_entities(self, outputs: Sequence[dict]) -> dict[str, int]:
        """Predicted entities that the word tags cannot express, by type, for the scorer (none by default;
        the reference recipe's `<pad>` predictions, which its scorer counts)."""
        return {}

    def describe(self) -> str:
        """One line for the training log: what the sentences became."""
        return f"{len(self.sentences)} sentences, {len(self)} items"

    @staticmethod
    def tokens(batch: dict[str, np.ndarray]) -> int:
        """Real tokens in a batch (the throughput figure); families may count differently."""
        return int(np.asarray(batch["attention_mask"]).sum())

    def __len__(self) -> int:
        return len(self.lengths())


class ModelFamily(abc.ABC):
    """One family of models (the token taggers, SpanMarker, ...): everything kind-specific.

    `labels` is the family's label space (an object it defines, stored as JSON in the run
    folder's vocab.json); `model` is a Flax module built by `build`.
    """

    name: str = ""
    kinds: tuple[str, ...] = ()
    # the family's own settings, carried by RunConfig.options (flags of their own; the CLI shows them)
    Options: type[FamilyOptions] = NoOptions
    fine_tune_lr: float = 2e-5  # default peak learning rate when fine-tuning a pretrained encoder
    smoke_settings: dict = {}  # settings (options included) that presets' smoke variants shrink

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls.Options))

    # ------------------------------------------------------------------ export
    # What `python -m arner_jax.convert export --format FORMAT` can write of the family's runs (the
    # built-in formats also have commands of their own: to-pytorch, to-span-marker, to-um6p).
    export_formats: tuple[str, ...] = ()

    def export(self, run_dir: Any, format: str, output_path: Any, *, overwrite: bool = False,  # noqa: A002
               license: str | None = None, **options: Any) -> Any:
        """Write the kept model of the run folder `run_dir` in `format` (one of `export_formats`) to
        `output_path`; returns the path written. The family checks the output path (an export folder:
        arner_jax.runs.export_folder) and refuses what it cannot write, with a UserError. `license`: for
        the model card; `options`: the format's own flags."""
        raise NotImplementedError(f"the {self.name} family writes no export format")

    def verify_export(self, run_dir: Any, format: str, exported: Any, sentences: list[list[str]],  # noqa: A002
                      ours: Any, tolerance: float) -> tuple[bool, str]:
        """Compare an export with the run's kept model on `sentences` (word lists): (passed, one line
        saying what was compared and the largest difference). `ours`: the kept model loaded for
        inference with logits (arner_jax.predict.NERTagger), which the command builds."""
        raise NotImplementedError(f"the {self.name} family cannot check its {format} export")

    # ------------------------------------------------------------------ labels
    @abc.abstractmethod
    def label_space(self, config, corpora: Sequence) -> Any:
        """The label space of these corpora (all three splits, as the reference builds it)."""

    @abc.abstractmethod
    def labels_to_json(self, labels: Any) -> dict:
        ...

    @abc.abstractmethod
    def labels_from_json(self, data: dict) -> Any:
        ...

    @abc.abstractmethod
    def entity_types(self, labels: Any) -> list[str]:
        """The entity types the model predicts (scoring, per-type tables)."""

    def nested(self, config) -> bool:
        """Whether this kind predicts nested entities (and is scored per type layer, pooled)."""
        return False

    # ------------------------------------------------------------------ tokenizer, encoder, model
    def prepare_tokenizer(self, tokenizer: Any) -> None:  # noqa: B027 - optional, most families add nothing
        """Add what the family needs to a tokenizer (e.g. marker tokens); called before training and loading."""

    def encoder_config(self, encoder: Any, tokenizer: Any) -> Any:
        """The encoder config the model needs with this tokenizer (e.g. embeddings for added tokens)."""
        return encoder

    def max_length(self, config, encoder: Any) -> int:
        """Tokens per item the model reads."""
        return min(config.max_length, encoder.max_text_positions)

    @abc.abstractmethod
    def build(self, config, encoder: Any, labels: Any, tokenizer: Any) -> Any:
        """The Flax module (compute dtype, attention and remat from `config`)."""

    @abc.abstractmethod
    def example_batch(self, labels: Any) -> dict[str, np.ndarray]:
        """A one-row batch the module can be initialised with."""

    @abc.abstractmethod
    def objective(self, config, labels: Any, model: Any, with_logits: bool = False) -> Objective:
        """The training/evaluation objective; `with_logits` also returns raw logits per row."""

    def with_pretrained_encoder(self, params: dict, encoder_params: dict, encoder: Any) -> dict:
        """Initial parameters with a pretrained encoder's weights in place."""
        return {**params, "encoder": encoder_params}

    def with_pretrained_heads(self, params: dict, model_dir: Any, labels: Any) -> tuple[dict, str]:
        """Initial parameters with the heads of the pretrained folder `model_dir` where it holds this family's
        heads for these labels (a model of this family to train further), and a line for the log saying what
        was taken ("" when nothing: the heads stay the run's own)."""
        return params, ""

    # ------------------------------------------------------------------ data
    @abc.abstractmethod
    def encode(self, config, labels: Any, tokenizer: Any, sentences: Sequence, max_length: int,
               labelled: bool = True) -> EncodedSplit:
        """Sentences as items for the model (gold labels attached when `labelled`)."""

    def corpus_types(self, config, corpus: Any) -> set[str]:
        """The entity types of a corpus that this kind learns (all type layers by default)."""
        return set(corpus.types)

    def check_corpus(self, config, labels: Any, corpus: Any) -> None:
        """Refuse a corpus with entity types the model does not know (WojoodFormatError naming the line)."""
        from arner_jax.data.wojood import WojoodFormatError

        known = set(self.entity_types(labels))
        unknown = sorted(self.corpus_types(config, corpus) - known)
        if unknown:
            s = next(s for s in corpus.sentences if any(t[2:] in unknown for tags in s.tags for t in tags))
            line = next(s.first_line + i for i, tags in enumerate(s.tags) if any(t[2:] in unknown for t in tags))
            raise WojoodFormatError(corpus.path, line or None,
                                    f"entity types {unknown} are not among the model's types {sorted(known)}; "
                                    "train a model on data with these types, or map them to known ones")


def register_family(family: ModelFamily) -> ModelFamily:
    """Make `family` handle its kinds (replacing an earlier registration of the same kind)."""
    for kind in family.kinds:
        _REGISTRY[kind] = family
    return family


def family_for(kind: str) -> ModelFamily:
    """The family of a model kind."""
    if kind not in _REGISTRY and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])  # registers its family on import
    if kind not in _REGISTRY:
        raise KeyError(f"no model family for kind {kind!r}; known kinds: {', '.join(kinds())}")
    return _REGISTRY[kind]


def options_type(kind: str) -> type[FamilyOptions]:
    """The FamilyOptions class of a kind, without importing its family's model code when built in."""
    if kind in _REGISTRY:
        return _REGISTRY[kind].Options
    if kind in _BUILTIN_OPTIONS:
        module, _, name = _BUILTIN_OPTIONS[kind].partition(":")
        return getattr(importlib.import_module(module), name)
    raise KeyError(f"no model family for kind {kind!r}; known kinds: {', '.join(kinds())}")


def kinds() -> tuple[str, ...]:
    """Every kind a family is registered (or built in) for."""
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


__all__ = ["Entity", "EncodedSplit", "ModelFamily", "Objective", "WordTags", "family_for", "kinds",
           "options_type", "register_family"]
