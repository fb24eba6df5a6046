"""What several test modules share that is not a pytest fixture (those are in conftest.py): encoder parity
helpers against transformers' PyTorch models. Test modules import from here, never from each other."""
from __future__ import annotations

import numpy as np
import torch

TOL = 1e-5
# bfloat16 compute (float32 parameters and softmax): 8 mantissa bits give ~4e-3 relative error
# per op; after 2 layers the largest deviation of unit-scale hidden states stays below this.
BF16_MAX_TOL, BF16_MEAN_TOL = 0.1, 0.02


def batch(family: str, seed=0, B=3, T=9, vocab=120):
    """Ids with right padding in rows 1 and 2, and the [B, T] mask."""
    rng = np.random.default_rng(seed)
    pad = 0 if family == "bert" else 1
    ids = rng.integers(3, vocab, (B, T))
    mask = np.ones((B, T), np.int64)
    for row, n in ((1, 6), (2, 2)):
        ids[row, n:], mask[row, n:] = pad, 0
    return ids, mask


def torch_hidden(model, ids, mask=None, **kw):
    with torch.no_grad():
        t = lambda a: None if a is None else torch.as_tensor(a)  # noqa: E731
        out = model(input_ids=t(ids), attention_mask=t(mask), **{k: t(v) for k, v in kw.items()})
    return out.last_hidden_state.numpy()


def max_diff(a, b, rows_mask=None):
    d = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
    return float(d[rows_mask.astype(bool)].max() if rows_mask is not None else d.max())
