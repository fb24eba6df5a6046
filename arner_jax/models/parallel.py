"""Train and eval steps, and the two data-parallel wrappers that run them on all devices.

Owns: the per-device step bodies (pure; one per shard of the global batch) and how they are
spread over devices:
  PmapParallel      `jax.pmap` (the default): over every device of every process;
  ShardMapParallel  `jax.jit` of `jax.shard_map` over a one-axis mesh of all devices.
Both run the same bodies with the same collectives, so they compute the same numbers. Training,
evaluation and prediction all run through these wrappers.

The loss of a batch is not a mean of per-shard losses (Dice, Tversky, IRM and the variance
penalty are not linear in the batch), so a step does not average per-device losses: each device
computes additive loss statistics of its shard, they are summed over devices (`psum`), the
loss and its gradient with respect to the statistics are computed once from the sums, and each
device pulls that gradient back through its own shard (a VJP), whose parameter gradients are
summed. The result is the single-device loss and gradient of the whole global batch, for any
device and process count.

Dropout keys are derived from (seed key, step, device index): different per device and per
step, and the same after a resume. Multi-process: the data axis spans every device of every
process; each process feeds the rows of the global batch that belong to its devices, and gets
back every row of the eval outputs.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from arner_jax.errors import UserError
from arner_jax.models.base import Objective

AXIS = "data"


class BatchSizeError(UserError, ValueError):
    """A batch size that the devices cannot share evenly."""


@dataclasses.dataclass(frozen=True)
class StepBodies:
    """The per-device bodies of the train and eval steps of one model.

    `objective` (arner_jax.models.base.Objective) gives the model's additive loss statistics of a
    shard, the loss of summed statistics, and predictions from its outputs.

    Gradient accumulation (`grad_accum` = k): a train step gets k micro-batches at once (the
    global batch's rows, k times as many as one micro-batch) and makes one update that equals
    the update of the whole batch in one piece: a first pass sums every micro-batch's loss
    statistics (forward only), the loss and its gradient with respect to the statistics are
    computed once, and a second pass pulls that gradient back through each micro-batch in turn
    (forward again, then backward). Only one micro-batch's activations are alive at a time; the
    price is a second forward pass. Averaging micro-batch gradients instead would not be the big
    batch's gradient: Dice, Tversky, IRM, the variance penalty, and even the mean cross-entropy of
    micro-batches with different numbers of positions are not averages over micro-batches.
    """

    objective: Objective
    learning_rate: Callable | None = None  # update -> learning rate, reported in the metrics
    grad_accum: int = 1

    def _statistics(self, params, batch: dict, rng, offset):
        stats, _ = self.objective.statistics(params, batch, {"dropout": rng}, False, offset)
        return stats

    def train(self, state: TrainState, batch: dict, key: jax.Array):
        """One update on this device's shard of the global batch; returns the new state and metrics."""
        index = jax.lax.axis_index(AXIS)
        key = jax.random.fold_in(jax.random.fold_in(key, state.step), index)
        offset = _rank_offset(batch["label_mask"], index)
        if self.grad_accum == 1:
            stats, pull_back = jax.vjp(lambda p: self._statistics(p, batch, key, offset), state.params)
            stats = jax.lax.psum(stats, AXIS)
            (loss, details), d_stats = jax.value_and_grad(self.objective.loss, has_aux=True)(stats)
            grads = pull_back(d_stats)[0]
        else:
            stats, grads, loss, details = self._accumulated(state.params, batch, key, offset)
        grads = jax.lax.psum(grads, AXIS)
        metrics = {"loss": loss, "details": details, "grad_norm": optax.tree.norm(grads), "positions": stats["n"]}
        if self.learning_rate is not None:
            metrics["lr"] = self.learning_rate(state.step)
        return state.apply_gradients(grads=grads), metrics

    def _accumulated(self, params, batch: dict, key, offset):
        """The two passes over k micro-batches (see the class docstring)."""
        k = self.grad_accum
        micro = jax.tree.map(lambda x: x.reshape((k, x.shape[0] // k) + x.shape[1:]), batch)  # [k, b, ...]
        counts = (micro["label_mask"] > 0).reshape(k, -1).sum(-1)  # [k] positions per micro-batch
        offsets = offset + jnp.cumsum(counts) - counts  # positions before each micro-batch, batch-major
        keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(k))
        shape = jax.eval_shape(self._statistics, params, jax.tree.map(lambda x: x[0], micro), keys[0], offsets[0])
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)

        def add_statistics(total, xs):
            mb, rng, off = xs
            return jax.tree.map(jnp.add, total, self._statistics(params, mb, rng, off)), None

        stats, _ = jax.lax.scan(add_statistics, zeros, (micro, keys, offsets))
        stats = jax.lax.psum(stats, AXIS)
        (loss, details), d_stats = jax.value_and_grad(self.objective.loss, has_aux=True)(stats)

        def add_gradients(total, xs):
            mb, rng, off = xs
            _, pull_back = jax.vjp(lambda p: self._statistics(p, mb, rng, off), params)
            return jax.tree.map(jnp.add, total, pull_back(d_stats)[0]), None

        grads, _ = jax.lax.scan(add_gradients, jax.tree.map(jnp.zeros_like, params), (micro, keys, offsets))
        return stats, grads, loss, details

    def eval(self, params, batch: dict):
        """Predictions of this shard's rows, and the loss of the whole batch."""
        index = jax.lax.axis_index(AXIS)
        stats, outputs = self.objective.statistics(params, batch, None, True,
                                                   _rank_offset(batch["label_mask"], index))
        loss, _ = self.objective.loss(jax.lax.psum(stats, AXIS))
        return self.objective.predict(outputs), loss


def _rank_offset(label_mask, index):
    """Counting positions on the devices before this one (keeps the IRM even/odd split global)."""
    counts = jax.lax.all_gather((label_mask > 0).sum(), AXIS)
    return jnp.where(jnp.arange(counts.shape[0]) < index, counts, 0).sum()


def _device_batch(batch: dict, keys: Sequence[str]) -> dict:
    """The entries the device needs (the rest of a batch, e.g. word indices, stays on the host)."""
    return {k: batch[k] for k in keys}


class DataParallel:
    """Common part of the wrappers: devices, the split of the global batch, host transfers."""

    name = ""

    def __init__(self, bodies: StepBodies, devices: Sequence[Any] | None = None):
        """devices: this process's devices to use (default: all of them; a subset only in one process)."""
        self.bodies = bodies
        self.programs = None  # an executables.ProgramStore: compiled programs loaded from / saved to disk
        self._flat_train: dict = {}  # state tree structure -> the jitted train step on the state's leaves
        self.num_processes = jax.process_count()
        if devices is not None and self.num_processes > 1:
            raise ValueError("a subset of devices is only supported in a single-process run")
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.num_devices = len(self.devices) * self.num_processes  # global
        self.batch_keys = tuple(bodies.objective.batch_keys)

    def check_batch_size(self, batch_size: int, what: str = "--batch_size") -> None:
        if batch_size % self.num_devices:
            raise BatchSizeError(
                f"{what} {batch_size}: cannot be split evenly over {self.num_devices} devices "
                f"({self.num_processes} process(es) x {len(self.devices)}); use a multiple of {self.num_devices}")

    def round_batch_size(self, rows: int) -> int:
        """The smallest multiple of the device count that holds `rows` rows."""
        return -(-rows // self.num_devices) * self.num_devices

    def use_program_store(self, store) -> None:
        """Run the train and eval steps as compiled programs from `store` (arner_jax.system.executables), which loads
        them from disk when a run with the same fingerprint compiled them before; single-process runs only."""
        self.programs = store if self.num_processes == 1 else None

    def _run(self, name: str, jitted, args: tuple):
        if self.programs is None:
            return jitted(*args)
        scope = {"wrapper": self.name, "devices": [d.id for d in self.devices]}
        return self.programs.compiled(name, jitted, args, scope)(*args)

    def _train_leaves(self, state):
        """The state's leaves and the train step on them: a program whose arguments and results are plain
        lists and dicts, so that its compiled form can be serialized (a TrainState's tree structure holds its
        optimizer's functions)."""
        leaves, treedef = jax.tree.flatten(state)
        jitted = self._flat_train.get(treedef)
        if jitted is None:
            body = self.bodies.train

            def train(state_leaves, batch, key):
                new_state, metrics = body(jax.tree.unflatten(treedef, state_leaves), batch, key)
                return jax.tree.leaves(new_state), metrics

            jitted = self._flat_train[treedef] = self._parallel_train(train)
        return leaves, treedef, jitted

    def _parallel_train(self, train: Callable):
        raise NotImplementedError

    def _train_call(self, state, batch: dict, key):
        leaves, treedef, jitted = self._train_leaves(state)
        new_leaves, metrics = self._run("train", jitted, (leaves, batch, key))
        return jax.tree.unflatten(treedef, new_leaves), metrics

    def local_rows(self, batch_size: int) -> slice:
        """The rows of a global batch this process feeds."""
        per_process = batch_size // self.num_processes
        start = jax.process_index() * per_process
        return slice(start, start + per_process)


class PmapParallel(DataParallel):
    """`jax.pmap`: state replicated on every device, each process's rows split on a leading axis.

    With several processes pmap runs over the global devices (`devices=None`): each process
    passes its local devices' shards and the collectives (psum, all_gather) span all processes.
    """

    name = "pmap"

    def __init__(self, bodies: StepBodies, devices=None):
        super().__init__(bodies, devices)
        # Over every device of every process when several run; else over the chosen local devices.
        pmap_devices = None if self.num_processes > 1 else self.devices
        # Metrics and losses are identical on every device: returned once (out_axes None).
        self._pmap = functools.partial(jax.pmap, axis_name=AXIS, devices=pmap_devices)
        self._train = self._parallel_train(bodies.train)  # on a TrainState: for lowering (cost analysis)
        self._eval = self._pmap(bodies.eval, in_axes=(0, 0), out_axes=(0, None))

    def _parallel_train(self, train: Callable):
        return self._pmap(train, in_axes=(0, 0, None), out_axes=(0, None), donate_argnums=(0,))

    def put_state(self, state):
        # Laid out as pmap lays out its outputs (mesh axis AXIS), so the step compiles once.
        return flax.jax_utils.replicate(jax.device_get(state), self.devices, axis_name=AXIS)

    def get_state(self, state):
        # The first device's copy, without an indexing op (flax's unreplicate mishandles a
        # one-device subset of several local devices).
        return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], state)

    def put_params(self, params):
        return flax.jax_utils.replicate(jax.device_get(params), self.devices, axis_name=AXIS)

    def _split(self, batch: dict) -> dict:
        d = len(self.devices)
        return {k: v.reshape((d, v.shape[0] // d) + v.shape[1:])
                for k, v in _device_batch(batch, self.batch_keys).items()}

    def train_step(self, state, batch: dict, key):
        return self._train_call(state, self._split(batch), key)

    def compiled_train_step(self, state, batch: dict, key):
        """The compiled train program of this batch's shape (for XLA's cost and memory analysis)."""
        return self._train.lower(state, self._split(batch), key).compile()

    def eval_step(self, params, batch: dict):
        pred, loss = self._run("eval", self._eval, (params, self._split(batch)))
        return jax.tree.map(lambda x: _gather_rows(_local_rows(x)), pred), loss


class ShardMapParallel(DataParallel):
    """`jax.jit` of `jax.shard_map` over a one-axis mesh of all (global) devices."""

    name = "shard_map"

    def __init__(self, bodies: StepBodies, devices=None):
        super().__init__(bodies, devices)
        mesh_devices = jax.devices() if self.num_processes > 1 else self.devices
        self.mesh = Mesh(np.array(mesh_devices), (AXIS,))
        self._replicated = NamedSharding(self.mesh, P())
        self._rows = NamedSharding(self.mesh, P(AXIS))
        # check_vma=False: the bodies place their own collectives (psum of statistics and of
        # gradients), exactly as under pmap; outputs are replicated by construction.
        self._shard = functools.partial(jax.shard_map, mesh=self.mesh, check_vma=False)
        self._train = self._parallel_train(bodies.train)  # on a TrainState: for lowering from shapes
        self._eval = jax.jit(self._shard(bodies.eval, in_specs=(P(), P(AXIS)), out_specs=(P(AXIS), P())))

    def _parallel_train(self, train: Callable):
        return jax.jit(self._shard(train, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P())), donate_argnums=(0,))

    def put_state(self, state):
        # From host copies: the step donates the state, which must not free the caller's arrays.
        return jax.device_put(jax.device_get(state), self._replicated)

    def get_state(self, state):
        return jax.device_get(state)

    def put_params(self, params):
        return jax.device_put(params, self._replicated)

    def put_batch(self, batch: dict) -> dict:
        """This process's rows of a global batch as global arrays split over the mesh (the device entries)."""
        return {k: jax.make_array_from_process_local_data(self._rows, v)
                for k, v in _device_batch(batch, self.batch_keys).items()}

    def train_step(self, state, batch: dict, key):
        return self._train_call(state, self.put_batch(batch), self.put_key(key))

    def put_key(self, key):
        """A key replicated over the mesh."""
        return jax.device_put(key, self._replicated)

    def compiled_train_step(self, state, batch: dict, key):
        """The compiled train program of this batch's shape (for XLA's cost and memory analysis)."""
        return self._train.lower(state, self.put_batch(batch), self.put_key(key)).compile()

    @property
    def train_program(self):
        """The jitted train step on global arrays, to lower from shapes alone (`.lower(state, batch, key)`)."""
        return self._train

    def eval_step(self, params, batch: dict):
        pred, loss = self._run("eval", self._eval, (params, self.put_batch(batch)))
        return jax.tree.map(_gather_rows, pred), loss


def _local_rows(x) -> np.ndarray:
    """This process's rows of a pmap output `[devices, rows, ...]`, in device order, as `[rows, ...]`."""
    if x.is_fully_addressable:
        return np.asarray(x).reshape((-1,) + x.shape[2:])
    shards = sorted(x.addressable_shards, key=lambda shard: shard.index[0].start or 0)
    return np.concatenate([np.asarray(shard.data) for shard in shards]).reshape((-1,) + x.shape[2:])


def _gather_rows(x) -> np.ndarray:
    """All rows of a batch output on this host (across processes when there are several)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


WRAPPERS = {"pmap": PmapParallel, "shard_map": ShardMapParallel}


def make_parallel(name: str, bodies: StepBodies, devices: Sequence[Any] | None = None) -> DataParallel:
    """The wrapper named by --parallel ("pmap" or "shard_map")."""
    return WRAPPERS[name](bodies, devices)
