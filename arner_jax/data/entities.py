"""From predicted word tags to entities and entity records (numpy only: no JAX, no PyTorch).

Owns: splitting raw text into words with character offsets (the `tokenizers` BERT
pre-tokenizer: whitespace and punctuation, Arabic punctuation included; diacritics and tatweel
stay inside their word), per-type tag layers reduced to Wojood word tags, entities of tag layers
and entity records `{"text", "label", "start", "end", "score"}` in reading order. Spans come from
each tag layer with the lenient (conlleval-like) chunking the Wojood metric uses
(`data.schemes.tag_spans`), so what `predict` returns is what the scorer counts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from arner_jax.data.schemes import tag_spans


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw string and their character spans (end exclusive) in that string."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pieces = BertPreTokenizer().pre_tokenize_str(text)
    return [w for w, _ in pieces], [tuple(span) for _, span in pieces]


def entity_tags(tags_per_word: Sequence[Sequence[str]]) -> list[list[str]]:
    """Per-type tag lists reduced to Wojood's word tags: the non-O tags, or ["O"]."""
    return [[t for t in tags if t != "O"] or ["O"] for tags in tags_per_word]


def layer_entities(layers: Sequence[Sequence[str]], probs: np.ndarray) -> list[tuple[str, int, int, float]]:
    """Entities as (label, first word, end word exclusive, score) of IOB2 tag layers, in reading order.

    layers: per layer (a type, or the one flat layer), the tag of each word; probs: [n, layers],
    the probability of each predicted tag. The score is the mean probability of the entity's tags.
    """
    found = []
    for k, layer in enumerate(layers):
        for label, first, end in tag_spans(layer):
            found.append((label, first, end, float(np.mean(probs[first:end, k]))))
    return sorted(found, key=lambda e: (e[1], -e[2], e[0]))  # outer before inner at the same start


def entity_word_tags(entities: Sequence[tuple[str, int, int, float]], num_words: int) -> list[list[str]]:
    """Wojood word tags (IOB2, outermost first, ["O"] for none) of entities (label, first, end, score)."""
    tags: list[list[str]] = [[] for _ in range(num_words)]
    for label, start, end, _ in sorted(entities, key=lambda e: (e[1] - e[2], e[1])):  # longest first
        tags[start].append(f"B-{label}")
        for w in range(start + 1, end):
            tags[w].append(f"I-{label}")
    return [t or ["O"] for t in tags]


def entity_records(entities, words: Sequence[str], spans: Sequence[tuple[int, int]] | None = None,
                   text: str | None = None) -> list[dict]:
    """Records with character offsets into `text` (when spans are given) or word indices."""
    out = []
    for label, first, end, score in entities:
        if spans is not None:
            start, stop = spans[first][0], spans[end - 1][1]
            out.append({"text": text[start:stop], "label": label, "start": start, "end": stop, "score": score})
        else:
            out.append({"text": " ".join(words[first:end]), "label": label, "start": first, "end": end,
                        "score": score})
    return out
