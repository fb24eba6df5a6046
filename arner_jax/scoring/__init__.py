"""The Wojood metric (SPEC 6) and the files it reads, without a model and without JAX.

Modules: `engine` (seqeval's entity extraction and micro/macro/per-type counts, vectorized over
encoded tags), `metrics` (scoring sentences' tags nested or flat, the predictions file format, the
per-type table), `tagged_file` (the two files `python -m arner_jax.score` compares, read fast).
The command itself is arner_jax.score.
"""
