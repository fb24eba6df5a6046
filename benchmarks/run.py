"""Speed against PyTorch, same process, same machine: `python -m benchmarks.run`.

    python -m benchmarks.run --size base --repeats 3 --out benchmarks/results_base.json
    python -m benchmarks.run --size small --only epoch

Figures (each the median of --repeats timed repetitions after warm-up, with min and max):
  train_step  nested tagger train-step throughput (words/s, subword tokens/s), batch 16, on the
              first --steps batches of an epoch of the Wojood sample (bucket shapes), the same
              padded batches for ours and PyTorch eager (and torch.compile with --torch_compile)
  epoch       one epoch of the sample's train split: ours (buckets) vs PyTorch the reference's way
              (random order, padded to the longest in each batch)
  inference   sentences/s on the test split: ours (buckets, jit) vs PyTorch (no_grad, padded batches)
  compile     seconds to compile the train and eval steps, distinct shapes per epoch
  flops       train-step matmul FLOP/s (XLA's cost analysis) as a share of the dense float32
              matmul rate measured here
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax.training.train_state import TrainState

from arner_jax.data.align import encode_sentences
from arner_jax.data.batching import collate, eval_batches, fit_buckets, predict_buckets, train_batches
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import read_wojood
from arner_jax.encoders import small_bert_config, train_wordpiece_tokenizer
from arner_jax.losses import LossConfig
from arner_jax.tagger import Tagger, class_mask
from arner_jax.train.optim import OptimConfig, make_optimizer
from arner_jax.train.parallel import PmapParallel, ShardMapParallel, tagger_bodies
from arner_jax.train.runtime import CompileCounter
from benchmarks import torch_reference as ref
from benchmarks.steps import train_step_flops

SIZES = {"small": (128, 2, 2), "base": (768, 12, 12)}  # hidden, layers, heads (FFN = 4 x hidden)
BATCH = 16


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


class Setup:
    def __init__(self, data_dir: Path, size: str):
        self.train = read_wojood(data_dir / "train.txt")
        self.test = read_wojood(data_dir / "test.txt")
        self.tok = train_wordpiece_tokenizer([" ".join(s.words) for s in self.train.sentences], vocab_size=8000)
        self.vocab = LabelVocab.from_corpus(self.train)
        self.windows, _ = encode_sentences(self.train.sentences, self.tok, self.vocab, "per_type", 512)
        self.test_windows, _ = encode_sentences(self.test.sentences, self.tok, self.vocab, "per_type", 512)
        self.pad = int(self.tok.pad_token_id)
        self.buckets = fit_buckets([len(w) for w in self.windows], BATCH, 512)  # as the trainer (TaggerTask)
        hidden, layers, heads = SIZES[size]
        self.enc = small_bert_config(len(self.tok), hidden, layers, heads)
        self.T = self.vocab.num_types
        self.model = Tagger(self.enc, self.T, 3)
        self.params = jax.device_get(self.model.init(jax.random.PRNGKey(0), np.zeros((1, 8), np.int32))["params"])
        self.bodies = tagger_bodies(self.model.apply, "nested", class_mask("nested", self.vocab), LossConfig())
        from transformers import BertConfig

        torch.manual_seed(0)
        self.torch_model = ref.TorchNestedTagger(BertConfig(
            vocab_size=len(self.tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=4 * hidden, max_position_embeddings=512), self.T)

    def plan(self, epoch: int = 0):
        """The trainer's batches of an epoch: fitted length buckets, shuffled from (seed, epoch)."""
        return train_batches(self.windows, BATCH, 512, 3407, epoch, self.pad, self.buckets)

    def jax_state(self, parallel):
        tx = make_optimizer(OptimConfig(lr=2e-5), 1000)
        return parallel.put_state(TrainState.create(apply_fn=self.model.apply, params=self.params, tx=tx))

    def torch_batch(self, indices, windows=None, length=None):
        """The reference's padding (to the longest window of the batch), or to `length` rows x tokens."""
        windows = windows or self.windows
        rows = BATCH if length else len(indices)
        length = length or max(len(windows[i]) for i in indices)
        b = collate(windows, indices, rows, length, self.pad)
        return {"input_ids": torch.tensor(b["input_ids"], dtype=torch.long),
                "attention_mask": torch.tensor(b["attention_mask"]),
                "labels": torch.tensor(b["labels"], dtype=torch.long),
                "label_mask": torch.tensor(b["label_mask"] > 0)}


def bench_train_step(s: Setup, repeats: int, steps: int, torch_compile: bool) -> dict:
    # The first batches of an epoch's plan: the sample's length distribution, in bucket shapes.
    # Both frameworks get exactly these padded batches (the epoch figure measures batching itself).
    plan = s.plan()[:steps]
    ours = [collate(s.windows, idx, BATCH, length, s.pad) for length, idx in plan]
    words = sum(int(b["label_mask"].sum()) for b in ours)
    tokens = sum(int(b["attention_mask"].sum()) for b in ours)
    par = PmapParallel(s.bodies, jax.local_devices()[:1])
    state = s.jax_state(par)
    key = jax.random.PRNGKey(0)

    def run_ours():
        nonlocal state
        for b in ours:
            state, m = par.train_step(state, b, key)
        jax.block_until_ready(m["loss"])

    run_ours()  # warm-up: compiles every bucket used
    t_ours = timed(run_ours, repeats)
    result = {"words": words, "tokens": tokens, "steps": steps, "ours_seconds": stats(t_ours)}
    variants = [("torch_eager", s.torch_model)]
    if torch_compile:
        variants.append(("torch_compile", torch.compile(s.torch_model)))
    for name, model in variants:
        opt, sched = ref.make_optimizer(s.torch_model)
        tb = [s.torch_batch(idx, length=length) for length, idx in plan]
        model.train()

        def run_torch():
            for b in tb:
                ref.train_step(model, opt, sched, b)

        try:
            run_torch()
            result[f"{name}_seconds"] = stats(timed(run_torch, repeats))
        except Exception as err:  # noqa: BLE001 - torch.compile may be unavailable here
            result[f"{name}_error"] = f"{type(err).__name__}: {err}"[:300]
    for key_ in [k for k in result if k.endswith("_seconds")]:
        med = result[key_]["median"]
        result[key_.replace("_seconds", "_words_per_s")] = words / med
        result[key_.replace("_seconds", "_tokens_per_s")] = tokens / med
    result["speedup_vs_eager"] = result["torch_eager_seconds"]["median"] / result["ours_seconds"]["median"]
    return result


def bench_epoch(s: Setup, repeats: int) -> dict:
    par = PmapParallel(s.bodies, jax.local_devices()[:1])
    state = s.jax_state(par)
    key = jax.random.PRNGKey(0)
    plan = s.plan()

    def run_ours():
        nonlocal state
        m = None
        for length, idx in plan:  # the trainer's loop body: collate on the host, step on the device
            state, m = par.train_step(state, collate(s.windows, idx, BATCH, length, s.pad), key)
        jax.block_until_ready(m["loss"])

    with CompileCounter() as first:
        run_ours()
    with CompileCounter() as second:
        t_ours = timed(run_ours, repeats)
    opt, sched = ref.make_optimizer(s.torch_model)
    s.torch_model.train()
    rng = np.random.default_rng(0)

    def run_torch():
        order = rng.permutation(len(s.windows))
        for i in range(0, len(order), BATCH):
            ref.train_step(s.torch_model, opt, sched, s.torch_batch(list(order[i:i + BATCH])))

    t_torch = timed(run_torch, repeats)
    return {"windows": len(s.windows), "batches": len(plan), "ours_seconds": stats(t_ours),
            "torch_reference_seconds": stats(t_torch),
            "speedup": statistics.median(t_torch) / statistics.median(t_ours),
            "ours_shapes": len({length for length, _ in plan}), "compilations_first_epoch": first.count,
            "compilations_later_epochs": second.count}


def bench_inference(s: Setup, repeats: int) -> dict:
    """The model on the test split's encoded windows (tokenization excluded on both sides), batches
    of 32: ours length-sorted into the buckets `tag_words` uses, jit; PyTorch in file order padded to the longest, no_grad.
    `ours_end_to_end_per_s` adds our tokenization, alignment and decoding to words (`tag_words`)."""
    from arner_jax.predict import NERTagger
    from arner_jax.train.assemble import LoadedRun
    from arner_jax.train.config import RunConfig

    tagger = NERTagger(LoadedRun(None, RunConfig(), "nested", s.tok, s.vocab, s.enc, s.model, s.params, 512))
    buckets = predict_buckets([len(w) for w in s.test_windows], 32, 512)  # what tag_words uses on this input
    batches = [collate(s.test_windows, idx, 32, length, s.pad) for length, idx in eval_batches(s.test_windows, 32, 512,
                                                                                               buckets)]

    def run_ours():
        out = [tagger._step(tagger.params, b["input_ids"], b["attention_mask"])[0] for b in batches]
        jax.block_until_ready(out)

    run_ours()  # warm-up
    t_ours = timed(run_ours, repeats)
    sentences = [x.words for x in s.test.sentences]
    tagger.tag_words(sentences)
    t_end = timed(lambda: tagger.tag_words(sentences), repeats)
    s.torch_model.eval()
    tb = [s.torch_batch(list(range(i, min(i + 32, len(s.test_windows)))), s.test_windows)
          for i in range(0, len(s.test_windows), 32)]

    def run_torch():
        with torch.no_grad():
            for b in tb:
                s.torch_model(b["input_ids"], b["attention_mask"]).argmax(-1)

    run_torch()
    t_torch = timed(run_torch, repeats)
    n = len(sentences)
    return {"sentences": n, "ours_per_s": n / statistics.median(t_ours), "torch_per_s": n / statistics.median(t_torch),
            "ours_end_to_end_per_s": n / statistics.median(t_end), "ours_seconds": stats(t_ours),
            "torch_seconds": stats(t_torch), "speedup": statistics.median(t_torch) / statistics.median(t_ours),
            "ours_shapes": len({b["input_ids"].shape for b in batches})}


def bench_compile(s: Setup) -> dict:
    """Fresh wrappers: time the compilation of one train and one eval step per bucket used."""
    durations = []

    def listen(event, seconds, **_):
        if event == CompileCounter.COMPILE:
            durations.append(seconds)

    par = PmapParallel(s.bodies, jax.local_devices()[:1])
    state = s.jax_state(par)
    plan = s.plan()
    first = {}
    for length, idx in plan:
        first.setdefault(length, idx)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        train_times, eval_times = [], []
        for length, idx in sorted(first.items()):
            n0 = len(durations)
            state, m = par.train_step(state, collate(s.windows, idx, BATCH, length, s.pad), jax.random.PRNGKey(0))
            jax.block_until_ready(m["loss"])
            train_times.append(sum(durations[n0:]))
            n0 = len(durations)
            par.eval_step(state.params, collate(s.windows, idx, BATCH, length, s.pad))
            eval_times.append(sum(durations[n0:]))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return {"buckets": sorted(first), "train_compile_seconds": train_times, "eval_compile_seconds": eval_times,
            "train_shapes_per_epoch": len(first)}


def bench_flops(s: Setup, repeats: int) -> dict:
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    t_mm = timed(lambda: mm(a, a).block_until_ready(), max(repeats, 5))
    peak = 2 * n ** 3 / statistics.median(t_mm)
    par = ShardMapParallel(s.bodies, jax.local_devices()[:1])
    state = s.jax_state(par)
    idx = [i for i in range(len(s.windows)) if 32 < len(s.windows[i]) <= 64][:BATCH]
    batch = collate(s.windows, idx, BATCH, 64, s.pad)
    key = jax.random.PRNGKey(0)
    flops = train_step_flops(s.enc, BATCH, 64, types=s.T)  # the layers' scan counted num_hidden_layers times

    def step():
        nonlocal state
        state, m = par.train_step(state, batch, key)
        jax.block_until_ready(m["loss"])

    step()
    t_step = timed(step, max(repeats, 5))
    achieved = flops / statistics.median(t_step)
    return {"matmul_flops_per_s": peak, "train_step_flops": flops, "train_step_seconds": stats(t_step),
            "achieved_flops_per_s": achieved, "share_of_matmul_rate": achieved / peak, "batch_shape": [BATCH, 64]}


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(jax.devices()[0]),
            "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/wojood_sample")
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=8, help="train steps per timed repetition (train_step)")
    p.add_argument("--only", nargs="*", default=["train_step", "epoch", "inference", "compile", "flops"])
    p.add_argument("--torch_compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    s = Setup(args.data, args.size)
    # --out of an earlier run with the same size: its other figures are kept, these replaced
    earlier = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    report = earlier if earlier.get("size") == args.size else {}
    report.update({"size": args.size, "machine": machine(), "repeats": args.repeats})
    benches = {"train_step": lambda: bench_train_step(s, args.repeats, args.steps, args.torch_compile),
               "epoch": lambda: bench_epoch(s, args.repeats), "inference": lambda: bench_inference(s, args.repeats),
               "compile": lambda: bench_compile(s), "flops": lambda: bench_flops(s, args.repeats)}
    for name in args.only:
        report[name] = benches[name]()
        print(name, json.dumps(report[name], indent=None, default=float)[:600], flush=True)
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")


def table(r: dict) -> str:
    rows = [f"| figure ({r['size']}) | ours | PyTorch | ratio |", "| --- | --- | --- | --- |"]
    if "train_step" in r:
        t = r["train_step"]
        rows.append(f"| train step, words/s | {t['ours_words_per_s']:.1f} | {t['torch_eager_words_per_s']:.1f} (eager) "
                    f"| {t['speedup_vs_eager']:.2f}x |")
        rows.append(f"| train step, tokens/s | {t['ours_tokens_per_s']:.0f} | {t['torch_eager_tokens_per_s']:.0f} | |")
        if "torch_compile_words_per_s" in t:
            rows.append(f"| train step vs torch.compile, words/s | {t['ours_words_per_s']:.1f} | "
                        f"{t['torch_compile_words_per_s']:.1f} | "
                        f"{t['torch_compile_seconds']['median'] / t['ours_seconds']['median']:.2f}x |")
    if "epoch" in r:
        e = r["epoch"]
        rows.append(f"| sample epoch, s | {e['ours_seconds']['median']:.1f} | {e['torch_reference_seconds']['median']:.1f} "
                    f"| {e['speedup']:.2f}x |")
    if "inference" in r:
        i = r["inference"]
        rows.append(f"| inference, sentences/s | {i['ours_per_s']:.1f} ({i['ours_end_to_end_per_s']:.1f} with "
                    f"tokenization) | {i['torch_per_s']:.1f} | {i['speedup']:.2f}x |")
    if "compile" in r:
        c = r["compile"]
        rows.append(f"| compile train / eval, s (per bucket) | {', '.join(f'{x:.1f}' for x in c['train_compile_seconds'])}"
                    f" / {', '.join(f'{x:.1f}' for x in c['eval_compile_seconds'])} | | |")
    if "flops" in r:
        f = r["flops"]
        rows.append(f"| train step share of matmul rate | {100 * f['share_of_matmul_rate']:.0f}% "
                    f"({f['achieved_flops_per_s'] / 1e9:.1f} of {f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s) | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
