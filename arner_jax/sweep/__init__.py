"""`python -m arner_jax.sweep`: the command line of sweeps (arner_jax.train.sweep runs them;
arner_jax.sweep_folder owns the sweep folder and the plan)."""
