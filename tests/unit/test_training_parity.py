"""Our own recipe's train step (masked positions, attention mask, 3-class heads) against PyTorch.

Not the oracle of reference parity: that is the reference's own recorded trainers
(tests/test_um6p.py, `python -m arner_jax.parity um6p`), which train every position without a mask.
This test covers what those recordings cannot: the default recipe's label mask (first subwords only)
and attention mask, through transformers' BertModel + one nn.Linear per type + SPEC 4 written in
PyTorch (tests/torch_reference.py) + torch AdamW with the reference's parameter groups, clipping and
the linear schedule; dropout off. Same weights, same batches; loss at every step (1e-4 relative) and
final weights agree.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax.training.train_state import TrainState

from arner_jax.encoders import load_pretrained_encoder
from arner_jax.models.parallel import PmapParallel, StepBodies
from arner_jax.models.tagger.family import KINDS, Tagger, TaggerObjective
from arner_jax.models.tagger.losses import LossConfig
from arner_jax.train.optim import OptimConfig, make_optimizer
from tests.conftest import save_tiny_hf_model
from tests.torch_reference import torch_total

T, C, STEPS, LR = 4, 3, 6, 1e-3


def make_batches(rng, vocab, n=STEPS, B=4, L=12):
    batches = []
    for _ in range(n):
        lengths = rng.integers(5, L + 1, B)
        attn = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
        ids = np.where(attn, rng.integers(5, vocab, (B, L)), 0).astype(np.int32)
        label_mask = (attn * (rng.random((B, L)) < 0.7)).astype(np.float32)
        labels = rng.integers(0, C, (B, L, T)).astype(np.int32)
        batches.append({"input_ids": ids, "attention_mask": attn, "labels": labels, "label_mask": label_mask})
    return batches


@pytest.mark.torch
def test_nested_tagger_trains_like_pytorch(tmp_path):
    from transformers import get_linear_schedule_with_warmup

    bert = save_tiny_hf_model(tmp_path, "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(1)
    heads = torch.nn.ModuleList([torch.nn.Linear(bert.config.hidden_size, C) for _ in range(T)])
    batches = make_batches(np.random.default_rng(0), bert.config.vocab_size)

    # ---- JAX: our encoder loaded from the saved folder, the heads copied into the fused kernel
    enc = load_pretrained_encoder(tmp_path)
    kernel = np.stack([h.weight.detach().numpy().T for h in heads], axis=1)  # [H, T, C]
    bias = np.stack([h.bias.detach().numpy() for h in heads])  # [T, C]
    params = {"encoder": enc.params, "head_kernel": kernel, "head_bias": bias}
    model = Tagger(enc.config, T, C, dropout=0.0)
    loss_config = LossConfig(name="unified", var_penalty=5.0)
    bodies = StepBodies(TaggerObjective(model.apply, KINDS["nested"], np.ones((T, C), bool), loss_config))
    parallel = PmapParallel(bodies, jax.local_devices()[:1])
    tx = make_optimizer(OptimConfig(lr=LR, weight_decay=0.001, clip_norm=1.0), STEPS)
    state = parallel.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=tx))
    key = jax.random.PRNGKey(0)
    jax_losses = []
    for b in batches:
        state, metrics = parallel.train_step(state, b, key)
        jax_losses.append(float(metrics["loss"]))

    # ---- PyTorch: the same model and recipe
    bert.train()  # dropout probabilities are 0: train mode changes nothing but is what training uses
    named = list(bert.named_parameters()) + [(f"heads.{n}", p) for n, p in heads.named_parameters()]
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm.weight" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm.weight" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.001}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, 0, STEPS)
    weights = loss_config.term_weights()
    torch_losses = []
    for b in batches:
        h = bert(torch.tensor(b["input_ids"], dtype=torch.long),
                 attention_mask=torch.tensor(b["attention_mask"])).last_hidden_state
        logits = torch.stack([head(h) for head in heads], dim=2)  # [B, L, T, C]
        loss, _ = torch_total(logits, torch.tensor(b["labels"], dtype=torch.long), weights, 5.0,
                              mask=torch.tensor(b["label_mask"] > 0))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        opt.step()
        sched.step()
        torch_losses.append(float(loss.detach()))

    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-4)
    assert len(set(np.round(jax_losses, 3))) == STEPS  # the steps really change the model
    final = parallel.get_state(state).params
    np.testing.assert_allclose(final["head_kernel"],
                               np.stack([h.weight.detach().numpy().T for h in heads], axis=1), atol=2e-5)
    np.testing.assert_allclose(final["encoder"]["embeddings"]["word_embeddings"]["embedding"],
                               bert.embeddings.word_embeddings.weight.detach().numpy(), atol=2e-5)
    moved = np.abs(final["head_kernel"] - kernel).max()
    assert moved > LR, "the weights must have moved for the comparison to mean anything"
