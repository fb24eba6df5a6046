"""`python -m arner_jax.sweep`: run a grid of training runs (see arner_jax.train.sweep)."""
if __name__ == "__main__":
    from arner_jax.host_memory import reexec_with_huge_pages

    reexec_with_huge_pages()  # first, before JAX is imported (see arner_jax.host_memory)
    from arner_jax.train.sweep import main

    main()  # exits with status 1 when a run failed, 2 on a user error
