"""Loading a trained run read-only: its kept model with its tokenizer and labels, ready for inference.

Owns `load_run` (what `evaluate`, `predict`, `NERTagger` and `SpanMarkerModel.from_pretrained` read)
and `init_params`, a model's parameters from a seed (a fresh run's start, and the shapes a
checkpoint is read into). Reads only: never creates, deletes or cleans anything in the folder, so
predicting or evaluating while the run trains cannot disturb it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from arner_jax.config import RunConfig
from arner_jax.encoders import EncoderConfig
from arner_jax.models.base import ModelFamily
from arner_jax.runs.checkpoints import read_kept_params
from arner_jax.runs.run_folder import RunRecord, load_tokenizer, read_run


@dataclasses.dataclass
class LoadedRun:
    """A trained run's kept model, ready for inference (no training data)."""

    record: RunRecord
    tokenizer: Any
    encoder: EncoderConfig
    model: Any  # the family's Flax module
    params: dict  # float32 numpy
    max_length: int

    @property
    def config(self) -> RunConfig:
        return self.record.config

    @property
    def family(self) -> ModelFamily:
        return self.record.family

    @property
    def labels(self) -> Any:
        return self.record.labels


def init_params(family: ModelFamily, model: Any, labels: Any, seed: int) -> dict:
    """The model's parameters initialised from `seed` (random encoder, random heads)."""
    import jax

    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    return jax.jit(model.init)(key, **family.example_batch(labels))["params"]


def load_run(run_dir: str | Path, dtype: str | None = None) -> LoadedRun:
    """The kept (best) model of a run folder with its tokenizer and labels; reads only."""
    import jax

    record = read_run(run_dir)
    config = record.config if dtype is None else record.config.replace(dtype=dtype)
    tokenizer = load_tokenizer(record.run_dir, record.family)
    model = record.family.build(config, record.encoder, record.labels, tokenizer)
    template = jax.eval_shape(lambda: init_params(record.family, model, record.labels, 0))
    params = read_kept_params(record, template)
    record.config = config
    return LoadedRun(record, tokenizer, record.encoder, model, params, record.family.max_length(config, record.encoder))
