"""Replay a recorded reference training and compare, step by step: `python -m arner_jax.parity um6p DIR`.

DIR has the layout of `../shared/fixtures/um6p_trajectories/*` (its README; written by
`shared/tools/um6p_trajectory.py` from the UM6P & UL reference's own trainers): meta.json,
trajectory.json, batches.npz, init/final.safetensors, encoder/, data/, predictions_test.txt.

What it does, with our code only (`--recipe um6p`: arner_jax.models.tagger.um6p, the tagger family, the data-parallel
train and eval steps, the optimizer):
  1. rebuilds every recorded row from data/train.txt and encoder/'s tokenizer with our data pipeline
     and checks it equals the recorded one (rows matched sentence by sentence);
  2. loads init.safetensors (a reference state dict) and runs our train step on our rebuilt rows,
     grouped and ordered as recorded; compares each head's loss, the penalty and the total
     (relative 1e-4, or absolute 1e-6 below 1e-2), the gradient norm before clipping (relative
     1e-3) and the learning rate (relative 1e-6);
  3. after each epoch, the validation and test losses (relative 1e-4) and which epochs were kept;
  4. the final weights against final.safetensors (max |difference| <= 1e-4; the pooler and the
     attention key biases, whose gradient is 0 in exact arithmetic, are left out; an element whose
     Adam step was decided by epsilon, whose value no float32 implementation reproduces, is counted
     in `final_weights_eps_regime` when it differs by more, see _adam_eps_regime);
  5. the kept model's test predictions against predictions_test.txt, word by word, except where
     our two largest logits of a head are within 1e-4 (counted and reported).
A folder whose trajectory says `crashed` (the reference's decoding failed) is compared on its steps
and final weights only. Prints one JSON line with the largest deviation of each kind; exit status 0
when every check holds, 1 when one does not, 2 when the folder cannot be used.

  python -m arner_jax.parity um6p ../shared/fixtures/um6p_trajectories/nested_var
  python -m arner_jax.parity um6p DIR --parallel shard_map --devices 4   # 4 devices (fake ones on a CPU)
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error

LOSS_RTOL, LOSS_ATOL_BELOW = 1e-4, (1e-6, 1e-2)
GRAD_RTOL, LR_RTOL, EVAL_RTOL, WEIGHT_ATOL, TIE = 1e-3, 1e-6, 1e-4, 1e-4, 1e-4
FILES = ("meta.json", "trajectory.json", "batches.npz", "init.safetensors", "final.safetensors", "encoder",
         "data/train.txt", "data/val.txt", "data/test.txt")


def _request_devices(n: int) -> None:
    """Ask XLA for n host devices (used on a CPU only); must run before JAX starts."""
    if n > 1 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def _loss_ok(ours: float, ref: float) -> bool:
    if abs(ref) < LOSS_ATOL_BELOW[1]:
        return abs(ours - ref) <= LOSS_ATOL_BELOW[0]
    return abs(ours - ref) <= LOSS_RTOL * abs(ref)


def _rel(ours: float, ref: float) -> float:
    return abs(ours - ref) / max(abs(ref), 1e-30)


def _read_predictions(path: Path) -> list[list[tuple[str, list[str]]]]:
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        word, _, pred = line.split("\t")
        current.append((word, pred.split("|")))
    if current:
        sentences.append(current)
    return sentences


def _adam_eps_regime(opt_state, eps: float):
    """Elements whose last Adam step was decided by epsilon: a gradient history so small (sqrt of the
    bias-corrected second moment below 10 eps, but not 0) that the step lr * m / (sqrt(v) + eps) moves
    with the last bits of the gradient. Such a gradient is a cancellation (e.g. -7e-8 among neighbours of
    1e-2) that float32 rounds differently in any two implementations, and the step amplifies the
    difference by lr / eps (1e5 at lr 1e-3): the final weight of such an element is not reproducible to
    1e-4 by any implementation, PyTorch's own with another summation order included. Counted, not hidden."""
    import jax
    import numpy as np
    import optax

    adam = next(x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
                if isinstance(x, optax.ScaleByAdamState))
    nu, correction = adam.nu, 1.0 - 0.999 ** float(adam.count)
    return jax.tree.map(lambda v: (np.asarray(v) > 0) & (np.sqrt(np.asarray(v) / correction) < 10 * eps), nu)


def compare_predictions(split, outputs, pred_file: Path) -> tuple[int, int, list[str]]:
    """Our reference-layout test predictions against the reference's predictions file, word by word.

    `outputs`: per row, "ids" and "logits" of an eval run. A differing word whose two largest logits (of
    some head) are within 1e-4 is a near tie, counted apart. Returns (mismatches, near ties, messages)."""
    import numpy as np

    tags = split.reference_tags(outputs)
    mask = np.asarray(split.vocab.class_mask())
    reference = _read_predictions(pred_file)
    mismatches, ties, messages = 0, 0, []
    if len(reference) != len(tags):
        messages.append(f"{pred_file}: {len(reference)} sentences, ours {len(tags)}")
    for i, (theirs, mine) in enumerate(zip(reference, tags)):
        logits = np.where(mask, np.asarray(outputs[i]["logits"]), 0.0)  # [L, T, C], as the reference pads
        for w, ((word, want), got) in enumerate(zip(theirs, mine)):
            if want == got:
                continue
            top2 = np.sort(logits[split.rows[i].word_pos[w]], axis=-1)[:, -2:]
            if (top2[:, 1] - top2[:, 0]).min() <= TIE:
                ties += 1
            else:
                mismatches += 1
                messages.append(f"test sentence {i + 1} word {w + 1} {word!r}: ours {got}, reference {want}")
    return mismatches, ties, messages


def match_rows(split, subwords, pad_id: int) -> list[int]:
    """The sentence of each recorded row (equal token ids; a sentence used once per epoch at most)."""
    by_ids: dict[tuple, list[int]] = {}
    for i, row in enumerate(split.rows):
        by_ids.setdefault(tuple(row.input_ids.tolist()), []).append(i)
    group = []
    for row in subwords:
        n = len(row)
        while n and row[n - 1] == pad_id:
            n -= 1
        found = by_ids.get(tuple(int(x) for x in row[:n]))
        if not found:
            raise AssertionError(f"a recorded row matches no sentence of data/train.txt: {row[:n].tolist()[:12]}...")
        group.append(found[0])
    return group


def compare_um6p(folder: str | Path, parallel: str = "pmap", devices: int = 1, steps: int | None = None) -> dict:
    """Replay DIR's recorded training with the um6p recipe and compare (see the module docstring).

    `steps`: replay only the first steps (their evaluations included); the final weights and the
    predictions, which need every step, are then not compared."""
    import jax
    import numpy as np
    from flax.training.train_state import TrainState
    from transformers import AutoTokenizer

    from arner_jax.config import RunConfig
    from arner_jax.data.wojood import read_wojood
    from arner_jax.encoders import EncoderConfig
    from arner_jax.models import inference
    from arner_jax.models.base import family_for
    from arner_jax.models.parallel import StepBodies, make_parallel
    from arner_jax.models.tagger.reference_checkpoint import (
        params_to_reference,
        read_reference_state,
        reference_to_params,
    )
    from arner_jax.models.tagger.um6p import ReferenceVocab, padded_length
    from arner_jax.train.optim import OptimConfig, lr_schedule, make_optimizer

    folder = Path(folder)
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise UserError(f"{folder}: missing {', '.join(missing)}; give a folder written by "
                        "shared/tools/um6p_trajectory.py (see ../shared/fixtures/um6p_trajectories/README.md)")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    traj = json.loads((folder / "trajectory.json").read_text(encoding="utf-8"))
    if len(jax.local_devices()) < devices:
        raise UserError(f"--devices {devices}: only {len(jax.local_devices())} device(s) here; on a CPU set "
                        f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before Python starts")
    vocab = ReferenceVocab.from_json({"types": meta["types"], "tag_vocab": meta["tag_vocab"], "kind": meta["kind"]})
    batch_size, epochs = int(meta["batch_size"]), int(meta["epochs"])
    config = RunConfig(kind=meta["kind"], recipe="um6p", loss="unified", var_penalty=float(meta["penalty"]),
                       dropout=float(meta.get("dropout", 0.0)), lr=float(meta["lr"]),
                       weight_decay=float(meta["weight_decay"]), clip_norm=float(meta["clip"]),
                       batch_size=batch_size, seed=int(meta["seed"]), parallel=parallel, max_epochs=epochs)
    family = family_for(config.kind)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "encoder"))
    encoder = EncoderConfig.from_file(folder / "encoder" / "config.json")
    corpora = {s: read_wojood(folder / "data" / f"{s}.txt") for s in ("train", "val", "test")}
    splits = {s: family.encode(config, vocab, tokenizer, c.sentences, 512) for s, c in corpora.items()}
    train = splits["train"]

    # 1. the recorded rows, rebuilt by our pipeline
    recorded = np.load(folder / "batches.npz")
    n_steps = len(traj["steps"]) if steps is None else min(steps, len(traj["steps"]))
    partial = n_steps < len(traj["steps"])
    groups, row_mismatch = [], 0
    for s in range(n_steps):
        subwords, tags = recorded[f"s{s:03d}_subwords"], recorded[f"s{s:03d}_tags"]
        group = match_rows(train, subwords, int(tokenizer.pad_token_id))
        L = subwords.shape[1]
        batch = train.collate_group(group, slice(0, len(group)), batch_size, padded_length(L))
        same = (batch["ref_length"][0] == L and (batch["input_ids"][:len(group), :L] == subwords).all()
                and (batch["labels"][:len(group), :L].transpose(0, 2, 1) == tags).all())
        row_mismatch += not same
        groups.append((batch, group))

    # 2. the steps
    state_dict = read_reference_state(folder / "init.safetensors")
    params, encoder = reference_to_params(state_dict, encoder, vocab, source=str(folder / "init.safetensors"))
    model = family.build(config, encoder, vocab, tokenizer)
    steps_per_epoch = -(-len(train) // batch_size)
    total = steps_per_epoch * epochs
    optim = OptimConfig(lr=config.lr, weight_decay=config.weight_decay, clip_norm=config.clip_norm)
    objective = family.objective(config, vocab, model, with_logits=True)
    bodies = StepBodies(objective, lr_schedule(optim, total))
    par = make_parallel(parallel, bodies, jax.local_devices()[:devices])
    par.check_batch_size(batch_size)
    state = par.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(optim, total)))
    key = jax.random.PRNGKey(config.seed)
    worst = {"row_mismatches": row_mismatch, "head_loss": 0.0, "penalty": 0.0, "total": 0.0, "grad_norm_rel": 0.0,
             "lr_rel": 0.0, "eval_loss_rel": 0.0, "final_weight_abs": 0.0, "final_weights_eps_regime": 0,
             "prediction_mismatches": 0, "prediction_near_ties": 0}
    failures = []
    crashed = bool(traj.get("crashed"))
    evals, kept, best, kept_params = [], [], math.inf, None

    def note(kind: str, value: float, ok: bool, where: str) -> None:
        worst[kind] = max(worst[kind], value)
        if not ok and len(failures) < 20:
            failures.append(f"{where}: {kind} {value:.3g}")

    eps_regime = None  # elements whose Adam step was ever decided by epsilon (see _adam_eps_regime)
    for s, (batch, _) in enumerate(groups):
        state, metrics = par.train_step(state, batch, key)
        flagged = _adam_eps_regime(par.get_state(state).opt_state, optim.eps)
        eps_regime = flagged if eps_regime is None else jax.tree.map(np.logical_or, eps_regime, flagged)
        ref = traj["steps"][s]
        heads = np.asarray(metrics["details"], np.float64)
        total_loss = float(metrics["loss"])
        penalty = config.options.var_penalty * float(np.var(heads))  # the reference's 5 * population variance
        for t, (a, b) in enumerate(zip(heads, ref["head_losses"])):
            note("head_loss", abs(a - b), _loss_ok(a, b), f"step {s + 1} head {t}")
        note("penalty", abs(penalty - ref["penalty"]), _loss_ok(penalty, ref["penalty"]), f"step {s + 1}")
        note("total", abs(total_loss - ref["total"]), _loss_ok(total_loss, ref["total"]), f"step {s + 1}")
        rel = _rel(float(metrics["grad_norm"]), ref["grad_norm"])
        note("grad_norm_rel", rel, rel <= GRAD_RTOL, f"step {s + 1}")
        rel = _rel(float(metrics["lr"]), ref["lr"])
        note("lr_rel", rel, rel <= LR_RTOL, f"step {s + 1}")
        # 3. after each epoch: validation (and test) loss, the kept epochs
        if (s + 1) % steps_per_epoch == 0 and not crashed:
            epoch = (s + 1) // steps_per_epoch - 1
            host = par.get_state(state).params
            losses = {split: inference.run(par, par.put_params(host), splits[split], batch_size, 512).loss
                      for split in ("val", "test")}
            evals.append({"after_step": s + 1, **losses})
            if losses["val"] < best:
                best, kept_params = losses["val"], host
                kept.append(epoch)
    compared_evals = [e for e in traj.get("evals", []) if e["after_step"] <= n_steps]
    for ref in compared_evals:
        ours = next((e[ref["split"]] for e in evals if e["after_step"] == ref["after_step"]), None)
        if ours is None:
            failures.append(f"no evaluation of {ref['split']} after step {ref['after_step']}")
            continue
        rel = _rel(ours, ref["loss"])
        note("eval_loss_rel", rel, rel <= EVAL_RTOL, f"{ref['split']} loss after step {ref['after_step']}")
    if not crashed and not partial and kept != traj.get("kept_epochs", []):
        failures.append(f"kept epochs {kept}, the reference kept {traj.get('kept_epochs')}")

    # 4. final weights
    final = {} if partial else read_reference_state(folder / "final.safetensors")
    ours = params_to_reference(par.get_state(state).params, encoder, vocab)
    excused = {k: v.astype(bool) for k, v in params_to_reference(
        jax.tree.map(lambda x: x.astype(np.float32), eps_regime), encoder, vocab).items()}
    skipped = [k for k in final if "pooler" in k or k.endswith("attention.self.key.bias")]
    unknown = sorted(set(final) - set(ours))
    if unknown:
        failures.append(f"final.safetensors holds weights we do not have: {unknown[:5]}")
    for name in sorted(set(final) & set(ours) - set(skipped)):
        delta = np.abs(ours[name] - final[name])
        over = (delta > WEIGHT_ATOL) & excused[name]
        worst["final_weights_eps_regime"] += int(over.sum())
        delta = np.where(over, 0.0, delta)
        diff = float(delta.max()) if delta.size else 0.0
        where = np.unravel_index(int(delta.argmax()), delta.shape) if delta.size else ()
        note("final_weight_abs", diff, diff <= WEIGHT_ATOL, f"{name}{list(map(int, where))}")

    # 5. the kept model's test predictions
    pred_file = folder / "predictions_test.txt"
    if not crashed and not partial and pred_file.is_file() and kept_params is not None:
        result = inference.run(par, par.put_params(kept_params), splits["test"], batch_size, 512)
        mismatches, ties, messages = compare_predictions(splits["test"], result.outputs, pred_file)
        worst["prediction_mismatches"], worst["prediction_near_ties"] = mismatches, ties
        failures.extend(messages[:max(0, 20 - len(failures))])
    if row_mismatch:
        failures.insert(0, f"{row_mismatch} of {n_steps} recorded batches differ from our rebuilt rows")
    return {"folder": str(folder), "kind": meta["kind"], "penalty": meta["penalty"], "parallel": parallel,
            "devices": devices, "steps": n_steps, "partial": partial, "evals_compared": len(compared_evals),
            "crashed": crashed, "kept_epochs": kept,
            "words_without_subwords": train.stats.words_without_subwords, "largest": worst,
            "ok": not failures, "failures": failures}


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m arner_jax.parity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="recipe", required=True)
    um6p = sub.add_parser("um6p", help="a recorded training of the UM6P & UL reference trainers")
    um6p.add_argument("folder", help="a folder of the layout of ../shared/fixtures/um6p_trajectories/*")
    um6p.add_argument("--parallel", default="pmap", choices=["pmap", "shard_map"], help="data parallelism")
    um6p.add_argument("--devices", type=int, default=1, help="devices to split each batch over (it must divide 16)")
    um6p.add_argument("--steps", type=int, default=None,
                      help="replay only the first N steps (no final-weight or prediction comparison)")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error(f"--devices {args.devices}: must be a positive whole number")
    _request_devices(args.devices)
    with exit_on_user_error():
        result = compare_um6p(args.folder, args.parallel, args.devices, args.steps)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.parity:main")
