"""Wojood flat NER: one classifier over the flat tags (--kind flat) or per-type heads on flat data (mtn).

The settings are the preset `wojood_flat` in arner_jax/presets.py (its docstring: commands and results).
`python -m experiments.wojood_flat --help` lists the flags.
"""
from arner_jax.train.cli import main

if __name__ == "__main__":
    main(preset="wojood_flat")
