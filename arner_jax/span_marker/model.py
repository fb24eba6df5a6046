"""The SpanMarker model in Flax: encoder with marker tokens, start/end concatenation, linear head.

Owns (SPEC 7): laying a row out from its compact form, the position ids and the `[B, L, L]`
attention pattern, the head, the span cross-entropy and what the data-parallel steps need of
the model (`SpanObjective`).

A row is given compactly (see spans.collate_rows): the text ids `[B, Tw]` with its real length,
and for each of K marker slots the token index of its span's first and last subword. The model
builds the sequence [text (Tw)][K start markers][K end markers] (L = Tw + 2K) itself:
  position ids  text token i: i + 2; a start (end) marker: its span's first (last) subword + 2;
                padding and unused slots: 1;
  attention     text attends to text; a marker attends to every text token, itself and its
                partner; everything else is masked (float32's most negative value, as SpanMarker);
  head          [h(start marker); h(end marker)] (2H) -> dropout -> Dense(C), float32 logits
                `[B, K, C]`.
Where the markers sit in the row does not matter (positions are explicit and masked attention is
permutation-equivariant), which is why this layout gives SpanMarker's numbers.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arner_jax.encoders import Encoder, EncoderConfig

POSITION_OFFSET = 2  # SpanMarker (after PL-Marker) numbers text positions from 2; padding is 1
PAD_POSITION = 1


def row_layout(input_ids, text_len, starts, ends, num_spans, start_id: int, end_id: int, pad_id: int):
    """Full-row token ids, position ids `[B, L]` and the 0/1 attention mask `[B, L, L]`."""
    B, Tw = input_ids.shape
    K = starts.shape[1]
    text_pos = jnp.arange(Tw)[None, :]
    slot = jnp.arange(K)[None, :]
    is_text = text_pos < text_len[:, None]  # [B, Tw]
    used = slot < num_spans[:, None]  # [B, K]
    marker_ids = lambda i: jnp.where(used, i, pad_id)  # noqa: E731
    ids = jnp.concatenate([input_ids, marker_ids(start_id), marker_ids(end_id)], axis=1).astype(jnp.int32)
    pos_text = jnp.where(is_text, text_pos + POSITION_OFFSET, PAD_POSITION)
    pos_marker = lambda t: jnp.where(used, t + POSITION_OFFSET, PAD_POSITION)  # noqa: E731
    positions = jnp.concatenate([pos_text, pos_marker(starts), pos_marker(ends)], axis=1).astype(jnp.int32)
    # Per position: is it real text, is it a used marker, and its slot (-1 for text/padding).
    text_flag = jnp.concatenate([is_text, jnp.zeros((B, 2 * K), bool)], axis=1)  # [B, L]
    marker_flag = jnp.concatenate([jnp.zeros((B, Tw), bool), used, used], axis=1)
    slot_of = jnp.concatenate([jnp.full((B, Tw), -1), jnp.broadcast_to(slot, (B, K)),
                               jnp.broadcast_to(slot, (B, K))], axis=1)
    q_real = (text_flag | marker_flag)[:, :, None]
    partner = marker_flag[:, :, None] & marker_flag[:, None, :] & (slot_of[:, :, None] == slot_of[:, None, :])
    mask = (q_real & text_flag[:, None, :]) | partner
    return ids, positions, mask


class SpanMarker(nn.Module):
    """Encoder + marker features + linear head; returns float32 logits `[B, K, C]`."""

    encoder: EncoderConfig
    num_labels: int
    start_id: int
    end_id: int
    dropout: float = 0.1  # the encoder's hidden dropout, as SpanMarker
    dtype: Any = jnp.float32
    attention: str = "auto"  # the encoder's attention implementation (encoders.model.ATTENTION_IMPLEMENTATIONS)
    remat: str = "none"  # the encoder's per-layer rematerialisation (encoders.model.REMAT_POLICIES)

    @nn.compact
    def __call__(self, input_ids, text_len, starts, ends, num_spans, *, deterministic: bool = True):
        Tw, K = input_ids.shape[1], starts.shape[1]
        ids, positions, mask = row_layout(input_ids, text_len, starts, ends, num_spans, self.start_id,
                                          self.end_id, self.encoder.pad_token_id)
        h = Encoder(self.encoder, self.dtype, self.attention, self.remat, name="encoder")(
            ids, mask, None, positions, deterministic=deterministic)
        features = jnp.concatenate([h[:, Tw:Tw + K], h[:, Tw + K:]], axis=-1)  # [B, K, 2H]
        features = nn.Dropout(self.dropout)(features, deterministic=deterministic)
        logits = nn.Dense(self.num_labels, kernel_init=nn.initializers.normal(0.02), dtype=self.dtype,
                          name="classifier")(features)
        return logits.astype(jnp.float32)


def span_logits(apply_fn: Callable, params, batch: dict, rngs=None, deterministic: bool = True):
    return apply_fn({"params": params}, batch["input_ids"], batch["text_len"], batch["starts"], batch["ends"],
                    batch["num_spans"], deterministic=deterministic, rngs=rngs)


@dataclasses.dataclass(frozen=True)
class SpanObjective:
    """Cross-entropy over real spans (SPEC 7): an arner_jax.families.Objective.

    Statistics are sums (negative log-likelihood, span count), so the loss of a batch split over
    devices is the loss of the whole batch; predict gives each slot's argmax class `label` and
    its probability `score` (and the logits when asked).
    """

    apply_fn: Callable
    with_logits: bool = False
    batch_keys: tuple[str, ...] = ("input_ids", "text_len", "starts", "ends", "num_spans", "labels", "label_mask")

    def statistics(self, params, batch, rngs, deterministic: bool, rank_offset=None):
        logits = span_logits(self.apply_fn, params, batch, rngs, deterministic)
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, batch["labels"][..., None], axis=-1)[..., 0]
        mask = batch["label_mask"]
        return {"nll": (nll * mask).sum(), "n": mask.sum()}, logits

    def loss(self, stats):
        return stats["nll"] / jnp.maximum(stats["n"], 1.0), {}

    def predict(self, logits):
        probs = jax.nn.softmax(logits, axis=-1)
        out = {"label": jnp.argmax(probs, axis=-1).astype(jnp.int32), "score": jnp.max(probs, axis=-1)}
        if self.with_logits:
            out["logits"] = logits
        return out
