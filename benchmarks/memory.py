"""Memory of the tagger's train step without an accelerator: `python -m benchmarks.memory`.

Owns: lowering and compiling (on the CPU, from abstract shapes: nothing is allocated) the
library's train step (train.parallel.StepBodies of the nested tagger: 21 heads x 3 classes, the
unified loss with the variance penalty, AdamW with clipping and, when accumulating, the step's
own two passes over the micro-batches) for a range of encoders, windows, batches and remat policies, and printing XLA's
compiled memory analysis (argument, output, aliased and temporary bytes) with a fit verdict for
one Colab TPU v5e chip (16 GiB of HBM).

    python -m benchmarks.memory                       # the default table
    python -m benchmarks.memory --only base --out memory.json

Fit rule: peak = arguments (float32 parameters, AdamW's two moments, the batch: every
micro-batch of an update) + outputs not aliased to a donated argument +
temporaries (gradients, activations kept for the backward, workspace). A configuration fits a
v5e-1 when the peak is at most 15 GiB of its 16 GiB (about 1 GiB kept back for the runtime, the
compiled program and fragmentation). The figures are the CPU compiler's: TPU fusion and layouts
differ, so treat them as estimates within some tens of percent, and the ranking as reliable.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.encoders import EncoderConfig
from benchmarks.steps import tagger_train_step

GiB = 2 ** 30
TPU_V5E_HBM_GIB = 16
FIT_LIMIT_GIB = 15  # see the module docstring

ENCODERS = {
    "base": EncoderConfig(vocab_size=100_000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072),  # ARBERTv2-like (vocabulary 100k)
    "large": EncoderConfig(vocab_size=250_002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1,
                           layer_norm_eps=1e-5, pad_token_id=1, model_type="xlm-roberta"),  # xlm-roberta-large
}


@dataclasses.dataclass(frozen=True)
class Case:
    encoder: str  # key of ENCODERS
    batch: int  # rows per micro-batch (one compiled step)
    length: int  # tokens per row
    remat: str
    grad_accum: int = 1
    dtype: str = "float32"


def default_cases() -> list[Case]:
    """bert-base 16 x 512 under each remat policy (float32 and bfloat16 compute), and
    xlm-roberta-large at 512 tokens with micro-batches of 1-8 accumulated to 16 rows."""
    cases = [Case("base", 16, 512, remat, 1, dtype) for dtype in ("float32", "bfloat16")
             for remat in ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")]
    cases += [Case("large", batch, 512, remat, 16 // batch, "bfloat16")
              for remat in ("full", "dots_with_no_batch_dims_saveable") for batch in (1, 2, 4, 8)]
    cases += [Case("large", 4, 512, "none", 4, "bfloat16")]
    return cases


def analyse(case: Case) -> dict:
    step, args = tagger_train_step(ENCODERS[case.encoder], case.batch, case.length, remat=case.remat,
                                   grad_accum=case.grad_accum,
                                   dtype=jnp.bfloat16 if case.dtype == "bfloat16" else jnp.float32)
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    seconds = time.perf_counter() - start
    m = compiled.memory_analysis()
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(args[0].params))
    peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)
    return {**dataclasses.asdict(case), "parameters": params, "compile_seconds": seconds,
            "argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
            "alias_bytes": m.alias_size_in_bytes, "temp_bytes": m.temp_size_in_bytes, "peak_bytes": peak,
            "fits_v5e_1": peak <= FIT_LIMIT_GIB * GiB}


def table(rows: list[dict]) -> str:
    lines = [("| encoder | batch x tokens (accum) | compute | remat | arguments GiB | temporaries GiB | "
              "peak GiB | fits v5e-1 | compile s |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['encoder']} | {r['batch']} x {r['length']} ({r['grad_accum']}) | {r['dtype']} | "
                         f"{r['remat']} | error: {r['error'][:80]} | | | | |")
            continue
        lines.append(
            f"| {r['encoder']} | {r['batch']} x {r['length']} ({r['grad_accum']}) | {r['dtype']} | {r['remat']} | "
            f"{r['argument_bytes'] / GiB:.2f} | {r['temp_bytes'] / GiB:.2f} | {r['peak_bytes'] / GiB:.2f} | "
            f"{'yes' if r['fits_v5e_1'] else 'no'} | {r['compile_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=sorted(ENCODERS), default=sorted(ENCODERS),
                   help="encoders to analyse")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    for case in default_cases():
        if case.encoder not in args.only:
            continue
        try:
            rows.append(analyse(case))
        except Exception as err:  # noqa: BLE001 - one failing case must not lose the others
            rows.append({**dataclasses.asdict(case), "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(rows[-1], default=str), flush=True)
    print(f"\nTrain-step memory from XLA's CPU compilation (jax {jax.__version__}); fit: peak <= "
          f"{FIT_LIMIT_GIB} GiB of a TPU v5e-1's {TPU_V5E_HBM_GIB} GiB, peak = arguments + unaliased outputs "
          "+ temporaries.")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
