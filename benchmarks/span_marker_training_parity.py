"""Training parity with span_marker 1.8.1, step by step: record the package's training, replay it with ours.

    python -m benchmarks.span_marker_training_parity                  # replay the committed recordings
    ARNER_SPAN_MARKER_PYTHON=.sm_venv/bin/python python -m benchmarks.span_marker_training_parity \\
        --record tests/fixtures/span_marker_training                  # record them again, then replay

Recording (the package, in its own environment: benchmarks/span_marker_train_side.py): a random
BERT (hidden 32, 2 layers, every dropout 0) and a WordPiece tokenizer trained on the Wojood
sample's train split; the first SENTENCES sentences of that split whose text fits
model_max_length (the package cuts longer texts, we window them: not what is compared here);
flat (each word's outermost tags, as IOB2 tags through the package's label normalizer) and
nested (every type layer's spans, given to the package's tokenizer as spans). The package's
Trainer trains from its own initial model with AdamW (weight decay on all but biases and
LayerNorm), a linear schedule whose warmup ratio makes ceil and round of the warmup steps
differ, clipping at 1.0; the recording keeps the initial model, the collated rows of every step,
its loss, learning rate and clipped gradient norm, and the final state dict.

Replay (ours, `replay`): the initial model read with the checkpoint interop, our span family's
encoding of the same sentences, and our Trainer built on them (its optimizer, schedule, step
count and the data-parallel train step). Checks that our training rows are the package's (the
same rows, as a multiset, in every recorded epoch; the same optimizer steps per epoch), then
feeds each recorded step's rows, collated by our trainer's own batch code, to our train step and
compares the loss (relative), the learning rate, and at the end every weight (absolute).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).with_name("span_marker_train_side.py")
FIXTURES = REPO / "tests" / "fixtures" / "span_marker_training"
SETTINGS = ("flat", "nested")
LOSS_RTOL, LR_RTOL, WEIGHT_ATOL = 1e-4, 1e-6, 1e-4
# Small enough to record in seconds and commit, large enough for every row shape: texts spread over
# several rows (chunks of (M + 2K - n) // 2 spans), a partial last batch, > 20 optimizer steps.
JOB = {"model_max_length": 48, "marker_max_length": 8, "entity_max_length": 4, "batch_size": 8,
       "lr": 2e-3, "weight_decay": 0.01, "clip_norm": 1.0, "seed": 3407, "threads": 1, "epochs": 3}
SENTENCES = 24


# ----------------------------------------------------------------------------- recording (needs the package)
def save_encoder(folder: Path, texts: list[str], seed: int) -> Path:
    """A random BERT (hidden 32, 2 layers, no dropout) and a WordPiece tokenizer of `texts`."""
    import torch
    from transformers import BertConfig, BertModel

    from arner_jax.encoders import train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=300)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def make_job(setting: str, tokenizer, sentences) -> dict:
    """The package's job: labels, sentences (with their Wojood tags, for our side) and settings."""
    from arner_jax.models.span_marker import spans as S

    nested = setting == "nested"
    M = JOB["model_max_length"]
    chosen = [s for s in sentences if len(tokenizer(s.words, is_split_into_words=True)["input_ids"]) <= M]
    chosen = chosen[:SENTENCES]
    types = sorted({label for s in chosen for label, _, _ in S.gold_spans(s.tags, nested)})
    out = []
    if nested:
        labels = ["O", *types]
        for s in chosen:
            spans = [[labels.index(label), a, b] for label, a, b in S.gold_spans(s.tags, True)]
            out.append({"words": s.words, "wojood": s.tags, "spans": spans})
    else:
        labels = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
        for s in chosen:
            out.append({"words": s.words, "wojood": s.tags, "tags": [tags[0] for tags in s.tags]})
    job = dict(JOB, labels=labels, sentences=out)
    # a warmup ratio whose steps differ between ceil (the Transformers Trainer) and round
    rows = sum(math.ceil(n_spans / ((M + 2 * JOB["marker_max_length"] - n_tokens) // 2))
               for n_tokens, n_spans in _sizes(tokenizer, chosen))
    total = math.ceil(rows / JOB["batch_size"]) * JOB["epochs"]
    job["warmup_ratio"] = (math.floor(0.1 * total) + 0.25) / total
    return job


def _sizes(tokenizer, sentences):
    from arner_jax.models.span_marker import spans as S

    for s in sentences:
        n = len(tokenizer(s.words, is_split_into_words=True)["input_ids"])
        yield n, len(S.candidate_spans(len(s.words), JOB["entity_max_length"]))


def record(python: str, out: Path) -> None:
    """Run the package for every setting; write out/SETTING/{job.json, initial/, final.safetensors, trajectory.json}."""
    from arner_jax.data.sample import wojood_sample_paths
    from arner_jax.data.wojood import read_wojood

    train = read_wojood(wojood_sample_paths()["train"]).sentences
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="")
    with tempfile.TemporaryDirectory(prefix="span_parity_") as tmp:
        encoder = save_encoder(Path(tmp) / "encoder", [" ".join(s.words) for s in train], JOB["seed"])
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(encoder))
        for setting in SETTINGS:
            folder = out.resolve() / setting
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            job = make_job(setting, tokenizer, train)
            (folder / "job.json").write_text(json.dumps(job, ensure_ascii=False) + "\n", encoding="utf-8")
            done = _run_side(python, folder, encoder, env, tmp)
            if done.returncode:
                raise SystemExit(f"the span_marker side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def _run_side(python: str, folder: Path, encoder: Path, env: dict, cwd: str):
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(dict(job, encoder=str(encoder)), f, ensure_ascii=False)
    try:
        return subprocess.run([python, str(SIDE), f.name, str(folder)], env=env, cwd=cwd, capture_output=True,
                              text=True, check=False, timeout=1200)
    finally:
        os.unlink(f.name)


# ----------------------------------------------------------------------------- replay (ours only)
def _our_rows(split) -> list[tuple]:
    """Each of our rows as the side script records a row: (text ids, first subwords, last subwords, labels)."""
    keys = []
    for row in split.rows:
        (chunk,) = row.chunks
        piece = split.pieces[chunk.piece]
        first, last = piece.token_positions(piece.spans[chunk.lo:chunk.hi])
        keys.append((tuple(piece.input_ids.tolist()), tuple(first.tolist()), tuple(last.tolist()),
                     tuple(piece.labels[chunk.lo:chunk.hi].tolist())))
    return keys


def _read_final(folder: Path, encoder):
    """The package's final state dict as our parameters (the checkpoint interop's conversion)."""
    from safetensors.numpy import load_file

    from arner_jax.models.span_marker.checkpoint import span_marker_params

    return span_marker_params(load_file(str(folder / "final.safetensors")), encoder, str(folder))[0]


def replay(folder: str | Path) -> dict:
    """Our trainer on the package's recorded training (see the module docstring); the largest deviations."""
    import jax
    from jax.tree_util import keystr, tree_flatten_with_path

    from arner_jax.config import RunConfig
    from arner_jax.data.wojood import Sentence
    from arner_jax.models.base import family_for
    from arner_jax.models.span_marker.checkpoint import read_span_marker
    from arner_jax.runs.loading import init_params
    from arner_jax.train.loop import Trainer
    from arner_jax.train.prepare import PreparedRun

    folder = Path(folder)
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    traj = json.loads((folder / "trajectory.json").read_text(encoding="utf-8"))
    nested = "spans" in job["sentences"][0]
    loaded = read_span_marker(folder / "initial")
    config = RunConfig(kind="span_nested" if nested else "span_flat", max_length=job["model_max_length"],
                       marker_max_length=job["marker_max_length"], entity_max_length=job["entity_max_length"],
                       lr=job["lr"], weight_decay=job["weight_decay"], warmup_ratio=job["warmup_ratio"],
                       clip_norm=job["clip_norm"], batch_size=job["batch_size"], max_epochs=job["epochs"],
                       dropout=0.0, seed=job["seed"])
    family = family_for(config.kind)
    labels, tokenizer, encoder = loaded.span.labels, loaded.tokenizer, loaded.encoder
    sentences = [Sentence(s["words"], s["wojood"]) for s in job["sentences"]]
    max_length = family.max_length(config, encoder)
    split = family.encode(config, labels, tokenizer, sentences, max_length)
    model = family.build(config, encoder, labels, tokenizer)
    template = jax.eval_shape(lambda: init_params(family, model, labels, config.seed))
    shapes = [jax.tree.map(lambda x: tuple(x.shape), tree) for tree in (template, loaded.params)]
    assert shapes[0] == shapes[1], "the converted weights are not the model's tree"
    with tempfile.TemporaryDirectory() as tmp:
        run = PreparedRun(config, Path(tmp), family, labels, tokenizer, encoder, model, loaded.params, max_length,
                          {}, {"train": split, "val": split, "test": split})
        trainer = Trainer(run)
    figures = {"steps": len(traj["steps"]), "package_steps_per_epoch": len(traj["steps"]) // job["epochs"],
               "our_steps_per_epoch": trainer.steps_per_epoch, "rows": len(split.rows),
               "package_rows": len(traj["rows"]), "warmup_steps": traj["warmup_steps"]}

    # 1. the rows: ours are the package's, each epoch sees every one once
    ours = _our_rows(split)
    index = {key: i for i, key in enumerate(ours)}
    recorded = [(tuple(r["ids"]), tuple(r["starts"]), tuple(r["ends"]), tuple(r["labels"])) for r in traj["rows"]]
    unknown = [r for r in recorded if r not in index]
    per_epoch = len(traj["steps"]) // job["epochs"]
    figures["rows_unmatched"] = len(unknown)
    figures["epochs_with_other_rows"] = sum(
        collections.Counter(recorded[r] for step in traj["steps"][e * per_epoch:(e + 1) * per_epoch]
                            for r in step["rows"]) != collections.Counter(ours) for e in range(job["epochs"]))
    if unknown:
        return figures

    # 2. the steps: the recorded rows through our trainer's batch code and train step
    state = trainer.parallel.put_state(trainer.template)
    worst_loss = worst_lr = 0.0
    losses, computed = [], []
    for step in traj["steps"]:
        indices = [index[recorded[r]] for r in step["rows"]]
        length = trainer.buckets[-1]  # the longest (padding changes no number)
        batch = trainer._batch(length, indices)  # the trainer's own layout: the step's rows packed
        computed.append((int(np.asarray(batch["input_ids"]).size), len(batch["input_ids"]) < len(indices)))
        state, metrics = trainer.parallel.train_step(state, batch, trainer.dropout_key)
        loss, lr = float(metrics["loss"]), float(metrics["lr"])
        losses.append(loss)
        worst_loss = max(worst_loss, abs(loss - step["loss"]) / abs(step["loss"]))
        worst_lr = max(worst_lr, abs(lr - step["lr"]) / max(step["lr"], 1e-30) if step["lr"] else abs(lr))
    figures.update(loss_rel=worst_loss, lr_rel=worst_lr, first_loss=losses[0], last_loss=losses[-1],
                   package_last_loss=traj["steps"][-1]["loss"], tokens_computed=sum(n for n, _ in computed),
                   packed_steps=sum(packed for _, packed in computed),
                   package_tokens_computed=sum(len(step["rows"]) for step in traj["steps"]) * split.row_tokens)

    # 3. the final weights
    final = trainer.parallel.get_state(state).params
    theirs = _read_final(folder, encoder)
    worst_weight, where, moved = 0.0, "", 0.0
    start = dict(tree_flatten_with_path(loaded.params)[0])
    for path, value in tree_flatten_with_path(theirs)[0]:
        ours_leaf = np.asarray(_at(final, path), np.float64)
        diff = float(np.abs(ours_leaf - np.asarray(value, np.float64)).max())
        moved = max(moved, float(np.abs(np.asarray(value, np.float64) - np.asarray(start[path], np.float64)).max()))
        if diff > worst_weight:
            worst_weight, where = diff, keystr(path)
    figures.update(weight_abs=worst_weight, weight_worst_at=where, weight_largest_change=moved)
    return figures


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def check(figures: dict) -> list[str]:
    """What fails the contract (empty: parity holds)."""
    bad = []
    if figures["rows_unmatched"] or figures["epochs_with_other_rows"] or figures["rows"] != figures["package_rows"]:
        bad.append(f"rows differ: {figures['rows_unmatched']} recorded rows are not ours, "
                   f"{figures['epochs_with_other_rows']} epochs saw other rows ({figures['rows']} ours, "
                   f"{figures['package_rows']} the package's)")
    if figures["our_steps_per_epoch"] != figures["package_steps_per_epoch"]:
        bad.append(f"steps per epoch: ours {figures['our_steps_per_epoch']}, "
                   f"the package's {figures['package_steps_per_epoch']}")
    for key, tol in (("loss_rel", LOSS_RTOL), ("lr_rel", LR_RTOL), ("weight_abs", WEIGHT_ATOL)):
        if key in figures and not figures[key] <= tol:
            bad.append(f"{key} {figures[key]:.3g} > {tol}")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", type=Path, help="record the package's training into this folder first "
                   "(needs ARNER_SPAN_MARKER_PYTHON)")
    p.add_argument("folders", nargs="*", type=Path, help="recordings to replay (default: the committed ones)")
    args = p.parse_args(argv)
    if args.record:
        python = os.environ.get("ARNER_SPAN_MARKER_PYTHON")
        if not python:
            print("set ARNER_SPAN_MARKER_PYTHON to the python of an environment with span_marker 1.8.1 "
                  "(pip install span_marker==1.8.1 'transformers<5' torch==2.13.0)")
            return 2
        record(python, args.record)
    folders = args.folders or [(args.record or FIXTURES) / s for s in SETTINGS]
    failed = False
    for folder in folders:
        figures = replay(folder)
        bad = check(figures)
        failed |= bool(bad)
        print(json.dumps({"recording": str(folder), **figures, "failures": bad}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
