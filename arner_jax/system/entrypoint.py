"""How every command starts: `python -m arner_jax.X`, `python -m experiments.X`.

Owns the start-up that each command shares, so that none wires its own:
  1. for a command that runs XLA programs, the restart with glibc's huge-page malloc
     (arner_jax.system.host_memory: before JAX is imported, or with the imports done again, ~1 s);
  2. importing the command's `main` and calling it, a user error (arner_jax.errors.UserError)
     printed as one `error: ...` line with exit status 2, no traceback;
  3. its exit status: the int `main` returns, else 0.
Logging stays with the commands that log (training and sweeps log into their run folders).

    if __name__ == "__main__":
        from arner_jax.system.entrypoint import start

        start("arner_jax.train.cli:main", preset="wojood_nested")
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

from arner_jax.errors import exit_on_user_error


def start(target: str, *args: Any, xla: bool = True, **kwargs: Any) -> NoReturn:
    """Run the command whose main is `target` ("module:function") with `args` and `kwargs`.

    `xla=False` for commands that compile no programs (scoring files, reports, launching
    processes): they skip the restart.
    """
    if xla:
        from arner_jax.system.host_memory import reexec_with_huge_pages

        reexec_with_huge_pages()
    module, _, name = target.partition(":")
    with exit_on_user_error():
        result = getattr(importlib.import_module(module), name)(*args, **kwargs)
    sys.exit(result if isinstance(result, int) else 0)
