"""Word-to-subword alignment: sentences of labelled words into encoder rows (windows).

Owns: one batched fast-tokenizer call per corpus (word ids, not a call per word), the first
subword of each word carrying its label, words that yield no subword (given the unknown token,
explicitly), and windows: a sentence longer than the encoder's maximum is cut into overlapping
windows on word boundaries and every word is assigned to exactly one window, the one where it has
most context on both sides. No word is ever dropped from training or scoring.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Sentence

# per_type: [n, T] class ids of every tag (nested); flat_per_type: [n, T] class ids of the outermost
# tag only (MTN: per-type heads trained on flat data); flat: [n, 1] flat tag id (the flat head)
LAYOUTS = ("per_type", "flat_per_type", "flat")


@dataclasses.dataclass
class Window:
    """One encoder row: [CLS] subwords [SEP], and which words it scores."""

    sentence: int  # index of the sentence in the corpus
    input_ids: np.ndarray  # [n] int32, with [CLS] and [SEP]
    word_index: np.ndarray  # [n] int32: word scored at this position (its first subword), else -1
    labels: np.ndarray  # [n, K] int32 gold class ids at scored positions, 0 (O) elsewhere

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclasses.dataclass
class AlignStats:
    sentences: int = 0
    words: int = 0
    windows: int = 0
    split_sentences: int = 0  # sentences longer than one window
    words_without_subwords: int = 0  # given the unknown token
    clipped_words: int = 0  # words longer than a window: their extra subwords are cut


def word_labels(sentence: Sentence, vocab: LabelVocab, layout: str) -> np.ndarray:
    """[n_words, K] gold class ids of a sentence in the given layout."""
    if layout in ("per_type", "flat_per_type"):
        out = np.zeros((len(sentence), vocab.num_types), np.int32)
        index = {t: i for i, t in enumerate(vocab.types)}
        for w, tags in enumerate(sentence.tags):
            for tag in (tags if layout == "per_type" else tags[:1]):
                if tag != "O":
                    out[w, index[tag[2:]]] = vocab.type_class_id(tag)
        return out
    if layout == "flat":
        return np.array([[vocab.flat_id(t)] for t in sentence.flat_tags()], np.int32).reshape(-1, 1)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def subwords_per_word(sentences: Sequence[Sentence], tokenizer, stats: AlignStats) -> list[list[list[int]]]:
    """For every sentence and word, its subword ids, from one batched tokenizer call."""
    enc = tokenizer([s.words for s in sentences], is_split_into_words=True, add_special_tokens=False)
    out = []
    for i, s in enumerate(sentences):
        per_word: list[list[int]] = [[] for _ in s.words]
        for token_id, word in zip(enc["input_ids"][i], enc.word_ids(i)):
            if word is not None:
                per_word[word].append(token_id)
        for pieces in per_word:
            if not pieces:  # e.g. a lone control or zero-width character the normalizer removes
                pieces.append(tokenizer.unk_token_id)
                stats.words_without_subwords += 1
        out.append(per_word)
    return out


def plan_windows(lengths: Sequence[int], budget: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Split words with `lengths` subwords into windows of at most `budget` subwords.

    Returns the windows as (first word, end word) and, for every word, the window that scores it.
    Consecutive windows overlap by about half a window.
    """
    n = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    windows, start = [], 0
    while True:
        end = start + 1  # a window holds at least one word (clipped if it alone is too long)
        while end < n and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        windows.append((start, end))
        if end >= n:
            break
        # Next window starts about half a window later, but never past this one's end.
        target = offsets[start] + budget // 2
        nxt = int(np.searchsorted(offsets, target, side="left"))
        start = min(max(nxt, start + 1), end)
    owner = []
    for w in range(n):
        best, best_ctx = -1, -1
        for k, (a, b) in enumerate(windows):
            if a <= w < b:
                context = min(offsets[w] - offsets[a], offsets[b] - offsets[w + 1])
                if context > best_ctx:
                    best, best_ctx = k, context
        owner.append(best)
    return windows, owner


def encode_sentences(sentences: Sequence[Sentence], tokenizer, vocab: LabelVocab, layout: str = "per_type",
                     max_length: int = 512) -> tuple[list[Window], AlignStats]:
    """Encode labelled sentences into windows of at most `max_length` tokens ([CLS]/[SEP] included)."""
    if max_length < 3:
        raise ValueError("max_length must leave room for [CLS], one subword and [SEP]")
    budget = max_length - 2
    stats = AlignStats(sentences=len(sentences))
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows: list[Window] = []
    for si, (sentence, per_word) in enumerate(zip(sentences, subwords_per_word(sentences, tokenizer, stats))):
        stats.words += len(sentence)
        if not per_word:
            continue
        for pieces in per_word:
            if len(pieces) > budget:
                del pieces[budget:]
                stats.clipped_words += 1
        labels = word_labels(sentence, vocab, layout)
        spans, owner = plan_windows([len(p) for p in per_word], budget)
        stats.split_sentences += len(spans) > 1
        for k, (a, b) in enumerate(spans):
            ids, word_index, rows = [cls_id], [-1], [np.zeros(labels.shape[1], np.int32)]
            for w in range(a, b):
                scored = owner[w] == k
                for j, piece in enumerate(per_word[w]):
                    ids.append(piece)
                    first = j == 0 and scored
                    word_index.append(w if first else -1)
                    rows.append(labels[w] if first else np.zeros(labels.shape[1], np.int32))
            ids.append(sep_id)
            assert len(ids) <= max_length, "plan_windows keeps every window within the budget"
            word_index.append(-1)
            rows.append(np.zeros(labels.shape[1], np.int32))
            windows.append(Window(si, np.array(ids, np.int32), np.array(word_index, np.int32), np.stack(rows)))
    stats.windows = len(windows)
    return windows, stats


def scatter_to_words(windows: Sequence[Window], num_words: Sequence[int], outputs: Sequence[np.ndarray]):
    """Per-position outputs of each window ([n, ...]) back to per-word arrays of each sentence."""
    sample = outputs[0]
    result = [np.zeros((n,) + sample.shape[1:], sample.dtype) for n in num_words]
    filled = [np.zeros(n, bool) for n in num_words]
    for window, out in zip(windows, outputs):
        pos = np.nonzero(window.word_index >= 0)[0]
        result[window.sentence][window.word_index[pos]] = out[pos]
        filled[window.sentence][window.word_index[pos]] = True
    missing = [i for i, f in enumerate(filled) if not f.all()]
    if missing:
        raise AssertionError(f"words of sentences {missing[:5]} were not scored by any window")
    return result
