"""Grid presets: named sets of run configurations, each a row of a results table.

Owns what a sweep runs (the way arner_jax.configs.presets owns what one run is): a grid is a list of
`Configuration`s, each a single-run preset plus the settings that make its row (kind, encoder,
loss, ...), its labels for the table's columns, and the published figure it is compared with.
How a grid is run (folders, seeds, restarts, shards, failures) is arner_jax.sweep's; how its
results are tabled and drawn is arner_jax.sweep.report's. Each grid's docstring gives the command
that runs it and the figures to expect.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from arner_jax.config import RunConfig
from arner_jax.configs.presets import get_preset
from arner_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One row of a grid: a single-run preset with settings, run once per seed."""

    name: str  # readable and safe as a folder name, e.g. nested-arbertv2-unified-var
    preset: str  # the single-run preset (arner_jax.configs.presets) it starts from
    settings: dict[str, Any]  # RunConfig fields set on top of the preset
    labels: dict[str, str]  # the grid's axes for this row (the report's columns)
    paper: float | None = None  # the published best validation micro-F1 of this configuration

    def run_config(self, seed_index: int, smoke: bool = False, **overrides: Any) -> RunConfig:
        """The RunConfig of seed `seed_index` (RunConfig seed = the preset's seed, 3407, + seed_index).

        `overrides` apply to every configuration of a sweep (data paths, epochs, dtype, ...); with
        `smoke` the preset's smoke variant is used (its encoder and data cannot be overridden).
        """
        config = get_preset(self.preset).config(smoke, **{**self.settings, **overrides})
        return config.replace(seed=config.seed + seed_index)


@dataclasses.dataclass(frozen=True)
class Grid:
    name: str
    configurations: tuple[Configuration, ...]
    notes: tuple[str, ...] = ()  # published figures that are not per configuration (shown under the table)
    doc: str = ""

    @property
    def summary(self) -> str:
        """The docstring's first paragraph, on one line."""
        return " ".join(inspect.cleandoc(self.doc).split("\n\n")[0].split())

    def varied(self) -> set[str]:
        """The RunConfig fields some configuration sets (a sweep refuses to override them for all)."""
        return {name for c in self.configurations for name in c.settings}


GRIDS: dict[str, Grid] = {}


def grid(notes: Iterable[str] = ()) -> Callable[[Callable[[], list[Configuration]]], Grid]:
    """Register the decorated function (returning its configurations) as a grid of its name and docstring."""
    def register(fn: Callable[[], list[Configuration]]) -> Grid:
        configurations = tuple(fn())
        names = [c.name for c in configurations]
        assert len(set(names)) == len(names), f"grid {fn.__name__}: configuration names repeat"
        GRIDS[fn.__name__] = Grid(fn.__name__, configurations, tuple(notes), fn.__doc__ or "")
        return GRIDS[fn.__name__]
    return register


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise UserError(f"--preset {name!r}: no such grid; known: {', '.join(GRIDS)}")
    return GRIDS[name]


# ---------------------------------------------------------------------- the UM6P & UL system's table
# Short names (in configuration names) and table labels of the encoders the system compared (SPEC 5).
UM6P_ENCODERS = {"UBC-NLP/ARBERTv2": ("arbertv2", "ARBERTv2"),
                 "CAMeL-Lab/bert-base-arabic-camelbert-mix": ("camelbert-mix", "CAMeL-mix"),
                 "qarib/bert-base-qarib": ("qarib", "QARiB")}
# Best validation micro-F1 per configuration, from the system's public training logs:
# (kind, encoder label) -> (CE, CE + variance penalty, unified loss, unified loss + variance penalty).
UM6P_PAPER = {
    ("nested", "ARBERTv2"): (0.9180, 0.9221, 0.9245, 0.9249),
    ("nested", "CAMeL-mix"): (0.9107, 0.9133, 0.9176, 0.9189),
    ("nested", "QARiB"): (0.9056, 0.9035, 0.9090, 0.9084),
    ("mtn", "ARBERTv2"): (0.8961, 0.9008, 0.9031, 0.9054),
    ("mtn", "CAMeL-mix"): (0.8888, 0.8897, 0.8980, 0.8969),
    ("mtn", "QARiB"): (0.8870, 0.8867, 0.8898, 0.8866),
}
VAR_PENALTY = {"off": 0.0, "on": 5.0}  # the system's lambda (SPEC 4)


def _loss_and_penalty(losses: Iterable[str]) -> list[tuple[str, str, float, str]]:
    """(loss, penalty label, var_penalty, name suffix) in table order: each loss without, then with the penalty."""
    return [(loss, switch, VAR_PENALTY[switch], loss + ("-var" if switch == "on" else ""))
            for loss in losses for switch in VAR_PENALTY]


@grid(notes=(("Official WojoodNER-2023 test micro-F1 of the system (one submission, not per configuration): "
              "nested 0.9303, flat 0.9113."),
             ("Paper figures: best validation micro-F1 from the system's public training logs, on the full Wojood "
              "corpus; `val - paper` compares our mean validation micro-F1 with them.")))
def um6p_table() -> list[Configuration]:
    """The UM6P & UL WojoodNER-2023 system's table (SPEC 1A, 5): kind {nested, flat MTN} x encoder {ARBERTv2,
    CAMeLBERT-mix, QARiB} x loss {CE, unified} x variance penalty {off, on (5)}: 24 configurations at lr 2e-5
    and the system's other settings (RunConfig's defaults, the kept model the one with the lowest validation
    loss), with the system's own recipe (`--recipe um6p`: the presets um6p_nested and um6p_mtn, replayed
    step by step against the reference's trainers by `python -m arner_jax.parity um6p`).

        python -m arner_jax.sweep --preset um6p_table --output_path sweeps/um6p --seeds 3 \\
            --train_path wojood/train.txt --val_path wojood/val.txt --test_path wojood/test.txt
        python -m arner_jax.sweep report sweeps/um6p
        # without data paths: the Wojood sample shipped with arner_jax (4% of Wojood: expect far lower F1)

    Expected (the paper's best validation micro-F1 on the full corpus, shown beside ours by the report):
    nested ARBERTv2 CE 0.9180, CE+var 0.9221, UL 0.9245, UL+var 0.9249; flat MTN ARBERTv2 UL+var 0.9054
    (all 24 in UM6P_PAPER); official test micro-F1 nested 0.9303, flat 0.9113. Not yet run here on
    pretrained encoders (no GPU/TPU in the sessions so far). `--smoke` runs the same 24 rows with a tiny
    encoder on the synthetic corpus, one epoch each: about 6 minutes on the shared 2-core CPU machine (the
    runs that compile their programs 35-63 s, the others 5-14 s), val F1 0.02 nested, 0.003 MTN (lr 2e-5 on
    a random encoder, one epoch); it checks the machinery, not the figures.
    """
    return [Configuration(name=f"{kind}-{short}-{suffix}", preset=preset,
                          settings=dict(kind=kind, recipe="um6p", bert_model=encoder, loss=loss, var_penalty=penalty,
                                        lr=2e-5, select_by="loss"),
                          labels={"kind": kind, "encoder": label, "loss": "UL" if loss == "unified" else "CE",
                                  "variance penalty": switch},
                          paper=UM6P_PAPER[kind, label][i])
            for kind, preset in (("nested", "um6p_nested"), ("mtn", "um6p_mtn"))
            for encoder, (short, label) in UM6P_ENCODERS.items()
            for i, (loss, switch, penalty, suffix) in enumerate(_loss_and_penalty(("ce", "unified")))]


@grid(notes=(("Small BERT (128 hidden, 2 layers) trained from scratch on the Wojood sample shipped with arner_jax: "
              "the figures compare the losses with each other, not with the published system."),))
def loss_ablation() -> list[Configuration]:
    """The losses of SPEC 4 compared: loss {CE, focal, Dice, Tversky, unified} x variance penalty {off, on (5)}
    x kind {nested, flat, MTN}: 30 configurations, each on the small encoder trained from scratch (no
    --bert_model, lr 5e-4) and the Wojood sample shipped with arner_jax, so it runs offline. Every row keeps
    its best-validation-F1 model: a loss's own validation loss is a poor guide for some losses (README,
    "The flat default"), and F1 compares the losses on one scale.

        python -m arner_jax.sweep --preset loss_ablation --output_path sweeps/losses --seeds 3
        python -m arner_jax.sweep report sweeps/losses
        python -m arner_jax.sweep --preset loss_ablation --output_path sweeps/losses_arbert \\
            --bert_model UBC-NLP/ARBERTv2 ...      # the same comparison on a pretrained encoder

    Expected: single runs on the sample (README, Results) gave test micro-F1 0.45-0.50 nested (unified, with
    and without the penalty) and 0.47 flat (CE); the grid has not been run to the end yet (estimated 1.5-2.5
    hours for 30 x 3 seeds on 2 CPU cores). Two checks are
    built in: the flat tagger has one head, so its variance penalty is 0 and each flat-*-var row repeats
    its flat-* row; Tversky with alpha 0.5 is Dice (SPEC 4) up to the smoothing term, so their rows agree.
    `--smoke`: 30 one-epoch runs on the synthetic corpus, 9.5 minutes on the shared 2-core CPU machine
    (each loss x kind compiles its programs, 25-41 s; the others 3-9 s).
    """
    return [Configuration(name=f"{kind}-{suffix}", preset=preset,
                          settings=dict(kind=kind, loss=loss, var_penalty=penalty, select_by="f1"),
                          labels={"kind": kind, "loss": loss, "variance penalty": switch})
            for kind, preset in (("nested", "wojood_nested"), ("flat", "wojood_flat"), ("mtn", "wojood_flat"))
            for loss, switch, penalty, suffix in _loss_and_penalty(("ce", "focal", "dice", "tversky", "unified"))]


@grid(notes=(("Small BERT (128 hidden, 2 layers) trained from scratch on the Wojood sample shipped with arner_jax, "
              "lr 5e-4, 15 epochs at most, patience 5: the figures compare the recipes, not the published system."),))
def recipe_comparison() -> list[Configuration]:
    """Our recipe against the reference's (SPEC 3): recipe {arner: first subwords trained, padding masked,
    windows; um6p: the reference exactly} x objective {the system's: unified loss + variance penalty 5,
    kept by validation loss; cross-entropy without the penalty, kept by validation F1} x kind {nested,
    MTN}: 8 configurations on the shipped sample, from scratch, so it runs offline on a CPU.

        python -m arner_jax.sweep --preset recipe_comparison --output_path sweeps/recipes --seeds 3
        python -m arner_jax.sweep report sweeps/recipes

    The recipe table in docs/results.md is this grid's report (3 seeds).
    """
    objectives = {"ul-var-loss": dict(loss="unified", var_penalty=5.0, select_by="loss"),
                  "ce-f1": dict(loss="ce", var_penalty=0.0, select_by="f1")}
    labels = {"ul-var-loss": "UL+var, by val loss", "ce-f1": "CE, by val F1"}
    return [Configuration(name=f"{kind}-{recipe}-{objective}", preset="wojood_nested",
                          settings=dict(kind=kind, recipe=recipe, **settings),
                          labels={"kind": kind, "recipe": recipe, "objective": labels[objective]})
            for kind in ("nested", "mtn") for recipe in ("arner", "um6p")
            for objective, settings in objectives.items()]
