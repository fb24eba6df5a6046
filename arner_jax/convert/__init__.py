"""Checkpoint conversion and cross-framework checks (`python -m arner_jax.convert ...`).

Modules: `verify` (our encoder against transformers), `pytorch` (tagger runs to PyTorch folders and
back), `torch_tagger` (the PyTorch module of exported nested/MTN taggers; imports no JAX, which is
why this package imports nothing itself).
"""
