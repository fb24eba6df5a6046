"""A SpanMarker model on nested Wojood data, scored with the Wojood nested micro-F1.

The settings are the preset `wojood_span_nested` in arner_jax/presets.py (its docstring: commands and results).
`python -m experiments.wojood_span_nested --help` lists the flags.
"""
from arner_jax.train.cli import main

if __name__ == "__main__":
    main(preset="wojood_span_nested")
