"""The SpanMarker family: span models trained and scored like the taggers.

Owns everything kind-specific about span models:
  span_nested  gold spans from every type layer; decoding keeps spans that nest or are disjoint;
               scored with the Wojood nested metric;
  span_flat    gold spans from each word's outermost tag; SpanMarker's greedy flat decoding;
               scored flat.
Also: the label space (O, then the entity types sorted), turning sentences into span pieces and
span_marker 1.8.1's rows, trained in its optimizer steps (`SpanSplit`; entities longer than
entity_max_length are counted, they cannot be candidates), the marker tokens added to the
tokenizer and the embeddings grown for them, and `SpanFamily`, registered for the kinds.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from arner_jax.data.batching import bucket_of, fit_buckets
from arner_jax.encoders import EncoderConfig
from arner_jax.models.base import (
    BatchShare,
    EncodedSplit,
    Entity,
    ModelFamily,
    WordTags,
    register_family,
)
from arner_jax.models.span_marker import spans as S
from arner_jax.models.span_marker.checkpoint import SpanConfig, add_markers, usable_length
from arner_jax.models.span_marker.model import SpanMarker, SpanObjective
from arner_jax.models.span_marker.options import SpanOptions

log = logging.getLogger("arner_jax")
NESTED_KIND = "span_nested"
# the text key lengths of training batches (SpanSplit._train_shapes), each a compiled shape per row count:
# on the sample 2 gave 12 shapes in 3 epochs, 3 gave 17 (and a few percent fewer attention scores)
KEY_BUCKETS = 3


def span_labels(corpora: Sequence, nested: bool) -> list[str]:
    """O, then the entity types of the corpora (all layers when nested, else the outermost), sorted."""
    types = {label for c in corpora for s in c.sentences for label, _, _ in S.gold_spans(s.tags, nested)}
    return ["O"] + sorted(types)


class SpanSplit(EncodedSplit):
    """Texts as span pieces (windows with their candidate spans) in span_marker 1.8.1's rows (spans.package_rows).

    A row holds one piece's text and a chunk of its spans, as many as a row of max_length +
    2 * marker_max_length tokens has room for; its length is what it holds. A batch of rows
    `length` tokens long gets length // 2 span slots, enough for any row that fits in it.
    Training takes the package's optimizer steps (`train_plan`); evaluation runs the same rows
    in length-sorted batches.
    """

    def __init__(self, sentences, pieces: list[S.Piece], span: SpanConfig, pad_id: int, nested: bool,
                 max_tokens: int, threshold: float = 0.0, gold_entities: int = 0, too_long: int = 0,
                 tokenized: list[S.Tokenized] | None = None, seed: int = 3407):
        super().__init__(sentences)
        self.tokenized = tokenized or []  # per text (character offsets of string inputs)
        self.pieces, self.span, self.pad_id = pieces, span, pad_id
        self.nested, self.threshold = nested, threshold
        self.max_tokens = max_tokens  # a piece's tokens at most: a row's text
        self.row_tokens = self.max_item_length(max_tokens)  # a row's tokens at most
        self.rows = S.package_rows(pieces, self.row_tokens)
        self.gold_entities, self.too_long = gold_entities, too_long
        self.seed = seed  # the run's: the first epoch's batches choose the training lengths (`train_buckets`)

    def lengths(self) -> list[int]:
        return [row.length for row in self.rows]

    def max_item_length(self, max_length: int) -> int:
        return max_length + 2 * self.span.marker_max_length  # a window and a full row of marker pairs

    def slots(self, length: int) -> int:
        """Span slots of a batch of rows `length` tokens long (each span takes two of its tokens)."""
        return length // 2

    def collate(self, indices, rows: int, length: int) -> dict[str, np.ndarray]:
        """Rows `indices` as they are (one text each), with room for as many text keys as a text can have."""
        return S.collate_rows(self.pieces, self.rows, indices, rows, length, self.slots(length), self.pad_id,
                              min(length, self.max_tokens))

    # ------------------------------------------------------------------ training: span_marker's steps
    def _batches(self, rows: int, seed: int, epoch: int) -> list[list[int]]:
        """The rows shuffled from (seed, epoch), `rows` at a time, the last batch the rest: what the Transformers
        Trainer's shuffled DataLoader gives span_marker's training (its loss: the mean over the batch's spans)."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        return [order[i:i + rows].tolist() for i in range(0, len(order), rows)]

    def _train_lengths(self, rows: int, seed: int, max_length: int) -> tuple[int, ...]:
        key = (rows, seed, max_length)
        if getattr(self, "_lengths_for", (None, None))[0] != key:
            lengths = self.lengths()
            longest = [max(lengths[i] for i in batch) for batch in self._batches(rows, seed, 0)]
            self._lengths_for = (key, fit_buckets(longest, 1, self.max_item_length(max_length)))
        return self._lengths_for[1]

    def train_buckets(self, rows: int, max_length: int) -> tuple[int, ...]:
        """The lengths training batches are padded to: fitted to the longest rows of the first epoch's batches
        under the run's seed (each used then; a later batch fits one of them: no compilation after epoch 1)."""
        return self._train_lengths(rows, self.seed, max_length)

    def train_plan(self, rows: int, seed: int, epoch: int, max_length: int) -> list[tuple[int, list[int]]]:
        """span_marker's optimizer steps: the epoch's batches (`_batches`), each padded to the first training
        length that holds its longest row (padding changes no number: masked, and out of the loss)."""
        buckets, lengths = self._train_lengths(rows, seed, max_length), self.lengths()
        return [(bucket_of(max(lengths[i] for i in batch), buckets), batch)
                for batch in self._batches(rows, seed, epoch)]

    def train_batch(self, group, length: int, share: BatchShare) -> dict[str, np.ndarray]:
        """The step's rows packed (spans.pack_step) into rows of row_tokens: as few as hold them, rounded up
        to a multiple of every process's share.quantum; this process's part of them. The step's spans, loss
        and gradient are the group's (a span's numbers do not depend on what shares its row); only the
        tokens computed change (on the sample about 60% of the rows as they are: a step's rows are padded to
        its longest, and most are far shorter). When packing would not compute fewer tokens, the rows as
        they are. Either way the batch takes the smallest shape of the first epoch's (`_train_shapes`) that
        holds it: rows, and text keys (the attention's keys: the rows' text tokens); a step that fits none
        as it lays itself out is laid out again within one (`_within`)."""
        group = list(group)
        layout, size, keys, packed = self._step_shape(group, share, length)
        shapes = self._train_shapes(share)
        fits = [s for s in shapes if s[0] == layout and s[1] >= size and s[2] >= keys]
        if fits:
            _, size, keys = min(fits, key=lambda s: (s[1], s[2]))
        else:  # laid out again within a first-epoch shape; failing that, a new shape, compiled when met
            layout, size, keys, packed = self._within(group, share, shapes) or (layout, size, keys, packed)
        if layout == "rows":
            return S.collate_rows(self.pieces, self.rows, group[share.local], share.rows, size, self.slots(size),
                                  self.pad_id, keys)
        part = size // share.processes
        mine = packed[share.process * part:(share.process + 1) * part]
        return S.collate_rows(self.pieces, mine, range(len(mine)), part, self.row_tokens,
                              self.slots(self.row_tokens), self.pad_id, keys)

    def _step_shape(self, group: list[int], share: BatchShare, length: int) -> tuple[str, int, int, list[S.Row]]:
        """("packed", rows of all processes, text keys, the packed rows) when packing computes fewer tokens
        than the rows as they are (share.rows a process, `length` each), else ("rows", length, text keys,
        []); text keys are the most text tokens of a row rounded up to a multiple of 32."""
        packed = S.pack_step(self.rows, group, self.row_tokens)
        quantum = share.quantum * share.processes
        count = -(-len(packed) // quantum) * quantum
        if count * self.row_tokens < share.rows * share.processes * length:
            most = max(S.text_tokens(self.pieces, row) for row in packed)
            return "packed", count, min(-(-most // 32) * 32, self.row_tokens), packed
        most = max(S.text_tokens(self.pieces, self.rows[i]) for i in group)
        return "rows", length, min(-(-most // 32) * 32, length), []

    def _within(self, group: list[int], share: BatchShare, shapes) -> tuple[str, int, int, list[S.Row]] | None:
        """The cheapest of `shapes` that can hold the step, with its layout of the step: packed with at most
        that shape's text keys a row, or its rows as they are; None when none can. A step of a later epoch
        may pack into more text per row than any of the first epoch's (another grouping of the rows):
        without this it would compile a program of its own in the middle of training."""
        text = {i: S.text_tokens(self.pieces, self.rows[i]) for i in group}
        longest, most = max(self.rows[i].length for i in group), max(text.values())
        quantum = share.quantum * share.processes
        cost = lambda s: s[1] * (self.row_tokens if s[0] == "packed" else share.rows * share.processes)  # noqa: E731
        for layout, size, keys in sorted(shapes, key=lambda s: (cost(s), s[2])):
            if keys < most:
                continue
            if layout == "rows" and size >= longest:
                return layout, size, keys, []
            if layout == "packed":
                packed = S.pack_step(self.rows, group, self.row_tokens, text, keys)
                if -(-len(packed) // quantum) * quantum <= size:
                    return layout, size, keys, packed
        return None

    def _train_shapes(self, share: BatchShare) -> list[tuple[str, int, int]]:
        """The shapes of the first epoch's steps under the run's seed, with their text keys put on at most
        KEY_BUCKETS fitted lengths (each a compiled program): a later step takes the smallest of them that
        holds it, so that, as with the taggers' lengths, little compiles after the first epoch. A pure
        function of the split, the seed and the share: a resumed run gets the same ones."""
        key = (share.rows, share.processes, share.quantum)
        if getattr(self, "_shapes_for", (None, None))[0] != key:
            steps = [self._step_shape(group, share, length)[:3]
                     for length, group in self.train_plan(share.rows * share.processes, self.seed, 0, self.max_tokens)]
            buckets = fit_buckets([keys for _, _, keys in steps], 1, self.row_tokens, KEY_BUCKETS, 32)
            # text keys on the fitted lengths. A batch of rows as they are (a step that packing does not
            # help: about one in 500 on the sample) takes the most (at most its length), which every row
            # fits: a shape that can hold any later step of rows that long (see _within)
            shapes = sorted({(layout, size, min(buckets[-1], size)) if layout == "rows"
                             else (layout, size, bucket_of(keys, buckets)) for layout, size, keys in steps})
            self._shapes_for = (key, shapes)
        return self._shapes_for[1]

    @staticmethod
    def tokens(batch: dict[str, np.ndarray]) -> int:
        return int((np.asarray(batch["segment"]) > 0).sum())

    def per_text(self, outputs: Sequence[dict]) -> list[tuple[np.ndarray, dict]]:
        """Per text, its candidate spans [S, 2] and their outputs ({name: [S, ...]})."""
        return S.per_text(self.pieces, self.rows, outputs, len(self.sentences))

    def decoded(self, outputs: Sequence[dict], nested: bool | None = None,
                threshold: float | None = None) -> list[list[S.Entity]]:
        nested = self.nested if nested is None else nested
        threshold = self.threshold if threshold is None else threshold
        return [S.decode(spans, out["label"], out["score"], nested, threshold) if len(spans) else []
                for spans, out in self.per_text(outputs)]

    def word_tags(self, outputs) -> WordTags:
        return [S.entities_to_tags(found, len(sentence), self.span.labels)
                for sentence, found in zip(self.sentences, self.decoded(outputs))]

    def entities(self, outputs) -> list[list[Entity]]:
        return [[(self.span.labels[label], s, e, score) for s, e, label, score in found]
                for found in self.decoded(outputs)]

    def describe(self) -> str:
        spans = sum(len(p.spans) for p in self.pieces)
        return (f"{len(self.sentences)} sentences, {self.gold_entities} gold entities ({self.too_long} longer than "
                f"{self.span.entity_max_length} words: never candidates), {len(self.pieces)} windows, "
                f"{spans} candidate spans in {len(self.rows)} rows (span_marker's) of {sum(self.lengths())} tokens "
                f"({2 * spans} markers)")


def encode_texts(texts: Sequence, tokenizer, span: SpanConfig, max_tokens: int, pad_id: int, nested: bool,
                 sentences: Sequence | None = None, threshold: float = 0.0, truncate: bool = False,
                 seed: int = 3407) -> SpanSplit:
    """Texts (strings or word lists) as a SpanSplit; gold labels from `sentences` when given.

    truncate=True cuts texts longer than max_tokens as SpanMarker does (default: windows).
    """
    index = {label: i for i, label in enumerate(span.labels)}
    pieces, too_long, total, unknown, tokenized = [], 0, 0, set(), []
    for i, text in enumerate(texts):
        gold = None
        if sentences is not None:
            gold = {}
            for label, start, end in S.gold_spans(sentences[i].tags, nested):
                total += 1
                too_long += end - start > span.entity_max_length
                if label not in index:
                    unknown.add(label)
                    continue
                gold[(start, end)] = index[label]
        tok = S.tokenize(tokenizer, text)
        tokenized.append(tok)
        pieces.extend(S.make_pieces(tok, i, max_tokens, span.entity_max_length, gold, truncate))
    if unknown:
        raise ValueError(f"entity types {sorted(unknown)} are not among the model's labels {span.labels}")
    return SpanSplit(sentences if sentences is not None else texts, pieces, span, pad_id, nested, max_tokens,
                     threshold, total, too_long, tokenized, seed)


class SpanFamily(ModelFamily):
    name = "span"
    kinds = ("span_flat", NESTED_KIND)
    Options = SpanOptions
    fine_tune_lr = 1e-5  # SpanMarker's published WikiANN setting
    export_formats = ("span-marker",)  # the PyTorch span_marker package's folder

    def export(self, run_dir, format, output_path, *, overwrite=False, license=None, encoder_name="",  # noqa: A002
               **options):
        """`encoder_name`: the base encoder's hub id to record (span_marker reads its config and tokenizer
        there); "" writes them to OUTPUT/encoder and records that path."""
        from arner_jax.data import files
        from arner_jax.errors import UserError
        from arner_jax.models.span_marker.pretrained import SpanMarkerModel
        from arner_jax.runs.export_folder import prepare_export_folder

        if files.is_url(str(output_path)) and not encoder_name:  # before anything is written there
            raise UserError(f"{output_path}: a span_marker folder in a bucket needs --encoder_name (the base "
                            "encoder's hub id: span_marker reads its config from that name, not from a bucket)")
        model = SpanMarkerModel.from_pretrained(run_dir)
        return model.save_pretrained(prepare_export_folder(output_path, overwrite, "a span_marker export"),
                                     encoder_name, license)

    def verify_export(self, run_dir, format, exported, sentences, ours, tolerance):  # noqa: A002
        """The written folder loaded back: every candidate span's logits as the run's (exactly)."""
        import numpy as np

        from arner_jax.models.span_marker.pretrained import SpanMarkerModel

        sentences = sentences[:200]  # a round trip of the same weights: a sample tells as much as the file
        model, back = SpanMarkerModel.from_pretrained(run_dir), SpanMarkerModel.from_pretrained(exported)
        pairs = zip(model.span_logits(sentences), back.span_logits(sentences))
        diff = max((float(np.abs(a[1] - b[1]).max()) for a, b in pairs if len(a[0])), default=0.0)
        return diff == 0.0, (f"{len(sentences)} sentences; largest |span logit difference| after the round trip "
                             f"{diff:.3e}")
    smoke_settings = {"marker_max_length": 16, "entity_max_length": 4}

    def label_space(self, config, corpora) -> list[str]:
        return span_labels(corpora, self.nested(config))

    def labels_to_json(self, labels: list[str]) -> dict:
        return {"labels": list(labels)}

    def labels_from_json(self, data: dict) -> list[str]:
        return list(data["labels"])

    def entity_types(self, labels: list[str]) -> list[str]:
        return list(labels[1:])

    def nested(self, config) -> bool:
        return config.kind == NESTED_KIND

    def corpus_types(self, config, corpus) -> set[str]:
        return {label for s in corpus.sentences for label, _, _ in S.gold_spans(s.tags, self.nested(config))}

    def prepare_tokenizer(self, tokenizer) -> None:
        add_markers(tokenizer)

    def encoder_config(self, encoder: EncoderConfig, tokenizer) -> EncoderConfig:
        # the markers extend the vocabulary; embeddings padded to a multiple of 8, as SpanMarker resizes them
        return encoder.replace(vocab_size=max(encoder.vocab_size, -(-len(tokenizer) // 8) * 8))

    def max_length(self, config, encoder: EncoderConfig) -> int:
        return usable_length(config.max_length, encoder)

    def span_config(self, config, labels: list[str], encoder: EncoderConfig) -> SpanConfig:
        return SpanConfig(list(labels), config.options.marker_max_length, config.options.entity_max_length,
                          self.max_length(config, encoder))

    def build(self, config, encoder, labels, tokenizer) -> SpanMarker:
        start, end = add_markers(tokenizer)
        return SpanMarker(encoder, len(labels), start, end, dropout=config.dropout,
                          dtype=jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32, attention=config.attention,
                          remat=config.remat)

    def example_batch(self, labels) -> dict[str, np.ndarray]:
        tokens, slots = np.ones((1, 8), np.int32), np.zeros((1, 2), np.int32)
        return {"input_ids": tokens, "segment": tokens, "text_index": tokens, "starts": slots, "ends": slots,
                "num_spans": np.ones((1,), np.int32), "text_keys": np.arange(8, dtype=np.int32)[None]}

    def objective(self, config, labels, model, with_logits: bool = False) -> SpanObjective:
        return SpanObjective(model.apply, with_logits)

    def with_pretrained_encoder(self, params: dict, encoder_params: dict, encoder: EncoderConfig) -> dict:
        """A pretrained encoder's weights, with embedding rows appended for the markers (and the padding to a
        multiple of 8): the model's own initial rows, normal(0, 0.02) from the run's seed, as span_marker 1.8.1
        draws them (resize_token_embeddings with mean_resizing=False)."""
        table = encoder_params["embeddings"]["word_embeddings"]["embedding"]
        if table.shape[0] < encoder.vocab_size:
            extra = np.asarray(params["encoder"]["embeddings"]["word_embeddings"]["embedding"])[table.shape[0]:]
            emb = {**encoder_params["embeddings"], "word_embeddings": {"embedding": np.concatenate([table, extra])}}
            encoder_params = {**encoder_params, "embeddings": emb}
        return {**params, "encoder": encoder_params}

    def with_pretrained_heads(self, params: dict, model_dir, labels) -> tuple[dict, str]:
        """A span_marker folder (the package's save_pretrained, or ours) as --bert_model: its classifier too when
        its labels are the run's, so that training continues that model (its encoder, marker embeddings
        included, comes through with_pretrained_encoder)."""
        import json
        from pathlib import Path

        from arner_jax.models.span_marker.checkpoint import MODEL_TYPE, read_span_marker

        try:
            raw = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return params, ""
        if raw.get("model_type") != MODEL_TYPE:
            return params, ""
        loaded = read_span_marker(model_dir)
        if list(loaded.span.labels) != list(labels):
            return params, (f"{model_dir}: a span_marker model for labels {loaded.span.labels}, not the run's "
                            f"{list(labels)}: its encoder is used, the classifier starts new")
        return {**params, "classifier": loaded.params["classifier"]}, (
            f"{model_dir}: a span_marker model with the run's labels: its classifier is trained further too")

    def encode(self, config, labels, tokenizer, sentences, max_length: int, labelled: bool = True) -> SpanSplit:
        span = SpanConfig(list(labels), config.options.marker_max_length, config.options.entity_max_length, max_length)
        return encode_texts([s.words for s in sentences], tokenizer, span, max_length, int(tokenizer.pad_token_id),
                            self.nested(config), sentences if labelled else None, config.options.threshold,
                            seed=config.seed)


register_family(SpanFamily())
