"""Losses (SPEC 4): hand-computed values, a PyTorch transcription of the formulas, masks, gradients."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from arner_jax.models.tagger.losses import (
    LossConfig,
    head_losses,
    loss_terms,
    multitask_total,
    total_loss,
)
from tests.torch_reference import torch_total

L3 = math.log(3.0)
S = 1e-6


def terms_of(logits, labels, mask=None, class_mask=None, **kw):
    logits = jnp.asarray(logits, jnp.float32)
    mask = jnp.ones(logits.shape[:2]) if mask is None else jnp.asarray(mask)
    out = loss_terms(logits, jnp.asarray(labels), mask, class_mask, **kw)
    return {k: np.asarray(v) for k, v in out.items()}


def test_hand_computed_two_positions():
    # one sentence, two positions, one head, two classes: p = [.5, .5] (gold 0), [.75, .25] (gold 0)
    logits = [[[[0.0, 0.0]], [[L3, 0.0]]]]
    t = terms_of(logits, [[[0], [0]]])
    assert t["ce"][0] == pytest.approx((math.log(2) - math.log(0.75)) / 2, abs=1e-6)
    assert t["focal"][0] == pytest.approx((0.25 * math.log(2) + 0.0625 * -math.log(0.75)) / 2, abs=1e-6)
    # Dice: class 0: sum p = 1.25, sum Y = 2, sum pY = 1.25; class 1: sum p = .75, sum Y = 0
    assert t["dice"][0] == pytest.approx(1 - ((2.5 + S) / (3.25 + S) + S / (0.75 + S)) / 2, abs=1e-6)
    # Tversky (alpha .5): class 0: TP 1.25, FP 0, FN .75; class 1: TP 0, FP .75, FN 0
    assert t["tversky"][0] == pytest.approx(1 - ((1.25 + S) / (1.625 + S) + S / (0.375 + S)) / 2, abs=1e-6)


def test_irm_even_odd_over_counted_positions():
    # counted positions a, b, c, d (a masked one sits between a and b and must not shift parity)
    logits = [[[[L3, 0.0]], [[9.0, -9.0]], [[L3, 0.0]], [[0.0, 0.0]], [[L3, 0.0]]]]
    labels = [[[1], [1], [0], [0], [0]]]
    mask = [[1, 0, 1, 1, 1]]
    t = terms_of(logits, labels, mask)
    # g = sum_c p_c z_c - z_y: a = .75 ln3, b = -.25 ln3, c = 0, d = -.25 ln3
    even, odd = (0.75 * L3 + 0) / 2, (-0.25 * L3 - 0.25 * L3) / 2
    assert t["irm"][0] == pytest.approx(even * odd, abs=1e-6)


def test_unified_weights_and_variance_penalty():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 5, 3, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, (2, 5, 3)))
    mask = jnp.ones((2, 5))
    t = loss_terms(logits, labels, mask)
    per_head = head_losses(logits, labels, mask, None, LossConfig())
    expected = 0.2 * t["dice"] + 0.2 * t["tversky"] + 0.2 * t["focal"] + 0.4 * (t["ce"] + 5 * t["irm"])
    np.testing.assert_allclose(per_head, expected, rtol=1e-6)
    total, aux = total_loss(logits, labels, mask, None, LossConfig(var_penalty=5.0))
    L = np.asarray(per_head)
    assert float(total) == pytest.approx(L.sum() + 5.0 * ((L - L.mean()) ** 2).mean(), rel=1e-6)
    assert float(multitask_total(per_head, 0.0, "mean")) == pytest.approx(L.mean(), rel=1e-6)
    assert float(multitask_total(jnp.asarray([1.0, 3.0]), 5.0)) == pytest.approx(4.0 + 5.0 * 1.0)


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "tversky", "unified"])
def test_against_pytorch_values_and_gradients(name):
    rng = np.random.default_rng(1)
    logits_np = rng.normal(size=(3, 7, 4, 3)).astype(np.float64) * 2
    labels_np = rng.integers(0, 3, (3, 7, 4))
    config = LossConfig(name=name, var_penalty=5.0)
    logits_t = torch.tensor(logits_np, requires_grad=True)
    ref_total, ref_heads = torch_total(logits_t, torch.tensor(labels_np), config.term_weights(), 5.0)
    (ref_grad,) = torch.autograd.grad(ref_total, logits_t)

    def f(lg):
        return total_loss(lg, jnp.asarray(labels_np), jnp.ones((3, 7)), None, config)

    (total, aux), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(logits_np, jnp.float32))
    np.testing.assert_allclose(np.asarray(aux["head_losses"]), ref_heads.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert float(total) == pytest.approx(float(ref_total.detach()), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad), ref_grad.numpy(), rtol=1e-4, atol=1e-6)


def test_masked_positions_do_not_change_anything():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 6, 3, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 6, 3))
    mask = np.ones((2, 6), np.float32)
    mask[0, 4:] = mask[1, 5] = 0
    base = terms_of(logits, labels, mask)
    logits2, labels2 = logits.copy(), labels.copy()
    logits2[mask == 0] = rng.normal(size=(3, 3, 3)) * 50
    labels2[mask == 0] = 99  # not even a valid class
    changed = terms_of(logits2, labels2, mask)
    for k in base:
        np.testing.assert_array_equal(base[k], changed[k])
    # ... and equal to the loss on the counted positions alone
    kept = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    only = terms_of(np.stack([logits[i, j] for i, j in kept])[None], np.stack([labels[i, j] for i, j in kept])[None])
    for k in ("ce", "focal", "dice", "tversky", "irm"):
        np.testing.assert_allclose(base[k], only[k], rtol=1e-5, atol=1e-7)
    grad = jax.grad(lambda lg: total_loss(lg, jnp.asarray(labels), jnp.asarray(mask), None, LossConfig())[0])(
        jnp.asarray(logits))
    assert np.all(np.asarray(grad)[mask == 0] == 0)


def test_class_mask_equals_a_smaller_head():
    """A type with only O and B behaves exactly as a 2-class head."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 1, 3)).astype(np.float32)
    labels = rng.integers(0, 2, (2, 5, 1))
    masked = terms_of(logits, labels, class_mask=np.array([[True, True, False]]))
    small = terms_of(logits[..., :2], labels)
    for k in masked:
        np.testing.assert_allclose(masked[k], small[k], rtol=1e-5, atol=1e-7)


def test_unknown_term_and_reduction_rejected():
    with pytest.raises(ValueError, match="unknown loss terms"):
        LossConfig(name="custom", weights=(("bogus", 1.0),)).term_weights()
    with pytest.raises(ValueError, match="sum' or 'mean"):
        multitask_total(jnp.ones(2), 0.0, "max")
