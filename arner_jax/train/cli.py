"""The command line of the training experiments (`python -m experiments.wojood_nested`, ...).

Owns: the flags (the reference's names: --output_path --train_path --val_path --test_path
--bert_model --batch_size --max_epochs --seed; the rest named after RunConfig fields), starting,
refusing, overwriting or resuming a run folder, and printing where the results are.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from arner_jax.train.config import CONFIG, METRICS, SPAN_KINDS, SPAN_ONLY, TAGGER_ONLY, RunConfig

log = logging.getLogger("arner_jax")
_HELP = {
    "kind": "nested: one head per type; flat: one head over flat tags; mtn: per-type heads on flat data",
    "bert_model": "Hugging Face id or folder of the encoder to fine-tune (default: a small encoder from scratch)",
    "max_length": "subword tokens per window; longer sentences are split into overlapping windows",
    "reference_labels": "train as the reference: every subword, [CLS], [SEP] and padding as O, no attention mask",
    "lr": "peak learning rate (default: 2e-5 fine-tuning a tagger, 1e-5 a span model, 5e-4 from scratch)",
    "dataset": "a `datasets` hub name (wikiann:ar) or a saved `datasets` folder, instead of the data paths",
    "tag_scheme": "iob2: Wojood files, strictly; any: also IOB1, BIOES and BILOU tags (converted to IOB2)",
    "marker_max_length": "marker pairs per row; spans that do not fit go into further rows repeating the text",
    "entity_max_length": "longest candidate span in words",
    "threshold": "drop predicted entities whose probability is lower",
    "select_by": "keep the model with the lowest validation loss (the reference) or the highest F1",
    "parallel": "data parallelism: pmap over the local devices, or jit + shard_map over a mesh",
    "checkpoint_every": "also save the resumable state every N steps (0: after each epoch only)",
    "synthetic_sizes": "train/val/test sentences of the synthetic corpus (when no data paths are given)",
}


def _hidden(kinds: Sequence[str]) -> set[str]:
    """Settings that mean nothing to this experiment's model family."""
    if all(k in SPAN_KINDS for k in kinds):
        return set(TAGGER_ONLY)
    if not any(k in SPAN_KINDS for k in kinds):
        return set(SPAN_ONLY)
    return set()


def _parser(defaults: RunConfig, kinds: Sequence[str], description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output_path", help="run folder (default: a new folder under the system temp dir)")
    p.add_argument("--overwrite", action="store_true", help="delete a non-empty --output_path and start again")
    p.add_argument("--resume", action="store_true", help="continue the run in --output_path from its latest checkpoint")
    p.add_argument("--compilation_cache", default=None,
                   help="folder of JAX's persistent compilation cache (default: ~/.cache/arner_jax/...)")
    p.add_argument("--no_compilation_cache", action="store_true", help="do not use the persistent compilation cache")
    p.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                   help="call jax.distributed.initialize(): when the environment is a multi-host job (auto), always, never")
    hidden = _hidden(kinds)
    for field in dataclasses.fields(RunConfig):
        name, value = field.name, getattr(defaults, field.name)
        if name in hidden:
            continue
        kwargs = {"help": _HELP.get(name, " "), "default": value}
        if name == "kind":
            kwargs["choices"] = list(kinds)
        if isinstance(value, bool):
            p.add_argument(f"--{name}", action="store_true", help=kwargs["help"])
        elif isinstance(value, tuple):
            p.add_argument(f"--{name}", type=int, nargs=len(value), **kwargs)
        else:
            # None defaults: the type comes from the field's annotation ("float | None", ...)
            typ = type(value) if value is not None else {"float": float, "int": int}.get(
                str(field.type).split(" |")[0], str)
            p.add_argument(f"--{name}", type=typ, **kwargs)
    return p


def main(argv: Sequence[str] | None = None, *, default_kind: str = "nested", kinds: Sequence[str] = ("nested",),
         description: str = "", defaults: dict | None = None) -> dict:
    """Parse flags and train. `defaults` overrides RunConfig defaults for this experiment."""
    default = RunConfig(kind=default_kind, **(defaults or {}))
    args = _parser(default, kinds, description).parse_args(argv)
    from arner_jax.train import runtime

    runtime.maybe_initialize_distributed(args.distributed)
    if not args.no_compilation_cache:
        runtime.enable_compilation_cache(args.compilation_cache or runtime.default_cache_dir())
    if args.output_path is None:
        if args.resume:
            sys.exit("--resume needs the --output_path of the run to continue")
        args.output_path = tempfile.mkdtemp(prefix=f"arner_{args.kind}_{time.strftime('%Y%m%d_%H%M%S')}_")
    given = RunConfig(**{f.name: getattr(args, f.name, getattr(default, f.name)) for f in dataclasses.fields(RunConfig)})
    if args.resume:  # a resumed run is the saved run: its schedule and data must not change
        given_flags = [f.name for f in dataclasses.fields(RunConfig) if getattr(given, f.name) != getattr(default, f.name)]
        if given_flags:
            print(f"--resume uses the run's saved settings; not read again: --{' --'.join(given_flags)}",
                  file=sys.stderr)
    from arner_jax.train.experiment import train_and_evaluate

    try:
        metrics = train_and_evaluate(None if args.resume else given, args.output_path, overwrite=args.overwrite,
                                     resume=args.resume)
    except runtime.RunFolderError as err:
        sys.exit(f"error: {err}")
    run_dir = Path(args.output_path)
    if runtime.is_primary():
        print(f"\nval  micro-F1 {metrics['val']['f1']:.4f}   test micro-F1 {metrics['test']['f1']:.4f}  "
              f"({metrics['kind']}, kept epoch {metrics['best_epoch']} of {metrics['epochs_run']})")
        print(f"results in {run_dir.resolve()}: {CONFIG}, {METRICS}, predictions_val.txt, predictions_test.txt, "
              "train.log, tensorboard/, checkpoints/best")
    return metrics
