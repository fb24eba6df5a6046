"""arner_jax: Arabic flat and nested NER in JAX/Flax (Wojood multi-task taggers, SpanMarker)."""
__version__ = "0.1.0"
