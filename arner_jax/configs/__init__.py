"""Experiment settings as code (in the manner of big_vision's configs): `presets` (named run settings,
`python -m experiments.NAME`) and `grids` (sweeps of presets: configuration x seed). Each carries in its
docstring the command that runs it and the result it gave."""
