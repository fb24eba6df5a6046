"""Wojood-exact evaluation (SPEC section 6) and the `predictions.txt` file.

Owns: building the tag sequences the Wojood scorer scores (flat: one per sentence; nested: one
per type and sentence, all types' copies concatenated and scored once), micro P/R/F1 in
seqeval's default (lenient, conlleval-like) mode exactly as the reference calls it, strict IOB2
beside it, the per-type table, and reading/writing `predictions.txt`. Runs on the host.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from arner_jax.data.wojood import Corpus, Sentence, WojoodFormatError, parse_wojood, read_text, type_layer

PREDICTIONS_HEADER = "Token\tGold Tag\tPredicted Tag"
TagLists = Sequence[Sequence[Sequence[str]]]  # sentence -> word -> tags


def flat_sequences(sentences: TagLists) -> list[list[str]]:
    """Flat scoring: each word's first (outermost; in flat files the only) tag."""
    return [[tags[0] if tags else "O" for tags in words] for words in sentences]


def nested_sequences(sentences: TagLists, types: Sequence[str]) -> list[list[str]]:
    """Nested scoring: per type, one sequence per sentence; the copies concatenated in type order."""
    return [type_layer(words, t) for t in types for words in sentences]


def _report(gold, pred, strict: bool) -> dict:
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {"scheme": IOB2}  # the reference's call
    table = classification_report(gold, pred, output_dict=True, zero_division=0, **kwargs)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])}
                for k, v in table.items() if not k.endswith(" avg")}
    return {
        "precision": float(precision_score(gold, pred, zero_division=0, **kwargs)),
        "recall": float(recall_score(gold, pred, zero_division=0, **kwargs)),
        "f1": float(f1_score(gold, pred, zero_division=0, **kwargs)),
        "gold_entities": sum(v["support"] for v in per_type.values()),
        "per_type": per_type,
    }


def score_tags(gold: TagLists, pred: TagLists, nested: bool, types: Sequence[str] | None = None) -> dict:
    """Wojood metrics of predicted word tags against gold word tags.

    Returns micro precision/recall/f1 (seqeval default mode, as Wojood reports), `strict`
    (IOB2 strict mode) with the same keys, `per_type` tables and `gold_entities`.
    """
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tags differ in sentence count or sentence lengths")
    if nested:
        if types is None:
            types = sorted({t[2:] for s in list(gold) + list(pred) for w in s for t in w if t != "O"})
        g, p = nested_sequences(gold, types), nested_sequences(pred, types)
    else:
        g, p = flat_sequences(gold), flat_sequences(pred)
    lenient = _report(g, p, strict=False)
    lenient["strict"] = _report(g, p, strict=True)
    lenient["mode"] = "nested" if nested else "flat"
    return lenient


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


def parse_predictions(text: str, path: str = "<string>") -> Corpus:
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
            raise WojoodFormatError(path, lineno, "expected `word<TAB>gold<TAB>predicted` (predictions.txt layout).")
        tags = [t for t in fields[2].split("|") if t and t != "O"] or ["O"]
        body.append(f"{fields[0]} {' '.join(tags)}")
    return parse_wojood("\n".join(body), path)


def read_tagged_file(path: str | Path) -> Corpus:
    """A Wojood file, or a `predictions.txt` (recognised by its header)."""
    text = read_text(path)
    if text.lstrip("\ufeff").split("\n", 1)[0].strip() == PREDICTIONS_HEADER:
        return parse_predictions(text, str(path))
    return parse_wojood(text, str(path))
