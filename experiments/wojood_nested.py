"""Wojood nested NER: one classifier per entity type (SPEC 1A), our recipe, cross-entropy kept by validation F1.

The settings are the preset `wojood_nested` in arner_jax/configs/presets.py (its docstring: commands and results).
`python -m experiments.wojood_nested --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main", preset="wojood_nested")
