"""Run by tests/integration/test_multiprocess.py: the same three train steps of a tiny tagger, as 2 processes x 1 device
(through `python -m arner_jax.launch`) or as 1 process x 2 devices, with pmap and with shard_map.

Process 0 writes, per wrapper, the losses, the first step's gradient (SGD with lr 1: the update is the
gradient), the final parameters and the eval predictions to OUT/<wrapper>.npz.
"""
from __future__ import annotations

import sys
from pathlib import Path

from arner_jax.system import distributed

distributed.initialize()  # from the launcher's variables; nothing to start in a single process

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax.training.train_state import TrainState  # noqa: E402

from arner_jax.models.parallel import StepBodies, make_parallel  # noqa: E402
from arner_jax.train.optim import OptimConfig, make_optimizer  # noqa: E402
from tests.parallel_worker import B, batches, tiny_tagger  # noqa: E402


def run(wrapper: str) -> dict[str, np.ndarray]:
    model, params, objective = tiny_tagger()
    parallel = make_parallel(wrapper, StepBodies(objective))
    rows = parallel.local_rows(B)  # this process feeds its devices' rows of every global batch
    data = [{k: v[rows] for k, v in batch.items()} for batch in batches(3)]
    out: dict[str, list] = {"loss": []}
    # one SGD step with lr 1: the update is the gradient
    state = parallel.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1.0)))
    state, _ = parallel.train_step(state, data[0], jax.random.PRNGKey(1))
    after = parallel.get_state(state).params
    out["gradient"] = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(after))])
    # three AdamW steps
    state = parallel.put_state(TrainState.create(apply_fn=model.apply, params=params,
                                                 tx=make_optimizer(OptimConfig(lr=1e-3), 3)))
    for batch in data:
        state, metrics = parallel.train_step(state, batch, jax.random.PRNGKey(1))
        out["loss"].append(float(metrics["loss"]))
    final = parallel.get_state(state).params
    out["params"] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(final)])
    first = batches(3)[0]
    pred, eval_loss = parallel.eval_step(parallel.put_params(final), {k: v[rows] for k, v in first.items()})
    out["ids"], out["eval_loss"] = pred["ids"], float(eval_loss)
    return {k: np.asarray(v) for k, v in out.items()}


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    results = {wrapper: run(wrapper) for wrapper in ("pmap", "shard_map")}
    if distributed.is_primary():
        folder.mkdir(parents=True, exist_ok=True)
        for wrapper, arrays in results.items():
            np.savez(folder / f"{wrapper}.npz", **arrays)
    print(f"processes {jax.process_count()}, devices {jax.device_count()}")
