"""Wojood scorer speed: the vectorized scorer against seqeval 1.2.2, same input, same process.

    python -m benchmarks.scorer [--sentences 3200] [--repeats 3] [--out benchmarks/results/scorer_cpu.json]

The input is a held-out-sized nested corpus built in memory: the Wojood sample's three splits
concatenated and repeated to --sentences sentences (all 21 types), and a prediction made from gold by
retagging --noise of the words at random (seed 0). `score_tags` runs with each scorer, nested and flat,
each the median of --repeats timed runs (with min and max) after one untimed run; the two scorers'
dicts must be identical. Prints the ratio and the machine (CPU model, ISA extensions, cores, versions).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path

import numpy as np

from arner_jax.data.wojood import read_wojood
from arner_jax.scoring.metrics import score_tags
from benchmarks.machine import machine

DATA = Path(os.environ.get("ARNER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data/wojood_sample"
FAST_REPEATS = 20  # the fast path takes milliseconds: more runs for a steady median


def build_input(data: Path, sentences: int, noise: float) -> tuple[list, list, list[str]]:
    """Gold word tags (sentence -> word -> tags), a perturbed prediction, and the types."""
    corpora = [read_wojood(data / f"{split}.txt") for split in ("train", "val", "test")]
    gold = [s.tags for s in islice(cycle([s for c in corpora for s in c.sentences]), sentences)]
    types = sorted({t[2:] for s in gold for w in s for t in w if t != "O"})
    tags = [f"{p}-{t}" for t in types for p in "BI"]
    rng = np.random.default_rng(0)
    pred = []
    for sentence in gold:
        words = []
        for word in sentence:
            if rng.random() >= noise:
                words.append(list(word))
                continue
            # drop the word's entities, retag it, or add a tag: boundary, type and nesting errors
            choice = rng.integers(3)
            extra = str(tags[rng.integers(len(tags))])
            words.append(["O"] if choice == 0 else [extra] if choice == 1 else
                         [t for t in word if t != "O"] + [extra])
        pred.append(words)
    return gold, pred, types


def timed(fn: Callable[[], dict], repeats: int) -> tuple[dict, dict]:
    result = fn()  # untimed: first-call costs (imports, caches) stay out of the figures
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return result, {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "n": repeats}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder with the sample's train/val/test.txt")
    p.add_argument("--sentences", type=int, default=3200)
    p.add_argument("--noise", type=float, default=0.03, help="share of words retagged in the prediction")
    p.add_argument("--repeats", type=int, default=3, help="timed seqeval runs per mode (the fast path: 20)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    gold, pred, types = build_input(args.data, args.sentences, args.noise)
    report = {"machine": machine("numpy", "seqeval"), "sentences": len(gold), "words": sum(map(len, gold)),
              "types": len(types), "noise": args.noise}
    print(json.dumps(report["machine"]))
    for mode in ("nested", "flat"):
        nested = mode == "nested"
        fast, t_fast = timed(lambda n=nested: score_tags(gold, pred, n, types, scorer="fast"), FAST_REPEATS)
        slow, t_slow = timed(lambda n=nested: score_tags(gold, pred, n, types, scorer="seqeval"), args.repeats)
        report[mode] = {"fast_seconds": t_fast, "seqeval_seconds": t_slow, "identical": fast == slow,
                        "speedup": t_slow["median"] / t_fast["median"],
                        "f1": fast["f1"], "strict_f1": fast["strict"]["f1"]}
        r = report[mode]
        print(f"{mode:6}  seqeval {t_slow['median']:8.3f} s [{t_slow['min']:.3f}, {t_slow['max']:.3f}]  "
              f"fast {t_fast['median'] * 1e3:7.2f} ms [{t_fast['min'] * 1e3:.2f}, {t_fast['max'] * 1e3:.2f}]  "
              f"{r['speedup']:7.1f}x  identical={r['identical']}  F1 {r['f1']:.4f} strict {r['strict_f1']:.4f}",
              flush=True)
    print(f"{report['sentences']} sentences, {report['words']} words, {report['types']} types; "
          f"{report['machine']['cpu']}, {report['machine']['usable_cpus']} usable CPUs")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not all(report[m]["identical"] for m in ("nested", "flat")):
        raise SystemExit("the fast scorer and seqeval disagree")
    return report


if __name__ == "__main__":
    main()
