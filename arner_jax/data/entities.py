"""From predicted class ids to word tags and entity records (numpy only: no JAX, no PyTorch).

Owns: splitting raw text into words with character offsets (the `tokenizers` BERT
pre-tokenizer: whitespace and punctuation, Arabic punctuation included; diacritics and tatweel
stay inside their word), class ids to Wojood word tags for every model kind, and entity records
`{"text", "label", "start", "end", "score"}` in reading order. Spans come from each tag layer
with seqeval's own chunking (the lenient, conlleval-like rule the Wojood metric uses), so what
`predict` returns is what the scorer counts. Shared by the JAX predictor and the PyTorch tagger.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from arner_jax.data.vocab import LabelVocab


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw string and their character spans (end exclusive) in that string."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pieces = BertPreTokenizer().pre_tokenize_str(text)
    return [w for w, _ in pieces], [tuple(span) for _, span in pieces]


def tag_layers(kind: str, vocab: LabelVocab, word_ids: np.ndarray) -> list[list[str]]:
    """Per layer (type for nested/MTN, the one flat layer), the word tags; word_ids [n, K]."""
    if kind == "flat":
        return [[vocab.flat_tags[int(i)] for i in word_ids[:, 0]]]
    return [[vocab.type_tag(t, int(c)) for c in word_ids[:, t]] for t in range(word_ids.shape[1])]


def ids_to_tags(kind: str, vocab: LabelVocab, word_ids: np.ndarray) -> list[list[str]]:
    """Per word, its predicted tags: nested/MTN one tag per type (in type order), flat one tag."""
    return [list(tags) for tags in zip(*tag_layers(kind, vocab, word_ids))] if len(word_ids) else []


def entity_tags(tags_per_word: Sequence[Sequence[str]]) -> list[list[str]]:
    """Per-type tag lists reduced to Wojood's word tags: the non-O tags, or ["O"]."""
    return [[t for t in tags if t != "O"] or ["O"] for tags in tags_per_word]


def word_entities(kind: str, vocab: LabelVocab, word_ids: np.ndarray, word_probs: np.ndarray):
    """Entities as (label, first word, end word exclusive, score) in reading order.

    word_ids, word_probs: [n, K] predicted class and its probability per layer. The score is the
    mean probability of the entity's word tags.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    found = []
    for k, layer in enumerate(tag_layers(kind, vocab, word_ids)):
        for label, first, last in get_entities(layer):
            found.append((label, first, last + 1, float(np.mean(word_probs[first:last + 1, k]))))
    return sorted(found, key=lambda e: (e[1], -e[2], e[0]))  # outer before inner at the same start


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
