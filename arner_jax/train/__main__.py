"""`python -m arner_jax.train --preset NAME [flags]`: train one run (see arner_jax.train.cli)."""
import sys

if __name__ == "__main__":
    from arner_jax.host_memory import reexec_with_huge_pages

    reexec_with_huge_pages()  # first, before JAX is imported (see arner_jax.host_memory)
    from arner_jax.train.cli import main

    main()
    sys.exit(0)
