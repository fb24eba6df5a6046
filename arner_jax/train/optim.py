"""The optimizer of the shared-task system (SPEC 5), built from optax parts.

Owns: AdamW with weight decay on weight matrices and embeddings only (biases and LayerNorm
scales get none, as the reference's parameter groups), the learning-rate schedule (optional
linear warmup over ceil(ratio x updates) updates, as the Transformers Trainer counts them, then
linear decay to 0 over all updates), and global-norm clipping. Gradient accumulation is the
train step's (arner_jax.models.parallel.StepBodies): it hands the optimizer the gradient of the whole
batch.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from arner_jax.config import ADAM_B1, ADAM_B2, ADAM_EPS

# Leaf names that get weight decay: Dense kernels, embedding tables and the fused head kernel.
# Everything else (Dense/LayerNorm biases, LayerNorm scales, head biases) gets none.
DECAYED_LEAVES = ("kernel", "embedding", "head_kernel")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5
    weight_decay: float = 0.001
    b1: float = ADAM_B1
    b2: float = ADAM_B2
    eps: float = ADAM_EPS
    warmup_ratio: float = 0.0  # fraction of all updates spent warming up linearly from 0
    clip_norm: float = 1.0  # 0 or less: no clipping


def decay_mask(params) -> dict:
    """True where weight decay applies (by leaf name; see DECAYED_LEAVES)."""
    def decays(path, _):
        return getattr(path[-1], "key", None) in DECAYED_LEAVES
    return jax.tree_util.tree_map_with_path(decays, params)


def lr_schedule(config: OptimConfig, total_updates: int) -> optax.Schedule:
    """Linear warmup (if any) to `lr`, then linear decay to 0 at `total_updates`."""
    total = max(int(total_updates), 1)
    warmup = math.ceil(config.warmup_ratio * total)  # as the Transformers Trainer (span_marker's training)
    span = max(total - warmup, 1)

    def decay(count):
        # lr * (span - count) / span, not optax.linear_schedule's lr + (0 - lr) * count / span: in float32
        # that form cancels near the end (1.5e-6 relative off PyTorch's rate at the last of 30 updates)
        return config.lr * jnp.clip(span - count, 0, span).astype(jnp.float32) / span
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, config.lr, warmup), decay], [warmup])


def make_optimizer(config: OptimConfig, total_updates: int) -> optax.GradientTransformation:
    """Clipping then AdamW (masked decay) on the schedule."""
    parts = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
    parts.append(optax.adamw(lr_schedule(config, total_updates), b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay, mask=decay_mask))
    return optax.chain(*parts)
