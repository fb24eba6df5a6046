"""The token taggers' own settings (`TaggerOptions`), carried by a run's `RunConfig.options`.

No JAX here: `RunConfig` reads this module to check and route the flags, and readers of run folders
import it cheaply.
"""
from __future__ import annotations

import dataclasses

from arner_jax.errors import ConfigError
from arner_jax.models.base import FamilyOptions, option

LOSSES = ("unified", "ce", "focal", "dice", "tversky")
REFERENCE_KINDS = ("nested", "mtn")  # the kinds of the UM6P & UL system (--recipe um6p)


@dataclasses.dataclass
class TaggerOptions(FamilyOptions):
    """Settings of the nested, flat and MTN taggers (SPEC 3, 4)."""

    recipe: str = option("arner", "nested/mtn: arner (first subwords trained, padding masked in attention, "
                         "windows for long sentences) or um6p (the UM6P & UL reference exactly: every position "
                         "trained, padding as <pad>, no attention mask, <pad>/tags/O heads, sentences cut at 510 "
                         "subwords, its batching, validation loss and decoding; arner_jax/models/tagger/um6p.py)",
                         ("arner", "um6p"))
    loss: str = option("unified", "training loss of each head (unified: 0.2 Dice + 0.2 Tversky + 0.2 focal + "
                       "0.4 (CE + 5 IRM))", LOSSES)
    var_penalty: float = option(5.0, "weight of the variance of the per-type losses (0: off)", minimum=0.0)
    head_reduction: str = option("sum", "how the per-type losses are combined", ("sum", "mean"))

    def check(self, config) -> None:
        if self.recipe == "um6p" and config.kind not in REFERENCE_KINDS:
            raise ConfigError(f"--recipe um6p: the reference recipe is for --kind nested or mtn (the paper's systems), "
                              f"not {config.kind!r}; use --kind mtn for flat data")
