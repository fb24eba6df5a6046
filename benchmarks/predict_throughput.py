"""Prediction throughput (sentences per second): batched `NERTagger.predict` vs one text at a time.

    python -m benchmarks.predict_throughput --data ../shared/data/wojood_sample/test.txt \\
        [--model_path RUN] [--encoder small|base]

With --model_path the run's kept model is timed; otherwise a random nested tagger is built with a
small (128 hidden, 2 layers) or a bert-base-sized (768 hidden, 12 layers) encoder and a WordPiece
tokenizer trained on the file. Compilation is excluded (one warm-up pass of each mode first).
"""
from __future__ import annotations

import argparse
import time

import jax

from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import read_wojood


def random_tagger(corpus, encoder: str):
    from arner_jax.encoders import small_bert_config, train_wordpiece_tokenizer
    from arner_jax.predict import NERTagger
    from arner_jax.train.assemble import LoadedRun, build_model, init_params
    from arner_jax.train.config import RunConfig

    tok = train_wordpiece_tokenizer([" ".join(s.words) for s in corpus.sentences], vocab_size=4000)
    size = {"small": (128, 2, 2), "base": (768, 12, 12)}[encoder]
    enc = small_bert_config(len(tok), *size)
    vocab = LabelVocab.from_corpus(corpus)
    model = build_model("nested", enc, vocab, 0.1, "float32")
    run = LoadedRun(None, RunConfig(), "nested", tok, vocab, enc, model, jax.device_get(init_params(model, 0)), 512)
    return NERTagger(run)


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up: compiles every bucket shape
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model_path")
    p.add_argument("--encoder", choices=("small", "base"), default="small")
    p.add_argument("--batch_size", type=int, default=32)
    args = p.parse_args(argv)
    corpus = read_wojood(args.data)
    if args.model_path:
        from arner_jax.predict import NERTagger

        tagger = NERTagger.from_pretrained(args.model_path, batch_size=args.batch_size)
        name = args.model_path
    else:
        tagger = random_tagger(corpus, args.encoder)
        tagger.batch_size = args.batch_size
        name = f"random {args.encoder} encoder"
    texts = [" ".join(s.words) for s in corpus.sentences]
    n = len(texts)
    batched = timed(lambda: tagger.predict(texts))
    single = timed(lambda: [tagger.predict(t) for t in texts])
    print(f"{name} on {args.data} ({n} sentences, {jax.devices()[0].platform}): "
          f"batched {n / batched:.1f} sentences/s, one at a time {n / single:.1f} sentences/s "
          f"(x{single / batched:.1f})")


if __name__ == "__main__":
    main()
