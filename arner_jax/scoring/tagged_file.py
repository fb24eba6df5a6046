"""The two files `python -m arner_jax.score` compares, read fast: the whole file as bytes, numpy over the bytes.

Owns `TaggedFile` (a Wojood file or a `predictions.txt` as arrays: the words' byte spans and lines,
sentence lengths, and per word an index into the file's few distinct tag lists), `read_tagged` and
`score_files`. `read_tagged` gives what `arner_jax.scoring.metrics.read_tagged_file` reads (the same words,
tags, lines and dropped-duplicate count; `TaggedFile.to_corpus` shows it) without a Python object per
word: line breaks, tokens and fields are found by numpy over the file's bytes, and each distinct tag
field (`B-ORG I-OCC`, a few hundred in a corpus) is parsed once, by the reference reader's own rules.

What the fast path does not cover goes to the reference reader, which also words every error: a file
that cannot be read, is not UTF-8 or holds an error (a bad tag, a word without a tag, a bad
predictions line), `--tag_scheme any`, and text whose whitespace a byte split would read otherwise
than `str.split`/`str.splitlines` do (a lone CR, vertical tab, form feed, the separators
U+001C..U+001F, and non-ASCII spaces and line breaks).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from arner_jax.data.wojood import TAG_RE, Corpus, Sentence, _parse_tags
from arner_jax.scoring.engine import score_cells
from arner_jax.scoring.metrics import PREDICTIONS_HEADER, read_tagged_file, score_tags

BOM = b"\xef\xbb\xbf"
# ASCII controls that str.split or str.splitlines treat as whitespace or a line break and a byte split on
# space, tab, CR and LF does not (a lone CR is found apart)
OTHER_CONTROLS = np.array([0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x1F], np.uint8)
MAX_FIELD_WORDS = 1 << 23  # tag fields are compared as [lines, widest field / 8] uint64: at most 64 MiB
# the masks that keep the first 0..8 bytes of a little-endian uint64
HASH_BITS = 20  # distinct tag fields are found through a table of 2 ** 20 slots (4 MiB)
LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)


@dataclasses.dataclass(eq=False)
class TaggedFile:
    """A tagged file as arrays. Word i is data[word_start[i]:word_end[i]] (UTF-8) on line word_line[i]
    (1-based); its tags (outermost first, same-type repeats dropped) are tag_lists[tag_list_of_word[i]]."""

    path: str
    data: np.ndarray  # uint8 [bytes]
    word_start: np.ndarray  # int [N]
    word_end: np.ndarray  # int [N]
    word_line: np.ndarray  # int [N]
    lengths: np.ndarray  # int [S], words per sentence
    tag_lists: list[tuple[str, ...]]  # the distinct tag lists of the file's words
    tag_list_of_word: np.ndarray  # int [N]
    dropped_duplicates: int  # same-type second tags removed (the reference keeps the first)
    fast: bool  # read by the fast path (False: by the reference reader)

    @classmethod
    def from_corpus(cls, corpus: Corpus) -> TaggedFile:
        words = [w for s in corpus.sentences for w in s.words]
        sizes = np.fromiter((len(w.encode("utf-8")) for w in words), np.intp, len(words))
        ends = np.cumsum(sizes + 1) - 1  # the words joined with "\n"
        index: dict[tuple[str, ...], int] = {}
        ids = [index.setdefault(tuple(tags), len(index)) for s in corpus.sentences for tags in s.tags]
        return cls(
            path=corpus.path, data=np.frombuffer("\n".join(words).encode("utf-8"), np.uint8),
            word_start=ends - sizes, word_end=ends,
            word_line=np.array([s.first_line + j for s in corpus.sentences for j in range(len(s))], np.intp),
            lengths=np.array([len(s) for s in corpus.sentences], np.intp), tag_lists=list(index),
            tag_list_of_word=np.array(ids, np.intp), dropped_duplicates=corpus.dropped_duplicates, fast=False)

    def words(self) -> list[str]:
        data = self.data.tobytes()
        return [data[a:b].decode("utf-8") for a, b in zip(self.word_start.tolist(), self.word_end.tolist())]

    def tags(self) -> list[list[list[str]]]:
        """The word tags, sentence -> word -> tags (as `score_tags` takes them)."""
        per_word = [list(self.tag_lists[i]) for i in self.tag_list_of_word.tolist()]
        ends = np.cumsum(self.lengths).tolist()
        return [per_word[end - n:end] for end, n in zip(ends, self.lengths.tolist())]

    def to_corpus(self) -> Corpus:
        """The Corpus `read_tagged_file` gives for the same file."""
        words, tags, lines = self.words(), self.tags(), self.word_line.tolist()
        sentences, start = [], 0
        for sentence_tags in tags:
            n = len(sentence_tags)
            sentences.append(Sentence(words[start:start + n], sentence_tags, lines[start]))
            start += n
        return Corpus(sentences, self.path, self.dropped_duplicates, any(len(t) > 1 for t in self.tag_lists))

    def word_bytes(self) -> np.ndarray:
        """All words' bytes one after the other, uint8 [sum of word sizes]."""
        sizes = self.word_end - self.word_start
        offsets = np.repeat(self.word_start - (np.cumsum(sizes) - sizes), sizes)
        return self.data[offsets + np.arange(offsets.size)]

    def same_words(self, other: TaggedFile) -> bool:
        """The same sentences of the same words (what `arner_jax.score.check_aligned` checks)."""
        return (np.array_equal(self.lengths, other.lengths)
                and np.array_equal(self.word_end - self.word_start, other.word_end - other.word_start)
                and np.array_equal(self.word_bytes(), other.word_bytes()))

    def tag_cells(self, types: Sequence[str], nested: bool) -> tuple[np.ndarray, np.ndarray]:
        """The non-O cells of the tag ids `arner_jax.scoring.metrics.encode_tags` makes (nested [K, N]: a word's first
        tag of each type; flat [1, N]: its first tag), as `arner_jax.scoring.engine.score_cells` takes them: flat
        indices, ascending, and ids. Encoded once per distinct tag list, then gathered."""
        index = {f"{prefix}-{t}": 2 * k + j for k, t in enumerate(types) for j, prefix in ((1, "B"), (2, "I"))}
        if not nested:
            first = np.array([index.get(tags[0], 0) if tags else 0 for tags in self.tag_lists], np.intp)
            ids = first[self.tag_list_of_word]
            at = np.flatnonzero(ids)
            return at, ids[at]
        layers, ids = [], []  # per distinct tag list: the layers (types) of its cells and their ids
        for tags in self.tag_lists:
            cells: dict[int, int] = {}
            for i in map(index.get, tags, repeat(0)):
                if i:
                    cells.setdefault((i - 1) >> 1, i)  # a word's first tag of a type counts
            layers.append(list(cells))
            ids.append(list(cells.values()))
        n_words, per_list = self.tag_list_of_word.size, np.array([len(c) for c in layers], np.intp)
        n_cells = per_list[self.tag_list_of_word]  # [N]
        # cell j of word i is entry (start of i's list) + j of the lists' cells laid end to end
        word = np.repeat(np.arange(n_words), n_cells)
        entry = np.arange(word.size) + np.repeat((np.cumsum(per_list) - per_list)[self.tag_list_of_word]
                                                 - (np.cumsum(n_cells) - n_cells), n_cells)
        at = np.array(list(chain.from_iterable(layers)), np.intp)[entry] * n_words + word
        order = np.argsort(at, kind="stable")
        return at[order], np.array(list(chain.from_iterable(ids)), np.intp)[entry][order]


def types_of(*files: TaggedFile) -> list[str]:
    """The entity types of the files' tags, sorted (`score_tags`' default type list)."""
    return sorted({t[2:] for f in files for tags in f.tag_lists for t in tags if t != "O"})


def score_files(gold: TaggedFile, pred: TaggedFile, nested: bool, scorer: str = "fast") -> dict:
    """`score_tags` of two files with the same words (see `TaggedFile.same_words`): the same dict."""
    if scorer != "fast":
        return score_tags(gold.tags(), pred.tags(), nested, scorer=scorer)
    types = types_of(gold, pred)
    metrics = score_cells(*gold.tag_cells(types, nested), *pred.tag_cells(types, nested), gold.lengths, types)
    metrics["mode"] = "nested" if nested else "flat"
    return metrics


def read_tagged(path: str | Path, scheme: str = "iob2") -> TaggedFile:
    """What `arner_jax.scoring.metrics.read_tagged_file(path, scheme)` reads, as a TaggedFile; the same errors."""
    fast = _read_fast(path) if scheme == "iob2" else None
    return fast if fast is not None else TaggedFile.from_corpus(read_tagged_file(path, scheme))


# ----------------------------------------------------------------------------- the fast path
def _read_fast(path: str | Path) -> TaggedFile | None:
    """The file read with numpy, or None where the reference reader must read it (see the module docstring)."""
    from arner_jax.data.files import read_bytes

    try:
        raw = read_bytes(path)  # a URL's failure too is an OSError: the reference reader then names it
        text = raw.decode("utf-8")  # only to check the encoding: the parse below works on the bytes
    except (OSError, UnicodeDecodeError):
        return None
    skip = len(BOM) if raw.startswith(BOM) else 0
    data = np.frombuffer(raw, np.uint8)
    if raw.startswith(BOM, skip) or _unicode_space(data):
        return None
    end = text.find("\n")
    predictions = text.lstrip("\ufeff")[:end if end >= 0 else None].strip() == PREDICTIONS_HEADER
    lines = _Lines.scan(data, skip)
    if lines is None:
        return None
    fields = lines.prediction_fields() if predictions else lines.wojood_fields()
    if fields is None:
        return None
    word_start, word_end, word_line, tag_start, tag_end = fields
    distinct = _distinct_spans(data, tag_start, tag_end)
    if distinct is None:
        return None
    first, inverse = distinct
    tag_lists, dropped = [], np.zeros(len(first), np.intp)
    for k, i in enumerate(first.tolist()):
        field = raw[tag_start[i]:tag_end[i]].decode("utf-8")
        tags = ([t for t in field.split("|") if t and t != "O"] or ["O"]) if predictions else field.split()
        try:
            kept, dropped[k] = _parse_tags(tags, path, 0, TAG_RE)
        except ValueError:  # the reference reader names the first line with this error
            return None
        tag_lists.append(tuple(kept))
    starts = np.flatnonzero(np.diff(word_line, prepend=-2) != 1)  # a blank line (or more) before the word
    return TaggedFile(str(path), data, word_start, word_end, word_line + 1, np.diff(starts, append=len(word_line)),
                      tag_lists, inverse, int(dropped[inverse].sum()), fast=True)


@dataclasses.dataclass
class _Lines:
    """The tokens of a file's bytes (runs of bytes other than space, tab, CR and LF) and its lines."""

    data: np.ndarray  # uint8 [bytes]
    space: np.ndarray  # positions of space, tab, CR and LF, ascending [W]
    newlines_before: np.ndarray  # [W + 1]: LFs before space[k] (k < W), and in all (k = W)
    token_start: np.ndarray  # [T]
    token_end: np.ndarray  # [T]
    token_line: np.ndarray  # [T], 0-based

    @classmethod
    def scan(cls, data: np.ndarray, skip: int) -> _Lines | None:
        low = np.flatnonzero(data <= 32)
        low = low[low >= skip]
        value = data[low]
        if np.isin(value, OTHER_CONTROLS).any():
            return None
        space = (value == 32) | (value == 9) | (value == 10) | (value == 13)
        low, value = low[space], value[space]  # other controls (NUL, ...) are word bytes to both readers
        cr = low[value == 13]
        if cr.size and (cr[-1] + 1 >= data.size or (data[cr + 1] != 10).any()):
            return None  # a CR not followed by LF: a line break of its own to str.splitlines
        newlines_before = np.concatenate(([0], np.cumsum(value == 10)))
        bounds = np.concatenate(([skip - 1], low, [data.size]))
        token = np.diff(bounds) > 1  # a token between two consecutive spaces
        return cls(data, low, newlines_before, bounds[:-1][token] + 1, bounds[1:][token], newlines_before[token])

    def line_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token line: index of its first and last token."""
        new = np.flatnonzero(np.diff(self.token_line, prepend=-1) != 0)
        return new, np.append(new[1:], self.token_line.size)[:new.size] - 1

    def wojood_fields(self) -> tuple[np.ndarray, ...] | None:
        """`word tag tag ...` lines: the word's span and line, and the span from the first to the last tag."""
        first, last = self.line_starts()
        if (last == first).any():  # a word without a tag
            return None
        return (self.token_start[first], self.token_end[first], self.token_line[first],
                self.token_start[first + 1], self.token_end[last])

    def prediction_fields(self) -> tuple[np.ndarray, ...] | None:
        """`word<TAB>gold<TAB>predicted` lines after the header: the word and the predicted field (the gold
        field may hold anything); None unless every such line has two tabs and no space in the others."""
        first, last = self.line_starts()
        line = self.token_line[first]
        first, last, line = first[line > 0], last[line > 0], line[line > 0]  # line 1 is the header
        tabs = self.space[self.data[self.space] == 9]
        tab_line = self.newlines_before[np.flatnonzero(self.data[self.space] == 9)]
        if not np.array_equal(np.bincount(tab_line, minlength=line.max(initial=0) + 1)[line], np.full(line.size, 2)):
            return None
        tab1 = tabs[np.searchsorted(tab_line, line)]
        tab2 = tabs[np.searchsorted(tab_line, line) + 1]
        newline = self.space[self.data[self.space] == 10]
        line_end = np.append(newline, self.data.size)[line]
        line_end -= self.data[np.maximum(line_end - 1, 0)] == 13  # the CR of CRLF
        line_start = np.concatenate(([0], newline + 1))[line]
        word_end = self.token_end[first]
        tag_start = tab2 + 1
        # the word: one token from the line's start to the first tab; the predicted field: empty, or one
        # token from the second tab to the line's end (a space in either is left to the reference reader)
        ok = (self.token_start[first] == line_start) & (word_end == tab1) & (
            (tag_start == line_end) | ((self.token_start[last] == tag_start) & (self.token_end[last] == line_end)))
        if not ok.all():
            return None
        return line_start, word_end, line, tag_start, line_end


def _unicode_space(data: np.ndarray) -> bool:
    """Whether valid UTF-8 holds a non-ASCII character that str.split or str.splitlines treat as whitespace
    or a line break: U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000."""
    lead = np.flatnonzero(((data & 0xFC) == 0xE0) | (data == 0xC2))  # E0..E3 and C2: rare in Arabic text
    if not lead.size:
        return False
    padded = np.append(data, np.zeros(2, np.uint8))
    a, b, c = padded[lead], padded[lead + 1], padded[lead + 2]
    return bool((((a == 0xC2) & ((b == 0x85) | (b == 0xA0)))
                 | ((a == 0xE1) & (b == 0x9A) & (c == 0x80))
                 | ((a == 0xE2) & (b == 0x80) & (((c >= 0x80) & (c <= 0x8A)) | (c == 0xA8) | (c == 0xA9) | (c == 0xAF)))
                 | ((a == 0xE2) & (b == 0x81) & (c == 0x9F))
                 | ((a == 0xE3) & (b == 0x80) & (c == 0x80))).any())


def _distinct_spans(data: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct byte strings among the spans: the index of one span of each, and each span's index of
    its string; None when the spans are too wide to compare."""
    width = end - start
    cols = max(1, -(-int(width.max(initial=0)) // 8))  # 8-byte words per span
    if width.size * cols > MAX_FIELD_WORDS:
        return None
    padded = np.append(data, np.zeros(8 * cols, np.uint8))
    at = np.ndarray((padded.size - 7,), np.dtype("<u8"), padded, strides=(1,))  # at[i]: the 8 bytes from byte i
    words = np.empty((width.size, cols), np.uint64)  # the span's bytes, zeros after its end
    key = width.astype(np.uint64)
    for c in range(cols):
        words[:, c] = at[start + 8 * c] & LOW_BYTES[np.clip(width - 8 * c, 0, 8)]
        key = (key ^ words[:, c]) * np.uint64(0x9E3779B97F4A7C15)  # wraps around: a hash, checked below
    # one slot per hash value (top HASH_BITS bits): the span last written there stands for all spans that
    # hash there, which the check below confirms (a sort, np.unique, costs more than the rest of the read)
    slot = np.empty(1 << HASH_BITS, np.int32 if width.size < 2 ** 31 else np.intp)  # few slots are touched
    bucket = key >> np.uint64(64 - HASH_BITS)
    slot[bucket] = np.arange(width.size, dtype=slot.dtype)
    same = slot[bucket]
    if not (np.array_equal(width, width[same]) and np.array_equal(words, words[same])):
        # two distinct strings in one slot (about once in 2 ** HASH_BITS / distinct ** 2 files): sort instead
        _, same, inverse = np.unique(np.column_stack([width.astype(np.uint64), words]), axis=0, return_index=True,
                                     return_inverse=True)
        return same, inverse.reshape(-1)
    stands = np.zeros(width.size, bool)
    stands[same] = True
    return np.flatnonzero(stands), (np.cumsum(stands) - 1)[same]
