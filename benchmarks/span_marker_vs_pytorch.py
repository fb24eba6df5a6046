"""Our span model against the PyTorch `span_marker` 1.8.1 package: epoch time and F1, same everything.

    ARNER_SPAN_MARKER_PYTHON=.sm_venv/bin/python python -m benchmarks.span_marker_vs_pytorch \\
        [--encoders small medium] [--seeds 3407 1 2] [--epochs 3] [--reseeded] \\
        [--out benchmarks/results/span_marker_vs_pytorch_cpu.json]

The package needs transformers 4.x, so it runs in an environment of its own, named by the
ARNER_SPAN_MARKER_PYTHON variable (made with `python3 -m venv .sm_venv && .sm_venv/bin/pip install
span_marker==1.8.1 transformers==4.57.6 torch==2.13.0 datasets`); without it the benchmark says so
and stops. For every encoder and seed, both sides get:
  data      the Wojood sample shipped with arner_jax as flat NER (each word's outermost tag):
            train to train, val scored after every epoch, test scored with the model of the best
            validation epoch (each side's own model selection, the same rule);
  encoder   a random BERT drawn from the seed (small: 128 hidden, 2 layers, 2 heads, FFN 512,
            WordPiece 4k; medium: 256 hidden, 4 layers, 4 heads, FFN 1024, WordPiece 8k; the tokenizer
            trained on the train split), saved with save_pretrained;
  start     the package's own initial model for that seed (its marker embeddings and classifier
            drawn by the package), saved before its first step; ours starts from that folder
            (--bert_model on a span_marker folder: its encoder, markers and classifier), so both start equal;
  settings  lr, batch size (rows), epochs, entity_max_length 12, marker_max_length 128,
            model_max_length 256, AdamW without weight decay or warmup, linear decay to 0,
            clipping at 1.0, dropout 0.1 (the package: Trainer defaults with these values).
Epoch time: the median train seconds of the epochs after the first (ours compiles in its first; the
first epoch's excess over that median is printed as its compile time). Both sides' F1 are scored by
arner_jax.scoring.metrics (seqeval default mode, flat). Ours is a `python -m arner_jax.train` run of preset
wojood_span_nested with --kind span_flat. Both sides take the same optimizer steps with the same rows
in each (span_marker's spread rows, shuffled, batch_size rows a step) and apply dropout at the same
places (benchmarks/span_marker_training_parity.py replays the package's recorded training step by
step); ours lays each step's rows into fewer rows (packed, with attention computed only where
SpanMarker's mask allows it), the package pads every row to model_max_length + 2 x marker_max_length.
Tokens: real (text and markers) and computed (with padding) per epoch on each side. Differences that
remain: the package cuts sentences at model_max_length (we window them; no sample sentence is that
long); the shuffles and dropout masks draw from different generators. How much that alone moves F1
is what --reseeded measures: the package trained twice from the same start, the second time with
another training seed (other shuffles and masks, nothing else), its F1 against the first's.
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
            "weight_decay": 0.0, "warmup_ratio": 0.0, "clip_norm": 1.0}
ENCODERS = {  # hidden, layers, heads (FFN 4 x hidden), WordPiece vocabulary
    "small": {"hidden": 128, "layers": 2, "heads": 2, "vocab": 4000},
    "medium": {"hidden": 256, "layers": 4, "heads": 4, "vocab": 8000},
}
TORCH_SIDE = Path(__file__).with_name("span_marker_torch_side.py")
RESEED = 1000  # --reseeded: the package's second training seed is the seed + this


def save_encoder(folder: Path, texts: list[str], seed: int, hidden: int = 128, layers: int = 2, heads: int = 2,
                 vocab: int = 4000) -> Path:
    """A random BERT drawn from `seed` and a WordPiece tokenizer of `texts`, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=vocab)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=512)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def outermost(sentences) -> list[dict]:
    return [{"words": s.words, "tags": [tags[0] for tags in s.tags]} for s in sentences]


def epoch_seconds(epochs: list[dict]) -> float:
    return statistics.median(e["train_seconds"] for e in epochs[1:] or epochs)


def _spread(values) -> float:
    values = list(values)
    return max(values) - min(values)


def run_package(python: str, job: dict, folder: Path) -> dict:
    (folder / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="")
    done = subprocess.run([python, str(TORCH_SIDE), str(folder / "job.json"), str(folder / "result.json")],
                          env=env, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the span_marker side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((folder / "result.json").read_text(encoding="utf-8"))


def package_f1(sentences, found_per_epoch: list) -> list[float]:
    gold = [s.tags for s in sentences]
    return [score_tags(gold, [entity_word_tags([(label, a, b, 1.0) for label, a, b in found], len(s))
                              for s, found in zip(sentences, epoch)], nested=False)["f1"]
            for epoch in found_per_epoch]


def first_best(val_f1: list[float]) -> int:
    """The index of the first epoch with the best val F1: the model our trainer keeps (test F1 is its)."""
    return max(range(len(val_f1)), key=lambda i: (val_f1[i], -i))


def one_pair(python: str, corpora: dict, paths: dict, types: list[str], encoder: str, seed: int, epochs: int,
             tmp: Path, reseeded: bool = False) -> dict:
    """Both sides on one encoder and seed; their figures. `reseeded`: the package once more from the same start
    with another training seed (its row order and dropout masks drawn afresh), to measure how far two equal
    trainings that differ only in their random streams end apart (ours and the package's differ that way)."""
    size = ENCODERS[encoder]
    folder = save_encoder(tmp / "encoder", [" ".join(s.words) for s in corpora["train"].sentences], seed, **size)
    settings = dict(SETTINGS, seed=seed, epochs=epochs)
    job = dict(settings, encoder=str(folder), initial=str(tmp / "initial"), threads=len(os.sched_getaffinity(0)),
               labels=["O"] + [f"{b}-{t}" for t in types for b in "BI"],
               **{split: outermost(corpora[split].sentences) for split in ("train", "val", "test")})
    theirs = run_package(python, job, tmp)
    control = None
    if reseeded:
        (tmp / "reseeded").mkdir()
        again = run_package(python, dict(job, train_seed=seed + RESEED, initial=str(tmp / "reseeded" / "initial")),
                            tmp / "reseeded")
        if again["initial_sha256"] != theirs["initial_sha256"]:
            raise SystemExit(f"seed {seed}: the package's reseeded run did not start from the same weights")
        val_again = package_f1(corpora["val"].sentences, [e["val_entities"] for e in again["epochs"]])
        test_again = package_f1(corpora["test"].sentences, [e["test_entities"] for e in again["epochs"]])
        chosen = first_best(val_again)
        control = {"train_seed": seed + RESEED, "same_start": True, "val_f1": val_again, "test_f1": test_again[chosen],
                   "best_epoch": chosen + 1, "epoch_seconds": epoch_seconds(again["epochs"]),
                   "epoch_seconds_all": [e["train_seconds"] for e in again["epochs"]]}
    flags = ["--kind", "span_flat", "--bert_model", job["initial"], "--lr", str(settings["lr"]), "--batch_size",
             str(settings["batch_size"]), "--weight_decay", "0", "--warmup_ratio", "0", "--clip_norm", "1.0",
             "--dropout", "0.1", "--seed", str(seed), "--marker_max_length", str(settings["marker_max_length"]),
             "--entity_max_length", str(settings["entity_max_length"]), "--max_length",
             str(settings["model_max_length"]),
             *[x for split, path in paths.items() for x in (f"--{split}_path", str(path))]]
    ours = train(REPO, "wojood_span_nested", epochs, tmp / "ours", flags)
    val = package_f1(corpora["val"].sentences, [e["val_entities"] for e in theirs["epochs"]])
    test = package_f1(corpora["test"].sentences, [e["test_entities"] for e in theirs["epochs"]])
    best = first_best(val)
    steps = theirs["epochs"][-1]["steps"] // epochs
    row_tokens = settings["model_max_length"] + 2 * settings["marker_max_length"]
    timing = ours["timing"]["epochs"]
    report = {
        "span_marker": {"epoch_seconds": epoch_seconds(theirs["epochs"]), "val_f1": val, "test_f1": test[best],
                        "best_epoch": best + 1, "epoch_seconds_all": [e["train_seconds"] for e in theirs["epochs"]],
                        "steps": theirs["epochs"][-1]["steps"], "train_loss": theirs["train_loss"],
                        "torch_threads": theirs["threads"],
                        # every row of every step padded to model_max_length + 2 x marker_max_length
                        "computed_tokens_per_epoch": steps * settings["batch_size"] * row_tokens},
        "ours": {"epoch_seconds": epoch_seconds(timing), "val_f1": [h["val_f1"] for h in ours["history"]],
                 "test_f1": ours["test"]["f1"], "best_epoch": ours["best_epoch"],
                 "epoch_seconds_all": [e["train_seconds"] for e in timing], "steps": ours["steps"],
                 "train_loss": [h["train_loss"] for h in ours["history"]],
                 "compilations": [e["compilations"] for e in timing],
                 "real_tokens_per_epoch": timing[-1]["tokens"],
                 "computed_tokens_per_epoch": timing[-1]["computed_tokens"]},
    }
    ours_side, theirs_side = report["ours"], report["span_marker"]
    theirs_side["real_tokens_per_epoch"] = ours_side["real_tokens_per_epoch"]  # the same rows on both sides
    ours_side["compile_seconds"] = timing[0]["train_seconds"] - ours_side["epoch_seconds"]
    for side in (ours_side, theirs_side):
        side["padded_share"] = 1 - side["real_tokens_per_epoch"] / side["computed_tokens_per_epoch"]
        side["us_per_computed_token"] = 1e6 * side["epoch_seconds"] / side["computed_tokens_per_epoch"]
        side["real_tokens_per_second"] = side["real_tokens_per_epoch"] / side["epoch_seconds"]
    report["speedup"] = theirs_side["epoch_seconds"] / ours_side["epoch_seconds"]
    report["val_f1_difference"] = ours_side["val_f1"][-1] - theirs_side["val_f1"][-1]
    report["test_f1_difference"] = ours_side["test_f1"] - theirs_side["test_f1"]
    if control:
        report["span_marker_reseeded"] = control
        report["reseeded_val_f1_difference"] = control["val_f1"][-1] - theirs_side["val_f1"][-1]
        report["reseeded_test_f1_difference"] = control["test_f1"] - theirs_side["test_f1"]
    return report


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--encoders", nargs="+", choices=list(ENCODERS), default=list(ENCODERS))
    p.add_argument("--seeds", nargs="+", type=int, default=[3407, 1, 2])
    p.add_argument("--out", type=Path, help="write the figures as JSON here (rewritten after every pair)")
    p.add_argument("--reseeded", action="store_true",
                   help="also train the package again from the same start with another training seed (seed + "
                        f"{RESEED}): how far apart two equal trainings end when only their random streams differ")
    args = p.parse_args(argv)
    python = os.environ.get("ARNER_SPAN_MARKER_PYTHON")
    if not python:
        print("skipped: set ARNER_SPAN_MARKER_PYTHON to the python of an environment with span_marker 1.8.1 "
              "(pip install span_marker==1.8.1 transformers==4.57.6 torch==2.13.0 datasets)")
        return None
    if os.sep in python:  # a relative path (.sm_venv/bin/python) must survive the package's own working folder
        python = os.path.abspath(python)
    report: dict = {"machine": machine("jax", "jaxlib", "flax", "torch"),
                    "settings": dict(SETTINGS, epochs=args.epochs),
                    "encoders": {name: ENCODERS[name] for name in args.encoders}, "runs": []}
    print(describe(report["machine"]), flush=True)
    paths = wojood_sample_paths()
    corpora = {split: read_wojood(path) for split, path in paths.items()}
    types = sorted({t[2:] for c in corpora.values() for s in c.sentences for tags in s.tags for t in tags[:1]
                    if t != "O"})
    for encoder in args.encoders:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="span_vs_pytorch_") as tmp:
                run = {"encoder": encoder, "seed": seed} | one_pair(python, corpora, paths, types, encoder, seed,
                                                                   args.epochs, Path(tmp), args.reseeded)
            report["runs"].append(run)
            for side in ("span_marker", "ours"):
                r = run[side]
                print(f"{encoder} seed {seed} {side:11} epoch {r['epoch_seconds']:7.2f} s "
                      f"(all {[round(x, 1) for x in r['epoch_seconds_all']]}), {r['steps']} steps, "
                      f"val F1 {[round(f, 4) for f in r['val_f1']]}, test F1 {r['test_f1']:.4f} "
                      f"(epoch {r['best_epoch']}); tokens per epoch {r['real_tokens_per_epoch']:,} real, "
                      f"{r['computed_tokens_per_epoch']:,} computed ({100 * r['padded_share']:.0f}% padding), "
                      f"{r['us_per_computed_token']:.1f} us per computed token", flush=True)
            print(f"{encoder} seed {seed}: ours {run['speedup']:.2f}x faster per epoch (compile "
                  f"{run['ours']['compile_seconds']:.0f} s in the first); val F1 after {args.epochs} epochs "
                  f"{run['val_f1_difference']:+.4f}, test F1 {run['test_f1_difference']:+.4f} (ours - span_marker)",
                  flush=True)
            if "span_marker_reseeded" in run:
                r = run["span_marker_reseeded"]
                print(f"{encoder} seed {seed} span_marker again from the same start, training seed {r['train_seed']}: "
                      f"epoch {r['epoch_seconds']:.2f} s, val F1 {[round(f, 4) for f in r['val_f1']]}, test F1 "
                      f"{r['test_f1']:.4f} (epoch {r['best_epoch']}); val F1 after {args.epochs} epochs "
                      f"{run['reseeded_val_f1_difference']:+.4f}, test F1 {run['reseeded_test_f1_difference']:+.4f} "
                      "(span_marker reseeded - span_marker)", flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=1) + "\n")
    for encoder in args.encoders:
        runs = [r for r in report["runs"] if r["encoder"] == encoder]
        summary = {"speedup_min": min(r["speedup"] for r in runs),
                   "speedup_median": statistics.median(r["speedup"] for r in runs),
                   "val_f1_difference_max": max(abs(r["val_f1_difference"]) for r in runs),
                   "test_f1_difference_max": max(abs(r["test_f1_difference"]) for r in runs),
                   "mean_val_f1": {side: statistics.mean(r[side]["val_f1"][-1] for r in runs)
                                   for side in ("span_marker", "ours")},
                   "mean_test_f1": {side: statistics.mean(r[side]["test_f1"] for r in runs)
                                    for side in ("span_marker", "ours")},
                   # how far one side's own seeds lie apart: the scale of seed noise the differences sit in
                   "val_f1_seed_range": {side: _spread(r[side]["val_f1"][-1] for r in runs)
                                         for side in ("span_marker", "ours")},
                   "test_f1_seed_range": {side: _spread(r[side]["test_f1"] for r in runs)
                                          for side in ("span_marker", "ours")}}
        if all("span_marker_reseeded" in r for r in runs):
            summary["reseeded_val_f1_difference_max"] = max(abs(r["reseeded_val_f1_difference"]) for r in runs)
            summary["reseeded_test_f1_difference_max"] = max(abs(r["reseeded_test_f1_difference"]) for r in runs)
        report.setdefault("summary", {})[encoder] = summary
        print(f"{encoder}: {len(runs)} seeds, speedup min {summary['speedup_min']:.2f}x median "
              f"{summary['speedup_median']:.2f}x; largest |F1 difference| val {summary['val_f1_difference_max']:.4f} "
              f"test {summary['test_f1_difference_max']:.4f}; mean val F1 ours {summary['mean_val_f1']['ours']:.4f} "
              f"span_marker {summary['mean_val_f1']['span_marker']:.4f}, mean test F1 ours "
              f"{summary['mean_test_f1']['ours']:.4f} span_marker {summary['mean_test_f1']['span_marker']:.4f}"
              + (f"; span_marker's own seeds span val {summary['val_f1_seed_range']['span_marker']:.4f} test "
                 f"{summary['test_f1_seed_range']['span_marker']:.4f}, ours val "
                 f"{summary['val_f1_seed_range']['ours']:.4f} test {summary['test_f1_seed_range']['ours']:.4f}"
                 if len(runs) > 1 else ""))
        if "reseeded_val_f1_difference_max" in summary:
            print(f"{encoder}: span_marker against itself from the same start with another training seed: largest "
                  f"|F1 difference| val {summary['reseeded_val_f1_difference_max']:.4f} test "
                  f"{summary['reseeded_test_f1_difference_max']:.4f}")
    report["machine_after"] = machine()
    print(f"load average at the end {report['machine_after']['load_average'][0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
