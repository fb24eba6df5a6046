"""bf16 training speed on one GPU, ours against PyTorch eager and torch.compile: `python -m benchmarks.gpu`.

Owns: the GPU comparison of the nested tagger's train step (bert-base encoder, 21 heads x 3 classes,
SPEC 4's unified loss with the variance penalty, AdamW with clipping and the linear schedule;
parameters float32, compute bfloat16) on fixed synthetic batches (random token ids and labels,
the same arrays for both frameworks), in one command that stays within a time budget:

    PYTHONPATH=. python -m benchmarks.gpu                     # bert-base, 16 x 512, on the GPU
    python -m benchmarks.gpu --size tiny --steps 2 --out x.json   # the same on a CPU, in seconds

Variants:
  ours auto     the library's step (train.parallel.ShardMapParallel on one device, jit), attention
                "auto": in training that is the einsum path with BERT's attention-probability dropout
  ours cudnn    attention through cuDNN flash attention (jax.nn.dot_product_attention), which has no
                attention-probability dropout; if cuDNN refuses, XLA's dot_product_attention, and why
  ours remat=*  "auto" with a rematerialisation policy per layer (--remat), when time is left
  torch eager   transformers' BertModel with attn_implementation="sdpa" (PyTorch's fused attention,
                dropout included) + benchmarks.torch_reference's heads, loss and AdamW, under bf16 autocast
  torch compile the same model through torch.compile (the loss stays eager: its boolean indexing has
                data-dependent shapes)
Figures: step time (median, min, max of --steps timed steps after warm-up, each ended by a device
sync), tokens/s, MFU = model FLOPs per step / step time / 989.4e12 (H100/H200 SXM bf16 dense
datasheet peak), with the model FLOPs from XLA's cost analysis of our step with einsum attention
(benchmarks.steps.train_step_flops; cuDNN's fused attention is opaque to it), and an analytic
6 x non-embedding parameters x tokens + attention for cross-check; the measured rate of
an 8192^3 bf16 matmul; peak device memory; ratios to eager and compile.
Every phase is guarded (an error is printed and the others go on) and none starts when the time
budget (--budget_s) is spent or too short for it. JSON goes to $OUT/gpu.json when OUT is set, else
to --out; the last lines printed are the summary table.
"""
from __future__ import annotations

import os

# Before jax starts: allocate on demand, so that JAX's peak_bytes_in_use reflects use, not a
# reservation, and PyTorch in the same process finds the memory JAX would have reserved (75%).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

PEAK_BF16_FLOPS = 989.4e12  # H100 / H200 SXM, bf16 dense (datasheet)
TYPES, CLASSES = 21, 3  # the Wojood nested tagger (as benchmarks.steps)
GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    heads: int
    vocab: int
    batch: int
    length: int
    matmul: int  # side of the square matmul whose rate is measured
    seconds: dict  # rough seconds a phase needs (compile + steps): a phase starts only if the budget has them


SIZES = {
    # ARBERTv2-like: bert-base with a 100k vocabulary (the shared-task system's best encoder).
    "base": Size(768, 12, 12, 100_000, 16, 512, 8192,
                 {"matmul": 5, "flops": 10, "ours": 45, "torch_eager": 20, "torch_compile": 90}),
    "tiny": Size(64, 2, 2, 1000, 4, 64, 512, {}),
}
PHASES = ("matmul", "flops", "ours_auto", "ours_cudnn", "torch_eager", "torch_compile", "ours_remat")


class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def timed_steps(step: Callable[[int], Any], sync: Callable[[Any], Any], warmup: int, steps: int,
                budget: Budget) -> dict:
    """Warm-up steps (compilation included), then up to `steps` steps each timed to a device sync;
    fewer (at least 2) when the budget runs out."""
    start = time.perf_counter()
    for i in range(warmup):
        sync(step(i))
    warm = time.perf_counter() - start
    times, out = [], None
    for i in range(steps):
        t = time.perf_counter()
        out = sync(step(warmup + i))
        times.append(time.perf_counter() - t)
        if budget.left() < 0 and len(times) >= 2:
            break
    return {"warmup_seconds": warm, "step_seconds": stats(times), "last_loss": float(np.asarray(out, np.float32))}


def synthetic_batches(size: Size, count: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Full rows of random ids; about 70% of the positions labelled (first subwords), random classes."""
    rng = np.random.default_rng(seed)
    B, T = size.batch, size.length
    return [{"input_ids": rng.integers(5, size.vocab, (B, T)).astype(np.int32),
             "attention_mask": np.ones((B, T), np.int32),
             "labels": rng.integers(0, CLASSES, (B, T, TYPES)).astype(np.int32),
             "label_mask": (rng.random((B, T)) < 0.7).astype(np.float32)} for _ in range(count)]


# ----------------------------------------------------------------------------- machine
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_model(),
                            "cpus": os.cpu_count()}
    names = ["jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers", "tokenizers", "triton"]
    names += sorted({d.metadata["Name"] for d in importlib.metadata.distributions()
                     if (d.metadata["Name"] or "").lower().startswith(("jax-cuda", "jax_cuda", "nvidia-cudnn"))})
    info["versions"] = {n: _version(n) for n in names}
    try:
        import jax

        dev = jax.devices()[0]
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
        info["jax_platform_version"] = getattr(dev.client, "platform_version", None)
        try:
            from jax._src.lib import cuda_versions  # private: the CUDA/cuDNN JAX was built with and runs

            if cuda_versions is not None:
                info["jax_cuda"] = {"runtime": cuda_versions.cuda_runtime_get_version(),
                                    "cudnn": cuda_versions.cudnn_get_version(),
                                    "driver": cuda_versions.cuda_driver_get_version()}
        except Exception as err:  # noqa: BLE001 - private API, absent on CPU builds
            info["jax_cuda"] = f"unavailable: {type(err).__name__}"
    except Exception as err:  # noqa: BLE001
        info["jax_error"] = repr(err)
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["torch_device"] = torch.cuda.get_device_name(0)
            info["torch_device_memory_gib"] = props.total_memory / GiB
            info["torch_cudnn"] = torch.backends.cudnn.version()
    except Exception as err:  # noqa: BLE001
        info["torch_error"] = repr(err)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=False)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"unavailable: {type(err).__name__}"
    return info


# ----------------------------------------------------------------------------- phases
def encoder_config(size: Size):
    from arner_jax.encoders import EncoderConfig

    return EncoderConfig(vocab_size=size.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers,
                         num_attention_heads=size.heads, intermediate_size=4 * size.hidden)


def matmul_rate(size: Size) -> dict:
    """Measured bf16 matmul FLOP/s (JAX, and PyTorch when it has a GPU) of a square n^3 product."""
    import jax
    import jax.numpy as jnp

    n = size.matmul
    a = jnp.ones((n, n), jnp.bfloat16)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    t = []
    for _ in range(10):
        start = time.perf_counter()
        mm(a, a).block_until_ready()
        t.append(time.perf_counter() - start)
    out = {"n": n, "jax_flops_per_s": 2 * n ** 3 / statistics.median(t)}
    import torch

    if torch.cuda.is_available():
        x = torch.ones((n, n), dtype=torch.bfloat16, device="cuda")
        x @ x
        torch.cuda.synchronize()
        t = []
        for _ in range(10):
            start = time.perf_counter()
            x @ x
            torch.cuda.synchronize()
            t.append(time.perf_counter() - start)
        out["torch_flops_per_s"] = 2 * n ** 3 / statistics.median(t)
    return out


def ours(size: Size, batches: list[dict], attention: str, remat: str, warmup: int, steps: int,
         budget: Budget) -> dict:
    """The library's train step, compiled once for the batch shape, then timed."""
    import jax
    import jax.numpy as jnp
    from flax.training.train_state import TrainState

    from arner_jax.encoders.model import resolve_attention
    from benchmarks.steps import tagger_parallel

    enc = encoder_config(size)
    model, parallel, tx = tagger_parallel(enc, dtype=jnp.bfloat16, attention=attention, remat=remat)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    state = parallel.put_state(TrainState.create(apply_fn=model.apply, params=params, tx=tx))
    del params  # the state holds its own copy
    device_batches = [parallel.put_batch(b) for b in batches]  # placed once: the steps time the device only
    key = parallel.put_key(jax.random.PRNGKey(0))
    start = time.perf_counter()
    compiled = parallel.train_program.lower(state, device_batches[0], key).compile()
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    text = compiled.as_text()

    def step(i):
        nonlocal state
        state, metrics = compiled(state, device_batches[i % len(device_batches)], key)
        return metrics["loss"]

    result = timed_steps(step, lambda x: x.block_until_ready(), warmup, steps, budget)
    used = resolve_attention(attention, enc, jnp.bfloat16, 2, deterministic=False) if attention == "auto" else attention
    return {**result, "attention": used, "fused_attention_in_program": "__cudnn$fmha" in text, "remat": remat,
            "compile_seconds": compile_seconds,
            # XLA's plan for this step; the process-wide peak so far covers earlier variants too.
            "planned_peak_bytes": (memory.argument_size_in_bytes + memory.output_size_in_bytes
                                   - memory.alias_size_in_bytes + memory.temp_size_in_bytes),
            "compiled_temp_bytes": memory.temp_size_in_bytes,
            "process_peak_bytes_in_use": (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")}


def torch_variant(size: Size, batches: list[dict], compile_model: bool, warmup: int, steps: int,
                  budget: Budget) -> dict:
    """transformers' BERT (sdpa attention) + the reference heads, loss and optimizer, bf16 autocast."""
    import torch
    from transformers import BertConfig

    from benchmarks import torch_reference as ref

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=size.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers,
                        num_attention_heads=size.heads, intermediate_size=4 * size.hidden,
                        max_position_embeddings=max(512, size.length), attn_implementation="sdpa")
    model = ref.TorchNestedTagger(config, TYPES).to(device).train()
    forward = torch.compile(model) if compile_model else model
    opt, sched = ref.make_optimizer(model)
    tensors = [{"input_ids": torch.as_tensor(b["input_ids"], dtype=torch.long, device=device),
                "attention_mask": torch.as_tensor(b["attention_mask"], dtype=torch.long, device=device),
                "labels": torch.as_tensor(b["labels"], dtype=torch.long, device=device),
                "label_mask": torch.as_tensor(b["label_mask"] > 0, device=device)} for b in batches]

    def step(i):
        return ref.train_step(model, opt, sched, tensors[i % len(tensors)], forward=forward, autocast=device)

    def sync(loss):
        if device == "cuda":
            torch.cuda.synchronize()
        return loss.float().cpu().numpy()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = timed_steps(step, sync, warmup, steps, budget)
    return {**result, "attention": f"sdpa ({model.bert.config._attn_implementation}), dropout in the kernel",
            "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None}


# ----------------------------------------------------------------------------- report
def analytic_flops(size: Size, parameters: int, embedding: int) -> float:
    """6 x non-embedding parameters x tokens (forward + backward of the matmuls), plus attention's
    QK^T and PV: 2 x 2 B T^2 H per layer forward, x 3 with the backward."""
    tokens = size.batch * size.length
    return 6 * (parameters - embedding) * tokens + 12 * size.layers * size.batch * size.length ** 2 * size.hidden


def model_flops(size: Size) -> dict:
    """FLOPs of one train step: XLA's cost analysis of our step (einsum attention, so that every
    matmul is visible to it; lowered only, not compiled), and the analytic count."""
    import jax
    import jax.numpy as jnp

    from benchmarks.steps import tagger_train_step, train_step_flops

    enc = encoder_config(size)
    xla = train_step_flops(enc, size.batch, size.length, dtype=jnp.bfloat16, attention="einsum")
    _, (state, _, _) = tagger_train_step(enc, size.batch, size.length, dtype=jnp.bfloat16)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    embedding = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params["encoder"]["embeddings"]))
    return {"xla": xla, "analytic": analytic_flops(size, params, embedding), "parameters": params,
            "embedding_parameters": embedding}


def summarize(report: dict, size: Size) -> list[dict]:
    """One row per timed variant: step time, tokens/s, MFU, memory, ratios."""
    variants = report["variants"]
    flops = report["phases"].get("flops") or {}
    per_step = flops.get("xla") or flops.get("analytic")
    tokens = size.batch * size.length
    medians = {name: v["step_seconds"]["median"] for name, v in variants.items()}
    rows = []
    for name, v in variants.items():
        s = v["step_seconds"]
        peak = v.get("peak_bytes") or v.get("planned_peak_bytes")
        row = {"variant": name, "attention": v.get("attention", ""), "median_ms": 1e3 * s["median"],
               "min_ms": 1e3 * s["min"], "max_ms": 1e3 * s["max"], "tokens_per_s": tokens / s["median"],
               "mfu": per_step / s["median"] / PEAK_BF16_FLOPS if per_step else None,
               "peak_gib": peak / GiB if peak else None}
        for ref_name in ("torch eager", "torch compile"):
            if ref_name in medians and name.startswith("ours"):
                row[f"speedup_vs_{ref_name.split()[1]}"] = medians[ref_name] / s["median"]
        rows.append(row)
    return rows


def table(rows: list[dict], size: Size, report: dict) -> str:
    def fmt(x, spec: str, unit: str = "") -> str:
        return format(x, spec) + unit if x is not None else "-"

    flops = report["phases"].get("flops") or {}
    mm = report["phases"].get("matmul") or {}
    lines = [(f"bf16 train step, {size.batch} x {size.length} tokens; model FLOPs/step "
              f"{fmt(flops.get('xla'), '.3e')} (XLA cost analysis), {fmt(flops.get('analytic'), '.3e')} "
              f"(analytic); MFU against {PEAK_BF16_FLOPS / 1e12:.1f} TFLOP/s; measured {size.matmul}^3 bf16 matmul: "
              f"jax {fmt(mm.get('jax_flops_per_s'), '.3e')}, torch {fmt(mm.get('torch_flops_per_s'), '.3e')} FLOP/s"),
             ("peak GiB: torch max_memory_allocated; ours XLA's planned peak of the step (arguments + outputs "
              "- aliased + temporaries)"),
             "| variant | attention | step ms median [min, max] | tokens/s | MFU | peak GiB | x eager | x compile |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['attention']} | {r['median_ms']:.1f} [{r['min_ms']:.1f}, "
                     f"{r['max_ms']:.1f}] | {r['tokens_per_s']:.0f} | {fmt(r['mfu'] and 100 * r['mfu'], '.1f', '%')} "
                     f"| {fmt(r['peak_gib'], '.2f')} | {fmt(r.get('speedup_vs_eager'), '.2f')} "
                     f"| {fmt(r.get('speedup_vs_compile'), '.2f')} |")
    return "\n".join(lines)


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--batch", type=int, help="rows per step (default: 16 for base)")
    p.add_argument("--length", type=int, help="tokens per row (default: 512 for base)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation included)")
    p.add_argument("--remat", nargs="*", default=["dots_with_no_batch_dims_saveable", "full"],
                   help="remat policies of the ours_remat phase")
    p.add_argument("--phases", nargs="*", choices=PHASES, default=list(PHASES))
    p.add_argument("--budget_s", type=float, default=270.0, help="no phase starts after this many seconds")
    p.add_argument("--out", type=Path, help="JSON report (default $OUT/gpu.json when OUT is set)")
    args = p.parse_args(argv)
    budget = Budget(args.budget_s)
    size = dataclasses.replace(SIZES[args.size], batch=args.batch or SIZES[args.size].batch,
                               length=args.length or SIZES[args.size].length)
    report: dict[str, Any] = {"size": args.size, "batch": size.batch, "length": size.length, "steps": args.steps,
                              "peak_bf16_flops": PEAK_BF16_FLOPS, "machine": machine(), "phases": {},
                              "variants": {}, "errors": {}, "skipped": []}
    print(json.dumps(report["machine"], indent=1), flush=True)
    batches = synthetic_batches(size)
    json_path = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else args.out

    def phase(name: str, need_key: str, fn: Callable[[], Any], variant: str | None = None) -> None:
        need = size.seconds.get(need_key, 0)
        if budget.left() < need:
            print(f"[{name}] skipped: {budget.left():.0f} s of the budget left, about {need} s needed", flush=True)
            report["skipped"].append(name)
            return
        start = time.perf_counter()
        try:
            result = fn()
            (report["variants"] if variant else report["phases"])[variant or name] = result
            print(f"[{name}] {json.dumps(result, default=str)[:400]}", flush=True)
        except Exception as err:  # noqa: BLE001 - one failing phase must not lose the others
            report["errors"][name] = f"{type(err).__name__}: {err}"[:2000]
            print(f"[{name}] failed:\n{traceback.format_exc()[-3000:]}", flush=True)
        print(f"[{name}] {time.perf_counter() - start:.1f} s, {budget.left():.0f} s of the budget left", flush=True)
        if json_path:  # after every phase: a later phase that kills the process loses only itself
            write(json_path, report)

    def ours_cudnn():
        try:
            return ours(size, batches, "cudnn", "none", args.warmup, args.steps, budget)
        except Exception as err:  # noqa: BLE001 - cuDNN refuses some shapes, dtypes and devices
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500]
            print(f"[ours_cudnn] cuDNN attention unavailable ({reason}); falling back to attention='xla'", flush=True)
            out = ours(size, batches, "xla", "none", args.warmup, args.steps, budget)
            return {**out, "attention": "xla (cudnn refused)", "cudnn_fallback_reason": reason}

    for name in args.phases:
        if name == "matmul":
            phase(name, "matmul", lambda: matmul_rate(size))
        elif name == "flops":
            phase(name, "flops", lambda: model_flops(size))
        elif name == "ours_auto":
            phase(name, "ours", lambda: ours(size, batches, "auto", "none", args.warmup, args.steps, budget),
                  "ours auto")
        elif name == "ours_cudnn":
            phase(name, "ours", ours_cudnn, "ours cudnn")
        elif name in ("torch_eager", "torch_compile"):
            compile_model = name == "torch_compile"
            phase(name, name, lambda c=compile_model: torch_variant(size, batches, c, args.warmup, args.steps, budget),
                  name.replace("_", " "))
        elif name == "ours_remat":
            for remat in args.remat:
                phase(f"ours_remat_{remat}", "ours",
                      lambda r=remat: ours(size, batches, "auto", r, args.warmup, args.steps, budget),
                      f"ours auto remat={remat}")
    report["summary"] = rows = summarize(report, size)
    if json_path:
        write(json_path, report)
        print(f"report written to {json_path}")
    if report["errors"]:
        print("errors: " + "; ".join(f"{k}: {v[:200]}" for k, v in report["errors"].items()))
    print(table(rows, size, report), flush=True)
    return report


if __name__ == "__main__":
    main()
