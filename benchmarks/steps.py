"""The library's tagger train step from shapes alone, for benchmarks that lower it without data.

Owns: building the nested tagger's train step (arner_jax.models.parallel.StepBodies run by ShardMapParallel
on one device: the unified loss with the variance penalty, AdamW with clipping, the step's own
gradient accumulation) with abstract arguments, and the step's FLOP count as XLA's cost analysis
gives it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from arner_jax.encoders import EncoderConfig
from arner_jax.models.parallel import ShardMapParallel, StepBodies
from arner_jax.models.tagger.family import KINDS, Tagger, TaggerObjective
from arner_jax.models.tagger.losses import LossConfig
from arner_jax.train.optim import OptimConfig, make_optimizer

TYPES, CLASSES = 21, 3  # the Wojood nested tagger


def tagger_parallel(encoder: EncoderConfig, *, dtype: Any = jnp.float32, attention: str = "auto",
                    remat: str = "none", grad_accum: int = 1,
                    types: int = TYPES) -> tuple[Tagger, ShardMapParallel, optax.GradientTransformation]:
    """The nested tagger, its train and eval steps on the first device, and the library's optimizer."""
    model = Tagger(encoder, types, CLASSES, dtype=dtype, attention=attention, remat=remat)
    objective = TaggerObjective(model.apply, KINDS["nested"], np.ones((types, CLASSES), bool), LossConfig())
    parallel = ShardMapParallel(StepBodies(objective, grad_accum=grad_accum), jax.local_devices()[:1])
    return model, parallel, make_optimizer(OptimConfig(), 10_000)


def tagger_train_step(encoder: EncoderConfig, batch: int, length: int, **options) -> tuple[Callable, tuple]:
    """The jitted train step and shape-only (state, batch, key) arguments for `step.lower(*args)`;
    `options` as for `tagger_parallel`. `batch` is the micro-batch: an update takes grad_accum of them."""
    model, parallel, tx = tagger_parallel(encoder, **options)
    batch *= options.get("grad_accum", 1)
    types = model.num_heads
    state = jax.eval_shape(lambda: TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"],
        tx=tx))
    rows = {"input_ids": jax.ShapeDtypeStruct((batch, length), jnp.int32),
            "attention_mask": jax.ShapeDtypeStruct((batch, length), jnp.int32),
            "labels": jax.ShapeDtypeStruct((batch, length, types), jnp.int32),
            "label_mask": jax.ShapeDtypeStruct((batch, length), jnp.float32)}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    return parallel.train_program, (state, rows, key)


def train_step_flops(encoder: EncoderConfig, batch: int, length: int, **options) -> float:
    """FLOPs of one train step by XLA's cost analysis of the lowered program.

    XLA counts a loop body once, whatever its trip count, and the encoder's layers run in a scan;
    so the step is lowered with 0 and with 1 layer, and the total is the first plus
    num_hidden_layers times the difference (the layer's forward, backward and optimizer update).
    """
    def flops(layers: int) -> float:
        step, args = tagger_train_step(encoder.replace(num_hidden_layers=layers), batch, length, **options)
        cost = step.lower(*args).cost_analysis()
        return float((cost[0] if isinstance(cost, list) else cost)["flops"])

    without, one = flops(0), flops(1)
    return without + encoder.num_hidden_layers * (one - without)
