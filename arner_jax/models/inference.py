"""The one inference driver: a family's eval step over encoded sentences, in length buckets.

Owns: running the data-parallel eval step (arner_jax.models.parallel) over the items of an
`EncodedSplit` in length-sorted batches padded to the fixed evaluation ladder
(data.batching.EVAL_LENGTHS, capped at the split's longest possible item), so that validation, test,
`evaluate`, `predict`, `NERTagger` and `SpanMarkerModel` share their compiled programs;
gathering each item's row of every prediction array; the mean batch loss; and scoring a
labelled split with the Wojood metric. Few items get fewer rows per batch (the next power of
two, a multiple of the device count), so a single sentence does not pay for a full batch.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from arner_jax.models.base import EncodedSplit, ModelFamily, WordTags
from arner_jax.models.parallel import DataParallel
from arner_jax.scoring.metrics import score_tags


@dataclasses.dataclass
class Inference:
    outputs: list[dict[str, np.ndarray]]  # per item: its row of each prediction array
    loss: float  # mean of the batch losses (meaningful for labelled items)


def batch_rows(num_items: int, batch_size: int, parallel: DataParallel) -> int:
    """Rows per batch: `batch_size`, or fewer (a power of two) when there are fewer items."""
    fewer = 1 << max(num_items - 1, 0).bit_length()
    return parallel.round_batch_size(min(batch_size, fewer))


def run(parallel: DataParallel, params: Any, split: EncodedSplit, batch_size: int, max_length: int) -> Inference:
    """The eval step over every item of `split`; every process gets every item's outputs."""
    lengths = split.lengths()
    rows = batch_rows(len(lengths), batch_size, parallel)
    local = parallel.local_rows(rows)
    outputs: list[dict | None] = [None] * len(lengths)
    losses = []
    for length, indices in split.eval_plan(rows, max_length):
        batch = split.collate_group(indices, local, local.stop - local.start, length)
        pred, loss = parallel.eval_step(params, batch)  # pred: every row of the global batch
        losses.append(loss)
        for row, i in enumerate(indices):
            outputs[i] = {name: value[row] for name, value in pred.items()}
    return Inference(outputs, float(np.mean([float(x) for x in losses])) if losses else 0.0)


@dataclasses.dataclass
class SplitResult:
    loss: float
    tags: WordTags  # sentence -> word -> predicted Wojood tags
    metrics: dict


def evaluate(parallel: DataParallel, params: Any, family: ModelFamily, config: Any, labels: Any,
             split: EncodedSplit, batch_size: int, max_length: int) -> SplitResult:
    """Loss, predicted word tags and Wojood metrics of the model on a labelled split."""
    result = run(parallel, params, split, batch_size, max_length)
    tags = split.word_tags(result.outputs)
    metrics = score_tags([s.tags for s in split.sentences], tags, nested=family.nested(config),
                         types=family.entity_types(labels),
                         extra_predicted=split.extra_predicted_entities(result.outputs))
    metrics["loss"] = result.loss
    return SplitResult(result.loss, tags, metrics)
