"""Run by tests/integration/test_parallel.py in a fresh process with 4 fake CPU devices (XLA_FLAGS set there).

Trains a tiny nested tagger for a few steps with the same global batches on 1, 2 and 4 devices
under both data-parallel wrappers, with and without gradient accumulation, and a tiny span model
on 1, 2 and 4 devices, and prints, as JSON, each run's losses and its largest parameter and
prediction difference from the one-device pmap run. With accumulation a step sees the same 8
rows as 2 micro-batches of 4; the worker also reports the largest difference between the
accumulated and the whole-batch gradient of one step (SGD with lr 1: the update is the gradient).
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np
import optax
from flax.training.train_state import TrainState

from arner_jax.encoders import small_bert_config
from arner_jax.models.parallel import StepBodies, make_parallel
from arner_jax.models.tagger.family import KINDS, Tagger, TaggerObjective
from arner_jax.models.tagger.losses import LossConfig
from arner_jax.train.optim import OptimConfig, make_optimizer
from arner_jax.train.runtime import CompileCounter
from tests.cross_machine import near_top

T, C, B, L, VOCAB = 3, 3, 8, 16, 60
# (wrapper, micro-batches per update, devices): each compiles its own programs, so a chosen few
CONFIGS = [("pmap", 1, 1), ("pmap", 1, 2), ("pmap", 1, 4), ("shard_map", 1, 4), ("pmap", 2, 1), ("pmap", 2, 4),
           ("shard_map", 2, 2)]
SPAN_CONFIGS = [("pmap", 1), ("pmap", 4), ("shard_map", 2)]
# `--quick` (the default test set): the one-device base and pmap over 4 devices with accumulation
# (shard_map is in the quick span runs)
QUICK = [("pmap", 1, 1), ("pmap", 2, 4)]
SPAN_QUICK = [("pmap", 1), ("shard_map", 2)]
# accumulated gradients against the whole batch's (accumK/devices); --quick: accumulation over 2 devices
GRADIENT = ("accum2/1", "accum4/1", "accum2/2")
GRADIENT_QUICK = ("accum2/2",)
# The runs' parameters agree to 1e-5 (another device count sums in another order), so their logits agree to
# about that: a predicted class must be the base run's where no logits within LOGIT_TOL could change it,
# and one of the near-top classes where they could (a random tiny model has near ties)
LOGIT_TOL = 1e-4


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(4, L + 1, B)
        attn = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
        attn[-1] = 0  # a padding row, as the last partial batch of a bucket has
        labels = rng.integers(0, C, (B, L, T)).astype(np.int32)
        labels[..., 1] %= 2  # type 1 has no I- class (see the class mask)
        out.append({"input_ids": np.where(attn, rng.integers(5, VOCAB, (B, L)), 0).astype(np.int32),
                    "attention_mask": attn, "labels": labels,
                    "label_mask": (attn * (rng.random((B, L)) < 0.6)).astype(np.float32)})
    return out


def train_and_eval(par, model, params, tx, data):
    """Train on every batch, evaluate the first: (losses, params, predictions, eval loss, compiles per step)."""
    state = par.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=tx))
    losses, compiles = [], []
    for b in data:
        with CompileCounter() as counter:
            state, metrics = par.train_step(state, b, jax.random.PRNGKey(1))
            losses.append(float(metrics["loss"]))
        compiles.append(counter.count)
    final = par.get_state(state).params
    pred, eval_loss = par.eval_step(par.put_params(final), data[0])
    return losses, final, pred, float(eval_loss), compiles


def tiny_tagger():
    """A tiny nested tagger without dropout, its parameters and its objective (type 1 has no I- class)."""
    cfg = small_bert_config(VOCAB, hidden_size=32, num_layers=2, num_heads=2, max_positions=L).replace(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = Tagger(cfg, T, C, dropout=0.0)
    params = jax.device_get(model.init(jax.random.PRNGKey(0), np.zeros((1, L), np.int32))["params"])
    cmask = np.ones((T, C), bool)
    cmask[1, 2] = False
    return model, params, TaggerObjective(model.apply, KINDS["nested"], cmask, LossConfig(name="unified"),
                                          with_logits=True)


def same_predictions(pred: dict, base: dict, ids: str, mask=None) -> bool:
    """The predicted classes `pred[ids]` are the base run's up to near ties, and the logits agree."""
    if not np.allclose(pred["logits"], base["logits"], atol=LOGIT_TOL, rtol=0):
        return False
    allowed = near_top(base["logits"], LOGIT_TOL, mask)
    return bool(np.take_along_axis(allowed, np.asarray(pred[ids])[..., None], axis=-1).all()
                and (pred[ids] == base[ids])[allowed.sum(-1) == 1].all())


def main():
    quick = "--quick" in sys.argv[1:]
    model, params, objective = tiny_tagger()
    data = batches(4)
    runs = {}
    for wrapper, accum, n in QUICK if quick else CONFIGS:
        par = make_parallel(wrapper, StepBodies(objective, grad_accum=accum), jax.devices()[:n])
        tx = make_optimizer(OptimConfig(lr=1e-3), 4)
        runs[f"{wrapper}/accum{accum}/{n}"] = train_and_eval(par, model, params, tx, data)
    report = {}
    base = runs["pmap/accum1/1"]  # every run sees the same rows: all equal the whole-batch run
    for name, (_, _, pred, _, _) in runs.items():
        report[name] = compare(runs[name], base, params, same_predictions(pred, base[2], "ids", objective.class_mask))
    report["accumulated_gradient"] = accumulated_gradient_difference(model, params, objective, data[0],
                                                                     GRADIENT_QUICK if quick else GRADIENT)
    report.update(span_runs(SPAN_QUICK if quick else SPAN_CONFIGS))
    try:
        make_parallel("pmap", StepBodies(objective), jax.devices()[:4]).check_batch_size(6)
        report["uneven_error"] = None
    except ValueError as err:
        report["uneven_error"] = str(err)
    json.dump(report, sys.stdout)


def accumulated_gradient_difference(model, params, objective, batch, names) -> dict:
    """One SGD step with lr 1 (the update is minus the gradient): 2 x 4 rows accumulated vs 8 rows at once,
    on 1 and 2 devices; the largest absolute difference of every gradient entry and of the loss."""
    out = {}
    grads = {}
    for accum, n in [(1, 1)] + [tuple(int(x) for x in name[len("accum"):].split("/")) for name in names]:
        par = make_parallel("pmap", StepBodies(objective, grad_accum=accum), jax.devices()[:n])
        state = par.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0)))
        state, metrics = par.train_step(state, batch, jax.random.PRNGKey(1))
        after = par.get_state(state).params
        grads[(accum, n)] = (jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), params, after),
                             float(metrics["loss"]))
    whole, whole_loss = grads[(1, 1)]
    for (accum, n), (g, loss) in grads.items():
        out[f"accum{accum}/{n}"] = {
            "max_grad_diff": max(float(np.abs(a - b).max())
                                 for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(whole))),
            "largest_grad": max(float(np.abs(a).max()) for a in jax.tree.leaves(whole)),
            "loss_diff": abs(loss - whole_loss)}
    return out


def compare(run, base, params, same_predictions: bool) -> dict:
    """One configuration's figures against the one-device run `base` (both from train_and_eval)."""
    losses, final, _, eval_loss, compiles = run

    def largest_diff(a, b):
        return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    return {"losses": losses, "eval_loss": eval_loss, "compiles_per_step": compiles,
            "max_param_diff": largest_diff(final, base[1]), "param_change": largest_diff(final, params),
            "same_predictions": same_predictions}




def span_batches(n, max_spans=4, seed=1):
    """Random texts with candidate spans, packed into rows as the span family packs them (several texts per
    row), B - 1 rows per batch and a padding row."""
    from arner_jax.models.span_marker import spans as S

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pieces = []
        for text in range(2 * B):
            words = int(rng.integers(1, 5))
            ids = np.concatenate([[2], rng.integers(5, VOCAB - 2, words), [3]]).astype(np.int32)
            position = np.arange(1, words + 1, dtype=np.int32)
            spans = S.candidate_spans(words, 2)
            pieces.append(S.Piece(text, ids, position, position, 0, spans,
                                  rng.integers(0, 4, len(spans)).astype(np.int32)))
        rows = S.pack_rows(pieces, max_spans, L)[:B - 1]
        out.append(S.collate_rows(pieces, rows, range(len(rows)), B, L, max_spans, 0))
    return out
def span_runs(configs):
    """The span model's steps (cross-entropy over real spans) on 1, 2 and 4 devices."""
    from arner_jax.models.span_marker.model import SpanMarker, SpanObjective

    cfg = small_bert_config(VOCAB, hidden_size=32, num_layers=2, num_heads=2, max_positions=L).replace(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = SpanMarker(cfg, 4, VOCAB - 2, VOCAB - 1, dropout=0.0)
    data = span_batches(3)
    b0 = data[0]
    params = jax.device_get(model.init(jax.random.PRNGKey(0), b0["input_ids"], b0["segment"], b0["text_index"],
                                       b0["starts"], b0["ends"], b0["num_spans"], b0["text_keys"])["params"])
    bodies = StepBodies(SpanObjective(model.apply, with_logits=True))
    runs = {}
    for wrapper, n in configs:
        par = make_parallel(wrapper, bodies, jax.devices()[:n])
        runs[f"span/{wrapper}/{n}"] = train_and_eval(par, model, params, make_optimizer(OptimConfig(lr=1e-3), 3),
                                                     data)
    report = {}
    base = runs["span/pmap/1"]
    for name, (_, _, pred, _, _) in runs.items():
        same = same_predictions(pred, base[2], "label") and np.allclose(pred["score"], base[2]["score"], atol=1e-5)
        report[name] = compare(runs[name], base, params, bool(same))
    return report


if __name__ == "__main__":
    main()
