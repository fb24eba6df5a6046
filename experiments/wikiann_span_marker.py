"""SpanMarker on WikiANN Arabic (flat NER) with the published run's settings (lr 1e-5, batch 4 x 2, 10% warmup).

The settings are the preset `wikiann_span_marker` in arner_jax/configs/presets.py (its docstring: commands and results).
`python -m experiments.wikiann_span_marker --help` lists the flags.
"""
if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.train.cli:main", preset="wikiann_span_marker")
