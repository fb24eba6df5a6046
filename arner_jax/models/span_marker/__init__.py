"""SpanMarker in JAX: the span model, its data (spans, windows, rows), decoding, and checkpoints
interoperable with the PyTorch `span_marker` package.

The names below are imported on first use, so that importing a module of this package (its options,
say) imports no JAX and nothing of run folders or inference.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "SpanConfig": "arner_jax.models.span_marker.checkpoint",
    "read_span_marker": "arner_jax.models.span_marker.checkpoint",
    "write_span_marker": "arner_jax.models.span_marker.checkpoint",
    "SpanMarker": "arner_jax.models.span_marker.model",
    "SpanObjective": "arner_jax.models.span_marker.model",
    "SpanMarkerModel": "arner_jax.models.span_marker.pretrained",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
