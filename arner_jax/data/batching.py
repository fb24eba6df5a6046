"""Batches of fixed, few shapes: length buckets, seeded shuffling, order-restoring evaluation.

Owns: padding windows to a bucket length (so only a handful of shapes ever compile), choosing
the bucket lengths that waste the fewest padded tokens on a split (`fit_buckets`), the
training order (a pure function of seed and epoch, so a resumed run sees the same batches),
sorted evaluation batches that carry each row's window index, and the last partial batch, kept
and padded with empty rows whose masks are zero.

A batch is a dict of numpy arrays:
  input_ids [B, L] int32, attention_mask [B, L] int32, labels [B, L, K] int32,
  label_mask [B, L] float32 (positions that are trained), word_index [B, L] int32 (-1: not scored),
  window_index [B] int32 (-1: a padding row).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from arner_jax.data.align import Window

DEFAULT_BUCKETS = (32, 64, 128, 256, 512)
# Prediction on a few inputs: a fixed ladder (each length compiled once, on first use), so
# repeated small calls stop compiling; many inputs get fitted buckets, multiples of 16 (a bounded
# set of shapes over all calls).
PREDICT_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
PREDICT_FIT_BATCHES = 4
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


def bucket_lengths(max_length: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> tuple[int, ...]:
    """The bucket lengths in use: those below max_length, then max_length itself."""
    return tuple(sorted({b for b in buckets if b < max_length} | {max_length}))


def bucket_of(length: int, lengths: Sequence[int]) -> int:
    for b in lengths:
        if length <= b:
            return b
    raise ValueError(f"a window of {length} tokens exceeds the largest bucket {lengths[-1]}")


def predict_buckets(lengths: Sequence[int], rows: int, max_length: int) -> tuple[int, ...]:
    """Bucket lengths for prediction: PREDICT_BUCKETS for a few batches, fitted for more."""
    if len(lengths) >= PREDICT_FIT_BATCHES * rows:
        return fit_buckets(lengths, rows, max_length, multiple=16)
    return PREDICT_BUCKETS


def collate(windows: Sequence[Window], indices: Sequence[int], batch_size: int, length: int,
            pad_id: int, reference_labels: bool = False) -> dict[str, np.ndarray]:
    """Pad the windows `indices` into one batch of `batch_size` rows and `length` tokens.

    reference_labels: the Wojood reference's training: every position of a real row ([CLS],
    [SEP], non-first subwords, padding) is trained with label O, and no attention mask is used.
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
    if reference_labels:
        label_mask = (window_index >= 0)[:, None].repeat(length, 1).astype(np.float32)
        attn = np.where(window_index[:, None] >= 0, 1, 0).astype(np.int32).repeat(length, 1)
    else:
        label_mask = (word_index >= 0).astype(np.float32)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "label_mask": label_mask,
            "word_index": word_index, "window_index": window_index}


def _chunks(indices: Sequence[int], size: int):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def train_batches(windows: Sequence[Window], batch_size: int, max_length: int, seed: int, epoch: int,
                  pad_id: int, buckets: Sequence[int] = DEFAULT_BUCKETS,
                  reference_labels: bool = False) -> list[tuple[int, list[int]]]:
    """The epoch's batches as (bucket length, window indices), shuffled from (seed, epoch).

    Windows are shuffled, grouped by bucket, cut into batches (a bucket's last batch may be
    partial and is kept), and the batches are shuffled again. Call `collate` on each.
    """
    lengths = bucket_lengths(max_length, buckets)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(windows))
    by_bucket: dict[int, list[int]] = {b: [] for b in lengths}
    for i in order:
        by_bucket[bucket_of(len(windows[i]), lengths)].append(int(i))
    plan = [(b, chunk) for b in lengths for chunk in _chunks(by_bucket[b], batch_size)]
    return [plan[i] for i in rng.permutation(len(plan))]


def eval_batches(windows: Sequence[Window], batch_size: int, max_length: int,
                 buckets: Sequence[int] = DEFAULT_BUCKETS) -> list[tuple[int, list[int]]]:
    """Length-sorted batches as (bucket length, window indices); outputs map back by index."""
    lengths = bucket_lengths(max_length, buckets)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    by_bucket: dict[int, list[int]] = {b: [] for b in lengths}
    for i in order:
        by_bucket[bucket_of(len(windows[i]), lengths)].append(i)
    return [(b, chunk) for b in lengths for chunk in _chunks(by_bucket[b], batch_size)]


def iterate(windows: Sequence[Window], plan, batch_size: int, pad_id: int,
            reference_labels: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Collate a batch plan lazily."""
    for length, indices in plan:
        yield collate(windows, indices, batch_size, length, pad_id, reference_labels)


def per_word_outputs(sentences: Sequence[Sequence[str]], tokenizer, vocab, layout: str, max_length: int,
                     batch_size: int, fn, empty: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Run a model over unlabelled sentences and return, per sentence, its outputs per word.

    fn(input_ids [B, L], attention_mask [B, L]) -> {name: array [B, L, ...]} (numpy). Windows are
    length-sorted into buckets (PREDICT_BUCKETS, or fitted to a large input); a small input gets
    fewer rows (a power of two, so shapes stay few).
    A word's output is that of its first subword in the window that scores it; an empty sentence
    gets `empty` (arrays with 0 rows).
    """
    from arner_jax.data.align import encode_sentences, scatter_to_words
    from arner_jax.data.wojood import Sentence

    sents = [Sentence(list(words), [["O"] for _ in words]) for words in sentences]
    chosen = [s for s in sents if len(s)]
    results = [dict(empty) for _ in sents]
    if not chosen:
        return results
    windows, _ = encode_sentences(chosen, tokenizer, vocab, layout, max_length)
    outputs: dict[str, list] = {k: [None] * len(windows) for k in empty}
    rows = min(batch_size, 1 << (len(windows) - 1).bit_length())
    buckets = predict_buckets([len(w) for w in windows], rows, max_length)
    for length, indices in eval_batches(windows, rows, max_length, buckets):
        batch = collate(windows, indices, rows, length, int(tokenizer.pad_token_id))
        got = fn(batch["input_ids"], batch["attention_mask"])
        for row, i in enumerate(indices):
            for k in outputs:
                outputs[k][i] = got[k][row, :len(windows[i])]
    per_word = {k: scatter_to_words(windows, [len(s) for s in chosen], v) for k, v in outputs.items()}
    nonempty = [i for i, s in enumerate(sents) if len(s)]
    for j, i in enumerate(nonempty):
        results[i] = {k: v[j] for k, v in per_word.items()}
    return results
