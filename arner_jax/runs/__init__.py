"""Run folders: `run_folder` (the layout, config.json, refusing and creating a folder, reading a run's
settings), `files` (atomic writes: the one owner of writing), `checkpoints` (the Orbax checkpoints'
layout, writing and reading), `loading` (a trained run's kept model, read-only)."""
