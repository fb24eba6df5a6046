"""The optimizer: the learning rate at every step against its formula, weight decay's mask, and what the
library's train step reports."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from flax.training.train_state import TrainState

from arner_jax.train.optim import OptimConfig, decay_mask, lr_schedule, make_optimizer


def expected_lr(step: int, peak: float, total: int, warmup: int) -> float:
    """Linear warmup from 0 to the peak over `warmup` updates, then linear decay to 0 at `total`."""
    if step < warmup:
        return peak * step / warmup
    return peak * max(0.0, (total - step) / (total - warmup))


@pytest.mark.parametrize("warmup_ratio,total", [(0.0, 10), (0.25, 8), (0.1, 25), (0.1, 24)])
def test_learning_rate_at_every_step(warmup_ratio, total):
    schedule = lr_schedule(OptimConfig(lr=1e-3, warmup_ratio=warmup_ratio), total)
    warmup = math.ceil(warmup_ratio * total)  # the Transformers Trainer's get_warmup_steps
    for step in range(total + 2):
        assert float(schedule(step)) == pytest.approx(expected_lr(step, 1e-3, total, warmup), rel=1e-6, abs=1e-12), step


def test_weight_decay_only_on_matrices_and_embeddings():
    params = {"encoder": {"embeddings": {"word_embeddings": {"embedding": 1}, "layer_norm": {"scale": 1, "bias": 1}},
                          "layer_0": {"attention": {"query": {"kernel": 1, "bias": 1}}}},
              "head_kernel": 1, "head_bias": 1}
    mask = decay_mask(params)
    assert mask["encoder"]["embeddings"]["word_embeddings"]["embedding"] and mask["head_kernel"]
    assert mask["encoder"]["layer_0"]["attention"]["query"]["kernel"]
    assert not any([mask["encoder"]["embeddings"]["layer_norm"]["scale"], mask["head_bias"],
                    mask["encoder"]["embeddings"]["layer_norm"]["bias"],
                    mask["encoder"]["layer_0"]["attention"]["query"]["bias"]])


def test_the_train_step_uses_and_reports_the_schedule():
    """The library's step with a warmup schedule: the reported lr follows the formula, and the first update
    (lr 0) leaves the weights where they were."""
    from arner_jax.models.parallel import PmapParallel, StepBodies
    from tests.parallel_worker import batches, tiny_tagger

    model, params, objective = tiny_tagger()
    total, config = 8, OptimConfig(lr=1e-2, warmup_ratio=0.25, weight_decay=0.0, clip_norm=0.0)
    bodies = StepBodies(objective, lr_schedule(config, total))
    parallel = PmapParallel(bodies, jax.local_devices()[:1])
    state = parallel.put_state(TrainState.create(apply_fn=model.apply, params=params,
                                                 tx=make_optimizer(config, total)))
    for step, batch in enumerate(batches(total, seed=3)):
        before = parallel.get_state(state).params
        state, metrics = parallel.train_step(state, batch, jax.random.PRNGKey(0))
        assert float(metrics["lr"]) == pytest.approx(expected_lr(step, 1e-2, total, 2), rel=1e-6, abs=1e-12)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(before),
                                                               jax.tree.leaves(parallel.get_state(state).params)))
        assert (moved == 0.0) == (step == 0)
