"""Training span models with the shared trainer: span splits, batches of rows, evaluation.

Owns: turning a labelled corpus into span pieces and rows (gold labels from every type layer
for span_nested, from the outermost tags for span_flat; entities longer than
entity_max_length are counted and logged, they cannot be candidates), the `SpanTask` the
training loop drives (see train.tasks), and scoring decoded spans with the Wojood metric
(nested or flat) after writing them as word tags.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from arner_jax.data.batching import eval_batches, train_batches
from arner_jax.data.wojood import Corpus
from arner_jax.metrics import score_tags
from arner_jax.span_marker import spans as S
from arner_jax.span_marker.checkpoint import SpanConfig
from arner_jax.span_marker.model import SpanObjective
from arner_jax.train.evaluation import SplitResult

log = logging.getLogger("arner_jax")


@dataclasses.dataclass
class SpanSplit:
    name: str
    corpus: Corpus
    pieces: list[S.Piece]
    rows: list[S.Row]


def span_labels(corpora: Sequence[Corpus], nested: bool) -> list[str]:
    """O, then the entity types of the corpora (all layers when nested, else the outermost), sorted."""
    types = {label for c in corpora for s in c.sentences for label, _, _ in S.gold_spans(s.tags, nested)}
    return ["O"] + sorted(types)


def encode_split(name: str, corpus: Corpus, tokenizer, span: SpanConfig, max_tokens: int, nested: bool) -> SpanSplit:
    """Pieces (windows with gold-labelled candidates) and rows of a labelled corpus."""
    index = {label: i for i, label in enumerate(span.labels)}
    pieces, too_long, total, unknown = [], 0, 0, set()
    for i, sentence in enumerate(corpus.sentences):
        gold = {}
        for label, start, end in S.gold_spans(sentence.tags, nested):
            total += 1
            if end - start > span.entity_max_length:
                too_long += 1
            if label not in index:
                unknown.add(label)
                continue
            gold[(start, end)] = index[label]
        tok = S.tokenize(tokenizer, sentence.words)
        pieces.extend(S.make_pieces(tok, i, max_tokens, span.entity_max_length, gold))
    if unknown:
        raise ValueError(f"{corpus.path}: entity types {sorted(unknown)} are not among the model's labels {span.labels}")
    rows = S.pack_rows(pieces, span.marker_max_length)
    scored = sum(len(p.spans) for p in pieces)
    log.info("%s: %s, %d sentences, %d gold entities (%d longer than %d words: never candidates), %d windows, "
             "%d candidate spans in %d rows", name, corpus.path, len(corpus.sentences), total, too_long,
             span.entity_max_length, len(pieces), scored, len(rows))
    return SpanSplit(name, corpus, pieces, rows)


class SpanTask:
    """The span family's side of the training loop (see train.tasks)."""

    def __init__(self, config, span: SpanConfig, splits: dict[str, SpanSplit], max_tokens: int, pad_id: int):
        self.cfg, self.span, self.splits = config, span, splits
        self.max_tokens, self.pad_id = max_tokens, pad_id
        self.nested = config.kind == "span_nested"

    def objective(self, apply_fn) -> SpanObjective:
        return SpanObjective(apply_fn)

    @property
    def num_train(self) -> int:
        return len(self.splits["train"].rows)

    def plan(self, epoch: int):
        return train_batches(self.splits["train"].rows, self.cfg.batch_size, self.max_tokens, self.cfg.seed, epoch,
                             self.pad_id)

    def _collate(self, split: SpanSplit, width: int, indices, rows: int) -> dict:
        return S.collate_rows(split.pieces, split.rows, indices, rows, width, self.span.marker_max_length, self.pad_id)

    def batch(self, width: int, indices, rows: int) -> dict:
        return self._collate(self.splits["train"], width, indices, rows)

    @staticmethod
    def tokens(batch: dict) -> int:
        return int(np.asarray(batch["text_len"]).sum() + 2 * np.asarray(batch["num_spans"]).sum())

    def evaluate(self, parallel, params, split: str, batch_size: int) -> SplitResult:
        data = self.splits[split]
        parallel.check_batch_size(batch_size, "the evaluation batch size")
        local = parallel.local_rows(batch_size)
        outputs: list[dict | None] = [None] * len(data.rows)
        losses = []
        for width, indices in eval_batches(data.rows, batch_size, self.max_tokens):
            batch = self._collate(data, width, indices[local], local.stop - local.start)
            pred, loss = parallel.eval_step(params, batch)
            losses.append(float(loss))
            for r, i in enumerate(indices):
                outputs[i] = {"label": pred["label"][r], "score": pred["score"][r]}
        sentences = data.corpus.sentences
        tags = []
        for sentence, (spans, out) in zip(sentences, S.per_text(data.pieces, data.rows, outputs, len(sentences))):
            found = S.decode(spans, out["label"], out["score"], self.nested, self.cfg.threshold) if len(spans) else []
            tags.append(S.entities_to_tags(found, len(sentence), self.span.labels))
        metrics = score_tags([s.tags for s in sentences], tags, nested=self.nested, types=self.span.labels[1:])
        loss = float(np.mean(losses)) if losses else 0.0
        metrics["loss"] = loss
        return SplitResult(loss, tags, metrics)
