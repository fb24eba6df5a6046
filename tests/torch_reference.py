"""SPEC 4 written directly in PyTorch, for the loss terms and masks the reference's recorded trajectories do not
exercise (single terms, masked positions of our own recipe). Parity with the reference itself is checked against
its own trainers' recordings (tests/test_um6p.py), not against this re-statement."""
from __future__ import annotations

import torch


def torch_terms(z, y, gamma=2.0, alpha=0.5, s=1e-6):
    """Every term for one head: z [N, C] logits of the counting positions, y [N]. IRM by autograd."""
    p = z.softmax(-1)
    Y = torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
    logp_y = z.log_softmax(-1).gather(1, y[:, None])[:, 0]
    p_y = logp_y.exp()
    tp, sp, sy = (p * Y).sum(0), p.sum(0), Y.sum(0)
    out = {
        "ce": (-logp_y).mean(),
        "focal": ((1 - p_y) ** gamma * -logp_y).mean(),
        "dice": 1 - ((2 * tp + s) / (sp + sy + s)).mean(),
        "tversky": 1 - ((tp + s) / (tp + alpha * (sp - tp) + (1 - alpha) * (sy - tp) + s)).mean(),
    }
    grads = []
    for part in (slice(0, None, 2), slice(1, None, 2)):
        scale = torch.tensor(1.0, dtype=z.dtype, requires_grad=True)
        loss = torch.nn.functional.cross_entropy(z[part] * scale, y[part])
        grads.append(torch.autograd.grad(loss, scale, create_graph=True)[0])
    out["irm"] = grads[0] * grads[1]
    return out


def torch_total(logits, labels, weights, lam, mask=None):
    """Sum of per-head losses plus lam * their population variance; logits [B, S, T, C].

    mask [B, S] (bool): the positions that count, taken batch-major as the reference's active logits.
    """
    B, S_, T, C = logits.shape
    if mask is None:
        mask = torch.ones(B, S_, dtype=torch.bool)
    per_head = []
    for t in range(T):
        terms = torch_terms(logits[:, :, t][mask], labels[:, :, t][mask])
        per_head.append(sum(w * terms[k] for k, w in weights.items()))
    L = torch.stack(per_head)
    return L.sum() + lam * ((L - L.mean()) ** 2).mean(), L
