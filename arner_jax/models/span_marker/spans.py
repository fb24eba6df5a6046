"""SpanMarker's data side: candidate spans, windows of long texts, rows of markers, decoding.

Owns (numpy only; SPEC 7):
  candidates   every span of 1..E words, in SpanMarker's order (start ascending, then end);
  pieces       a text tokenized once with the fast tokenizer's word ids and character offsets,
               and cut into windows of at most M tokens when it is longer (SpanMarker cuts the
               text instead). Windows overlap by E - 1 words and each window scores the spans
               that start in its own part, so every span that fits in M tokens is scored once;
  rows         the encoder rows the candidates are scored and trained in, span_marker 1.8.1's
               (`package_rows`, its Trainer.spread_sample): one row per piece and chunk of its
               spans, a chunk holding as many spans as a row of M + 2K tokens has room for beside
               the piece's text, (M + 2K - tokens) // 2, so a text is repeated only when its spans
               do not fit. A row is laid out as [text][its start markers][its end markers], then
               padding to its batch's length (`collate_rows`). A row can also hold chunks of
               several pieces (`pack_rows`, each chunk in a segment of its own): a span's logits
               depend only on its text and the span (the attention pattern of model.row_layout
               keeps texts apart), so any packing gives the same numbers. Training packs each
               optimizer step's rows into as few rows as hold them (`pack_step`): the same step,
               fewer tokens;
  decoding     SpanMarker's greedy flat rule, the nested rule (spans nest or are disjoint,
               partial overlaps rejected), a score threshold, and spans as Wojood word tags.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from arner_jax.data.entities import entity_word_tags
from arner_jax.data.schemes import tag_spans

OUTSIDE = 0  # class id of O (SPEC 7)


def candidate_spans(num_words: int, max_words: int) -> np.ndarray:
    """[S, 2] (start, end exclusive) of every span of 1..max_words words, SpanMarker's order."""
    out = [(s, e) for s in range(num_words) for e in range(s + 1, min(num_words, s + max_words) + 1)]
    return np.asarray(out, np.int32).reshape(-1, 2)


def gold_spans(tags_per_word: Sequence[Sequence[str]], nested: bool) -> list[tuple[str, int, int]]:
    """Gold entities (type, start, end exclusive): every type's layer (nested) or the outermost tags."""
    if not nested:
        return tag_spans([tags[0] if tags else "O" for tags in tags_per_word])
    types = sorted({t[2:] for tags in tags_per_word for t in tags if t != "O"})
    out = []
    for t in types:
        out.extend(tag_spans([next((x for x in tags if x[2:] == t), "O") for tags in tags_per_word]))
    return sorted(out, key=lambda e: (e[1], e[2], e[0]))


@dataclasses.dataclass
class Piece:
    """One window of one text; `spans` are the candidates it scores (text word indices)."""

    text: int  # index of the text
    input_ids: np.ndarray  # [T] int32, special tokens included
    word_first: np.ndarray  # [n] window token index of each window word's first subword
    word_last: np.ndarray  # [n] ... and of its last subword
    first_word: int  # the window's first word, in the text
    spans: np.ndarray  # [S, 2]
    labels: np.ndarray | None = None  # [S] class ids, for training

    def __len__(self) -> int:
        return len(self.input_ids)

    def token_positions(self, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window token index of each span's first and last subword."""
        return self.word_first[spans[:, 0] - self.first_word], self.word_last[spans[:, 1] - 1 - self.first_word]


@dataclasses.dataclass
class Tokenized:
    """A text tokenized once, without truncation."""

    ids: list[int]
    prefix: int  # special tokens before the words ([CLS] / <s>)
    suffix: int  # ... and after them
    word_tokens: list[tuple[int, int]]  # per word, its token range [first, end) (empty: no tokens)
    char_spans: list[tuple[int, int]] | None  # per word, characters (string input only)

    @property
    def num_words(self) -> int:
        return len(self.word_tokens)


def tokenize(tokenizer, text_or_words) -> Tokenized:
    """Tokenize a string (words from the tokenizer's pre-tokenizer) or a list of words."""
    is_words = not isinstance(text_or_words, str)
    enc = tokenizer(list(text_or_words) if is_words else text_or_words, is_split_into_words=is_words,
                    truncation=False, verbose=False)
    word_ids = enc.word_ids()
    ids = list(enc["input_ids"])
    real = [i for i, w in enumerate(word_ids) if w is not None]
    prefix = real[0] if real else len(ids)
    suffix = len(ids) - real[-1] - 1 if real else 0
    num_words = max((w for w in word_ids if w is not None), default=-1) + 1
    ranges = [[None, None] for _ in range(num_words)]
    for i, w in enumerate(word_ids):
        if w is not None:
            if ranges[w][0] is None:
                ranges[w][0] = i
            ranges[w][1] = i + 1
    word_tokens = [(a, b) if a is not None else (0, 0) for a, b in ranges]
    chars = None
    if not is_words:
        chars = [tuple(enc.word_to_chars(w)) if word_tokens[w][1] else (0, 0) for w in range(num_words)]
    return Tokenized(ids, prefix, suffix, word_tokens, chars)


def plan_windows(word_tokens: Sequence[int], budget: int, overlap: int) -> list[tuple[int, int, int]]:
    """Windows (first word, end word, end of the starts it owns) of at most `budget` word tokens.

    Consecutive windows share `overlap` words (when they hold more); a window owns the span
    starts before the next window's first word, the last window owns the rest. A word longer
    than the budget gets a window of its own (its tokens are clipped).
    """
    n = len(word_tokens)
    if sum(word_tokens) <= budget:
        return [(0, n, n)]
    starts, windows = [0], []
    while True:
        a = starts[-1]
        b, used = a, 0
        while b < n and used + word_tokens[b] <= budget:
            used += word_tokens[b]
            b += 1
        b = max(b, a + 1)
        windows.append([a, b])
        if b >= n:
            break
        starts.append(max(a + 1, b - overlap))
    return [(a, b, starts[i + 1] if i + 1 < len(starts) else n) for i, (a, b) in enumerate(windows)]


def truncated_window(word_tokens: Sequence[int], budget: int) -> list[tuple[int, int, int]]:
    """SpanMarker's cut: the words whose first subword fits in the budget (the last one clipped)."""
    used, b = 0, 0
    while b < len(word_tokens) and used < budget:
        used += word_tokens[b]
        b += 1
    return [(0, b, b)]


def make_pieces(tok: Tokenized, text: int, max_tokens: int, max_words: int,
                gold: dict[tuple[int, int], int] | None = None, truncate: bool = False) -> list[Piece]:
    """The windows of one tokenized text with the candidate spans each one scores.

    truncate=True reproduces SpanMarker instead: one window cut at `max_tokens` tokens, the words
    past the cut are not candidates.
    """
    lengths = [b - a for a, b in tok.word_tokens]
    budget = max(max_tokens - tok.prefix - tok.suffix, 1)
    pieces = []
    spans_all = candidate_spans(tok.num_words, max_words)
    plan = truncated_window(lengths, budget) if truncate else plan_windows(lengths, budget, max_words - 1)
    for a, b, owned_end in plan:
        body, first, last = [], [], []
        for w in range(a, b):
            lo, hi = tok.word_tokens[w]
            hi = min(hi, lo + budget - len(body))  # clip a word longer than the budget
            first.append(tok.prefix + len(body) if hi > lo else 0)  # no subword: SpanMarker's 0
            body.extend(tok.ids[lo:hi])
            last.append(tok.prefix + len(body) - 1 if hi > lo else 0)
        ids = tok.ids[:tok.prefix] + body + tok.ids[len(tok.ids) - tok.suffix:]
        keep = (spans_all[:, 0] >= a) & (spans_all[:, 0] < owned_end) & (spans_all[:, 1] <= b)
        spans = spans_all[keep]
        labels = None
        if gold is not None:
            labels = np.asarray([gold.get((int(s), int(e)), OUTSIDE) for s, e in spans], np.int32)
        pieces.append(Piece(text, np.asarray(ids, np.int32), np.asarray(first, np.int32),
                            np.asarray(last, np.int32), a, spans, labels))
    return pieces


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Consecutive candidate spans [lo, hi) of one piece: what a row holds of that piece."""

    piece: int
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo


@dataclasses.dataclass(frozen=True)
class Row:
    """One encoder row: chunks of one or more pieces, each laid out as [its piece's text][starts][ends]."""

    chunks: tuple[Chunk, ...]
    length: int  # tokens: every chunk's text plus two markers per span

    def __len__(self) -> int:
        return self.length

    @property
    def num_spans(self) -> int:
        return sum(len(c) for c in self.chunks)


def package_rows(pieces: Sequence[Piece], row_tokens: int) -> list[Row]:
    """span_marker 1.8.1's rows (Trainer.spread_sample): per piece, in order, its spans in chunks of
    (row_tokens - its tokens) // 2 (the last one shorter), one chunk per row; row_tokens = M + 2K."""
    rows = []
    for p, piece in enumerate(pieces):
        room = max((row_tokens - len(piece)) // 2, 1)
        for lo in range(0, len(piece.spans), room):
            chunk = Chunk(p, lo, min(lo + room, len(piece.spans)))
            rows.append(Row((chunk,), len(piece) + 2 * len(chunk)))
    return rows


def pack_rows(pieces: Sequence[Piece], max_spans: int, max_tokens: int) -> list[Row]:
    """Every piece's spans in rows of at most `max_spans` spans and `max_tokens` tokens.

    A piece's spans are cut into chunks of `max_spans` (the last one shorter), so a text is
    repeated only when its spans do not fit in one row. Chunks, largest first, go to the row
    with the fewest free span slots that still holds them (best fit; a new row only when none
    does), so short texts share rows and no two rows would fit in one. A pure function of the
    pieces. `max_tokens` must hold any one chunk: a piece's tokens plus 2 * max_spans.
    """
    chunks = [Chunk(p, lo, min(lo + max_spans, len(piece.spans)))
              for p, piece in enumerate(pieces) for lo in range(0, len(piece.spans), max_spans)]
    tokens = [len(pieces[c.piece]) + 2 * len(c) for c in chunks]
    members: list[list[Chunk]] = []
    used: list[int] = []  # tokens of each row
    free: list[int] = []  # free span slots of each row
    by_free: list[list[int]] = [[] for _ in range(max_spans + 1)]  # rows by free span slots
    for i in sorted(range(len(chunks)), key=lambda i: (-tokens[i], i)):
        k = len(chunks[i])
        row = next((r for f in range(k, max_spans + 1) for r in by_free[f] if used[r] + tokens[i] <= max_tokens), None)
        if row is None:
            row = len(members)
            members.append([])
            used.append(0)
            free.append(max_spans)
        else:
            by_free[free[row]].remove(row)
        members[row].append(chunks[i])
        used[row] += tokens[i]
        free[row] -= k
        by_free[free[row]].append(row)
    return [Row(tuple(m), n) for m, n in zip(members, used)]


def pack_step(rows: Sequence[Row], indices: Sequence[int], capacity: int, text: Mapping[int, int] | None = None,
              text_capacity: int | None = None) -> list[Row]:
    """The rows `indices` (one optimizer step's) laid into as few rows of at most `capacity` tokens as
    first-fit decreasing finds, each keeping its chunks (so its own segments): the step then computes
    the same spans with the same numbers (see model.row_layout) in fewer, fuller rows. Longest first,
    ties by position in `indices`; each goes to the first row with room. With `text_capacity`, a row
    also holds at most that many text tokens (`text[i]`: row i's, see text_tokens), the attention's
    keys. A pure function of its inputs.
    """
    limit = text_capacity if text_capacity is not None else float("inf")
    members: list[list[int]] = []
    used: list[list[int]] = []  # [tokens, text tokens] of each packed row
    for i in sorted(indices, key=lambda i: -rows[i].length):  # sorted() is stable: ties keep their order
        n, t = rows[i].length, 0 if text is None else text[i]
        if n > capacity or t > limit:
            raise ValueError(f"row {i} has {n} tokens ({t} of text), more than the capacity {capacity} "
                             f"({text_capacity} of text)")
        at = next((r for r, (u, v) in enumerate(used) if u + n <= capacity and v + t <= limit), len(used))
        if at == len(used):
            members.append([])
            used.append([0, 0])
        members[at].append(i)
        used[at][0] += n
        used[at][1] += t
    return [Row(tuple(c for i in m for c in rows[i].chunks), u) for m, (u, _) in zip(members, used)]


def text_tokens(pieces: Sequence[Piece], row: Row) -> int:
    """The text tokens a row holds (every chunk repeats its piece's text)."""
    return sum(len(pieces[c.piece]) for c in row.chunks)


def collate_rows(pieces: Sequence[Piece], rows: Sequence[Row], indices: Sequence[int], batch_size: int,
                 length: int, slots: int, pad_id: int, keys: int | None = None) -> dict[str, np.ndarray]:
    """One batch of rows `[B, length]` with `slots` span slots per row.

    input_ids [B, length] (the texts' subwords; pad at markers and padding), segment [B, length]
    (1, 2, ... for the row's chunks, text and markers alike; 0 padding), text_index [B, length]
    (a text token's index in its text; a start/end marker's: its span's first/last subword;
    0 padding), starts/ends [B, slots] (row position of each span's start/end marker),
    num_spans [B], labels [B, slots] (0 where unused), label_mask [B, slots] (1.0: a real
    span), row_index [B] (-1: a padding row), text_keys [B, keys] (the row positions of the row's text
    tokens, -1 past them; keys defaults to length: room for any row).
    """
    keys = length if keys is None else keys
    ids = np.full((batch_size, length), pad_id, np.int32)
    segment = np.zeros((batch_size, length), np.int32)
    text_index = np.zeros((batch_size, length), np.int32)
    starts = np.zeros((batch_size, slots), np.int32)
    ends = np.zeros((batch_size, slots), np.int32)
    num_spans = np.zeros((batch_size,), np.int32)
    labels = np.zeros((batch_size, slots), np.int32)
    row_index = np.full((batch_size,), -1, np.int32)
    text_keys = np.full((batch_size, keys), -1, np.int32)
    for r, i in enumerate(indices):
        texts = []
        at, slot = 0, 0  # next free row position and span slot
        for seg, chunk in enumerate(rows[i].chunks, start=1):
            piece, k = pieces[chunk.piece], len(chunk)
            n = len(piece)
            markers = at + n + np.arange(k)  # the start markers, then the end markers at + k
            ids[r, at:at + n] = piece.input_ids
            texts.append(np.arange(at, at + n))
            segment[r, at:at + n + 2 * k] = seg
            text_index[r, at:at + n] = np.arange(n)
            text_index[r, markers], text_index[r, markers + k] = piece.token_positions(piece.spans[chunk.lo:chunk.hi])
            starts[r, slot:slot + k], ends[r, slot:slot + k] = markers, markers + k
            if piece.labels is not None:
                labels[r, slot:slot + k] = piece.labels[chunk.lo:chunk.hi]
            at, slot = at + n + 2 * k, slot + k
        num_spans[r], row_index[r] = slot, i
        texts = np.concatenate(texts) if texts else np.zeros(0, np.int32)
        if len(texts) > keys:
            raise ValueError(f"row {i} holds {len(texts)} text tokens, more than the batch's {keys} text keys")
        text_keys[r, :len(texts)] = texts
    label_mask = (np.arange(slots)[None, :] < num_spans[:, None]).astype(np.float32)
    return {"input_ids": ids, "segment": segment, "text_index": text_index, "starts": starts, "ends": ends,
            "num_spans": num_spans, "text_keys": text_keys, "labels": labels, "label_mask": label_mask,
            "row_index": row_index}


# ----------------------------------------------------------------------------- decoding
Entity = tuple[int, int, int, float]  # (start word, end word exclusive, class id, score)


def decode(spans: np.ndarray, labels: np.ndarray, scores: np.ndarray, nested: bool = False,
           threshold: float = 0.0) -> list[Entity]:
    """Entities from every candidate's argmax class and its probability, in reading order.

    Spans are taken by decreasing score (ties: enumeration order, as Python's stable sort in
    SpanMarker). Flat (SpanMarker): a non-O span is kept when none of its words is taken.
    Nested: kept when every kept span either contains it, lies inside it, or is disjoint from
    it, and no kept span of the same class contains it or lies inside it (a per-type tag layer
    cannot hold both). A span below `threshold` is never kept.
    """
    order = sorted(range(len(spans)), key=lambda i: -float(scores[i]))
    kept: list[Entity] = []
    taken = np.zeros(int(spans[:, 1].max()) if len(spans) else 0, bool)
    for i in order:
        label, score = int(labels[i]), float(scores[i])
        if label == OUTSIDE or score < threshold:
            continue
        s, e = int(spans[i, 0]), int(spans[i, 1])
        if nested:
            if any(_crosses(s, e, ks, ke) or (kl == label and _overlaps(s, e, ks, ke)) for ks, ke, kl, _ in kept):
                continue
        elif taken[s:e].any():
            continue
        taken[s:e] = True
        kept.append((s, e, label, score))
    return sorted(kept, key=lambda x: (x[0], -x[1], x[2]))


def _overlaps(s, e, ks, ke) -> bool:
    return s < ke and ks < e


def _crosses(s, e, ks, ke) -> bool:
    """A partial overlap: they share words and neither contains the other."""
    return _overlaps(s, e, ks, ke) and not (ks <= s and e <= ke) and not (s <= ks and ke <= e)


def entities_to_tags(entities: Sequence[Entity], num_words: int, labels: Sequence[str]) -> list[list[str]]:
    """Wojood word tags (IOB2, outermost first, ["O"] for none) of decoded entities."""
    return entity_word_tags([(labels[label], s, e, score) for s, e, label, score in entities], num_words)


def per_text(pieces: Sequence[Piece], rows: Sequence[Row], row_outputs: Sequence[dict], num_texts: int):
    """Row outputs (each `{name: [slots, ...]}`, slots in the row's chunk order) regrouped per text,
    in span enumeration order.

    Returns per text (spans [S, 2], {name: [S, ...]}).
    """
    found: list[list[tuple[int, int, int, dict]]] = [[] for _ in range(num_texts)]  # (piece, lo, hi, outputs)
    for row, out in zip(rows, row_outputs):
        slot = 0
        for chunk in row.chunks:
            k = len(chunk)
            values = {name: np.asarray(value)[slot:slot + k] for name, value in out.items()}
            found[pieces[chunk.piece].text].append((chunk.piece, chunk.lo, chunk.hi, values))
            slot += k
    result = []
    for parts in found:
        parts.sort(key=lambda part: part[:2])  # pieces of a text are in text order, their chunks by span
        spans = [pieces[p].spans[lo:hi] for p, lo, hi, _ in parts]
        names = parts[0][3].keys() if parts else ()
        result.append((np.concatenate(spans) if spans else np.zeros((0, 2), np.int32),
                       {name: np.concatenate([part[3][name] for part in parts]) for name in names}))
    return result
