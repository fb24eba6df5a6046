"""Wojood nested NER: one classifier per entity type (SPEC 1A), the shared-task system's settings.

The settings are the preset `wojood_nested` in arner_jax/presets.py (its docstring: commands and results).
`python -m experiments.wojood_nested --help` lists the flags.
"""
from arner_jax.train.cli import main

if __name__ == "__main__":
    main(preset="wojood_nested")
