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
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax.training.train_state import TrainState

from arner_jax.config import RunConfig
from arner_jax.data.batching import (
    bucket_lengths,
    collate_windows,
    eval_batches,
    fit_buckets,
    train_batches,
)
from arner_jax.data.wojood import read_wojood
from arner_jax.encoders import small_bert_config, train_wordpiece_tokenizer
from arner_jax.models import inference
from arner_jax.models.base import family_for
from arner_jax.models.parallel import PmapParallel, ShardMapParallel, StepBodies
from arner_jax.runs import run_folder
from arner_jax.runs.loading import LoadedRun, init_params
from arner_jax.system.host_memory import reexec_with_huge_pages
from arner_jax.train.optim import OptimConfig, make_optimizer
from arner_jax.train.runtime import CompileCounter
from benchmarks import torch_reference as ref
from benchmarks.machine import describe, machine
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
    """The sample, a scratch tokenizer, and the nested tagger built through its model family."""

    def __init__(self, data_dir: Path, size: str):
        self.train = read_wojood(data_dir / "train.txt")
        self.test = read_wojood(data_dir / "test.txt")
        self.tok = train_wordpiece_tokenizer([" ".join(s.words) for s in self.train.sentences], vocab_size=8000)
        self.config = RunConfig(kind="nested", train_path=str(data_dir / "train.txt"),
                                val_path=str(data_dir / "val.txt"), test_path=str(data_dir / "test.txt"))
        self.family = family_for("nested")
        self.vocab = self.family.label_space(self.config, [self.train])
        self.split = self.family.encode(self.config, self.vocab, self.tok, self.train.sentences, 512)
        self.test_split = self.family.encode(self.config, self.vocab, self.tok, self.test.sentences, 512)
        self.windows, self.test_windows = self.split.windows, self.test_split.windows
        self.pad = int(self.tok.pad_token_id)
        self.buckets = fit_buckets(self.split.lengths(), BATCH, 512)  # as the trainer
        hidden, layers, heads = SIZES[size]
        self.enc = small_bert_config(len(self.tok), hidden, layers, heads)
        self.T = self.vocab.num_types
        self.model = self.family.build(self.config, self.enc, self.vocab, self.tok)
        self.params = jax.device_get(init_params(self.family, self.model, self.vocab, 0))
        self.bodies = StepBodies(self.family.objective(self.config, self.vocab, self.model))
        from transformers import BertConfig

        torch.manual_seed(0)
        self.torch_model = ref.TorchNestedTagger(BertConfig(
            vocab_size=len(self.tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=4 * hidden, max_position_embeddings=512), self.T)

    def plan(self, epoch: int = 0):
        """The trainer's batches of an epoch: fitted length buckets, shuffled from (seed, epoch)."""
        return train_batches(self.split.lengths(), BATCH, 3407, epoch, self.buckets)

    def jax_state(self, parallel):
        tx = make_optimizer(OptimConfig(lr=2e-5), 1000)
        return parallel.put_state(TrainState.create(apply_fn=self.model.apply, params=self.params, tx=tx))

    def torch_batch(self, indices, windows=None, length=None):
        """The reference's padding (to the longest window of the batch), or to `length` rows x tokens."""
        windows = windows or self.windows
        rows = BATCH if length else len(indices)
        length = length or max(len(windows[i]) for i in indices)
        b = collate_windows(windows, indices, rows, length, self.pad)
        return {"input_ids": torch.tensor(b["input_ids"], dtype=torch.long),
                "attention_mask": torch.tensor(b["attention_mask"]),
                "labels": torch.tensor(b["labels"], dtype=torch.long),
                "label_mask": torch.tensor(b["label_mask"] > 0)}


def bench_train_step(s: Setup, repeats: int, steps: int, torch_compile: bool) -> dict:
    # The first batches of an epoch's plan: the sample's length distribution, in bucket shapes.
    # Both frameworks get exactly these padded batches (the epoch figure measures batching itself).
    plan = s.plan()[:steps]
    ours = [s.split.collate(idx, BATCH, length) for length, idx in plan]
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

        def run_torch(model=model, opt=opt, sched=sched, tb=tb):
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
            state, m = par.train_step(state, s.split.collate(idx, BATCH, length), key)
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
    of 32: ours through the inference driver (length-sorted into the evaluation buckets), PyTorch in
    file order padded to the longest, no_grad. `ours_end_to_end_per_s` adds our tokenization,
    alignment and decoding to word tags (`NERTagger.word_tags`)."""
    from arner_jax.predict import NERTagger

    record = run_folder.RunRecord(Path("."), s.config, s.family, s.enc, s.vocab, {}, run_folder.FORMAT)
    tagger = NERTagger(LoadedRun(record, s.tok, s.enc, s.model, s.params, 512), batch_size=32)

    def run_ours():
        inference.run(tagger.parallel, tagger.params, s.test_split, 32, 512)

    run_ours()  # warm-up
    t_ours = timed(run_ours, repeats)
    sentences = [x.words for x in s.test.sentences]
    tagger.word_tags(sentences)
    t_end = timed(lambda: tagger.word_tags(sentences), repeats)
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
    shapes = {length for length, _ in eval_batches(s.test_split.lengths(), 32, bucket_lengths(512))}
    return {"sentences": n, "ours_per_s": n / statistics.median(t_ours), "torch_per_s": n / statistics.median(t_torch),
            "ours_end_to_end_per_s": n / statistics.median(t_end), "ours_seconds": stats(t_ours),
            "torch_seconds": stats(t_torch), "speedup": statistics.median(t_torch) / statistics.median(t_ours),
            "ours_shapes": len(shapes)}


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
            state, m = par.train_step(state, s.split.collate(idx, BATCH, length), jax.random.PRNGKey(0))
            jax.block_until_ready(m["loss"])
            train_times.append(sum(durations[n0:]))
            n0 = len(durations)
            par.eval_step(state.params, s.split.collate(idx, BATCH, length))
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
    batch = s.split.collate(idx, BATCH, 64)
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


ISA_LIMITS = {  # what each framework is told to use, to measure an AVX2-only machine on a newer one
    "avx2": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
RESULTS = Path(__file__).resolve().parent / "results"
SPEED_TABLES = Path(__file__).resolve().parents[1] / "docs" / "results.md"  # the page that holds the speed tables
TABLE_START = "<!-- speed-table: made by `python -m benchmarks.run --all`; do not edit -->"
TABLE_END = "<!-- /speed-table -->"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/wojood_sample")
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=8, help="train steps per timed repetition (train_step)")
    p.add_argument("--only", nargs="*", default=["train_step", "epoch", "inference", "compile", "flops"])
    p.add_argument("--torch_compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    p.add_argument("--isa", choices=["native", *ISA_LIMITS], default="native",
                   help="limit both frameworks to an instruction set (avx2: measure an AVX2-only CPU)")
    p.add_argument("--all", action="store_true", help="every figure (torch.compile included); write "
                   "benchmarks/results/cpu_<size>[_<isa>].json and regenerate the speed table of docs/results.md")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    limits = ISA_LIMITS.get(args.isa, {})
    if any(os.environ.get(k) != v for k, v in limits.items()):  # the limits must be set before JAX and torch load
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *(argv or sys.argv[1:])],
                  {**os.environ, **limits})
    if args.all:
        args.torch_compile = True
        args.only = ["train_step", "epoch", "inference", "compile", "flops"]
        args.out = args.out or RESULTS / f"cpu_{args.size}{'' if args.isa == 'native' else '_' + args.isa}.json"
    s = Setup(args.data, args.size)
    # --out of an earlier run with the same size: its other figures are kept, these replaced
    earlier = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    report = earlier if earlier.get("size") == args.size and earlier.get("isa_limit") == args.isa else {}
    report.update({"size": args.size, "isa_limit": args.isa, "repeats": args.repeats,
                   "machine": {**machine("jax", "jaxlib", "flax", "optax", "torch", "transformers", "numpy"),
                               "torch_threads": torch.get_num_threads()}})
    benches = {"train_step": lambda: bench_train_step(s, args.repeats, args.steps, args.torch_compile),
               "epoch": lambda: bench_epoch(s, args.repeats), "inference": lambda: bench_inference(s, args.repeats),
               "compile": lambda: bench_compile(s), "flops": lambda: bench_flops(s, args.repeats)}
    for name in args.only:
        report[name] = benches[name]()
        print(name, json.dumps(report[name], indent=None, default=float)[:600], flush=True)
    print(describe(report["machine"]))
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    if args.all:
        write_readme_table()


def write_readme_table() -> None:
    """Replace the speed table of docs/results.md with the figures of every benchmarks/results/cpu_*.json."""
    reports = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("cpu_*.json"))]
    parts = []
    for r in reports:
        if "machine" in r and "isa" in r["machine"]:
            limit = "" if r.get("isa_limit", "native") == "native" else f", limited to {r['isa_limit'].upper()}"
            parts.append(f"{r['size']} size{limit}: {describe(r['machine'])}\n\n{table(r)}\n")
    text = SPEED_TABLES.read_text(encoding="utf-8")
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        text = head + TABLE_START + "\n" + "\n".join(parts) + rest[rest.index(TABLE_END):]
        SPEED_TABLES.write_text(text, encoding="utf-8")


def spread(stat: dict) -> str:
    """'0.108 s (0.092-0.114)': the median and the range over the repetitions."""
    return f"{stat['median']:.3g} s ({stat['min']:.3g}-{stat['max']:.3g})"


def table(r: dict) -> str:
    """The speed-table rows of one report: figures from medians, and each side's time with its range."""
    rows = [f"| figure ({r['size']}) | ours | PyTorch | ratio | time per repetition, median (min-max): ours; PyTorch |",
            "| --- | --- | --- | --- | --- |"]
    if "train_step" in r:
        t = r["train_step"]
        rows.append(f"| train step, words/s | {t['ours_words_per_s']:.1f} | {t['torch_eager_words_per_s']:.1f} "
                    f"(eager) | {t['speedup_vs_eager']:.2f}x | {spread(t['ours_seconds'])}; "
                    f"{spread(t['torch_eager_seconds'])} |")
        if "torch_compile_words_per_s" in t:
            rows.append(f"| train step vs torch.compile, words/s | {t['ours_words_per_s']:.1f} | "
                        f"{t['torch_compile_words_per_s']:.1f} | "
                        f"{t['torch_compile_seconds']['median'] / t['ours_seconds']['median']:.2f}x | "
                        f"{spread(t['ours_seconds'])}; {spread(t['torch_compile_seconds'])} |")
    if "epoch" in r:
        e = r["epoch"]
        rows.append(f"| sample epoch, s (ours: fitted buckets; PyTorch: the reference's batching) | "
                    f"{e['ours_seconds']['median']:.1f} | {e['torch_reference_seconds']['median']:.1f} | "
                    f"{e['speedup']:.2f}x | {spread(e['ours_seconds'])}; {spread(e['torch_reference_seconds'])} |")
    if "inference" in r:
        i = r["inference"]
        rows.append(f"| inference on the test split, sentences/s | {i['ours_per_s']:.1f} "
                    f"({i['ours_end_to_end_per_s']:.1f} with tokenization) | {i['torch_per_s']:.1f} | "
                    f"{i['speedup']:.2f}x | {spread(i['ours_seconds'])}; {spread(i['torch_seconds'])} |")
    if "compile" in r:
        c = r["compile"]
        train = ", ".join(f"{x:.1f}" for x in c["train_compile_seconds"])
        rows.append(f"| compile train / eval, s (per bucket) | {train} / "
                    f"{', '.join(f'{x:.1f}' for x in c['eval_compile_seconds'])} | | | |")
    if "flops" in r:
        f = r["flops"]
        rows.append(f"| train step share of the measured matmul rate | {100 * f['share_of_matmul_rate']:.0f}% "
                    f"({f['achieved_flops_per_s'] / 1e9:.1f} of {f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s) | | | "
                    f"{spread(f['train_step_seconds'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    reexec_with_huge_pages()  # every side under one allocator setting (see arner_jax.system.host_memory)
    main()
