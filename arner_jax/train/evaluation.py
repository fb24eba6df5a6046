"""Evaluating a tagger on a labelled split: eval steps over length buckets, word tags, metrics.

Owns: running the data-parallel eval step over a split's windows (sorted length buckets, few
shapes), the split's loss (the mean of its batch losses, as the reference reports it), mapping
per-position predictions back to every word, and scoring them with the Wojood metric.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from arner_jax.data.align import Window, scatter_to_words
from arner_jax.data.batching import collate, eval_batches, fit_buckets
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus
from arner_jax.metrics import score_tags
from arner_jax.data.entities import entity_tags, ids_to_tags


@dataclasses.dataclass
class Split:
    """A labelled split ready for the model."""

    name: str
    corpus: Corpus
    windows: list[Window]


@dataclasses.dataclass
class SplitResult:
    loss: float
    tags: list[list[list[str]]]  # sentence -> word -> predicted tags (Wojood word tags)
    metrics: dict


def predict_windows(parallel, params, windows: Sequence[Window], batch_size: int, max_length: int,
                    pad_id: int, reference_labels: bool = False) -> tuple[list[np.ndarray], float]:
    """Per window its predicted class ids `[n, K]`, and the mean batch loss."""
    parallel.check_batch_size(batch_size, "the evaluation batch size")
    rows = parallel.local_rows(batch_size)
    outputs: list[np.ndarray | None] = [None] * len(windows)
    losses = []
    buckets = fit_buckets([len(w) for w in windows], batch_size, max_length)  # at most 8 shapes, little padding
    for length, indices in eval_batches(windows, batch_size, max_length, buckets):
        local = indices[rows]
        batch = collate(windows, local, rows.stop - rows.start, length, pad_id, reference_labels)
        pred, loss = parallel.eval_step(params, batch)  # pred: all rows of the global batch
        losses.append(loss)
        for row, i in enumerate(indices):
            outputs[i] = pred[row, :len(windows[i])]
    return outputs, float(np.mean([float(x) for x in losses])) if losses else 0.0


def evaluate_split(parallel, params, split: Split, kind: str, vocab: LabelVocab, batch_size: int,
                   max_length: int, pad_id: int, reference_labels: bool = False) -> SplitResult:
    """Loss, predicted word tags and Wojood metrics of the model on a labelled split."""
    outputs, loss = predict_windows(parallel, params, split.windows, batch_size, max_length, pad_id,
                                    reference_labels)
    sentences = split.corpus.sentences
    per_word = scatter_to_words(split.windows, [len(s) for s in sentences], outputs) if split.windows else []
    tags = [entity_tags(ids_to_tags(kind, vocab, ids)) for ids in per_word]
    metrics = score_tags([s.tags for s in sentences], tags, nested=kind == "nested", types=vocab.types)
    metrics["loss"] = loss
    return SplitResult(loss, tags, metrics)
