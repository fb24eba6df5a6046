"""SpanMarker in JAX: the span model, its data (spans, windows, rows), decoding, and checkpoints
interoperable with the PyTorch `span_marker` package."""
from arner_jax.models.span_marker.checkpoint import (
    SpanConfig,
    read_span_marker,
    write_span_marker,
)
from arner_jax.models.span_marker.model import SpanMarker, SpanObjective
from arner_jax.models.span_marker.pretrained import SpanMarkerModel

__all__ = ["SpanConfig", "SpanMarker", "SpanMarkerModel", "SpanObjective", "read_span_marker", "write_span_marker"]
