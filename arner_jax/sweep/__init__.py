"""Sweeps: every configuration of a grid (arner_jax.configs.grids) x every seed, a run folder each.

    python -m arner_jax.sweep [run] --preset GRID --output_path DIR [--seeds N] ...   train the runs
    python -m arner_jax.sweep dry-run --preset GRID --output_path DIR ...            list them, train nothing
    python -m arner_jax.sweep report DIR [--output DIR2]                               tables and curves

Modules: `folder` (the sweep folder's layout and the plan of runs), `run` (training the runs, one
after another in this process), `report` (reading the finished runs into tables and figures; it
never writes in a run folder). `python -m arner_jax.report DIR` is the same as `... sweep report DIR`.
"""
