"""Token taggers on an encoder: the nested multi-task tagger, the flat tagger and MTN, and decoding.

Owns: the fused classification heads (all T per-type classifiers as one `[H, T, C]` parameter
and one einsum; the flat tagger is the same with T = 1), the label layout of each kind, and
decoding logits into class ids (class ids to word tags: `arner_jax.data.entities`), and the
tagger's `TaggerObjective` for the data-parallel steps:
  nested: per-type heads, each type's argmax over its own classes (SPEC 1A);
  flat:   one head over the flat tags;
  mtn:    per-type heads trained on flat data; decoding keeps at most one non-O tag per word,
          the most probable among the types whose own argmax is not O.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.vocab import LabelVocab
from arner_jax.encoders import Encoder, EncoderConfig
from arner_jax.losses import batch_statistics, loss_from_statistics

KINDS = ("nested", "flat", "mtn")


def label_layout(kind: str) -> str:
    """How gold labels are laid out for a model kind (see data.align)."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    return {"nested": "per_type", "mtn": "flat_per_type", "flat": "flat"}[kind]


def head_shape(kind: str, vocab: LabelVocab) -> tuple[int, int]:
    """(T heads, C classes) of a model kind."""
    return (1, len(vocab.flat_tags)) if kind == "flat" else (vocab.num_types, 3)


def class_mask(kind: str, vocab: LabelVocab) -> np.ndarray:
    """[T, C] classes each head may predict."""
    return np.ones((1, len(vocab.flat_tags)), bool) if kind == "flat" else vocab.class_mask()


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


def decode(kind: str, logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Predicted class ids `[..., T]` from logits `[..., T, C]` (jit-friendly)."""
    logp = masked_log_probs(logits, mask)
    best = jnp.argmax(logp, axis=-1)  # [..., T]
    if kind != "mtn":
        return best
    # MTN: among types whose argmax is B or I, keep the one with the highest probability.
    best_logp = jnp.max(logp, axis=-1)
    candidate = jnp.where(best > 0, best_logp, -jnp.inf)  # [..., T]
    winner = jnp.argmax(candidate, axis=-1)  # [...]
    keep = (jnp.arange(best.shape[-1]) == winner[..., None]) & (best > 0)
    return jnp.where(keep, best, 0)


@dataclasses.dataclass(frozen=True)
class TaggerObjective:
    """What the data-parallel steps need of a tagger (see train.parallel.StepBodies).

    statistics: the additive loss statistics of a shard (SPEC 4 losses, losses.batch_statistics)
    and its logits; loss: the loss of summed statistics; predict: decoded class ids [b, L, T].
    """

    apply_fn: Callable  # model.apply
    kind: str  # nested | flat | mtn (decoding rule)
    class_mask: np.ndarray  # [T, C]
    loss_config: Any  # losses.LossConfig

    def statistics(self, params, batch, rngs, deterministic: bool, rank_offset):
        logits = self.apply_fn({"params": params}, batch["input_ids"], batch["attention_mask"],
                               deterministic=deterministic, rngs=rngs)
        stats = batch_statistics(logits, batch["labels"], batch["label_mask"], self.class_mask,
                                 gamma=self.loss_config.gamma, rank_offset=rank_offset)
        return stats, logits

    def loss(self, stats):
        return loss_from_statistics(stats, self.class_mask, self.loss_config)

    def predict(self, logits):
        return decode(self.kind, logits, jnp.asarray(self.class_mask)).astype(jnp.int32)
