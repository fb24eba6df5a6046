"""The UM6P & UL reference recipe (AbdelkaderMH/ArabicNER at 0055902), exactly: `--recipe um6p`.

Owns what the reference's own data code, taggers and trainers do that our default recipe does
differently (SPEC 3-5), for the per-type kinds (nested and MTN):
  labels   per type, the reference's tag vocabulary: `<pad>`, that type's tags in order of first
           appearance over train+val+test, `O` (`ReferenceVocab`); a type whose I- tag never
           occurs has 3 classes. Nested heads are as wide as the widest vocabulary and a narrower
           type's missing output is a logit of exactly 0 (the reference pads its logits with 0);
           MTN heads all have the widest width and the loss reads every output (the "ghost"
           output of a 3-label type is learned but never a target).
  rows     one row per sentence, [CLS] subwords [SEP], cut at 510 subwords (no windows); every
           position trained: [CLS], [SEP] and non-first subwords labelled O, padding labelled
           `<pad>` up to the batch's longest row; no attention mask inside that length (padding
           is attended to, as in the reference). A word with no subwords still gets a label (and
           a prediction slot), which shifts the rest of its sentence's labels by one: reproduced,
           and counted (`words_without_subwords`).
  batches  training: shuffled rows cut into batches of --batch_size, each padded to its longest
           row; evaluation: batches of --eval_batch_size in file order, each padded to its
           longest row (the validation loss is the mean of their losses, penalty included). For
           fewer compiled shapes a batch is padded further to a fixed ladder of lengths; those positions
           are out of attention and out of the loss (and of the IRM even/odd split), so every
           number is the reference's.
  decoding nested: each head's argmax over its logits (the missing output of a narrower head
           included, as 0), written as the reference writes it (`<pad>` too); MTN: the first
           type, in type order, whose tag is neither `O` nor `<pad>`. Where the padded (nested)
           or ghost (MTN) output wins, the reference crashes; here the word gets `O` and it is
           counted (`ghost_predictions`).
Scoring counts `<pad>` predictions as the reference's seqeval does (each run in a type layer one
wrong entity of type "pad>", `extra_predicted_entities`) in the Wojood (lenient) figures; the word
tags and the strict figures read them as O.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from arner_jax.data.batching import bucket_lengths, bucket_of
from arner_jax.data.entities import layer_entities
from arner_jax.models.base import EncodedSplit, Entity, WordTags

RECIPES = ("arner", "um6p")
PAD = "<pad>"
MAX_SUBWORDS = 510  # the reference's max_seq_len 512 less [CLS] and [SEP]


@dataclasses.dataclass(frozen=True)
class ReferenceVocab:
    """Per type (sorted by name), the reference's tag vocabulary (arabiner.utils.data.tag_vocab_by_type)."""

    types: tuple[str, ...]
    tags: tuple[tuple[str, ...], ...]  # per type: <pad>, the type's tags in order of first appearance, O
    kind: str  # "nested" or "mtn"

    @classmethod
    def from_tags(cls, tags: Iterable[str], kind: str) -> ReferenceVocab:
        """From every gold tag of train, val and test, in file order (MTN: each word's first tag only)."""
        tags = list(tags)
        types = sorted({t.split("-", 1)[1] for t in set(tags) if "-" in t})
        vocabs = []
        for name in types:
            match = re.compile(".*-" + re.escape(name)).match  # the reference's regex, a prefix match
            vocabs.append(tuple(dict.fromkeys([PAD, *(t for t in tags if match(t)), "O"])))
        return cls(tuple(types), tuple(vocabs), kind)

    @classmethod
    def from_sentences(cls, sentences: Iterable, kind: str) -> ReferenceVocab:
        per_word = (tags[:1] if kind == "mtn" else tags for s in sentences for tags in s.tags)
        return cls.from_tags((t for tags in per_word for t in tags), kind)

    @property
    def num_types(self) -> int:
        return len(self.types)

    @property
    def num_labels(self) -> list[int]:
        return [len(v) for v in self.tags]

    @property
    def width(self) -> int:
        """Outputs per head: the widest vocabulary (nested pads narrower heads; MTN heads all have it)."""
        return max(self.num_labels, default=1)

    def class_mask(self) -> np.ndarray:
        """[T, C]: the outputs each head's loss reads (nested: its own classes; MTN: all of them)."""
        n = np.array(self.num_labels)[:, None]
        if self.kind == "mtn":
            return np.ones((self.num_types, self.width), bool)
        return np.arange(self.width)[None, :] < n

    def matcher(self, t: int):
        """The reference's per-type matcher of a word's gold tags (NestedTagsTransform)."""
        return re.compile("|".join(re.escape(tag) for tag in self.tags[t] if "-" in tag)).match

    def to_json(self) -> dict:
        return {"recipe": "um6p", "kind": self.kind, "types": list(self.types),
                "tag_vocab": [list(v) for v in self.tags]}

    @classmethod
    def from_json(cls, raw: dict) -> ReferenceVocab:
        return cls(tuple(raw["types"]), tuple(tuple(v) for v in raw["tag_vocab"]), raw["kind"])


@dataclasses.dataclass
class ReferenceRow:
    """One sentence as the reference's NestedTagsTransform makes it."""

    sentence: int
    input_ids: np.ndarray  # [n] [CLS] subwords [SEP]
    labels: np.ndarray  # [m, T] class ids per tag position ([CLS] O, tags, [SEP] O); m = n + words without subwords
    word_pos: np.ndarray  # [words] the tag position of each word (-1: cut at 510 subwords)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclasses.dataclass
class ReferenceStats:
    sentences: int = 0
    words: int = 0
    words_without_subwords: int = 0  # still tagged: the rest of their sentence's labels shift by one
    cut_sentences: int = 0  # longer than 510 subwords
    cut_words: int = 0  # past the cut: never trained, predicted O
    ghost_predictions: int = 0  # words whose winning output has no tag (the reference crashes there): O
    pad_predictions: int = 0  # nested: a head's argmax is <pad> at a word (scored as O)
    unplaced_words: int = 0  # words whose tag position lies past the batch's longest row (predicted O)
    cut_at: int = MAX_SUBWORDS  # subwords kept of a sentence


def encode_reference(sentences: Sequence, tokenizer, vocab: ReferenceVocab,
                     max_length: int = MAX_SUBWORDS + 2) -> tuple[list[ReferenceRow], ReferenceStats]:
    """Sentences as the reference's rows (one batched tokenizer call; MTN reads each word's first tag).

    Rows are cut at `max_length` - 2 subwords: the reference's 510 with its max_seq_len 512 (--max_length's
    default); fewer for an encoder with fewer positions (where the reference would fail)."""
    cut = min(MAX_SUBWORDS, max_length - 2)
    stats = ReferenceStats(sentences=len(sentences), cut_at=cut)
    enc = tokenizer([list(s.words) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    o_ids = np.array([v.index("O") for v in vocab.tags], np.int32)  # [T]
    matchers = [vocab.matcher(t) for t in range(vocab.num_types)]
    index = [{tag: i for i, tag in enumerate(v)} for v in vocab.tags]
    rows = []
    for si, sentence in enumerate(sentences):
        stats.words += len(sentence.words)
        counts = np.zeros(len(sentence.words), np.int64)
        subwords = []
        for token_id, word in zip(enc["input_ids"][si], enc.word_ids(si)):
            if word is not None:
                counts[word] += 1
                subwords.append(token_id)
        stats.words_without_subwords += int((counts == 0).sum())
        # [tag] + [O] * (n - 1): one tag position for a word of n <= 1 subwords, n for more
        slots = np.maximum(counts, 1)
        labels = np.repeat(o_ids[None, :], int(slots.sum()), axis=0)
        word_pos = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
        for w, tags in enumerate(sentence.tags):
            tags = tags[:1] if vocab.kind == "mtn" else tags
            for t in range(vocab.num_types):
                tag = next((g for g in tags if matchers[t](g)), None)
                if tag is not None:
                    labels[word_pos[w], t] = index[t][tag]
        if len(subwords) > cut:  # the reference cuts subwords, tags and tokens at 510
            stats.cut_sentences += 1
            subwords, labels = subwords[:cut], labels[:cut]
            stats.cut_words += int((word_pos >= cut).sum())
            word_pos = np.where(word_pos < cut, word_pos, -1)
        ids = np.array([cls_id, *subwords, sep_id], np.int32)
        labels = np.concatenate([o_ids[None], labels, o_ids[None]]).astype(np.int32)
        rows.append(ReferenceRow(si, ids, labels, np.where(word_pos >= 0, word_pos + 1, -1).astype(np.int32)))
    return rows, stats


def padded_length(longest: int) -> int:
    """The compiled length of a batch whose longest row has `longest` tokens: the next length of the fixed
    evaluation ladder (data.batching.EVAL_LENGTHS), so that a run compiles at most one train and one eval
    program per rung whatever its batches' lengths (they change with every epoch's shuffle)."""
    return bucket_of(longest, bucket_lengths(MAX_SUBWORDS + 2))


def collate_reference(rows: Sequence[ReferenceRow], group: Sequence[int], local: slice, batch_rows: int,
                      length: int, pad_id: int) -> dict[str, np.ndarray]:
    """This process's rows `group[local]` of a reference batch, padded to `length` tokens.

    The batch's reference length is its longest row over the whole `group`; positions before it
    are attended to and trained (padding as <pad>, id 0; a row's tags cut or padded to it, as
    the reference's collate does), positions after it are neither.
    """
    longest = max(len(rows[i]) for i in group)
    T = rows[0].labels.shape[1]
    ids = np.full((batch_rows, length), pad_id, np.int32)
    labels = np.zeros((batch_rows, length, T), np.int32)  # 0 = <pad> in every type's vocabulary
    row_index = np.full((batch_rows,), -1, np.int32)
    for r, i in enumerate(group[local]):
        row = rows[i]
        ids[r, :len(row)] = row.input_ids
        m = min(len(row.labels), longest)
        labels[r, :m] = row.labels[:m]
        row_index[r] = i
    inside = np.arange(length)[None, :] < longest
    real = (row_index >= 0)[:, None]
    return {"input_ids": ids, "attention_mask": np.broadcast_to(inside, (batch_rows, length)).astype(np.int32),
            "labels": labels, "label_mask": (inside & real).astype(np.float32), "row_index": row_index,
            "ref_length": np.full((batch_rows,), longest, np.int32)}


class ReferenceSplit(EncodedSplit):
    """Sentences as the reference's rows, batched and decoded as the reference does."""

    def __init__(self, sentences, rows: list[ReferenceRow], vocab: ReferenceVocab, pad_id: int,
                 stats: ReferenceStats):
        super().__init__(sentences)
        self.rows, self.vocab, self.pad_id, self.stats = rows, vocab, pad_id, stats
        # per row, the longest row of the batch it was last evaluated in (decoding reads nothing past it)
        self.ref_length = np.array([len(r) for r in rows], np.int64)

    def lengths(self) -> list[int]:
        return [len(r) for r in self.rows]

    def max_item_length(self, max_length: int) -> int:
        return padded_length(MAX_SUBWORDS + 2)

    def collate(self, indices, rows: int, length: int) -> dict[str, np.ndarray]:
        return self.collate_group(list(indices), slice(0, len(indices)), rows, length)

    def collate_group(self, group, local: slice, rows: int, length: int) -> dict[str, np.ndarray]:
        group = list(group)
        batch = collate_reference(self.rows, group, local, rows, length, self.pad_id)
        self.ref_length[group] = batch["ref_length"][0]
        return batch

    def _plan(self, order: Sequence[int], rows: int) -> list[tuple[int, list[int]]]:
        chunks = [list(order[i:i + rows]) for i in range(0, len(order), rows)]
        return [(padded_length(max(len(self.rows[i]) for i in c)), c) for c in chunks]

    def train_plan(self, rows: int, seed: int, epoch: int, max_length: int) -> list[tuple[int, list[int]]]:
        """Shuffled rows in batches of `rows`, the last one partial (a DataLoader with shuffle=True)."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        return self._plan([int(i) for i in order], rows)

    def train_buckets(self, rows: int, max_length: int) -> tuple[int, ...]:
        return tuple(sorted({length for length, _ in self._plan(range(len(self.rows)), 1)}))

    def eval_plan(self, rows: int, max_length: int) -> list[tuple[int, list[int]]]:
        """Batches of `rows` in file order (the reference's evaluation DataLoader)."""
        return self._plan(range(len(self.rows)), rows)

    def describe(self) -> str:
        s = self.stats
        return (f"{s.sentences} sentences, {s.words} words as the reference's rows: {s.words_without_subwords} words "
                f"without subwords (tagged all the same: the rest of their sentence's labels shift), "
                f"{s.cut_sentences} sentences cut at {s.cut_at} subwords ({s.cut_words} words never trained, predicted "
                "O)")

    # ------------------------------------------------------------------ decoding
    def reference_tags(self, outputs: Sequence[dict]) -> list[list[list[str]]]:
        """Per sentence and word, the tags the reference writes: nested one per type (`<pad>` as it is),
        MTN the one kept tag. Counts ghost and <pad> predictions in `stats`."""
        s = self.stats
        s.ghost_predictions = s.pad_predictions = s.unplaced_words = 0
        out = []
        for i, row in enumerate(self.rows):
            ids = np.asarray(outputs[i]["ids"])  # [L, T]
            words = []
            for pos in row.word_pos:
                if pos < 0 or pos >= self.ref_length[i]:
                    s.unplaced_words += pos >= 0
                    words.append(["O"] * (self.vocab.num_types if self.vocab.kind == "nested" else 1))
                    continue
                tags = []
                for t, c in enumerate(ids[pos]):
                    if c >= len(self.vocab.tags[t]):  # the padded (nested) or ghost (MTN) output won
                        s.ghost_predictions += 1
                        tags.append("O")
                    else:
                        tags.append(self.vocab.tags[t][c])
                if self.vocab.kind == "mtn":
                    tags = [next((g for g in tags if g != "O" and "pad" not in g), "O")]
                words.append(tags)
            out.append(words)
        s.pad_predictions = sum(t == PAD for sent in out for word in sent for t in word)
        return out

    def extra_predicted_entities(self, outputs: Sequence[dict]) -> dict[str, int]:
        """The reference scores `<pad>` predictions as they are: seqeval's default mode reads each run of
        `<pad>` in a type layer of a sentence as one entity of type "pad>", always wrong (nested only: MTN's
        decoding never keeps `<pad>`)."""
        if self.vocab.kind != "nested":
            return {}
        runs = 0
        for sentence in self.reference_tags(outputs):
            if sentence:
                pad = np.array([[t == PAD for t in word] for word in sentence])  # [words, T]
                runs += int((pad & ~np.vstack([np.zeros((1, pad.shape[1]), bool), pad[:-1]])).sum())
        return {"pad>": runs} if runs else {}

    def word_tags(self, outputs: Sequence[dict]) -> WordTags:
        return [[[t for t in word if t not in ("O", PAD)] or ["O"] for word in sent]
                for sent in self.reference_tags(outputs)]

    def entities(self, outputs: Sequence[dict]) -> list[list[Entity]]:
        found = []
        for i, sent in enumerate(self.reference_tags(outputs)):
            if not sent:
                found.append([])
                continue
            probs = np.asarray(outputs[i]["probs"])
            pos = np.clip(self.rows[i].word_pos, 0, len(probs) - 1)
            layers = [[("O" if word[k] == PAD else word[k]) for word in sent] for k in range(len(sent[0]))]
            word_probs = probs[pos] if self.vocab.kind == "nested" else probs[pos].max(-1, keepdims=True)
            found.append(layer_entities(layers, word_probs))
        return found

    @staticmethod
    def tokens(batch: dict[str, np.ndarray]) -> int:
        return int(batch["label_mask"].sum())
