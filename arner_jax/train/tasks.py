"""What the training loop needs of a model family: its objective, batches and evaluation.

Owns the tagger family's `TaggerTask` (the span family's is span_marker.task.SpanTask). A task
gives the loop:
  objective(apply_fn)            for the data-parallel step bodies (train.parallel.StepBodies);
  plan(epoch)                    the epoch's batches as (shape key, item indices), from (seed, epoch);
  batch(key, indices, rows)      one batch of numpy arrays with `rows` rows (this process's part);
  tokens(batch)                  tokens in a batch (the throughput figure);
  evaluate(parallel, params, split, batch_size)  loss, Wojood word tags and metrics of a split;
  num_train                      training items (windows or rows), for the log.
"""
from __future__ import annotations

import logging

import numpy as np

from arner_jax.data.batching import collate, fit_buckets, train_batches
from arner_jax.losses import LossConfig
from arner_jax.tagger import TaggerObjective, class_mask
from arner_jax.train.evaluation import SplitResult, evaluate_split

log = logging.getLogger("arner_jax")


class TaggerTask:
    def __init__(self, run):
        self.run, self.cfg = run, run.config
        self.loss_config = LossConfig(name=self.cfg.loss, var_penalty=self.cfg.var_penalty,
                                      head_reduction=self.cfg.head_reduction)
        # The train split's bucket lengths, fitted once: at most 8 shapes, the fewest padded tokens.
        self.buckets = fit_buckets([len(w) for w in run.splits["train"].windows], self.cfg.batch_size,
                                   run.max_length)
        log.info("train length buckets %s", list(self.buckets))

    def objective(self, apply_fn) -> TaggerObjective:
        return TaggerObjective(apply_fn, self.cfg.kind, class_mask(self.cfg.kind, self.run.vocab), self.loss_config)

    @property
    def num_train(self) -> int:
        return len(self.run.splits["train"].windows)

    def plan(self, epoch: int):
        r = self.run
        return train_batches(r.splits["train"].windows, self.cfg.batch_size, r.max_length, self.cfg.seed, epoch,
                             r.pad_id, self.buckets)

    def batch(self, length: int, indices, rows: int) -> dict:
        return collate(self.run.splits["train"].windows, indices, rows, length, self.run.pad_id,
                       self.cfg.reference_labels)

    @staticmethod
    def tokens(batch: dict) -> int:
        return int(np.asarray(batch["attention_mask"]).sum())

    def evaluate(self, parallel, params, split: str, batch_size: int) -> SplitResult:
        r = self.run
        return evaluate_split(parallel, params, r.splits[split], self.cfg.kind, r.vocab, batch_size, r.max_length,
                              r.pad_id, self.cfg.reference_labels)
