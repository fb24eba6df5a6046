"""`python -m arner_jax.sweep`: run a grid of training runs (see arner_jax.train.sweep)."""
from arner_jax.train.sweep import main

if __name__ == "__main__":
    main()  # exits with status 1 when a run failed, 2 on a user error
