"""Wojood flat NER: one classifier over the flat tags (--kind flat) or per-type heads on flat data (mtn).

The settings are the preset `wojood_flat` in arner_jax/configs/presets.py (its docstring: commands and results).
`python -m experiments.wojood_flat --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main", preset="wojood_flat")
