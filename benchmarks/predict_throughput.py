"""Prediction throughput (sentences per second): batched `NERTagger.predict` vs one text at a time.

    python -m benchmarks.predict_throughput --data ../shared/data/wojood_sample/test.txt --model_path RUN

The run's kept model is timed; compilation is excluded (one warm-up pass of each mode first).
"""
from __future__ import annotations

import argparse
import time

import jax

from arner_jax.data.wojood import read_wojood
from arner_jax.predict import NERTagger
from arner_jax.system.host_memory import reexec_with_huge_pages


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up: compiles every bucket shape
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model_path", required=True)
    p.add_argument("--batch_size", type=int, default=32)
    args = p.parse_args(argv)
    corpus = read_wojood(args.data)
    tagger = NERTagger.from_pretrained(args.model_path, batch_size=args.batch_size)
    texts = [" ".join(s.words) for s in corpus.sentences]
    n = len(texts)
    batched = timed(lambda: tagger.predict(texts))
    single = timed(lambda: [tagger.predict(t) for t in texts])
    print(f"{args.model_path} on {args.data} ({n} sentences, {jax.devices()[0].platform}): "
          f"batched {n / batched:.1f} sentences/s, one at a time {n / single:.1f} sentences/s "
          f"(x{single / batched:.1f})")


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
