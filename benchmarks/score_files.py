"""`python -m arner_jax.score` end to end, files to figures: against a plain reader + seqeval 1.2.2, and the floor.

    python -m benchmarks.score_files [--sentences 3200] [--copies 10] [--out benchmarks/results/score_files_cpu.json]

The input: a held-out-sized nested gold file (the Wojood sample's three splits concatenated and repeated
to --sentences sentences, as in benchmarks.scorer) and a prediction file made from it by retagging
--noise of the words (seed 0), both in Wojood layout, written --copies times (distinct files, so that
each copy is read from its own pages). Per copy and mode (nested: type layers pooled; flat: each word's
first tag), three timings in this process, interleaved:
  ours      `arner_jax.score.main([--gold, --pred, (--nested)])`, the command's own code path (read both
            files, check that they line up, score lenient and strict, per-type tables, print the JSON),
            stdout captured;
  baseline  the Wojood reference's way: a plain Python reader (the reference's `conll_to_segments`:
            read, splitlines, split), the sequences its `compute_nested_metrics` /
            `compute_single_label_metrics` build (nested: one copy of the corpus per type, a word's first
            tag of that type or O), and its seqeval 1.2.2 calls (`classification_report`, `f1_score`
            micro/macro/weighted, `precision_score`, `recall_score`, `accuracy_score`, scheme IOB2);
  floor     reading the two files and splitting them into lines (`read_text().splitlines()`): what any
            reader pays.
Imports and start-up are outside these timings; the command's start-up is measured apart (`python -m
arner_jax.score --help` in a subprocess, beside `python -c pass`). Ours and the baseline must give the same
lenient micro precision, recall and F1 (bit for bit). Prints and records medians (with min and max) per
copy, the ratios baseline/ours and ours/floor, and the machine (CPU model, ISA, cores, versions).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path

from arner_jax.data.wojood import Sentence, format_wojood, read_wojood
from arner_jax.score import main as score_main
from benchmarks.machine import describe, machine
from benchmarks.scorer import DATA, build_input

REPO = Path(__file__).resolve().parents[1]


def write_files(data: Path, sentences: int, noise: float, folder: Path, copies: int) -> list[tuple[Path, Path]]:
    """`copies` pairs of (gold, predicted) Wojood files of `sentences` sentences each."""
    gold_tags, pred_tags, _ = build_input(data, sentences, noise)
    corpora = [read_wojood(data / f"{split}.txt") for split in ("train", "val", "test")]
    gold = list(islice(cycle([s for c in corpora for s in c.sentences]), sentences))  # build_input's order
    assert [s.tags for s in gold] == gold_tags
    texts = format_wojood(gold), format_wojood([Sentence(s.words, p) for s, p in zip(gold, pred_tags)])
    pairs = []
    for k in range(copies):
        pair = folder / f"gold_{k}.txt", folder / f"pred_{k}.txt"
        for path, text in zip(pair, texts):
            path.write_text(text, encoding="utf-8")
        pairs.append(pair)
    return pairs


# ----------------------------------------------------------------------------- the three sides
def ours(gold: Path, pred: Path, nested: bool) -> dict:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = score_main(["--gold", str(gold), "--pred", str(pred)] + (["--nested"] if nested else []))
    if status:
        raise SystemExit(f"arner_jax.score exited {status}")
    return json.loads(out.getvalue())


def plain_read(path: Path) -> list[list[tuple[str, list[str]]]]:
    """The reference's `conll_to_segments`: segments of (word, tags)."""
    segments, segment = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh.read().splitlines():
            if not line.strip():
                if segment:
                    segments.append(segment)
                segment = []
            else:
                parts = line.split()
                segment.append((parts[0], parts[1:]))
    if segment:
        segments.append(segment)
    return segments


def baseline(gold: Path, pred: Path, nested: bool) -> dict:
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    g, p = plain_read(gold), plain_read(pred)
    if nested:
        types = sorted({t[2:] for s in g + p for _, tags in s for t in tags if t != "O"})
        y, y_hat = ([[next((t for t in tags if t[2:] == x), "O") for _, tags in s] for x in types for s in side]
                    for side in (g, p))
    else:
        y, y_hat = ([[tags[0] for _, tags in s] for s in side] for side in (g, p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined macro averages of types without entities
        classification_report(y, y_hat, scheme=IOB2, digits=4)
        return {"micro_f1": f1_score(y, y_hat, average="micro", scheme=IOB2),
                "macro_f1": f1_score(y, y_hat, average="macro", scheme=IOB2),
                "weights_f1": f1_score(y, y_hat, average="weighted", scheme=IOB2),
                "precision": precision_score(y, y_hat, scheme=IOB2), "recall": recall_score(y, y_hat, scheme=IOB2),
                "accuracy": accuracy_score(y, y_hat)}


def floor(gold: Path, pred: Path, nested: bool) -> dict:
    return {"lines": sum(len(path.read_text(encoding="utf-8").splitlines()) for path in (gold, pred))}


def seconds(fn: Callable[[], dict]) -> tuple[dict, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def summary(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)}


def startup(repeats: int = 5) -> dict:
    """Seconds of `python -m arner_jax.score --help` and of `python -c pass`, subprocesses, medians."""
    out = {}
    for name, command in (("score_help", ["-m", "arner_jax.score", "--help"]), ("python", ["-c", "pass"])):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *command], cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        out[name] = summary(times)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder with the sample's train/val/test.txt")
    p.add_argument("--sentences", type=int, default=3200)
    p.add_argument("--noise", type=float, default=0.03, help="share of words retagged in the prediction")
    p.add_argument("--copies", type=int, default=10, help="file pairs, each timed once per side and mode")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    report = {"machine": machine("numpy", "seqeval"), "sentences": args.sentences, "noise": args.noise,
              "copies": args.copies, "startup_seconds": startup()}
    print(describe(report["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = write_files(args.data, args.sentences, args.noise, Path(tmp), args.copies)
        report["words"] = sum(len(s) for s in read_wojood(pairs[0][0]).sentences)
        report["bytes_per_copy"] = sum(path.stat().st_size for path in pairs[0])
        for mode in ("nested", "flat"):
            nested = mode == "nested"
            for fn in (ours, baseline, floor):  # untimed: first-call costs (imports, caches) stay out
                fn(*pairs[0], nested)
            times: dict[str, list[float]] = {"ours": [], "baseline": [], "floor": []}
            identical = True
            for gold, pred in pairs:
                got, t = seconds(lambda g=gold, q=pred, n=nested: ours(g, q, n))
                times["ours"].append(t)
                ref, t = seconds(lambda g=gold, q=pred, n=nested: baseline(g, q, n))
                times["baseline"].append(t)
                times["floor"].append(seconds(lambda g=gold, q=pred, n=nested: floor(g, q, n))[1])
                identical &= (got["precision"], got["recall"], got["f1"]) == (ref["precision"], ref["recall"],
                                                                             ref["micro_f1"])
            r = report[mode] = {side: summary(t) for side, t in times.items()}
            r.update(identical=identical, f1=got["f1"], strict_f1=got["strict"]["f1"],
                     speedup_vs_baseline=r["baseline"]["median"] / r["ours"]["median"],
                     ours_over_floor=r["ours"]["median"] / r["floor"]["median"])
            print(f"{mode:6}  baseline {r['baseline']['median']:7.3f} s  ours {r['ours']['median'] * 1e3:6.1f} ms "
                  f"[{r['ours']['min'] * 1e3:.1f}, {r['ours']['max'] * 1e3:.1f}]  floor "
                  f"{r['floor']['median'] * 1e3:5.1f} ms  {r['speedup_vs_baseline']:6.1f}x faster than the "
                  f"baseline, {r['ours_over_floor']:.1f}x the floor  identical={identical}  F1 {r['f1']:.4f}",
                  flush=True)
    s = report["startup_seconds"]
    print(f"per copy: {args.sentences} sentences, {report['words']} words, {report['bytes_per_copy']} bytes "
          f"(two files); start-up (not in the figures): `python -m arner_jax.score --help` "
          f"{s['score_help']['median'] * 1e3:.0f} ms, `python -c pass` {s['python']['median'] * 1e3:.0f} ms")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not all(report[m]["identical"] for m in ("nested", "flat")):
        raise SystemExit("arner_jax.score and seqeval disagree")
    return report


if __name__ == "__main__":
    main()
