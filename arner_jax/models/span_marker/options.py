"""SpanMarker's own settings (`SpanOptions`), carried by a run's `RunConfig.options`.

No JAX here: `RunConfig` reads this module to check and route the flags, and readers of run folders
import it cheaply.
"""
from __future__ import annotations

import dataclasses

from arner_jax.models.base import FamilyOptions, option


@dataclasses.dataclass
class SpanOptions(FamilyOptions):
    """Settings of the span models (SPEC 7)."""

    marker_max_length: int = option(128, "marker pairs (candidate spans) per row; more spans go into further rows",
                                    minimum=1)
    entity_max_length: int = option(8, "longest candidate span, in words", minimum=1)
    threshold: float = option(0.0, "decoding: drop entities whose probability is lower", minimum=0.0, maximum=1.0)
