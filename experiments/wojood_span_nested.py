"""A SpanMarker model on nested Wojood data, scored with the Wojood nested micro-F1.

The settings are the preset `wojood_span_nested` in arner_jax/configs/presets.py (its docstring: commands and results).
`python -m experiments.wojood_span_nested --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main", preset="wojood_span_nested")
