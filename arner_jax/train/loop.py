"""The training loop: epochs, validation, early stopping, checkpoints, resume, preemption, the final test.

Owns the order of events of a run (SPEC 5). Each epoch trains on the batches of
`train_batches(seed, epoch)`, then evaluates validation loss and F1; on a strict improvement of
the selection metric (validation loss by default, as the reference; F1 as an option) the
parameters are saved as the kept model; after `patience` epochs without one the run stops. The
latest state and the loop's state (`LoopState`) are saved after every epoch (and every
`checkpoint_every` steps), so that `--resume` continues with the same batches and dropout keys
and ends with the same metrics as an uninterrupted run. SIGTERM (preemption on TPU VMs and
SLURM, a closing Colab) saves a resumable checkpoint at the next step boundary and stops the
run with `Preempted`. At the end the kept model is evaluated on val and test; predictions and
metrics.json are written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time

import jax
import numpy as np
from flax.training.train_state import TrainState

from arner_jax.data.files import atomic_write_json, atomic_write_text
from arner_jax.models import inference
from arner_jax.models.base import BatchShare
from arner_jax.models.parallel import StepBodies, make_parallel
from arner_jax.runs import run_folder
from arner_jax.scoring.metrics import format_predictions
from arner_jax.system.distributed import is_primary
from arner_jax.system.executables import ProgramStore, program_store_folder
from arner_jax.train.checkpoints import RunCheckpoints
from arner_jax.train.optim import OptimConfig, lr_schedule, make_optimizer
from arner_jax.train.prepare import PreparedRun
from arner_jax.train.progress import Progress
from arner_jax.train.runtime import CompileCounter, preemption_requested, watch_preemption

log = logging.getLogger("arner_jax")


class Preempted(Exception):  # noqa: N818 - a stop on request, not an error
    """The run was asked to stop (SIGTERM) and saved a resumable checkpoint at `step`."""

    def __init__(self, step: int, epoch: int):
        super().__init__(f"stopped by SIGTERM at step {step} (epoch {epoch}); a resumable checkpoint is saved")
        self.step, self.epoch = step, epoch


@dataclasses.dataclass
class LoopState:
    """Where the loop is and what it has seen; saved with every `latest` checkpoint."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    step: int = 0  # optimizer updates finished
    loss_sum: float = 0.0  # the current epoch's training losses so far
    loss_count: int = 0
    best: float | None = None  # the selection metric of the kept model
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the last improvement
    done: bool = False
    stopped_early: bool = False
    history: list[dict] = dataclasses.field(default_factory=list)  # per epoch: its last step, losses, val P/R/F1
    timing: list[dict] = dataclasses.field(default_factory=list)  # per epoch: seconds, tokens/s, compilations

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> LoopState:
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


# Settings that never reach a compiled program: where the data are read from (their content is in the
# fingerprint), the seed (initial parameters and dropout keys are arguments), and the loop's own choices.
_NOT_IN_PROGRAMS = ("train_path", "val_path", "test_path", "seed", "patience", "select_by", "checkpoint_every",
                    "log_every")


def _data_digest(corpora: dict) -> str:
    data = hashlib.sha256()
    for split in sorted(corpora):
        for sentence in corpora[split].sentences:
            data.update(repr((split, sentence.words, sentence.tags)).encode())
    return data.hexdigest()


def _program_settings(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_PROGRAMS}


def program_context(run: PreparedRun, total_updates: int) -> dict:
    """What shapes a run's train and eval programs beyond their arguments' shapes (arner_jax.system.executables):
    its family, settings, label space, encoder, tokenizer and data, and the length of its schedule."""
    tokenizer = hashlib.sha256(run.tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    return {"family": run.family.name, "settings": _program_settings(run.config),
            "labels": run.family.labels_to_json(run.labels), "encoder": dataclasses.asdict(run.encoder),
            "tokenizer": tokenizer, "data": _data_digest(run.corpora), "max_length": run.max_length,
            "total_updates": total_updates}


def manifest_key(config, corpora: dict) -> str:
    """What a run's programs depend on that is known before its set-up (the settings that reach programs and
    the data): the key of the list of programs the last such run used (ProgramStore's manifest), which a
    repeated run starts loading while it builds its tokenizer and model."""
    return json.dumps({"settings": _program_settings(config), "data": _data_digest(corpora)}, sort_keys=True,
                      default=repr)


def open_program_store(config, corpora: dict) -> ProgramStore | None:
    """The run's program store, opened before its set-up and already loading (and warming) the programs of
    the last run with the same manifest key; None without a store or with several processes (see
    arner_jax.system.executables)."""
    store = program_store_folder()
    if store is None or jax.process_count() > 1:
        return None
    programs = ProgramStore(store, manifest_key=manifest_key(config, corpora))
    # Warm (run once on zeros, beside the set-up) on one CPU device, where it was measured: on accelerators a
    # second thread running programs could hold memory the run needs, and collectives of two threads on
    # several devices could interleave.
    programs.prefetch(warm=jax.default_backend() == "cpu" and jax.local_device_count() == 1)
    return programs


class Trainer:
    def __init__(self, run: PreparedRun, devices=None, programs: ProgramStore | None = None):
        """`programs`: a store opened before the set-up (open_program_store), bound here to the run's context;
        by default the trainer opens its own."""
        # ---------------------------------------------------------------- schedule and steps
        self.run, cfg = run, run.config
        self.cfg = cfg
        self.train_split = run.splits["train"]
        # one update takes grad_accum micro-batches of batch_size rows: batches of update_rows rows
        self.update_rows = cfg.batch_size * cfg.grad_accum
        self.buckets = self.train_split.train_buckets(self.update_rows, run.max_length)
        log.info("train length buckets %s", list(self.buckets))
        self.steps_per_epoch = len(self._plan(0))
        self.total_updates = self.steps_per_epoch * cfg.max_epochs
        self.optim = OptimConfig(lr=cfg.learning_rate(run.family.fine_tune_lr), weight_decay=cfg.weight_decay,
                                 warmup_ratio=cfg.warmup_ratio, clip_norm=cfg.clip_norm)
        objective = run.family.objective(cfg, run.labels, run.model)
        self.bodies = StepBodies(objective, lr_schedule(self.optim, self.total_updates), cfg.grad_accum)
        # ---------------------------------------------------------------- devices
        self.parallel = make_parallel(cfg.parallel, self.bodies, devices)
        self.parallel.check_batch_size(cfg.batch_size)
        self.parallel.check_batch_size(cfg.eval_batch, "--eval_batch_size")
        self.rows = self.parallel.local_rows(self.update_rows)
        self.share = BatchShare(self.rows, self.rows.stop - self.rows.start, self.parallel.num_processes,
                                len(self.parallel.devices) * cfg.grad_accum)
        store = program_store_folder()
        if programs is not None:
            self.programs = programs.bind(program_context(run, self.total_updates))
        else:
            self.programs = ProgramStore(store, program_context(run, self.total_updates),
                                         manifest_key(cfg, run.corpora)) if store else None
        if self.programs is not None:
            self.parallel.use_program_store(self.programs)
            if self.parallel.programs is not None and (self.programs.prefetched or self.programs.prefetch()):
                log.info("loading %d compiled programs of the last run with these settings in the background",
                         self.programs.prefetched)
        tx = make_optimizer(self.optim, self.total_updates)
        self.template = TrainState.create(apply_fn=run.model.apply, params=run.init_params, tx=tx)
        self.dropout_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
        self.writer = None

    # ------------------------------------------------------------------ pieces
    def _plan(self, epoch: int):
        return self.train_split.train_plan(self.update_rows, self.cfg.seed, epoch, self.run.max_length)

    def _batch(self, length: int, indices) -> dict:
        return self.train_split.train_batch(indices, length, self.share)

    def _evaluate(self, params, split: str) -> inference.SplitResult:
        r = self.run
        return inference.evaluate(self.parallel, params, r.family, r.config, r.labels, r.splits[split],
                                  self.cfg.eval_batch, r.max_length)

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
    def _train_epoch(self, state, loop: LoopState, ckpt: RunCheckpoints):
        cfg, epoch = self.cfg, loop.epoch
        plan = self._plan(epoch)
        progress = Progress(len(plan), loop.batch, f"epoch {epoch + 1}/{cfg.max_epochs}", enabled=is_primary())
        pending, tokens, computed, t0 = None, 0, 0, time.perf_counter()

        def consume(item):
            step, batch_no, metrics = item
            loss = float(metrics["loss"])
            self._check_finite(loss, step, epoch, batch_no, ckpt.latest_step())
            loop.loss_sum += loss
            loop.loss_count += 1
            progress.update(loss, tokens / max(time.perf_counter() - t0, 1e-9))
            if step % cfg.log_every == 0:
                grad_norm, lr = float(metrics["grad_norm"]), float(metrics["lr"])
                log.info("epoch %d step %d: loss %.5f grad-norm %.4f lr %.3g", epoch + 1, step, loss, grad_norm, lr)
                for tag, value in (("train/loss", loss), ("train/grad_norm", grad_norm), ("train/lr", lr)):
                    self._scalar(tag, value, step)

        for b in range(loop.batch, len(plan)):
            length, indices = plan[b]
            batch = self._batch(length, indices)
            tokens += self.train_split.tokens(batch) * jax.process_count()
            computed += int(np.asarray(batch["input_ids"]).size) * jax.process_count()  # real and padding
            state, metrics = self.parallel.train_step(state, batch, self.dropout_key)
            if pending is not None:  # read the previous step's loss: the device stays one step ahead
                consume(pending)
            pending = (loop.step + 1, b, metrics)
            loop.step += 1
            loop.batch = b + 1
            stop = preemption_requested(loop.step)
            if stop or (cfg.checkpoint_every and loop.step % cfg.checkpoint_every == 0 and b + 1 < len(plan)):
                consume(pending)
                pending = None
                ckpt.save_latest(loop.step, self.parallel.get_state(state), loop.to_dict())
            if stop:
                ckpt.wait()
                progress.close()
                raise Preempted(loop.step, epoch + 1)
        if pending is not None:
            consume(pending)
        progress.close()
        return state, tokens / max(time.perf_counter() - t0, 1e-9), {"tokens": tokens, "computed_tokens": computed}

    # ------------------------------------------------------------------ the run
    def fit(self, resume: bool = False) -> dict:
        with watch_preemption():  # from here on SIGTERM means: save at the next step boundary, then stop
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict:
        run = self.run
        started = time.perf_counter()
        ckpt = RunCheckpoints(run.run_dir)
        host_state, loop = self.template, LoopState()
        restored = ckpt.restore_latest(self.template) if resume else None
        if restored is not None:
            host_state, loop = restored[0], LoopState.from_dict(restored[1])
            log.info("resumed from %s step %d (epoch %d, batch %d)", run_folder.LATEST, loop.step, loop.epoch + 1,
                     loop.batch)
        elif resume:
            if self.cfg.bert_model and not run.pretrained_loaded:
                raise run_folder.RunFolderError(f"{run.run_dir}: no checkpoint can be read and the encoder "
                                                f"{self.cfg.bert_model} cannot be loaded to start again")
            log.info("--resume: no checkpoint to continue from; the run starts from the beginning")
        if is_primary():
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run.run_dir / run_folder.TENSORBOARD))
        log.info("%s run: %d train items, %d batches of %d (%d x %d micro-batches) per epoch, %d updates, lr %.3g, "
                 "%s over %d device(s)", self.cfg.kind, len(self.train_split), self.steps_per_epoch, self.update_rows,
                 self.cfg.grad_accum, self.cfg.batch_size, self.total_updates, self.optim.lr, self.parallel.name,
                 self.parallel.num_devices)
        state = self.parallel.put_state(host_state)
        try:
            while not loop.done:
                state = self._epoch(state, loop, ckpt)
            return self._finish(ckpt, loop, time.perf_counter() - started)
        finally:
            ckpt.close()
            if self.writer is not None:
                self.writer.close()

    def _epoch(self, state, loop: LoopState, ckpt: RunCheckpoints):
        cfg, epoch = self.cfg, loop.epoch
        loaded_before = self.programs.loaded if self.programs is not None else 0
        with CompileCounter() as compiles:
            t0 = time.perf_counter()
            state, tok_s, counts = self._train_epoch(state, loop, ckpt)
            t1 = time.perf_counter()
            val = self._evaluate(state.params, "val")
            t2 = time.perf_counter()
        value = val.loss if cfg.select_by == "loss" else val.metrics["f1"]
        improved = loop.best is None or (value < loop.best if cfg.select_by == "loss" else value > loop.best)
        train_loss = loop.loss_sum / max(loop.loss_count, 1)
        loop.history.append({"epoch": epoch + 1, "step": loop.step, "train_loss": train_loss, "val_loss": val.loss,
                             "val_precision": val.metrics["precision"], "val_recall": val.metrics["recall"],
                             "val_f1": val.metrics["f1"], "improved": improved})
        loaded = (self.programs.loaded if self.programs is not None else 0) - loaded_before
        loop.timing.append({"epoch": epoch + 1, "train_seconds": t1 - t0, "eval_seconds": t2 - t1,
                            "tokens_per_second": tok_s, **counts, "compilations": compiles.count,
                            "compilation_cache_hits": compiles.cache_hits, "programs_loaded": loaded})
        log.info("epoch %d: train loss %.5f, val loss %.5f, val F1 %.4f (P %.4f R %.4f)%s; %.1f s train, "
                 "%.1f s eval, %d compilations (%d loaded from the cache), %d compiled programs loaded", epoch + 1,
                 train_loss, val.loss, val.metrics["f1"], val.metrics["precision"], val.metrics["recall"],
                 " *" if improved else "", t1 - t0, t2 - t1, compiles.count, compiles.cache_hits, loaded)
        for tag, v in (("val/loss", val.loss), ("val/f1", val.metrics["f1"]), ("train/epoch_loss", train_loss)):
            self._scalar(tag, v, loop.step)
        if improved:
            loop.best, loop.best_epoch, loop.bad_epochs = value, epoch + 1, 0
            ckpt.save_best(loop.step, self.parallel.get_state(state).params,
                           {"epoch": epoch + 1, "step": loop.step, "select_by": cfg.select_by, "value": value})
        else:
            loop.bad_epochs += 1
        loop.epoch, loop.batch, loop.loss_sum, loop.loss_count = epoch + 1, 0, 0.0, 0
        if loop.bad_epochs >= cfg.patience:
            loop.done = loop.stopped_early = True
            log.info("no improvement of validation %s for %d epochs: stopping", cfg.select_by, cfg.patience)
        elif loop.epoch >= cfg.max_epochs:
            loop.done = True
        ckpt.save_latest(loop.step, self.parallel.get_state(state), loop.to_dict())
        return state

    def _finish(self, ckpt: RunCheckpoints, loop: LoopState, seconds: float) -> dict:
        run, cfg = self.run, self.cfg
        ckpt.wait()
        params, best_meta = ckpt.restore_best(self.template.params)
        params = self.parallel.put_params(params)
        results = {}
        for split in ("val", "test"):
            res = self._evaluate(params, split)
            results[split] = res.metrics
            if is_primary():
                atomic_write_text(run.run_dir / run_folder.predictions_file(split),
                                             format_predictions(run.corpora[split].sentences, res.tags))
            log.info("kept model (epoch %d) on %s: loss %.5f, micro P %.4f R %.4f F1 %.4f (strict F1 %.4f)",
                     best_meta["epoch"], split, res.loss, res.metrics["precision"], res.metrics["recall"],
                     res.metrics["f1"], res.metrics["strict"]["f1"])
        metrics = {
            "kind": cfg.kind, "select_by": cfg.select_by, "best_epoch": best_meta["epoch"],
            "epochs_run": loop.epoch, "stopped_early": loop.stopped_early, "steps": loop.step,
            "val": results["val"], "test": results["test"], "history": loop.history,
            # Not part of the results: differs between a resumed and an uninterrupted run.
            "timing": {"epochs": loop.timing, "this_process_seconds": seconds,
                       "devices": self.parallel.num_devices, "parallel": self.parallel.name,
                       "programs_prefetched": self.programs.prefetched if self.programs is not None else 0,
                       "programs_loaded": self.programs.loaded if self.programs is not None else 0,
                       "programs_warmed": self.programs.warmed if self.programs is not None else 0},
        }
        if is_primary():
            atomic_write_json(run.run_dir / run_folder.METRICS, metrics)
        return metrics
