"""Starting multi-process JAX, and the few questions a process asks about its place in the job.

Owns: when and how `jax.distributed.initialize` is called (explicit settings, the JAX_* variables,
or JAX's own detection of Cloud TPU pods and SLURM jobs), the CPU collectives that let the same
commands run on CPU hosts, this process's (index, count), the primary-process test and barriers.

`initialize` must run before any JAX computation, and before anything that creates a JAX backend
(`jax.devices()`, `jax.device_put`, a jitted call): JAX refuses to start its distributed runtime
once a backend exists. Call it first thing in a program's main.

On one machine, `python -m arner_jax.launch` starts N processes with the JAX_* variables set.
"""
from __future__ import annotations

import os

import jax

from arner_jax.errors import UserError

ADDRESS_VAR = "JAX_COORDINATOR_ADDRESS"
COUNT_VAR = "JAX_NUM_PROCESSES"
INDEX_VAR = "JAX_PROCESS_ID"
MODES = ("auto", "on", "off")


class DistributedSetupError(UserError, ValueError):
    """The multi-process settings are incomplete or invalid (the message is one line)."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, mode: str = "auto") -> bool:
    """Start multi-process JAX when the settings or the environment ask for it; True if started.

    Each setting comes from its argument, else from its variable (JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID). Given all three, JAX starts with them; given some, a
    `DistributedSetupError` names the missing ones. Given none, mode decides:
      "auto"  start only on a multi-host Cloud TPU slice (TPU_WORKER_HOSTNAMES lists several
              hosts) or in a SLURM job of several tasks, where JAX finds the settings itself;
              otherwise this is a single-process run and nothing is started;
      "on"    always start, leaving the settings to JAX's detection (which fails if it finds none);
      "off"   never start (the settings are then ignored).
    Must be called before any JAX computation (see the module docstring). Calling it again once
    started does nothing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "off":
        return False
    if jax.distributed.is_initialized():
        return True
    address, count, index = _resolve(coordinator_address, num_processes, process_id)
    explicit = address is not None
    if not (explicit or mode == "on" or _multi_host_environment()):
        return False
    # The CPU backend's cross-process collectives (psum, all_gather between processes). Recent
    # JAX defaults to gloo; older releases had none, so that a CPU job failed at its first
    # collective. A choice already made (e.g. mpi) is kept. Only the CPU backend reads this.
    if not jax.config.jax_cpu_collectives_implementation:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
    else:
        jax.distributed.initialize()
    return True


def _resolve(address: str | None, count: int | None, index: int | None) -> tuple[str | None, int | None, int | None]:
    """The three settings (arguments first, then variables): all None, or all set and valid."""
    address = address or os.environ.get(ADDRESS_VAR) or None
    count = count if count is not None else _int_var(COUNT_VAR)
    index = index if index is not None else _int_var(INDEX_VAR)
    settings = {ADDRESS_VAR: address, COUNT_VAR: count, INDEX_VAR: index}
    missing = [name for name, value in settings.items() if value is None]
    if len(missing) == len(settings):
        return None, None, None
    if missing:
        have = ", ".join(name for name in settings if name not in missing)
        raise DistributedSetupError(
            f"multi-process JAX: {have} given but {' and '.join(missing)} missing; set "
            f"{' and '.join(missing)} too (all three, or none on a Cloud TPU pod or in a SLURM job)")
    if count < 1 or not 0 <= index < count:
        raise DistributedSetupError(f"multi-process JAX: need {COUNT_VAR} >= 1 and 0 <= {INDEX_VAR} < "
                                    f"{COUNT_VAR}, got {COUNT_VAR}={count}, {INDEX_VAR}={index}")
    return address, count, index


def _int_var(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedSetupError(f"{name} must be an integer, got {value!r}") from None


def _multi_host_environment() -> bool:
    """A job JAX configures itself: a TPU slice of several hosts, or SLURM with several tasks."""
    slurm_tasks = os.environ.get("SLURM_NTASKS", "").strip()
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "") or (slurm_tasks.isdigit() and int(slurm_tasks) > 1)


def agree(named: dict[str, str]) -> None:
    """Raise DistributedSetupError in every process, naming the entries whose values differ between processes.

    Each value is hashed (64 bits) and the hashes are gathered from every process: a few bytes per entry.
    """
    if jax.process_count() == 1:
        return
    import hashlib

    import numpy as np
    from jax.experimental import multihost_utils

    names = sorted(named)
    digests = np.array([np.frombuffer(hashlib.sha256(named[n].encode()).digest()[:8], np.int32) for n in names])
    gathered = np.asarray(multihost_utils.process_allgather(digests)).reshape(jax.process_count(), len(names), 2)
    differ = [n for j, n in enumerate(names) if (gathered[:, j] != gathered[0, j]).any()]
    if differ:
        raise DistributedSetupError(f"the processes differ in {', '.join(differ)}; start every process with the same "
                                    "command, data files and environment")


def process_info() -> tuple[int, int]:
    """This process's index and the number of processes: (0, 1) in a single-process run."""
    return jax.process_index(), jax.process_count()


def is_primary() -> bool:
    """Whether this is process 0, the one that writes shared files and logs."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier of this name (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
