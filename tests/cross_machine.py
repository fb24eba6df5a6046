"""Comparing with what another machine computed: stored floats, and the decisions taken from them.

A fixture's floats were computed on another CPU. XLA, numpy and PyTorch choose their kernels by the
instruction set (AVX2, AVX-512, AMX, ...), which sum in other orders and fuse multiply-adds otherwise,
so float32 results agree to some ulps, not to the bit: tests compare them with a stated tolerance. A
decision taken from floats (an argmax, an order by score) is only reproducible where it does not hinge
on those last bits. `near_top` and `span_outcomes` say, for every set of floats within the tolerance
of the stored ones, which decisions can come out; tests compare decisions exactly where only one can,
and check that what came out is one of the possible ones elsewhere (so a wrong decision still fails).
"""
from __future__ import annotations

import numpy as np


def near_top(logits, tol: float, mask=None) -> np.ndarray:
    """bool [..., C]: the classes that are the argmax of some logits within `tol` (max norm) of `logits`:
    those within 2 * tol of the top one. mask [..., C] (broadcast): the classes a row may take."""
    z = np.asarray(logits, np.float64)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    return z >= z.max(-1, keepdims=True) - 2 * tol


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def span_outcomes(spans, logits, tol: float, nested: bool = False, threshold: float = 0.0,
                  outside: int = 0) -> tuple[set, set]:
    """The entities (start, end, class) that `arner_jax.models.span_marker.spans.decode` keeps, from the argmax
    class and probability of each span, for every logits within `tol` (max norm) of `logits` [S, C]:
    (sure: kept whatever the last bits, possible: kept for some of them). sure == possible where the
    outcome does not hinge on the last bits.

    decode takes spans by decreasing score and keeps one unless it conflicts with a span kept before it
    (flat: shares a word; nested: crosses it, or overlaps it with the same class). A probability moves by
    at most half the logits' move (softmax's derivative is at most 1/2 in max norm): with delta = tol (the
    rest covers float32 rounding), two spans whose scores differ by less than 2 * delta may come in either
    order. Fixed point: a span is surely kept when it surely is an entity above the threshold and every span
    that may conflict with it and may come first is surely not kept; surely not kept when it surely is O or
    below the threshold, or a span that surely conflicts with it and surely comes first is surely kept.
    """
    spans = np.asarray(spans)
    classes = near_top(logits, tol)  # [S, C] the classes a span may take
    score = softmax(logits).max(-1)
    delta = tol
    entity = np.delete(classes, outside, axis=-1).any(-1)  # may be an entity
    sure_entity = ~classes[:, outside] & (score - delta >= threshold)
    kept = np.where(entity & (score + delta >= threshold), 0, -1)  # 1 surely kept, -1 surely not, 0 unknown
    start, end = spans[:, 0], spans[:, 1]
    overlap = (start[:, None] < end[None]) & (start[None] < end[:, None])
    np.fill_diagonal(overlap, False)
    if nested:
        inside = ((start[:, None] <= start[None]) & (end[None] <= end[:, None])) | \
                 ((start[None] <= start[:, None]) & (end[:, None] <= end[None]))
        crosses = overlap & ~inside
        labels = np.where(classes, 1, 0)
        labels[:, outside] = 0
        same_may = (labels @ labels.T) > 0  # the spans may take one class
        one = labels.sum(-1) == 1
        same_sure = one[:, None] & one[None] & (classes.argmax(-1)[:, None] == classes.argmax(-1)[None])
        may_conflict, sure_conflict = crosses | (overlap & same_may), crosses | (overlap & same_sure)
    else:
        may_conflict = sure_conflict = overlap
    before = score[None] + 2 * delta >= score[:, None]  # [i, j]: j may come before i
    surely_before = score[None] - 2 * delta > score[:, None]
    changed = True
    while changed:
        changed = False
        for i in np.flatnonzero(kept == 0):
            if sure_entity[i] and (kept[may_conflict[i] & before[i]] == -1).all():
                kept[i], changed = 1, True
            elif (kept[sure_conflict[i] & surely_before[i]] == 1).any():
                kept[i], changed = -1, True
    sure = {(int(start[i]), int(end[i]), int(np.argmax(classes[i]))) for i in np.flatnonzero(kept == 1)
            if classes[i].sum() == 1}
    possible = {(int(start[i]), int(end[i]), int(c)) for i in np.flatnonzero(kept >= 0)
                for c in np.flatnonzero(classes[i]) if c != outside}
    return sure, possible


def span_record_triples(records, text, tokenizer) -> set:
    """(start word, end word, label) of SpanMarker-style records of one input (word or character indices)."""
    if isinstance(text, str):
        from arner_jax.models.span_marker.spans import tokenize

        chars = tokenize(tokenizer, text).char_spans
        n = len(chars)
        words = {(chars[s][0], chars[e - 1][1]): (s, e) for s in range(n) for e in range(s + 1, n + 1)}
        return {(*words[(r["char_start_index"], r["char_end_index"])], r["label"]) for r in records}
    return {(r["word_start_index"], r["word_end_index"], r["label"]) for r in records}


def named(triples: set, labels) -> set:
    """(start, end, class id) triples with the class's name."""
    return {(s, e, labels[c]) for s, e, c in triples}
