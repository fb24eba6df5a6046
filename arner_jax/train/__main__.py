"""`python -m arner_jax.train --preset NAME [flags]`: train one run (see arner_jax.train.cli)."""

if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main")
