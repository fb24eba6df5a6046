"""The training loop: epochs, validation, early stopping, checkpoints, resume, the final test.

Owns: the order of events of a run (SPEC 5). Each epoch trains on the batches of
`train_batches(seed, epoch)` with a progress bar, then evaluates validation loss and F1; on a
strict improvement of the selection metric (validation loss by default, as the reference; F1 as
an option) the parameters are saved as the kept model; after `patience` epochs without one the
run stops. The latest state and the loop's bookkeeping are saved after every epoch (and every
`checkpoint_every` steps), so that `--resume` continues with the same batches and dropout keys
and ends with the same metrics as an uninterrupted run. At the end the kept model is evaluated
on val and test; predictions and metrics.json are written.
"""
from __future__ import annotations

import json
import logging
import math
import time

import jax
from flax.training.train_state import TrainState
from tqdm.auto import tqdm

from arner_jax.metrics import write_predictions
from arner_jax.train import config as files
from arner_jax.train.assemble import Assembled
from arner_jax.train.checkpoints import RunCheckpoints
from arner_jax.train.optim import OptimConfig, lr_schedule, make_optimizer
from arner_jax.train.parallel import StepBodies, make_parallel
from arner_jax.train.runtime import CompileCounter, is_primary

log = logging.getLogger("arner_jax")


def _fresh_meta() -> dict:
    return {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_count": 0, "best": None,
            "best_epoch": None, "bad_epochs": 0, "done": False, "stopped_early": False, "history": [],
            "timing": []}


class Trainer:
    def __init__(self, run: Assembled, devices=None):
        self.run, cfg = run, run.config
        self.cfg, self.task = cfg, run.task
        self.steps_per_epoch = len(self._plan(0))
        self.total_updates = math.ceil(self.steps_per_epoch * cfg.max_epochs / cfg.grad_accum)
        self.optim = OptimConfig(lr=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                                 clip_norm=cfg.clip_norm, grad_accum=cfg.grad_accum)
        schedule = lr_schedule(self.optim, self.total_updates)
        self.bodies = StepBodies(self.task.objective(run.model.apply),
                                 learning_rate=lambda step: schedule(step // cfg.grad_accum))
        self.parallel = make_parallel(cfg.parallel, self.bodies, devices)
        self.parallel.check_batch_size(cfg.batch_size)
        self.parallel.check_batch_size(cfg.eval_batch, "--eval_batch_size")
        self.rows = self.parallel.local_rows(cfg.batch_size)
        tx = make_optimizer(self.optim, self.total_updates)
        self.template = TrainState.create(apply_fn=run.model.apply, params=run.init_params, tx=tx)
        self.dropout_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
        self.writer = None

    # ------------------------------------------------------------------ pieces
    def _plan(self, epoch: int):
        return self.task.plan(epoch)

    def _batch(self, length: int, indices) -> dict:
        return self.task.batch(length, indices[self.rows], self.rows.stop - self.rows.start)

    def _evaluate(self, params, split: str):
        return self.task.evaluate(self.parallel, params, split, self.cfg.eval_batch)

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    @staticmethod
    def _check_finite(loss: float, step: int, epoch: int, batch: int, saved: int | None) -> None:
        if not math.isfinite(loss):
            kept = f"its latest checkpoint (step {saved}) is intact" if saved is not None else "no checkpoint was saved"
            raise FloatingPointError(
                f"training loss is {loss} at step {step} (epoch {epoch + 1}, batch {batch + 1}). The run stops; "
                f"{kept}. Try a lower --lr, --dtype float32, or check the data.")

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, state, meta: dict, ckpt: RunCheckpoints):
        cfg, epoch = self.cfg, meta["epoch"]
        plan = self._plan(epoch)
        bar = tqdm(total=len(plan), initial=meta["batch"], desc=f"epoch {epoch + 1}/{cfg.max_epochs}",
                   unit="batch", disable=not is_primary(), dynamic_ncols=True, leave=False)
        pending, tokens, t0 = None, 0, time.perf_counter()

        def consume(item):
            step, batch_no, metrics, ntok = item
            loss = float(metrics["loss"])
            self._check_finite(loss, step, epoch, batch_no, ckpt.latest_step())
            meta["loss_sum"] += loss
            meta["loss_count"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
            if step % cfg.log_every == 0:
                grad_norm = float(metrics["grad_norm"])
                lr = float(metrics["lr"])
                log.info("epoch %d step %d: loss %.5f grad-norm %.4f lr %.3g", epoch + 1, step, loss, grad_norm, lr)
                self._scalar("train/loss", loss, step)
                self._scalar("train/grad_norm", grad_norm, step)
                self._scalar("train/lr", lr, step)

        for b in range(meta["batch"], len(plan)):
            length, indices = plan[b]
            batch = self._batch(length, indices)
            tokens += self.task.tokens(batch) * jax.process_count()
            state, metrics = self.parallel.train_step(state, batch, self.dropout_key)
            if pending is not None:  # read the previous step's loss: the device stays one step ahead
                consume(pending)
            pending = (meta["step"] + 1, b, metrics, tokens)
            meta["step"] += 1
            meta["batch"] = b + 1
            if cfg.checkpoint_every and meta["step"] % cfg.checkpoint_every == 0 and b + 1 < len(plan):
                consume(pending)
                pending = None
                ckpt.save_latest(meta["step"], self.parallel.get_state(state), meta)
        if pending is not None:
            consume(pending)
        bar.close()
        return state, tokens / max(time.perf_counter() - t0, 1e-9)

    # ------------------------------------------------------------------ the run
    def fit(self, resume: bool = False) -> dict:
        run, cfg = self.run, self.cfg
        started = time.perf_counter()
        ckpt = RunCheckpoints(run.run_dir)
        host_state, meta = self.template, _fresh_meta()
        if resume and ckpt.latest_step() is not None:
            host_state, meta = ckpt.restore_latest(self.template)
            log.info("resumed from checkpoints/latest step %d (epoch %d, batch %d)", meta["step"], meta["epoch"] + 1,
                     meta["batch"])
        elif resume:
            log.info("--resume: no complete checkpoint yet, starting from the beginning")
        if is_primary():
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run.run_dir / files.TENSORBOARD))
        log.info("%s run: %d train items, %d batches of %d per epoch, %d updates, lr %.3g, %s over %d device(s)",
                 cfg.kind, self.task.num_train, self.steps_per_epoch, cfg.batch_size, self.total_updates,
                 cfg.learning_rate, self.parallel.name, self.parallel.num_devices)
        state = self.parallel.put_state(host_state)
        try:
            while not meta["done"]:
                state = self._epoch(state, meta, ckpt)
            result = self._finish(ckpt, meta, time.perf_counter() - started)
        finally:
            ckpt.close()
            if self.writer is not None:
                self.writer.close()
        return result

    def _epoch(self, state, meta: dict, ckpt: RunCheckpoints):
        cfg, epoch = self.cfg, meta["epoch"]
        with CompileCounter() as compiles:
            t0 = time.perf_counter()
            state, tok_s = self._train_epoch(state, meta, ckpt)
            t1 = time.perf_counter()
            val = self._evaluate(state.params, "val")
            t2 = time.perf_counter()
        value = val.loss if cfg.select_by == "loss" else val.metrics["f1"]
        best = meta["best"]
        improved = best is None or (value < best if cfg.select_by == "loss" else value > best)
        train_loss = meta["loss_sum"] / max(meta["loss_count"], 1)
        meta["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val.loss,
                                "val_precision": val.metrics["precision"], "val_recall": val.metrics["recall"],
                                "val_f1": val.metrics["f1"], "improved": improved})
        meta["timing"].append({"epoch": epoch + 1, "train_seconds": t1 - t0, "eval_seconds": t2 - t1,
                               "tokens_per_second": tok_s, "compilations": compiles.count,
                               "compilation_cache_hits": compiles.cache_hits})
        log.info("epoch %d: train loss %.5f, val loss %.5f, val F1 %.4f (P %.4f R %.4f)%s; %.1f s train, "
                 "%.1f s eval, %d compilations", epoch + 1, train_loss, val.loss, val.metrics["f1"],
                 val.metrics["precision"], val.metrics["recall"], " *" if improved else "", t1 - t0, t2 - t1,
                 compiles.count)
        for tag, v in (("val/loss", val.loss), ("val/f1", val.metrics["f1"]), ("train/epoch_loss", train_loss)):
            self._scalar(tag, v, meta["step"])
        if improved:
            meta.update(best=value, best_epoch=epoch + 1, bad_epochs=0)
            ckpt.save_best(meta["step"], self.parallel.get_state(state).params,
                           {"epoch": epoch + 1, "step": meta["step"], "select_by": cfg.select_by, "value": value})
        else:
            meta["bad_epochs"] += 1
        meta.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_count=0)
        if meta["bad_epochs"] >= cfg.patience:
            meta.update(done=True, stopped_early=True)
            log.info("no improvement of validation %s for %d epochs: stopping", cfg.select_by, cfg.patience)
        elif meta["epoch"] >= cfg.max_epochs:
            meta["done"] = True
        ckpt.save_latest(meta["step"], self.parallel.get_state(state), meta)
        return state

    def _finish(self, ckpt: RunCheckpoints, meta: dict, seconds: float) -> dict:
        run, cfg = self.run, self.cfg
        ckpt.best.wait_until_finished()
        params, best_meta = ckpt.restore_best(self.template.params)
        params = self.parallel.put_params(params)
        results = {}
        for split in ("val", "test"):
            res = self._evaluate(params, split)
            results[split] = res.metrics
            if is_primary():
                write_predictions(run.run_dir / files.predictions_file(split), run.splits[split].corpus.sentences,
                                  res.tags)
            log.info("kept model (epoch %d) on %s: loss %.5f, micro P %.4f R %.4f F1 %.4f (strict F1 %.4f)",
                     best_meta["epoch"], split, res.loss, res.metrics["precision"], res.metrics["recall"],
                     res.metrics["f1"], res.metrics["strict"]["f1"])
        metrics = {
            "kind": cfg.kind, "select_by": cfg.select_by, "best_epoch": best_meta["epoch"],
            "epochs_run": meta["epoch"], "stopped_early": meta["stopped_early"], "steps": meta["step"],
            "val": results["val"], "test": results["test"], "history": meta["history"],
            # Not part of the results: differs between a resumed and an uninterrupted run.
            "timing": {"epochs": meta["timing"], "this_process_seconds": seconds,
                       "devices": self.parallel.num_devices, "parallel": self.parallel.name},
        }
        if is_primary():
            files.atomic_write_text(run.run_dir / files.METRICS, json.dumps(metrics, indent=1) + "\n")
        return metrics
