"""Run by tests/integration/test_launch.py through `python -m arner_jax.launch`: one process of a multi-process job.

Starts multi-process JAX from the launcher's variables, then reduces across processes and prints
one line `RESULT {json}`: the process index and count, device counts, a psum over every device of
every process (each device adds its process index + 1, so the sum covers both processes only if
it equals devices_per_process * (1 + 2)), and the gathered process indices.
"""
from __future__ import annotations

import json

import jax
import numpy as np
from jax.experimental import multihost_utils

from arner_jax.system import distributed

# Before any JAX computation (importing JAX is fine: it creates no backend).
assert distributed.initialize(), "the launcher's variables did not start multi-process JAX"

index, count = distributed.process_info()
local = jax.local_device_count()
psum = jax.pmap(lambda x: jax.lax.psum(x, "i"), axis_name="i")(np.full(local, index + 1.0))
gathered = multihost_utils.process_allgather(np.array([index]))
distributed.barrier("worker done")
print("RESULT " + json.dumps({
    "index": index, "count": count, "jax_process_count": jax.process_count(), "devices": jax.device_count(),
    "local_devices": local, "psum": np.asarray(psum).tolist(), "gathered": np.asarray(gathered).ravel().tolist(),
    "primary": distributed.is_primary(),
}))
