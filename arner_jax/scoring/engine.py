"""The Wojood metric (SPEC 6) over integer tag ids, vectorized with numpy, equal to seqeval 1.2.2 to the bit.

Owns: entity extraction with seqeval's default (lenient, conlleval-like) chunking and its strict IOB2
mode, per-type true-positive/predicted/gold counts, and micro and per-type precision/recall/F1 computed
with the same float operations as seqeval's `precision_score`/`recall_score`/`f1_score` and
`classification_report(output_dict=True)` with `zero_division=0`. Strings stay out of it: turning word
tags into ids is `arner_jax.scoring.metrics`' job, which also keeps seqeval itself as the oracle (scorer="seqeval").

Tag ids: 0 = O, 1 + 2k = B-types[k], 2 + 2k = I-types[k]. `score_ids` takes them dense ([L, N]);
`score_cells` only the non-O cells (positions and ids), which is all the scoring looks at: nested files
have K layers of mostly O, and `arner_jax.scoring.tagged_file` makes the cells without the dense array.

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


def _chunks(at: np.ndarray, ids: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into at) of the first and last cell of every chunk; at [C] ascending flat indices (row-major
    over [L, N]) of the non-O cells, ids [C] their tag ids, first [N] bool."""
    cont = np.zeros(at.size + 1, dtype=bool)  # cont[j]: cell j continues cell j - 1's chunk; cont[C] = False
    if at.size:
        # I-X (even id) right after B-X (id - 1) or I-X (same id) in the same row; never at a sentence start
        # (word 0 starts one, so a row's first cell never continues the row before)
        cont[1:-1] = (at[1:] == at[:-1] + 1) & (ids[1:] % 2 == 0) & ((ids[:-1] == ids[1:]) | (ids[:-1] == ids[1:] - 1))
        cont[:-1] &= ~first[at % first.size]
    return np.flatnonzero(~cont[:-1]), np.flatnonzero(~cont[1:])


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


def score_ids(gold: np.ndarray, pred: np.ndarray, lengths: np.ndarray, types: Sequence[str],
              extra_predicted: dict[str, int] | None = None) -> dict:
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
    g, p = gold.ravel(), pred.ravel()
    g_at, p_at = np.flatnonzero(g), np.flatnonzero(p)
    return score_cells(g_at, g[g_at], p_at, p[p_at], lengths, types, extra_predicted)


def score_cells(g_at: np.ndarray, g_ids: np.ndarray, p_at: np.ndarray, p_ids: np.ndarray, lengths: np.ndarray,
                types: Sequence[str], extra_predicted: dict[str, int] | None = None) -> dict:
    """`score_ids` from the non-O cells alone (what `score_ids` reduces its dense ids to).

    extra_predicted: predicted entities of further types that no O/B/I id expresses, by type name (the
    reference recipe's `<pad>` predictions, which seqeval's default mode reads as entities of type
    "pad>"); they count in the lenient figures (precision and the per-type table), never as correct,
    and not in the strict ones (seqeval's strict IOB2 mode refuses such tags).

    g_at, p_at: int [C], strictly ascending flat indices (row-major) into the [L, N] ids of `score_ids`, with
        N = lengths.sum(); g_ids, p_ids: int [C], their tag ids, each in [1, 2K].
    Raises ValueError on unsorted cells or ids outside [1, 2K].
    """
    lengths = np.asarray(lengths, dtype=np.intp)
    for name, at, ids in (("gold", g_at, g_ids), ("predicted", p_at, p_ids)):
        if at.shape != ids.shape or (at.size and (np.diff(at) <= 0).any()):
            raise ValueError(f"{name} cells must be strictly ascending positions, one id each")
        if ids.size and (ids.min() < 1 or ids.max() > 2 * len(types)):
            raise ValueError(f"{name} cell ids must lie in [1, {2 * len(types)}] for {len(types)} types")
    first = np.zeros(int(lengths.sum()), dtype=bool)
    first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    g_start, g_end = _chunks(g_at, g_ids, first)
    p_start, p_end = _chunks(p_at, p_ids, first)
    g_first, p_first = g_ids[g_start], p_ids[p_start]
    g_type, p_type = (g_first - 1) >> 1, (p_first - 1) >> 1
    g_start, g_end = g_at[g_start], g_at[g_end]
    # the predicted chunk that starts where each gold entity starts, if any (a sentinel -1 past the last)
    p_start, p_end = np.append(p_at[p_start], -1), np.append(p_at[p_end], -1)
    k = np.searchsorted(p_start[:-1], g_start)
    p_at_g_start = np.where(p_start[k] == g_start, np.append(p_first, 0)[k], 0)  # its id; 0: none
    # same span and type: the prediction has a chunk starting there that ends where gold's does
    hit = (p_start[k] == g_start) & (p_end[k] == g_end) & ((p_at_g_start - 1) >> 1 == g_type)
    g_b, p_b = g_first % 2 == 1, p_first % 2 == 1
    count = partial(np.bincount, minlength=len(types))
    extra = sorted((extra_predicted or {}).items())
    if any(name in types for name, _ in extra):
        raise ValueError(f"extra predicted types {[n for n, _ in extra]} must differ from the types {list(types)}")
    zeros = np.zeros(len(extra), np.int64)
    out = report(np.concatenate([count(g_type[hit]), zeros]),
                 np.concatenate([count(p_type), np.array([n for _, n in extra], np.int64)]),
                 np.concatenate([count(g_type), zeros]), [*types, *(name for name, _ in extra)])
    # strict: both entities start with B-, which for equal types means equal first ids
    out["strict"] = report(count(g_type[hit & g_b & (p_at_g_start == g_first)]), count(p_type[p_b]),
                           count(g_type[g_b]), types)
    return out
