"""Losses of the Wojood shared-task system (SPEC section 4), vectorized over heads.

Owns: CE, focal, Dice, Tversky and the IRM term for all T heads in one call on logits
`[B, S, T, C]`, computed from additive batch statistics (so that a batch split over devices
gives exactly the loss of the whole batch), masked by the label mask (masked positions cannot change any value, whatever
labels they hold) and by a per-type class mask (a type with fewer classes behaves exactly as a
smaller head: its absent classes get no probability and are left out of class means); the
weighted combination (the unified loss by default); and the multi-task total with the
loss-variance penalty. Everything is float32, whatever the model's compute dtype.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

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


STAT_KEYS = ("n", "nll", "focal", "tp", "sum_p", "sum_y", "irm_even", "irm_odd", "n_even", "n_odd")


def batch_statistics(logits: jax.Array, labels: jax.Array, label_mask: jax.Array,
                     class_mask: jax.Array | None = None, *, gamma: float = 2.0,
                     rank_offset: jax.Array | int = 0) -> dict[str, jax.Array]:
    """Sums over the counting positions from which every term is computed.

    They add up across shards of a batch (devices, hosts), so a data-parallel step sums them
    (`psum`) and gets exactly the single-device loss of the whole batch. `rank_offset` is the
    number of counting positions in the shards before this one (for the IRM even/odd split).

    logits: [B, S, T, C]; labels: [B, S, T] int; label_mask: [B, S] (1 = the position counts);
    class_mask: [T, C] bool (None: all classes).
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

    def pos_sum(x):  # [B, S, T(, C)] -> [T(, C)], summed over the positions that count
        m = counts if x.ndim == 3 else counts[..., None]
        return jnp.where(m, x, 0.0).sum(axis=(0, 1))

    nll = -(onehot * logp).sum(-1)  # [B, S, T]
    p_y = jnp.exp(-nll)
    tp = pos_sum(p * onehot)
    # IRM: d CE(s * z) / ds at s = 1 is, per position, sum_c p_c z_c - z_y.
    z_safe = jnp.where(cmask, z, 0.0)
    irm_grad = (p * z_safe).sum(-1) - (onehot * z_safe).sum(-1)  # [B, S, T]
    flat_mask = counts.reshape(-1)
    rank = jnp.cumsum(flat_mask) - 1 + rank_offset  # order of the counting positions, batch-major
    even = (flat_mask & (rank % 2 == 0)).reshape(counts.shape)
    odd = (flat_mask & (rank % 2 == 1)).reshape(counts.shape)
    return {
        "n": counts.sum().astype(jnp.float32),
        "nll": pos_sum(nll),
        "focal": pos_sum((1.0 - p_y) ** gamma * nll),
        "tp": tp,
        "sum_p": pos_sum(p),
        "sum_y": pos_sum(onehot),
        "irm_even": jnp.where(even, irm_grad, 0.0).sum((0, 1)),
        "irm_odd": jnp.where(odd, irm_grad, 0.0).sum((0, 1)),
        "n_even": even.sum().astype(jnp.float32),
        "n_odd": odd.sum().astype(jnp.float32),
    }


def terms_from_statistics(stats: Mapping[str, jax.Array], class_mask: jax.Array | None = None, *,
                          alpha: float = 0.5, smooth: float = 1e-6) -> dict[str, jax.Array]:
    """Every term for every head ({term: [T]}) from (summed) `batch_statistics`."""
    tp, sum_p, sum_y = stats["tp"], stats["sum_p"], stats["sum_y"]  # [T, C]
    cmask = jnp.ones(tp.shape, bool) if class_mask is None else jnp.asarray(class_mask, bool)
    n = jnp.maximum(stats["n"], 1.0)
    fp, fn = sum_p - tp, sum_y - tp

    def class_mean(x):  # [T, C] -> [T], mean over each type's own classes
        return jnp.where(cmask, x, 0.0).sum(-1) / cmask.sum(-1)

    return {
        "ce": stats["nll"] / n,
        "focal": stats["focal"] / n,
        "dice": 1.0 - class_mean((2.0 * tp + smooth) / (sum_p + sum_y + smooth)),
        "tversky": 1.0 - class_mean((tp + smooth) / (tp + alpha * fp + (1.0 - alpha) * fn + smooth)),
        "irm": (stats["irm_even"] / jnp.maximum(stats["n_even"], 1.0))
        * (stats["irm_odd"] / jnp.maximum(stats["n_odd"], 1.0)),
    }


def loss_terms(logits: jax.Array, labels: jax.Array, label_mask: jax.Array,
               class_mask: jax.Array | None = None, *, gamma: float = 2.0, alpha: float = 0.5,
               smooth: float = 1e-6) -> dict[str, jax.Array]:
    """Every term for every head ({term: [T]}) of one whole batch (shapes as `batch_statistics`)."""
    stats = batch_statistics(logits, labels, label_mask, class_mask, gamma=gamma)
    return terms_from_statistics(stats, class_mask, alpha=alpha, smooth=smooth)


def weighted_terms(terms: Mapping[str, jax.Array], config: LossConfig) -> jax.Array:
    """[T] per-head loss: the weighted sum of the configured terms."""
    return sum(w * terms[name] for name, w in config.term_weights().items())


def head_losses(logits, labels, label_mask, class_mask, config: LossConfig) -> jax.Array:
    """[T] per-head loss of one whole batch."""
    return weighted_terms(loss_terms(logits, labels, label_mask, class_mask, gamma=config.gamma,
                                     alpha=config.alpha, smooth=config.smooth), config)


def loss_from_statistics(stats: Mapping[str, jax.Array], class_mask, config: LossConfig):
    """The scalar training loss and the per-head losses `[T]` from (summed) batch statistics."""
    terms = terms_from_statistics(stats, class_mask, alpha=config.alpha, smooth=config.smooth)
    per_head = weighted_terms(terms, config)
    return multitask_total(per_head, config.var_penalty, config.head_reduction), per_head


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
