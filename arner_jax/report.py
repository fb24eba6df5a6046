"""`python -m arner_jax.report DIR [--output DIR2]`: the tables and curves of a sweep, the same as
`python -m arner_jax.sweep report` (arner_jax.sweep.report)."""
if __name__ == "__main__":
    import sys

    from arner_jax.system.entrypoint import start

    start("arner_jax.sweep.report:main", sys.argv[1:], prog="python -m arner_jax.report", xla=False)
