"""`python -m arner_jax.train --preset NAME [flags]`: train one run (see arner_jax.train.cli)."""
import sys

from arner_jax.train.cli import main

if __name__ == "__main__":
    main()
    sys.exit(0)
