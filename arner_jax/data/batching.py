"""Batches of fixed, few shapes: length buckets, seeded shuffling, sorted evaluation batches.

Owns: the bucket lengths items are padded to (so that only a handful of shapes ever compile):
for training, the lengths fitted to the training split that waste the fewest padded tokens
(`fit_buckets`); for evaluation and prediction, one fixed ladder (`EVAL_LENGTHS`), so that
validation, test, `evaluate` and `predict` share their compiled programs across splits, calls
and runs. Also the training order (a pure function of seed and epoch, so that a resumed run
sees the same batches), length-sorted evaluation batches, and padding tagger windows into a
batch (`collate_windows`); the last partial batch of a bucket is kept and padded with empty rows
whose masks are zero. Items are anything with a token length; batches are dicts of numpy arrays.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from arner_jax.data.align import Window

# Evaluation and prediction lengths: fine steps where most sentences are, coarser above.
EVAL_LENGTHS = (16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 448, 512)
MAX_BUCKETS = 8


def fit_buckets(lengths: Sequence[int], batch_size: int, max_length: int, max_buckets: int = MAX_BUCKETS,
                multiple: int = 8) -> tuple[int, ...]:
    """At most `max_buckets` bucket lengths (multiples of `multiple`, or max_length) for items of
    these `lengths` that minimise the tokens computed: each bucket costs ceil(n / B) * B * length,
    its items cut into batches of B rows (the last one padded with empty rows).

    Exact dynamic programme over the candidate ends (the items' lengths rounded up); a pure
    function of the lengths, so a resumed run gets the same buckets.
    """
    if not len(lengths):
        return (max_length,)
    if max(lengths) > max_length:
        raise ValueError(f"an item of {max(lengths)} tokens exceeds max_length {max_length}")
    ends = sorted({min(-(-n // multiple) * multiple, max_length) for n in lengths})
    counts = np.zeros(len(ends), np.int64)
    for n in lengths:
        counts[np.searchsorted(ends, min(-(-n // multiple) * multiple, max_length))] += 1
    before = np.concatenate([[0], np.cumsum(counts)])  # items with end index < j

    def cost(i: int, j: int) -> int:  # one bucket of length ends[j] holding ends[i..j]
        n = int(before[j + 1] - before[i])
        return -(-n // batch_size) * batch_size * ends[j]

    m, inf = len(ends), float("inf")
    best = [[inf] * m for _ in range(max_buckets + 1)]  # best[k][j]: ends[0..j] in k buckets, the last at j
    back = [[-1] * m for _ in range(max_buckets + 1)]
    for j in range(m):
        best[1][j] = cost(0, j)
    for k in range(2, max_buckets + 1):
        for j in range(m):
            for i in range(j):  # the previous bucket ends at ends[i]
                c = best[k - 1][i] + cost(i + 1, j)
                if c < best[k][j]:
                    best[k][j], back[k][j] = c, i
    k = min(range(1, max_buckets + 1), key=lambda k: (best[k][m - 1], k))
    chosen, j = [], m - 1
    while j >= 0 and k >= 1:
        chosen.append(ends[j])
        j, k = back[k][j], k - 1
    return tuple(sorted(chosen))


def bucket_lengths(max_length: int, buckets: Sequence[int] = EVAL_LENGTHS) -> tuple[int, ...]:
    """The bucket lengths in use: those below max_length, then max_length itself."""
    return tuple(sorted({b for b in buckets if b < max_length} | {max_length}))


def bucket_of(length: int, lengths: Sequence[int]) -> int:
    for b in lengths:
        if length <= b:
            return b
    raise ValueError(f"an item of {length} tokens exceeds the largest bucket {lengths[-1]}")


def collate_windows(windows: Sequence[Window], indices: Sequence[int], batch_size: int, length: int,
                    pad_id: int) -> dict[str, np.ndarray]:
    """Pad the tagger windows `indices` into one batch of `batch_size` rows and `length` tokens.

    Returns input_ids [B, L] int32, attention_mask [B, L] int32, labels [B, L, K] int32,
    label_mask [B, L] float32 (positions that are trained), word_index [B, L] int32 (-1: not
    scored), window_index [B] int32 (-1: a padding row).
    (The reference's training of every position is `--recipe um6p`, arner_jax.models.tagger.um6p.)
    """
    K = windows[0].labels.shape[1] if len(windows) else 1  # also for a process given no row
    ids = np.full((batch_size, length), pad_id, np.int32)
    attn = np.zeros((batch_size, length), np.int32)
    labels = np.zeros((batch_size, length, K), np.int32)
    word_index = np.full((batch_size, length), -1, np.int32)
    window_index = np.full((batch_size,), -1, np.int32)
    for row, i in enumerate(indices):
        w = windows[i]
        n = len(w)
        ids[row, :n], attn[row, :n], labels[row, :n] = w.input_ids, 1, w.labels
        word_index[row, :n], window_index[row] = w.word_index, i
    label_mask = (word_index >= 0).astype(np.float32)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "label_mask": label_mask,
            "word_index": word_index, "window_index": window_index}


def _chunks(indices: Sequence[int], size: int):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def train_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  buckets: Sequence[int]) -> list[tuple[int, list[int]]]:
    """The epoch's batches as (bucket length, item indices), shuffled from (seed, epoch).

    Items are shuffled, grouped by bucket, cut into batches (a bucket's last batch may be
    partial and is kept), and the batches are shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    by_bucket: dict[int, list[int]] = {b: [] for b in buckets}
    for i in order:
        by_bucket[bucket_of(lengths[i], buckets)].append(int(i))
    plan = [(b, chunk) for b in buckets for chunk in _chunks(by_bucket[b], batch_size)]
    return [plan[i] for i in rng.permutation(len(plan))]


def eval_batches(lengths: Sequence[int], batch_size: int, buckets: Sequence[int]) -> list[tuple[int, list[int]]]:
    """Length-sorted batches as (bucket length, item indices); outputs map back by index."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    by_bucket: dict[int, list[int]] = {b: [] for b in buckets}
    for i in order:
        by_bucket[bucket_of(lengths[i], buckets)].append(i)
    return [(b, chunk) for b in buckets for chunk in _chunks(by_bucket[b], batch_size)]
