"""The UM6P & UL nested system exactly (`--recipe um6p`): the preset `um6p_nested` in arner_jax/configs/presets.py.

`python -m experiments.um6p_nested --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main", preset="um6p_nested")
