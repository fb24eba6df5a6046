"""The UM6P & UL flat (MTN) system exactly (`--recipe um6p`): the preset `um6p_mtn` in arner_jax/configs/presets.py.

`python -m experiments.um6p_mtn --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.host_memory import reexec_with_huge_pages

    reexec_with_huge_pages()  # first, before JAX is imported (see arner_jax.host_memory)
    from arner_jax.train.cli import main

    main(preset="um6p_mtn")
