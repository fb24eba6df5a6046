"""Seconds to trace, lower and compile the tagger's train step: `python -m benchmarks.compile_time`.

Owns: the compile-time figure alone, without data or a tokenizer, from abstract shapes, so that
two versions of the library can be compared with the same script (the step, the model and the
optimizer are the library's: nested tagger, 21 heads x 3 classes, unified loss, AdamW with
clipping, ShardMapParallel on one device). Each repetition builds a fresh jit wrapper, so nothing
is cached; the minimum over repetitions is the least disturbed figure on a shared machine.

    python -m benchmarks.compile_time --size base --lengths 64 240 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from arner_jax.encoders import EncoderConfig
from arner_jax.system.host_memory import reexec_with_huge_pages
from benchmarks.steps import tagger_train_step

SIZES = {"small": (128, 2, 2), "base": (768, 12, 12)}  # hidden, layers, heads (FFN 4 x hidden), as benchmarks.run
VOCAB, BATCH = 8000, 16


def compile_once(size: str, length: int) -> dict[str, float]:
    hidden, layers, heads = SIZES[size]
    config = EncoderConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=4 * hidden)
    step, args = tagger_train_step(config, BATCH, length)
    start = time.perf_counter()
    lowered = step.lower(*args)
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {"lower_seconds": lowered_at - start, "compile_seconds": done - lowered_at, "total_seconds": done - start}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 240])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    report = {"size": args.size, "jax": jax.__version__, "lengths": {}}
    for length in args.lengths:
        runs = [compile_once(args.size, length) for _ in range(args.repeats)]
        totals = [r["total_seconds"] for r in runs]
        report["lengths"][length] = {"runs": runs, "min_total": min(totals), "median_total": statistics.median(totals)}
        print(f"{args.size} train step, batch {BATCH} x {length}: trace+lower+compile min {min(totals):.2f} s, "
              f"median {statistics.median(totals):.2f} s (lower {min(r['lower_seconds'] for r in runs):.2f} s)",
              flush=True)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
