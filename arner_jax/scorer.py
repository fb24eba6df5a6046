"""The Wojood metric (SPEC 6) over integer tag ids, vectorized with numpy, equal to seqeval 1.2.2 to the bit.

Owns: entity extraction with seqeval's default (lenient, conlleval-like) chunking and its strict IOB2
mode, per-type true-positive/predicted/gold counts, and micro and per-type precision/recall/F1 computed
with the same float operations as seqeval's `precision_score`/`recall_score`/`f1_score` and
`classification_report(output_dict=True)` with `zero_division=0`. Strings stay out of it: turning word
tags into ids is `arner_jax.metrics`' job, which also keeps seqeval itself as the oracle (scorer="seqeval").

Tag ids: 0 = O, 1 + 2k = B-types[k], 2 + 2k = I-types[k].

Both modes cut a layer into the same chunks: an I-X continues the chunk of the word before it when that
word, in the same sentence, is B-X or I-X; every other non-O word starts a chunk. The lenient mode counts
every chunk (an I- after O or after another type starts an entity); the strict mode only chunks whose
first word is B- (an I- without a proper start is no entity). Entities are (type, start, end) and a
predicted entity is correct when gold has the same triple.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np


def _chunks(ids: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (row-major) of the first and last word of every chunk; ids [L, N], first [N] bool."""
    inside = ids > 0
    prev = ids[:, :-1]
    cur = ids[:, 1:]
    cont = np.zeros_like(inside)
    # I-X (even id) after B-X (id - 1) or I-X (same id); never across a sentence start
    cont[:, 1:] = (cur % 2 == 0) & inside[:, 1:] & ((prev == cur) | (prev == cur - 1))
    cont &= ~first
    end = inside.copy()
    end[:, :-1] &= ~cont[:, 1:]
    return np.flatnonzero(inside & ~cont), np.flatnonzero(end)


def _prf(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """seqeval's `_prf_divide` (zero_division=0) and F-beta with beta=1, operation for operation."""
    precision = tp / np.where(n_pred == 0, 1, n_pred)  # tp is 0 where n_pred is: 0/1 is seqeval's 0.0
    recall = tp / np.where(n_gold == 0, 1, n_gold)
    denom = precision + recall
    denom[denom == 0.0] = 1
    return precision, recall, 2 * precision * recall / denom


def note(n_gold: int, n_pred: int) -> str | None:
    """Why P, R or F1 is 0 by convention (seqeval's zero_division=0), or None when both sides have entities."""
    if n_gold == 0 and n_pred == 0:
        return "no gold and no predicted entities: precision, recall and F1 are 0"
    if n_gold == 0:
        return "no gold entities: recall is 0 by convention, and so are precision and F1"
    if n_pred == 0:
        return "no predicted entities: precision is 0 by convention, and so are recall and F1"
    return None


def report(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray, types: Sequence[str]) -> dict:
    """Micro and per-type figures from per-type counts [K], as seqeval reports them.

    per_type holds the types with a gold or a predicted entity, sorted by name (seqeval's target names).
    """
    p, r, f = _prf(tp, n_pred, n_gold)
    micro = _prf(tp.sum(keepdims=True), n_pred.sum(keepdims=True), n_gold.sum(keepdims=True))
    shown = sorted((k for k in range(len(types)) if n_gold[k] or n_pred[k]), key=types.__getitem__)
    out = {
        "precision": float(micro[0][0]), "recall": float(micro[1][0]), "f1": float(micro[2][0]),
        "gold_entities": int(n_gold.sum()),
        "per_type": {types[k]: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                                "support": int(n_gold[k])} for k in shown},
    }
    why = note(int(n_gold.sum()), int(n_pred.sum()))
    if why:
        out["note"] = why
    return out


def score_ids(gold: np.ndarray, pred: np.ndarray, lengths: np.ndarray, types: Sequence[str]) -> dict:
    """Wojood metrics of predicted against gold tag ids: lenient (seqeval's default mode) and `strict` (IOB2).

    gold, pred: int [L, N] (or [N], read as L = 1), tag ids as in the module docstring, of L copies of a
        corpus of N words. Each row is cut into the sentences `lengths` gives, and all rows' entities are
        pooled: nested scoring passes one row per type layer (row k holds type k's tags or O), flat scoring
        one row.
    lengths: int [S], the sentence lengths in words, summing to N (empty sentences allowed).
    types: the K distinct type names the ids refer to.

    Returns {precision, recall, f1, gold_entities, per_type{type: precision, recall, f1, support},
    strict{the same keys}}, plus `note` (in either part) when gold or prediction has no entity.
    Raises ValueError on mismatched shapes or ids outside [0, 2K].
    """
    gold, pred = np.atleast_2d(np.asarray(gold, dtype=np.int32)), np.atleast_2d(np.asarray(pred, dtype=np.int32))
    lengths = np.asarray(lengths, dtype=np.intp)
    if gold.shape != pred.shape or gold.ndim != 2:
        raise ValueError(f"gold and predicted ids differ in shape: {gold.shape} and {pred.shape}")
    if int(lengths.sum()) != gold.shape[1] or (lengths < 0).any():
        raise ValueError(f"sentence lengths sum to {int(lengths.sum())}, but there are {gold.shape[1]} words")
    if len(set(types)) != len(types):
        raise ValueError(f"type names repeat: {list(types)}")
    for name, ids in (("gold", gold), ("predicted", pred)):
        if ids.size and (ids.min() < 0 or ids.max() > 2 * len(types)):
            raise ValueError(f"{name} tag ids must lie in [0, {2 * len(types)}] for {len(types)} types")
    first = np.zeros(gold.shape[1], dtype=bool)
    first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    g, p = gold.ravel(), pred.ravel()
    g_start, g_end = _chunks(gold, first)
    p_start, p_end = _chunks(pred, first)
    p_end_at = np.full(p.size, -1, dtype=np.intp)
    p_end_at[p_start] = p_end
    g_first, p_first = g[g_start], p[p_start]
    g_type, p_type = (g_first - 1) >> 1, (p_first - 1) >> 1
    p_at_g_start = p[g_start]  # the predicted id where each gold entity starts
    # same span and type: the prediction has a chunk starting there that ends where gold's does
    hit = (p_end_at[g_start] == g_end) & ((p_at_g_start - 1) >> 1 == g_type)
    g_b, p_b = g_first % 2 == 1, p_first % 2 == 1
    count = partial(np.bincount, minlength=len(types))
    out = report(count(g_type[hit]), count(p_type), count(g_type), types)
    # strict: both entities start with B-, which for equal types means equal first ids
    out["strict"] = report(count(g_type[hit & g_b & (p_at_g_start == g_first)]), count(p_type[p_b]),
                           count(g_type[g_b]), types)
    return out
