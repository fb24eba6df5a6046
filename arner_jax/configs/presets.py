"""Presets: named run settings as code, each with the command that runs it and what it gave.

Owns the experiments' settings (in the manner of big_vision's configs): a preset names its model
kinds (the first is its default), the settings that differ from RunConfig's defaults (the
shared-task system's, SPEC 5), and in its docstring the command and the result it gave. Every
preset has a smoke variant (`preset.config(smoke=True)`): a tiny encoder built locally, the
synthetic corpus at a few hundred sentences and one epoch, for tests, notebooks and laptops.
`python -m experiments.NAME` is `python -m arner_jax.train --preset NAME`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from arner_jax.config import RunConfig

# The smoke variant: offline, seconds on a CPU (families shrink their own sizes too: `smoke_settings`).
# Its encoder and data cannot be overridden (a smoke run never loads a hub model or a corpus).
SMOKE_OFFLINE = dict(bert_model=None, dataset=None, train_path=None, val_path=None, test_path=None, synthetic=True)
SMOKE = dict(SMOKE_OFFLINE, synthetic_sizes=(240, 48, 64), scratch_vocab_size=400, scratch_hidden_size=32,
             scratch_layers=1, scratch_heads=2, max_length=64, batch_size=8, eval_batch_size=None, grad_accum=1,
             max_epochs=1, patience=1)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    kinds: tuple[str, ...]  # the model kinds the preset is for; the first is its default
    settings: dict[str, Any]  # what differs from RunConfig's defaults
    doc: str = ""

    def config(self, smoke: bool = False, **overrides: Any) -> RunConfig:
        """The preset's RunConfig with `overrides`; with `smoke` its smoke variant (encoder and data
        overrides are then ignored: the smoke variant is offline)."""
        from arner_jax.models.base import family_for

        settings = {"kind": self.kinds[0], **self.settings}
        if smoke:
            settings.update(SMOKE)
            settings.update(family_for(overrides.get("kind", settings["kind"])).smoke_settings)
            overrides = {k: v for k, v in overrides.items() if k not in SMOKE_OFFLINE}
        settings.update(overrides)
        return RunConfig(**settings)


PRESETS: dict[str, Preset] = {}


def preset(kinds: tuple[str, ...], **settings: Any) -> Callable[[Callable], Preset]:
    """Register the decorated function's name, docstring and settings as a preset."""
    def register(fn: Callable) -> Preset:
        PRESETS[fn.__name__] = Preset(fn.__name__, kinds, settings, fn.__doc__ or "")
        return PRESETS[fn.__name__]
    return register


@preset(("nested",), loss="ce", var_penalty=0.0, select_by="f1")
def wojood_nested():
    """Wojood nested NER: one classifier per entity type (SPEC 1A), with our recipe (first subwords
    trained, padding masked in attention, windows for long sentences), cross-entropy without the
    variance penalty, and the kept model the one with the best validation F1. These three follow the
    recipe table in docs/results.md (sweep preset `recipe_comparison`, 3 seeds on the shipped sample
    from scratch):
    test micro-F1 0.538 +- 0.003 against 0.450 +- 0.007 with the shared-task system's objective (unified
    loss + 5 x the variance penalty, kept by validation loss), which is `--loss unified --var_penalty 5
    --select_by loss`; the system exactly, recipe included, is the preset um6p_nested.

        python -m experiments.wojood_nested --output_path runs/nested
        # the Wojood sample shipped with arner_jax, small encoder from scratch (no --bert_model), 2-core AMD
        # EPYC: test micro-F1 0.5405 (val 0.5176, kept epoch 11 of 15), 2.5 min (recipe_comparison's
        # nested-arner-ce-f1/seed0: the same settings and seed)
        python -m experiments.wojood_nested --train_path train.txt --val_path val.txt --test_path test.txt \\
            --bert_model UBC-NLP/ARBERTv2 --output_path runs/nested_arbert
    """


@preset(("flat", "mtn"), loss="ce", var_penalty=0.0, select_by="f1")
def wojood_flat():
    """Wojood flat NER: one classifier over the flat tags (--kind flat), or per-type heads trained on
    flat data and decoded to one tag per word (--kind mtn). Cross-entropy (no variance penalty), and the
    kept model the one with the best validation F1, as wojood_nested and for the same evidence; the
    shared-task system's settings are `--loss unified --var_penalty 5 --select_by loss`.

        python -m experiments.wojood_flat --output_path runs/flat
        # the Wojood sample, small encoder from scratch, 2 CPU cores: test micro-F1 0.470 (val 0.433, kept
        # epoch 9 of 14), 5 min (seed 3408: 0.458); with --loss unified --select_by loss: 0.154 (kept
        # epoch 5; seed 3408: 0.182)
        python -m experiments.wojood_flat --kind mtn --output_path runs/mtn
        # test micro-F1 0.4633 (val 0.4332, kept epoch 6 of 11), 1.5 min (recipe_comparison's
        # mtn-arner-ce-f1/seed0); the system's objective: 0.358 +- 0.015 (mtn-arner-ul-var-loss, 3 seeds)
        python -m experiments.wojood_flat --kind mtn --train_path ... --val_path ... --test_path ... \\
            --bert_model UBC-NLP/ARBERTv2 --output_path runs/flat_mtn

    The paper's own flat system is MTN with its recipe (preset um6p_mtn); this preset's default is the
    one flat head, for which the paper reports nothing. Measured on the sample (the runs' metrics.json),
    under the unified loss that head holds entities back (epoch 5: recall 0.14, against 0.43 under
    cross-entropy), and its validation loss is lowest at epoch 5 and then rises while F1 keeps climbing
    to 0.34 at epoch 10, so selecting by validation loss keeps an early, poor model.
    """


@preset(("nested",), recipe="um6p", loss="unified", var_penalty=5.0, select_by="loss")
def um6p_nested():
    """The UM6P & UL WojoodNER-2023 nested system exactly (SPEC 1A, 3-5; `--recipe um6p`,
    arner_jax/models/tagger/um6p.py):
    BertNestedTagger's heads (<pad>, the type's tags, O), every position trained, no attention mask, the
    unified loss plus 5 x the variance of the per-type losses, the kept model the one with the lowest
    validation loss. Replayed step by step against the reference's own trainer by
    `python -m arner_jax.parity um6p ../shared/fixtures/um6p_trajectories/nested_var`.

        python -m experiments.um6p_nested --bert_model UBC-NLP/ARBERTv2 --lr 2e-5 \
            --train_path train.txt --val_path val.txt --test_path test.txt --output_path runs/um6p_nested
        python -m experiments.um6p_nested --output_path runs/um6p_nested_sample
        # the Wojood sample shipped with arner_jax, small encoder from scratch (lr 5e-4), 2 CPU cores: see
        # the recipe table in docs/results.md (sweep preset recipe_comparison): its test micro-F1, 3 seeds
    """


@preset(("mtn",), recipe="um6p", loss="unified", var_penalty=5.0, select_by="loss")
def um6p_mtn():
    """The UM6P & UL flat system exactly: BertMTNTagger (SPEC 1A; every flat_res/*/args.json of the paper
    names it), per-type heads of 4 outputs trained on each word's first tag, decoded by keeping the first
    non-O tag in type order; the unified loss plus the variance penalty, selection by validation loss.
    Parity: `python -m arner_jax.parity um6p ../shared/fixtures/um6p_trajectories/mtn_var`.

        python -m experiments.um6p_mtn --bert_model UBC-NLP/ARBERTv2 --lr 2e-5 \
            --train_path train.txt --val_path val.txt --test_path test.txt --output_path runs/um6p_mtn
        python -m experiments.um6p_mtn --output_path runs/um6p_mtn_sample   # the shipped sample, from scratch
    """


@preset(("span_nested", "span_flat"), batch_size=8, max_epochs=15, max_length=256, entity_max_length=12,
        marker_max_length=128, select_by="f1")
def wojood_span_nested():
    """A SpanMarker model on nested Wojood data: every type layer's entities are gold spans, decoding
    keeps spans that nest or are disjoint; scored with the Wojood nested micro-F1.

        python -m experiments.wojood_span_nested --output_path runs/span_nested
        python -m experiments.wojood_span_nested --kind span_flat ...   # the same model on flat tags

    Measured with packed span rows (before training took span_marker 1.8.1's rows and steps, commit
    73b15d3), on the shipped sample with the scratch encoder, 2-core AMD EPYC: test micro-F1 0.304
    (val 0.239, kept by val F1 over 15 epochs); 29 s per training epoch (1.9 s for the nested
    tagger): `python -m benchmarks.span_epoch`. Not measured again since: an epoch now takes the
    package's steps, each with its rows packed (docs/results.md: 2.66x span_marker 1.8.1 per epoch
    with the small encoder, flat, median of seeds 3407, 1 and 2 over 10 epochs).
    """


@preset(("span_flat", "span_nested"), batch_size=4, grad_accum=2, warmup_ratio=0.1, max_epochs=10, patience=10,
        max_length=512, entity_max_length=30, marker_max_length=128, weight_decay=0.0, select_by="f1",
        tag_scheme="any")
def wikiann_span_marker():
    """SpanMarker on WikiANN Arabic (flat NER) with the published run's settings: lr 1e-5 (the span
    family's fine-tuning rate), batch 4 x gradient accumulation 2, linear schedule with 10% warmup,
    10 epochs, max 512 tokens (510 for BERT, whose positions would overflow), entities up to 30 words.

        python -m experiments.wikiann_span_marker --dataset wikiann:ar --bert_model xlm-roberta-base \\
            --output_path runs/wikiann_xlmr          # the published setting (needs the hub once)
        python -m experiments.wikiann_span_marker --dataset /data/wikiann_ar_saved ...   # save_to_disk folder
        python -m experiments.wikiann_span_marker --train_path train.txt --val_path dev.txt --test_path test.txt
    """


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        from arner_jax.errors import UserError

        raise UserError(f"--preset {name!r}: no such preset; known: {', '.join(PRESETS)}")
    return PRESETS[name]
