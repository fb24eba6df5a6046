"""Wojood-exact evaluation (SPEC section 6) of word tag strings, and the `predictions.txt` file.

Owns: turning word tags into what the Wojood scorer scores (flat: each word's first tag, one sequence per
sentence; nested: per type, one sequence per sentence holding the word's tag of that type, all types'
copies pooled), `score_tags` with its two interchangeable scorers (the vectorized `arner_jax.scoring.engine`, and
seqeval 1.2.2 called exactly as the reference calls it, kept as the oracle), the per-type table, and
reading/writing `predictions.txt`. Runs on the host.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from arner_jax.data.wojood import (
    TAG_RE,
    Corpus,
    Sentence,
    WojoodFormatError,
    parse_wojood,
    read_text,
    type_layer,
)
from arner_jax.scoring.engine import note, report, score_ids

PREDICTIONS_HEADER = "Token\tGold Tag\tPredicted Tag"
SCORERS = ("fast", "seqeval")
TagLists = Sequence[Sequence[Sequence[str]]]  # sentence -> word -> tags


def flat_sequences(sentences: TagLists) -> list[list[str]]:
    """Flat scoring: each word's first (outermost; in flat files the only) tag."""
    return [[tags[0] if tags else "O" for tags in words] for words in sentences]


def nested_sequences(sentences: TagLists, types: Sequence[str]) -> list[list[str]]:
    """Nested scoring: per type, one sequence per sentence; the copies concatenated in type order."""
    return [type_layer(words, t) for t in types for words in sentences]


def _checked_types(tags: Iterable[str]) -> list[str]:
    """The sorted entity types of distinct tags; ValueError names the first tag that is not O, B-X or I-X."""
    bad = sorted(t for t in tags if t != "O" and not TAG_RE.match(t))
    if bad:
        raise ValueError(f"tag {bad[0]!r} is not `O`, `B-TYPE` or `I-TYPE` (IOB2); convert the tags to IOB2 first")
    return sorted({t[2:] for t in tags if t != "O"})


def encode_tags(words: Sequence[Sequence[str]], nested: bool, types: Sequence[str]) -> np.ndarray:
    """Tag ids (see arner_jax.scoring.engine) of checked word tags, the words of all sentences in a row: nested
    [len(types), N], one layer per type (a word's first tag of the type; tags of other types are left out);
    flat [1, N], each word's first tag."""
    index = {f"{prefix}-{t}": 2 * k + j for k, t in enumerate(types) for j, prefix in ((1, "B"), (2, "I"))}
    n = len(words)
    # map(index.get, tags, repeat(0)) looks every tag up without a Python frame per word (O and others: 0)
    if not nested:
        firsts = [w[0] if w else "O" for w in words]
        return np.fromiter(map(index.get, firsts, repeat(0)), np.int32, n)[None]
    counts = np.fromiter(map(len, words), np.intp, n)
    ids = np.fromiter(map(index.get, chain.from_iterable(words), repeat(0)), np.int32, int(counts.sum()))
    word = np.repeat(np.arange(n), counts)[ids > 0]
    ids = ids[ids > 0]
    # one cell per (type, word); np.unique's return_index is the first occurrence, as in type_layer
    cells, first = np.unique(((ids - 1) >> 1) * n + word, return_index=True)
    layers = np.zeros(len(types) * n, np.int32)
    layers[cells] = ids[first]
    return layers.reshape(len(types), n)


def _seqeval_report(gold: list[list[str]], pred: list[list[str]], strict: bool) -> dict:
    if not gold:  # seqeval raises TypeError on an empty list; nothing to count
        return report(np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.intp), [])
    # imported here: seqeval loads scikit-learn (over a second), which the fast scorer does without
    from seqeval.metrics import (
        classification_report,
        f1_score,
        precision_score,
        recall_score,
    )
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {"scheme": IOB2}  # the reference's call
    with warnings.catch_warnings():
        # with no entity at all the report's macro average is a mean of nothing (a RuntimeWarning); unused here
        warnings.simplefilter("ignore", RuntimeWarning)
        table = classification_report(gold, pred, output_dict=True, zero_division=0, **kwargs)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])}
                for k, v in table.items() if not k.endswith(" avg")}
    out = {
        "precision": float(precision_score(gold, pred, zero_division=0, **kwargs)),
        "recall": float(recall_score(gold, pred, zero_division=0, **kwargs)),
        "f1": float(f1_score(gold, pred, zero_division=0, **kwargs)),
        "gold_entities": sum(v["support"] for v in per_type.values()),
        "per_type": per_type,
    }
    # with O/B-/I- tags only, a sequence holds an entity iff it has a non-O tag (lenient) or a B- tag (strict)
    starts = ("B",) if strict else ("B", "I")
    n_pred = int(any(t[0] in starts for seq in pred for t in seq))
    why = note(out["gold_entities"], n_pred)
    if why:
        out["note"] = why
    return out


def score_tags(gold: TagLists, pred: TagLists, nested: bool, types: Sequence[str] | None = None,
               scorer: str = "fast", extra_predicted: dict[str, int] | None = None) -> dict:
    """Wojood metrics of predicted word tags against gold word tags (sentence -> word -> tags).

    Returns micro precision/recall/f1 (seqeval's default mode, as Wojood reports), `strict` (IOB2 strict
    mode) with the same keys, `per_type` tables, `gold_entities` and `mode`; and a `note` (top level or in
    `strict`) saying why the figures are 0 when gold or prediction has no entity (an empty list of sentences
    included). Nested scoring covers `types` (default: every type in gold or prediction); flat scoring
    ignores it. scorer "fast" (arner_jax.scoring.engine) and "seqeval" give identical dicts.
    Raises ValueError when the sentence counts or lengths differ, `types` repeats a name, or naming a tag
    that is not O, B-X or I-X.
    extra_predicted: predicted entities no IOB2 tag expresses (arner_jax.scoring.engine.score_cells; fast scorer only).
    """
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tags differ in sentence count or sentence lengths")
    gold_words, pred_words = list(chain.from_iterable(gold)), list(chain.from_iterable(pred))
    found = _checked_types(set(chain.from_iterable(gold_words)).union(chain.from_iterable(pred_words)))
    if not nested or types is None:
        types = found
    elif len(set(types)) != len(types):  # a repeated type would score its layer twice
        raise ValueError(f"type names repeat: {list(types)}")
    if scorer == "fast":
        lengths = np.fromiter(map(len, gold), np.intp, len(gold))
        ids = [encode_tags(words, nested, types) for words in (gold_words, pred_words)]
        metrics = score_ids(*ids, lengths, types, extra_predicted)
    else:
        if extra_predicted:
            raise ValueError("extra_predicted needs the fast scorer")
        g, p = (nested_sequences(gold, types), nested_sequences(pred, types)) if nested else \
            (flat_sequences(gold), flat_sequences(pred))
        metrics = _seqeval_report(g, p, strict=False)
        metrics["strict"] = _seqeval_report(g, p, strict=True)
    metrics["mode"] = "nested" if nested else "flat"
    return metrics


def format_per_type(metrics: dict) -> str:
    """A plain-text per-type table (lenient mode, as Wojood reports)."""
    rows = [f"{'type':<10} {'P':>7} {'R':>7} {'F1':>7} {'support':>8}"]
    for name, m in sorted(metrics["per_type"].items()):
        rows.append(f"{name:<10} {m['precision']:7.4f} {m['recall']:7.4f} {m['f1']:7.4f} {m['support']:8d}")
    rows.append(f"{'micro':<10} {metrics['precision']:7.4f} {metrics['recall']:7.4f} {metrics['f1']:7.4f} "
                f"{metrics['gold_entities']:8d}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- predictions.txt
def format_predictions(gold: Sequence[Sentence], pred: TagLists) -> str:
    """The reference layout: header, `word<TAB>gold1|gold2<TAB>pred1|pred2`, blank line between sentences.

    For nested models `pred` holds one tag per type (in type order), for flat models one tag.
    """
    lines = [PREDICTIONS_HEADER]
    for sentence, words in zip(gold, pred):
        for word, gold_tags, tags in zip(sentence.words, sentence.tags, words):
            lines.append(f"{word}\t{'|'.join(gold_tags)}\t{'|'.join(tags)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_predictions(path: str | Path, gold: Sequence[Sentence], pred: TagLists) -> None:
    Path(path).write_text(format_predictions(gold, pred), encoding="utf-8")


def parse_predictions(text: str, path: str = "<string>", scheme: str = "iob2") -> Corpus:
    """Read a `predictions.txt` back as a Corpus of the *predicted* tags (O-only entries dropped)."""
    text = text.lstrip("\ufeff")
    body = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if lineno == 1 and line.strip() == PREDICTIONS_HEADER:
            body.append("")
            continue
        if not line.strip():
            body.append("")
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3:
            raise WojoodFormatError(path, lineno, f"{len(fields)} tab-separated fields; a predictions.txt line is "
                                    "`word<TAB>gold<TAB>predicted`.")
        tags = [t for t in fields[2].split("|") if t and t != "O"] or ["O"]
        body.append(f"{fields[0]} {' '.join(tags)}")
    return parse_wojood("\n".join(body), path, scheme)


def read_tagged_file(path: str | Path, scheme: str = "iob2") -> Corpus:
    """A Wojood file, or a `predictions.txt` (recognised by its header); scheme as in parse_wojood."""
    text = read_text(path)
    if text.lstrip("\ufeff").split("\n", 1)[0].strip() == PREDICTIONS_HEADER:
        return parse_predictions(text, str(path), scheme)
    return parse_wojood(text, str(path), scheme)
