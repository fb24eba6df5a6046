"""The conversion command (`python -m arner_jax.convert ...`): encoders checked against transformers, and
runs exported and imported through their model families (each family owns its formats: the taggers'
in arner_jax.models.tagger.export and .reference_checkpoint, SpanMarker's in
arner_jax.models.span_marker). This package imports nothing itself.
"""
