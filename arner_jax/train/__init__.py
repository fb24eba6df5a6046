"""Training: optimizer, data-parallel steps, checkpoints, the loop, the experiments' CLI."""
