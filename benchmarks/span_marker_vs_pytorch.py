"""Our span model against the PyTorch `span_marker` 1.8.1 package: epoch time and F1, same everything.

    ARNER_SPAN_MARKER_PYTHON=.sm_venv/bin/python python -m benchmarks.span_marker_vs_pytorch \\
        [--epochs 4] [--out benchmarks/results/span_marker_vs_pytorch_cpu.json]

The package needs transformers 4.x, so it runs in an environment of its own, named by the
ARNER_SPAN_MARKER_PYTHON variable (made with `python3 -m venv .sm_venv && .sm_venv/bin/pip install
span_marker==1.8.1 transformers==4.57.6 torch==2.13.0 datasets`); without it the benchmark says so
and stops. Both sides get:
  data      the Wojood sample shipped with arner_jax as flat NER (each word's outermost tag):
            train to train, val to score after every epoch;
  encoder   one random BERT (128 hidden, 2 layers, 2 heads, FFN 512) with a WordPiece tokenizer
            trained on the train split, saved once with save_pretrained; both load that folder;
  settings  lr, batch size (rows), epochs, entity_max_length 12, marker_max_length 128,
            model_max_length 256, AdamW without weight decay or warmup, linear decay to 0,
            clipping at 1.0, dropout 0.1 (the package: Trainer defaults with these values).
Epoch time: the median train seconds of the epochs after the first (ours compiles in its first);
both sides' validation F1 after every epoch are scored by arner_jax.scoring.metrics (seqeval default mode,
flat). Ours is a `python -m arner_jax.train` run of preset wojood_span_nested with --kind span_flat.
Both sides build the same rows and take the same optimizer steps (span_marker's spread rows, shuffled,
batch_size rows a step) and apply dropout at the same two places: benchmarks/span_marker_training_parity.py
replays the package's recorded training step by step. Known differences that remain: the package cuts
sentences at model_max_length (we window them; no sample sentence is that long); the shuffles draw from
different generators; ours pads a batch to a fitted length, the package to model_max_length +
2 x marker_max_length.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from arner_jax.data.entities import entity_word_tags
from arner_jax.data.sample import wojood_sample_paths
from arner_jax.data.wojood import read_wojood
from arner_jax.encoders import train_wordpiece_tokenizer
from arner_jax.scoring.metrics import score_tags
from arner_jax.system.host_memory import reexec_with_huge_pages
from benchmarks.machine import describe, machine
from benchmarks.span_epoch import REPO, train

SETTINGS = {"lr": 5e-4, "batch_size": 8, "entity_max_length": 12, "marker_max_length": 128, "model_max_length": 256,
            "weight_decay": 0.0, "warmup_ratio": 0.0, "clip_norm": 1.0, "seed": 3407}
TORCH_SIDE = Path(__file__).with_name("span_marker_torch_side.py")


def save_encoder(folder: Path, texts: list[str], seed: int) -> Path:
    """A random 128 x 2 BERT and a WordPiece tokenizer of `texts`, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=4000)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=512)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def outermost(sentences) -> list[dict]:
    return [{"words": s.words, "tags": [tags[0] for tags in s.tags]} for s in sentences]


def epoch_seconds(epochs: list[dict]) -> float:
    return statistics.median(e["train_seconds"] for e in epochs[1:] or epochs)


def run_package(python: str, job: dict, folder: Path) -> dict:
    (folder / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="")
    done = subprocess.run([python, str(TORCH_SIDE), str(folder / "job.json"), str(folder / "result.json")],
                          env=env, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the span_marker side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((folder / "result.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=SETTINGS["lr"])
    p.add_argument("--batch_size", type=int, default=SETTINGS["batch_size"])
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    python = os.environ.get("ARNER_SPAN_MARKER_PYTHON")
    if not python:
        print("skipped: set ARNER_SPAN_MARKER_PYTHON to the python of an environment with span_marker 1.8.1 "
              "(pip install span_marker==1.8.1 transformers==4.57.6 torch==2.13.0 datasets)")
        return None
    if os.sep in python:  # a relative path (.sm_venv/bin/python) must survive the package's own working folder
        python = os.path.abspath(python)
    settings = dict(SETTINGS, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs)
    report: dict = {"machine": machine("jax", "jaxlib", "flax", "torch"), "settings": settings}
    print(describe(report["machine"]), flush=True)
    paths = wojood_sample_paths()
    corpora = {split: read_wojood(path) for split, path in paths.items()}
    types = sorted({t[2:] for c in corpora.values() for s in c.sentences for tags in s.tags for t in tags[:1]
                    if t != "O"})
    with tempfile.TemporaryDirectory(prefix="span_vs_pytorch_") as tmp:
        tmp = Path(tmp)
        encoder = save_encoder(tmp / "encoder", [" ".join(s.words) for s in corpora["train"].sentences],
                               settings["seed"])
        job = dict(settings, encoder=str(encoder), threads=len(os.sched_getaffinity(0)),
                   labels=["O"] + [f"{b}-{t}" for t in types for b in "BI"],
                   train=outermost(corpora["train"].sentences), val=outermost(corpora["val"].sentences))
        theirs = run_package(python, job, tmp)
        flags = ["--kind", "span_flat", "--bert_model", str(encoder), "--lr", str(settings["lr"]), "--batch_size",
                 str(settings["batch_size"]), "--weight_decay", "0", "--warmup_ratio", "0", "--clip_norm", "1.0",
                 "--dropout", "0.1", "--seed", str(settings["seed"]), "--marker_max_length",
                 str(settings["marker_max_length"]), "--entity_max_length", str(settings["entity_max_length"]),
                 "--max_length", str(settings["model_max_length"]),
                 *[x for split, path in paths.items() for x in (f"--{split}_path", str(path))]]
        ours = train(REPO, "wojood_span_nested", args.epochs, tmp / "ours", flags)
    val = corpora["val"].sentences
    gold = [s.tags for s in val]
    their_f1 = [score_tags(gold, [entity_word_tags([(label, a, b, 1.0) for label, a, b in found], len(s))
                                  for s, found in zip(val, epoch["val_entities"])], nested=False)["f1"]
                for epoch in theirs["epochs"]]
    report["span_marker"] = {"epoch_seconds": epoch_seconds(theirs["epochs"]), "val_f1": their_f1,
                             "epoch_seconds_all": [e["train_seconds"] for e in theirs["epochs"]],
                             "steps": theirs["epochs"][-1]["steps"], "train_loss": theirs["train_loss"],
                             "torch_threads": theirs["threads"]}
    timing = ours["timing"]["epochs"]
    report["ours"] = {"epoch_seconds": epoch_seconds(timing), "val_f1": [h["val_f1"] for h in ours["history"]],
                      "epoch_seconds_all": [e["train_seconds"] for e in timing], "steps": ours["steps"],
                      "train_loss": [h["train_loss"] for h in ours["history"]],
                      "compilations": [e["compilations"] for e in timing]}
    report["speedup"] = report["span_marker"]["epoch_seconds"] / report["ours"]["epoch_seconds"]
    report["f1_difference"] = report["ours"]["val_f1"][-1] - report["span_marker"]["val_f1"][-1]
    report["machine_after"] = machine()
    for side in ("span_marker", "ours"):
        r = report[side]
        print(f"{side:11} epoch {r['epoch_seconds']:7.2f} s (all {[round(s, 1) for s in r['epoch_seconds_all']]}), "
              f"{r['steps']} steps, val F1 per epoch {[round(f, 4) for f in r['val_f1']]}", flush=True)
    print(f"ours {report['speedup']:.2f}x faster per epoch; val F1 after {args.epochs} epochs: ours - span_marker = "
          f"{report['f1_difference']:+.4f}; load average at the end {report['machine_after']['load_average'][0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
