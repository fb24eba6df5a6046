"""What a span-model epoch costs: against the nested tagger, and against the span model before packing.

    python -m benchmarks.span_epoch [--before 58a1a66] [--epochs 3] [--out benchmarks/results/span_epoch_cpu.json]

Three training runs on the Wojood sample shipped with arner_jax, each `python -m arner_jax.train` in a
process of its own, all with the from-scratch encoder (128 hidden, 2 layers, 2 heads; the WordPiece
tokenizer of the train split, the same one every time), seed 3407 and the presets' settings:
  span_after   preset wojood_span_nested (span_nested: batch 8, marker_max_length 128,
               entity_max_length 12, max_length 256) with this checkout's library;
  span_before  the same preset with the library of commit --before (`git archive` into a temporary
               folder; by default the commit before span rows were packed);
  tagger       preset wojood_nested (the nested tagger, batch 16).
A run's epoch time is the median of the train seconds of its epochs after the first (the first one
compiles). With --repeats R the three runs are made R times, interleaved, and each keeps its fastest
repeat (the machine may be shared). Prints the machine line, each run's epoch time, compilations per
epoch, real tokens per second and validation F1 after every epoch, and the ratios. Span models
compute two encoder tokens per candidate span, so the tagger's epoch is a floor they cannot reach:
the tokens each run trains on are printed beside the times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

from arner_jax.system.host_memory import reexec_with_huge_pages
from benchmarks.machine import describe, machine

REPO = Path(__file__).resolve().parents[1]
BEFORE = "58a1a66"  # the last commit with fixed marker_max_length slots per row
RUNS = {"span_after": "wojood_span_nested", "span_before": "wojood_span_nested", "tagger": "wojood_nested"}


def library_at(commit: str, folder: Path) -> Path:
    """The `arner_jax` package of `commit`, extracted under `folder` (the returned import root)."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "arner_jax"], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def train(root: Path, preset: str, epochs: int, out: Path, flags: Sequence[str] = ()) -> dict:
    """One run of `preset` (with `flags`) with the library under `root`; its metrics.json."""
    command = [sys.executable, "-m", "arner_jax.train", "--preset", preset, "--output_path", str(out),
               "--max_epochs", str(epochs), "--patience", str(epochs), "--no_compilation_cache",
               "--log_every", "1000000", *flags]
    env = dict(os.environ, PYTHONPATH=str(root))  # the library under test, not an installed one
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{preset} with {root}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads((out / "metrics.json").read_text())


def summary(metrics: dict) -> dict:
    epochs = metrics["timing"]["epochs"]
    later = epochs[1:] or epochs
    seconds = statistics.median(e["train_seconds"] for e in later)
    tokens_per_second = statistics.median(e["tokens_per_second"] for e in later)
    return {"epoch_seconds": seconds, "tokens_per_epoch": round(seconds * tokens_per_second),
            "epoch_seconds_all": [round(e["train_seconds"], 2) for e in epochs],
            "compilations": [e["compilations"] for e in epochs],
            "tokens_per_second": tokens_per_second,
            "val_f1": [round(h["val_f1"], 4) for h in metrics["history"]], "steps": metrics["steps"],
            "test_f1": metrics["test"]["f1"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=BEFORE, help="commit whose library is the 'before' span run")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (at least 2: the first compiles)")
    p.add_argument("--repeats", type=int, default=1, help="times each run is made (interleaved); the fastest kept")
    p.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    report: dict = {"machine": machine("jax", "jaxlib", "flax", "numpy"), "before": args.before,
                    "epochs": args.epochs, "python": sys.version.split()[0]}
    print(describe(report["machine"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="span_epoch_") as tmp:
        roots = {"span_after": REPO, "tagger": REPO, "span_before": library_at(args.before, Path(tmp) / "before")}
        runs: dict[str, list[dict]] = {name: [] for name in args.only}
        for repeat in range(args.repeats):
            for name in args.only:
                metrics = train(roots[name], RUNS[name], args.epochs, Path(tmp) / f"{name}_{repeat}")
                runs[name].append(summary(metrics))
                s = runs[name][-1]
                print(f"{name:11} epoch {s['epoch_seconds']:6.2f} s (all: {s['epoch_seconds_all']}), "
                      f"compilations {s['compilations']}, {s['tokens_per_epoch']:,} real tokens "
                      f"at {s['tokens_per_second']:,.0f}/s, "
                      f"{s['steps']} steps, val F1 {s['val_f1']}, test F1 {s['test_f1']:.4f}", flush=True)
    for name, repeats in runs.items():
        report[name] = min(repeats, key=lambda s: s["epoch_seconds"]) | {"repeats": repeats}
    report["machine_after"] = machine()
    seconds = {name: report[name]["epoch_seconds"] for name in runs}
    ratios = {"span_before / span_after": ("span_before", "span_after"),
              "span_after / tagger": ("span_after", "tagger"), "span_before / tagger": ("span_before", "tagger")}
    report["ratios"] = {label: seconds[a] / seconds[b] for label, (a, b) in ratios.items()
                        if a in seconds and b in seconds}
    for label, value in report["ratios"].items():
        print(f"{label}: {value:.2f}x")
    print(f"load average at the end {report['machine_after']['load_average'][0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
