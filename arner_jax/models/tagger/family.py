"""The token-tagger family: the nested multi-task tagger, the flat tagger and MTN.

Owns everything kind-specific about token taggers:
  nested  one head per entity type, each predicting that type's IOB2 tag (SPEC 1A); scored per
          type layer, pooled;
  flat    one head over the flat tags (O, then B-/I- of each type);
  mtn     per-type heads trained on flat data (each word's outermost tag); decoding keeps at
          most one non-O tag per word, the most probable among the types whose own argmax is
          not O; scored flat.
The heads are fused: all T per-type classifiers are one `[H, T, C]` parameter and one einsum
(the flat tagger is the same with T = 1); every type has the classes O, B, I, and a class mask
says which of them the training data has. Also: the label layout of each kind, decoding logits
into class ids and class ids into word tags and entities, the objective of the data-parallel
steps (SPEC 4 losses from additive statistics), and `TaggerFamily`, registered for the kinds.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.align import AlignStats, Window, encode_sentences, scatter_to_words
from arner_jax.data.batching import collate_windows
from arner_jax.data.entities import entity_tags, layer_entities
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus
from arner_jax.encoders import Encoder, EncoderConfig
from arner_jax.models.base import (
    EncodedSplit,
    Entity,
    ModelFamily,
    WordTags,
    register_family,
)
from arner_jax.models.tagger.losses import LossConfig, batch_statistics, loss_from_statistics
from arner_jax.models.tagger.options import TaggerOptions
from arner_jax.models.tagger.um6p import ReferenceSplit, ReferenceVocab, encode_reference


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """How one tagger kind lays out its labels and decodes."""

    layout: str  # gold label layout (data.align): per_type, flat_per_type or flat
    flat_head: bool  # one head over the flat tags instead of one per type
    one_tag_per_word: bool  # decoding keeps at most one non-O type per word (MTN)
    nested: bool  # scored per type layer, pooled (nested Wojood)


KINDS = {
    "nested": KindSpec("per_type", flat_head=False, one_tag_per_word=False, nested=True),
    "flat": KindSpec("flat", flat_head=True, one_tag_per_word=False, nested=False),
    "mtn": KindSpec("flat_per_type", flat_head=False, one_tag_per_word=True, nested=False),
}


def head_shape(spec: KindSpec, vocab: LabelVocab) -> tuple[int, int]:
    """(T heads, C classes)."""
    return (1, len(vocab.flat_tags)) if spec.flat_head else (vocab.num_types, 3)


def class_mask(spec: KindSpec, vocab: LabelVocab) -> np.ndarray:
    """[T, C] classes each head may predict."""
    return np.ones((1, len(vocab.flat_tags)), bool) if spec.flat_head else vocab.class_mask()


class Tagger(nn.Module):
    """Encoder, dropout, and T fused linear heads; returns float32 logits `[B, L, T, C]`."""

    encoder: EncoderConfig
    num_heads: int
    num_classes: int
    dropout: float = 0.1  # before the heads, as the reference's BertSeqTagger
    dtype: Any = jnp.float32
    attention: str = "auto"  # the encoder's attention implementation (encoders.model.ATTENTION_IMPLEMENTATIONS)
    remat: str = "none"  # the encoder's per-layer rematerialisation (encoders.model.REMAT_POLICIES)

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, deterministic: bool = True):
        h = Encoder(self.encoder, self.dtype, self.attention, self.remat, name="encoder")(
            input_ids, attention_mask, deterministic=deterministic)  # [B, L, H]
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        init = nn.initializers.normal(0.02)
        kernel = self.param("head_kernel", init, (self.encoder.hidden_size, self.num_heads, self.num_classes))
        bias = self.param("head_bias", nn.initializers.zeros, (self.num_heads, self.num_classes))
        logits = jnp.einsum("blh,htc->bltc", h, kernel.astype(self.dtype)) + bias.astype(self.dtype)
        return logits.astype(jnp.float32)  # [B, L, T, C]


def masked_log_probs(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Log-softmax over each head's own classes ([..., T, C]; absent classes get -inf)."""
    return jax.nn.log_softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)


def decode_class_ids(logits: jax.Array, mask: jax.Array, one_tag_per_word: bool) -> jax.Array:
    """Predicted class ids `[..., T]` from logits `[..., T, C]` (jit-friendly)."""
    logp = masked_log_probs(logits, mask)
    best = jnp.argmax(logp, axis=-1)  # [..., T]
    if not one_tag_per_word:
        return best
    # MTN: among types whose argmax is B or I, keep the one with the highest probability.
    best_logp = jnp.max(logp, axis=-1)
    candidate = jnp.where(best > 0, best_logp, -jnp.inf)  # [..., T]
    winner = jnp.argmax(candidate, axis=-1)  # [...]
    keep = (jnp.arange(best.shape[-1]) == winner[..., None]) & (best > 0)
    return jnp.where(keep, best, 0)


def tag_layers(spec: KindSpec, vocab: LabelVocab, word_ids: np.ndarray) -> list[list[str]]:
    """Per layer (a type; the one flat layer of the flat head), the word tags; word_ids [n, T]."""
    if spec.flat_head:
        return [[vocab.flat_tags[int(i)] for i in word_ids[:, 0]]]
    return [[vocab.type_tag(t, int(c)) for c in word_ids[:, t]] for t in range(word_ids.shape[1])]


def ids_to_tags(spec: KindSpec, vocab: LabelVocab, word_ids: np.ndarray) -> list[list[str]]:
    """Per word, its predicted tags: one per layer (type order), or the one flat tag."""
    return [list(tags) for tags in zip(*tag_layers(spec, vocab, word_ids))] if len(word_ids) else []


@dataclasses.dataclass(frozen=True)
class TaggerObjective:
    """What the data-parallel steps need of a tagger (arner_jax.models.base.Objective).

    statistics: the additive loss statistics of a shard (SPEC 4, losses.batch_statistics) and its
    logits; loss: the loss of summed statistics; predict: class ids `ids` [b, L, T] and their
    probabilities `probs` (and the logits when asked).
    """

    apply_fn: Any  # model.apply
    spec: KindSpec
    class_mask: np.ndarray  # [T, C]
    loss_config: LossConfig
    with_logits: bool = False
    # --recipe um6p: argmax over every output, a narrower head's missing ones read as the logit 0 (the
    # reference pads its logits with 0); the host decodes ids as the reference does (arner_jax.models.tagger.um6p)
    reference_decoding: bool = False
    batch_keys: tuple[str, ...] = ("input_ids", "attention_mask", "labels", "label_mask")

    def statistics(self, params, batch, rngs, deterministic: bool, rank_offset):
        logits = self.apply_fn({"params": params}, batch["input_ids"], batch["attention_mask"],
                               deterministic=deterministic, rngs=rngs)
        stats = batch_statistics(logits, batch["labels"], batch["label_mask"], self.class_mask,
                                 gamma=self.loss_config.gamma, rank_offset=rank_offset)
        return stats, logits

    def loss(self, stats):
        return loss_from_statistics(stats, self.class_mask, self.loss_config)

    def predict(self, logits):
        mask = jnp.asarray(self.class_mask)
        if self.reference_decoding:
            ids = jnp.argmax(jnp.where(mask, logits, 0.0), axis=-1)  # [b, L, T]
        else:
            ids = decode_class_ids(logits, mask, self.spec.one_tag_per_word)  # [b, L, T]
        logp = jnp.take_along_axis(masked_log_probs(logits, mask), ids[..., None], axis=-1)[..., 0]
        out = {"ids": ids.astype(jnp.int32), "probs": jnp.exp(logp)}
        if self.with_logits:
            out["logits"] = logits
        return out


class TaggerSplit(EncodedSplit):
    """Sentences as tagger windows (one per sentence, overlapping windows for long ones)."""

    def __init__(self, sentences, windows: list[Window], spec: KindSpec, vocab: LabelVocab, pad_id: int,
                 stats: AlignStats | None = None):
        super().__init__(sentences)
        self.windows, self.spec, self.vocab = windows, spec, vocab
        self.pad_id = pad_id
        self.stats = stats or AlignStats()

    def lengths(self) -> list[int]:
        return [len(w) for w in self.windows]

    def collate(self, indices, rows: int, length: int) -> dict[str, np.ndarray]:
        return collate_windows(self.windows, indices, rows, length, self.pad_id)

    def per_word(self, outputs: Sequence[dict]) -> list[dict[str, np.ndarray]]:
        """Per sentence, its outputs per word (the first subword's, in the window that scores it):
        `ids` [n, T], `probs` [n, T] (and `logits` [n, T, C] when the objective returned them)."""
        if not self.windows:  # no sentence has a word
            T = 1 if self.spec.flat_head else self.vocab.num_types
            return [{"ids": np.zeros((0, T), np.int32), "probs": np.zeros((0, T), np.float32)}
                    for _ in self.sentences]
        num_words = [len(s) for s in self.sentences]
        per_name = {k: scatter_to_words(self.windows, num_words, [out[k][:len(w)] for w, out in
                                                                  zip(self.windows, outputs)])
                    for k in outputs[0]}
        return [{k: v[i] for k, v in per_name.items()} for i in range(len(self.sentences))]

    def describe(self) -> str:
        s = self.stats
        return (f"{s.sentences} sentences, {s.words} words, {s.windows} windows ({s.split_sentences} sentences "
                f"split), {s.words_without_subwords} words without subwords, {s.clipped_words} over-long words "
                "clipped")

    def word_tags(self, outputs) -> WordTags:
        return [entity_tags(ids_to_tags(self.spec, self.vocab, w["ids"])) for w in self.per_word(outputs)]

    def entities(self, outputs) -> list[list[Entity]]:
        return [layer_entities(tag_layers(self.spec, self.vocab, w["ids"]), w["probs"]) if len(w["ids"]) else []
                for w in self.per_word(outputs)]


class TaggerFamily(ModelFamily):
    name = "tagger"
    kinds = tuple(KINDS)
    Options = TaggerOptions
    fine_tune_lr = 2e-5  # the Wojood reference
    # pytorch: a Hugging Face folder (flat) or encoder + heads for torch_tagger.TorchTagger (nested, MTN);
    # um6p: a --recipe um6p run as the reference's state dict (a file: NAME.safetensors or NAME.pt)
    export_formats = ("pytorch", "um6p")

    def export(self, run_dir, format, output_path, *, overwrite=False, license=None, **options):  # noqa: A002
        if format == "um6p":
            from arner_jax.models.tagger.reference_checkpoint import export_reference_checkpoint

            return export_reference_checkpoint(run_dir, output_path, overwrite)
        from arner_jax.models.tagger.export import export_run

        return export_run(run_dir, output_path, overwrite, license)

    def verify_export(self, run_dir, format, exported, sentences, ours, tolerance):  # noqa: A002
        if format != "pytorch":
            return super().verify_export(run_dir, format, exported, sentences, ours, tolerance)
        from arner_jax.models.tagger.export import verify_export

        check = verify_export(ours, exported, sentences)
        return check.passed(tolerance), (f"{check.words} words; largest |logit difference| {check.max_logit_diff:.3e} "
                                         f"(tolerance {tolerance:g}); words with different predicted tags: "
                                         f"{check.differing_tags}")

    def label_space(self, config, corpora) -> LabelVocab | ReferenceVocab:
        if config.options.recipe == "um6p":  # the reference's vocabularies, from train+val+test in file order
            return ReferenceVocab.from_sentences([s for c in corpora for s in c.sentences], config.kind)
        return LabelVocab.from_corpus(Corpus([s for c in corpora for s in c.sentences]))

    def labels_to_json(self, labels: LabelVocab | ReferenceVocab) -> dict:
        return labels.to_json()

    def labels_from_json(self, data: dict) -> LabelVocab | ReferenceVocab:
        return ReferenceVocab.from_json(data) if data.get("recipe") == "um6p" else LabelVocab.from_json(data)

    def corpus_types(self, config, corpus) -> set[str]:
        if config.options.recipe == "um6p" and config.kind == "mtn":  # the reference's MTN reads each word's first tag
            return {t[2:] for s in corpus.sentences for tags in s.tags for t in tags[:1] if t != "O"}
        return super().corpus_types(config, corpus)

    def entity_types(self, labels: LabelVocab) -> list[str]:
        return list(labels.types)

    def spec(self, config) -> KindSpec:
        """How the run's kind lays out labels and decodes (the PyTorch export needs it too)."""
        return KINDS[config.kind]

    def nested(self, config) -> bool:
        return KINDS[config.kind].nested

    def build(self, config, encoder, labels, tokenizer) -> Tagger:
        if isinstance(labels, ReferenceVocab):
            num_heads, num_classes = labels.num_types, labels.width
        else:
            num_heads, num_classes = head_shape(KINDS[config.kind], labels)
        return Tagger(encoder, num_heads, num_classes, dropout=config.dropout,
                      dtype=jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32, attention=config.attention,
                      remat=config.remat)

    def example_batch(self, labels) -> dict[str, np.ndarray]:
        return {"input_ids": np.zeros((1, 8), np.int32)}

    def objective(self, config, labels, model, with_logits: bool = False) -> TaggerObjective:
        spec = KINDS[config.kind]
        loss = LossConfig(name=config.options.loss, var_penalty=config.options.var_penalty,
                          head_reduction=config.options.head_reduction)
        if isinstance(labels, ReferenceVocab):
            return TaggerObjective(model.apply, spec, labels.class_mask(), loss, with_logits, reference_decoding=True)
        return TaggerObjective(model.apply, spec, class_mask(spec, labels), loss, with_logits)

    def encode(self, config, labels, tokenizer, sentences, max_length: int, labelled: bool = True) -> TaggerSplit:
        if isinstance(labels, ReferenceVocab):
            rows, ref_stats = encode_reference(sentences, tokenizer, labels, max_length)
            return ReferenceSplit(sentences, rows, labels, int(tokenizer.pad_token_id), ref_stats)
        spec = KINDS[config.kind]
        windows, stats = encode_sentences(sentences, tokenizer, labels, spec.layout, max_length)
        return TaggerSplit(sentences, windows, spec, labels, int(tokenizer.pad_token_id), stats)


register_family(TaggerFamily())
