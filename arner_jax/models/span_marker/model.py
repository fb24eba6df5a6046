"""The SpanMarker model in Flax: encoder with marker tokens, start/end concatenation, linear head.

Owns (SPEC 7): laying a row out from its compact form, the position ids and the attention
pattern (SPEC 7's `[B, L, L]` mask, computed only where it can allow: an encoders.KeyedMask), the
head, the span cross-entropy and what the data-parallel steps need of the model (`SpanObjective`).

A row (see spans.collate_rows) is a sequence of L tokens holding one or more chunks, each
[text][start markers][end markers], given compactly: the text subwords, each token's segment
(its chunk: 1, 2, ...; 0 for padding), its index in its text (for a marker: its span's first or
last subword), and for each of K span slots the row positions of its start and end marker. The
model completes the row itself:
  token ids     a marker gets `<start>`/`<end>`; padding keeps the pad id;
  position ids  text token i of its text: i + 2; a start (end) marker: its span's first (last)
                subword + 2; padding: 1;
  attention     a text token attends to the text tokens of its own segment; a marker to the text
                tokens of its segment, itself and its partner; padding attends to nothing
                (float32's most negative value, as SpanMarker). Computed as scores against the
                row's text tokens (`text_keys`, every segment's, masked to the own one) plus two
                columns, itself and its partner: L x (T + 2) scores instead of L x L, the same
                numbers (the masked scores weigh exactly 0 either way);
  head          dropout on the encoder's last hidden states, [h(start marker); h(end marker)] (2H),
                dropout again, Dense(C): float32 logits `[B, K, C]` (span_marker 1.8.1 applies its
                one Dropout module at both places, at the encoder's hidden dropout rate).
So a text never sees another text of its row nor any marker, and a marker sees only its own text
and its partner: where a chunk sits in the row, and what shares the row, does not change its
numbers (positions are explicit and masked attention is permutation-equivariant). This is also
why SpanMarker's own layout ([text][K starts][K ends], one text per row) gives the same logits.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arner_jax.encoders import Encoder, EncoderConfig, KeyedMask

POSITION_OFFSET = 2  # SpanMarker (after PL-Marker) numbers text positions from 2; padding is 1
PAD_POSITION = 1


def row_layout(input_ids, segment, text_index, starts, ends, num_spans, text_keys, start_id: int, end_id: int):
    """Full-row token ids and position ids `[B, L]` and the attention pattern (an encoders.KeyedMask) of rows
    given as spans.collate_rows gives them: input_ids, segment, text_index `[B, L]`; starts, ends `[B, K]`;
    num_spans `[B]` (slots past it are unused); text_keys `[B, T]` (row positions of the rows' text tokens,
    -1 past them).

    The pattern is SPEC 7's `[B, L, L]` mask computed only where it can be 1: each token's keys are
    the row's text tokens (those of its own segment count), then itself and its partner (a marker's
    own two; a text token's own position is among the text keys already)."""
    B, L = input_ids.shape
    K = starts.shape[1]
    used = jnp.arange(K)[None, :] < num_spans[:, None]  # [B, K]
    batch = jnp.arange(B)[:, None]
    # Unused slots scatter to position L, which mode="drop" discards.
    at_start, at_end = jnp.where(used, starts, L), jnp.where(used, ends, L)
    ids = jnp.asarray(input_ids).at[batch, at_start].set(start_id, mode="drop")
    ids = ids.at[batch, at_end].set(end_id, mode="drop")
    partner = jnp.full((B, L), -1, jnp.int32)  # [B, L] row position of a marker's partner; -1: not a marker
    partner = partner.at[batch, at_start].set(ends, mode="drop").at[batch, at_end].set(starts, mode="drop")
    real = segment > 0
    positions = jnp.where(real, text_index + POSITION_OFFSET, PAD_POSITION).astype(jnp.int32)
    key_real = text_keys >= 0
    key_segment = jnp.where(key_real, jnp.take_along_axis(segment, jnp.maximum(text_keys, 0), axis=1), -1)  # [B, T]
    text = real[:, :, None] & (segment[:, :, None] == key_segment[:, None, :])  # [B, L, T]
    marker = jnp.broadcast_to((partner >= 0)[:, :, None], (B, L, 2))  # itself and its partner
    allowed = jnp.concatenate([text, marker], axis=-1)
    bias = jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)
    return ids.astype(jnp.int32), positions, KeyedMask(jnp.maximum(text_keys, 0).astype(jnp.int32), partner, bias)


class SpanMarker(nn.Module):
    """Encoder + marker features + linear head; returns float32 logits `[B, K, C]`."""

    encoder: EncoderConfig
    num_labels: int
    start_id: int
    end_id: int
    dropout: float = 0.1  # on the hidden states and on the marker features: the encoder's hidden dropout in SpanMarker
    dtype: Any = jnp.float32
    attention: str = "auto"  # the encoder's attention implementation (encoders.model.ATTENTION_IMPLEMENTATIONS)
    remat: str = "none"  # the encoder's per-layer rematerialisation (encoders.model.REMAT_POLICIES)

    @nn.compact
    def __call__(self, input_ids, segment, text_index, starts, ends, num_spans, text_keys, *,
                 deterministic: bool = True):
        ids, positions, mask = row_layout(input_ids, segment, text_index, starts, ends, num_spans, text_keys,
                                          self.start_id, self.end_id)
        h = Encoder(self.encoder, self.dtype, self.attention, self.remat, name="encoder")(
            ids, mask, None, positions, deterministic=deterministic)  # [B, L, H]
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        marker = lambda at: jnp.take_along_axis(h, at[:, :, None], axis=1)  # noqa: E731  [B, K, H]
        features = jnp.concatenate([marker(starts), marker(ends)], axis=-1)  # [B, K, 2H]
        features = nn.Dropout(self.dropout)(features, deterministic=deterministic)
        logits = nn.Dense(self.num_labels, kernel_init=nn.initializers.normal(0.02), dtype=self.dtype,
                          name="classifier")(features)
        return logits.astype(jnp.float32)


def span_logits(apply_fn: Callable, params, batch: dict, rngs=None, deterministic: bool = True):
    return apply_fn({"params": params}, batch["input_ids"], batch["segment"], batch["text_index"], batch["starts"],
                    batch["ends"], batch["num_spans"], batch["text_keys"], deterministic=deterministic, rngs=rngs)


@dataclasses.dataclass(frozen=True)
class SpanObjective:
    """Cross-entropy over real spans (SPEC 7): an arner_jax.models.base.Objective.

    Statistics are sums (negative log-likelihood, span count), so the loss of a batch split over
    devices is the loss of the whole batch; predict gives each slot's argmax class `label` and
    its probability `score` (and the logits when asked).
    """

    apply_fn: Callable
    with_logits: bool = False
    batch_keys: tuple[str, ...] = ("input_ids", "segment", "text_index", "starts", "ends", "num_spans", "text_keys",
                                   "labels", "label_mask")

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
