"""Losses of the Wojood shared-task system (SPEC section 4), vectorized over heads.

Owns: CE, focal, Dice, Tversky and the IRM term for all T heads in one call on logits
`[B, S, T, C]`, masked by the label mask (masked positions cannot change any value, whatever
labels they hold) and by a per-type class mask (a type with fewer classes behaves exactly as a
smaller head: its absent classes get no probability and are left out of class means); the
weighted combination (the unified loss by default); and the multi-task total with the
loss-variance penalty. Everything is float32, whatever the model's compute dtype.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

TERMS = ("ce", "focal", "dice", "tversky", "irm")
PRESETS: dict[str, dict[str, float]] = {
    "ce": {"ce": 1.0},
    "focal": {"focal": 1.0},
    "dice": {"dice": 1.0},
    "tversky": {"tversky": 1.0},
    # 0.2 Dice + 0.2 Tversky + 0.2 Focal + 0.4 (CE + 5 IRM): the shared-task default
    "unified": {"dice": 0.2, "tversky": 0.2, "focal": 0.2, "ce": 0.4, "irm": 0.4 * 5.0},
}
_MASKED_LOGIT = -1e9  # exp underflows to exactly 0 in float32, and stays finite


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which terms, their weights, and how heads combine."""

    name: str = "unified"  # a PRESETS key, or "custom" with `weights`
    weights: tuple[tuple[str, float], ...] = ()  # overrides the preset when given
    gamma: float = 2.0  # focal exponent
    alpha: float = 0.5  # Tversky: weight of false positives (1 - alpha: false negatives)
    smooth: float = 1e-6  # Dice/Tversky smoothing
    var_penalty: float = 5.0  # lambda of the loss-variance penalty (0: off)
    head_reduction: str = "sum"  # "sum" (the reference) or "mean" over heads

    def term_weights(self) -> dict[str, float]:
        weights = dict(self.weights) if self.weights else dict(PRESETS[self.name])
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {TERMS}")
        return weights


def loss_terms(logits: jax.Array, labels: jax.Array, label_mask: jax.Array,
               class_mask: jax.Array | None = None, *, gamma: float = 2.0, alpha: float = 0.5,
               smooth: float = 1e-6) -> dict[str, jax.Array]:
    """Every term for every head.

    logits: [B, S, T, C]; labels: [B, S, T] int; label_mask: [B, S] (1 = the position counts);
    class_mask: [T, C] bool (None: all classes). Returns {term: [T]}.
    """
    z = logits.astype(jnp.float32)  # [B, S, T, C]
    C = z.shape[-1]
    cmask = jnp.ones(z.shape[-2:], bool) if class_mask is None else jnp.asarray(class_mask, bool)  # [T, C]
    z = jnp.where(cmask, z, _MASKED_LOGIT)
    counts = label_mask.astype(bool)[:, :, None]  # [B, S, 1]
    labels = jnp.where(counts, labels, 0)  # labels under the mask may be anything
    logp = jax.nn.log_softmax(z, axis=-1)
    p = jnp.exp(logp)  # [B, S, T, C]
    onehot = jax.nn.one_hot(labels, C, dtype=jnp.float32)  # [B, S, T, C]
    n = jnp.maximum(label_mask.astype(jnp.float32).sum(), 1.0)

    def pos_mean(x):  # [B, S, T] -> [T], mean over the positions that count
        return jnp.where(counts, x, 0.0).sum(axis=(0, 1)) / n

    def pos_sum(x):  # [B, S, T, C] -> [T, C]
        return jnp.where(counts[..., None], x, 0.0).sum(axis=(0, 1))

    def class_mean(x):  # [T, C] -> [T], mean over each type's own classes
        return jnp.where(cmask, x, 0.0).sum(-1) / cmask.sum(-1)

    nll = -(onehot * logp).sum(-1)  # [B, S, T]
    p_y = jnp.exp(-nll)
    tp, sum_p, sum_y = pos_sum(p * onehot), pos_sum(p), pos_sum(onehot)  # [T, C]
    fp, fn = sum_p - tp, sum_y - tp
    # IRM: d CE(s * z) / ds at s = 1 is, per position, sum_c p_c z_c - z_y.
    z_safe = jnp.where(cmask, z, 0.0)
    irm_grad = (p * z_safe).sum(-1) - (onehot * z_safe).sum(-1)  # [B, S, T]
    flat_mask = counts.reshape(-1)
    rank = jnp.cumsum(flat_mask) - 1  # order of the counting positions, batch-major
    even = (flat_mask & (rank % 2 == 0)).reshape(counts.shape)
    odd = (flat_mask & (rank % 2 == 1)).reshape(counts.shape)
    g = [jnp.where(part, irm_grad, 0.0).sum((0, 1)) / jnp.maximum(part.sum(), 1) for part in (even, odd)]
    return {
        "ce": pos_mean(nll),
        "focal": pos_mean((1.0 - p_y) ** gamma * nll),
        "dice": 1.0 - class_mean((2.0 * tp + smooth) / (sum_p + sum_y + smooth)),
        "tversky": 1.0 - class_mean((tp + smooth) / (tp + alpha * fp + (1.0 - alpha) * fn + smooth)),
        "irm": g[0] * g[1],
    }


def head_losses(logits, labels, label_mask, class_mask, config: LossConfig) -> jax.Array:
    """[T] per-head loss: the weighted sum of the configured terms."""
    terms = loss_terms(logits, labels, label_mask, class_mask, gamma=config.gamma, alpha=config.alpha,
                       smooth=config.smooth)
    return sum(w * terms[name] for name, w in config.term_weights().items())


def multitask_total(per_head: jax.Array, var_penalty: float = 5.0, reduction: str = "sum") -> jax.Array:
    """Sum (or mean) over heads plus lambda * population variance of the per-head losses."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"head reduction must be 'sum' or 'mean', got {reduction!r}")
    base = per_head.sum() if reduction == "sum" else per_head.mean()
    if var_penalty and per_head.shape[0] > 1:
        base = base + var_penalty * jnp.var(per_head)
    return base


def total_loss(logits, labels, label_mask, class_mask, config: LossConfig) -> tuple[jax.Array, Mapping]:
    """The scalar training loss and, for logging, the per-head losses `[T]`."""
    per_head = head_losses(logits, labels, label_mask, class_mask, config)
    return multitask_total(per_head, config.var_penalty, config.head_reduction), {"head_losses": per_head}
