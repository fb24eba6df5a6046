"""The training command line: `python -m arner_jax.train --preset NAME` (and `python -m experiments.NAME`).

Owns: the flags (the reference's names: --output_path --train_path --val_path --test_path
--bert_model --batch_size --max_epochs --seed; the rest are RunConfig's fields, with their help,
choices and defaults written once in arner_jax.config and the preset), the run-folder flags
(--output_path --overwrite --resume), the compilation cache, multi-process start, and printing
where the results are. User errors end with one line, `error: ...`, and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence

from arner_jax.config import settings_fields
from arner_jax.configs.presets import PRESETS, get_preset
from arner_jax.data.files import absolute
from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error, local_path, storage_path
from arner_jax.models.base import family_for
from arner_jax.runs import run_folder
from arner_jax.scoring.metrics import format_per_type

PREEMPTED_STATUS = 143  # 128 + SIGTERM: what a job scheduler expects of a process stopped by SIGTERM
RUN_FLAGS = ("output_path", "overwrite", "resume", "preset", "smoke", "compilation_cache", "no_compilation_cache",
             "distributed", "coordinator_address", "num_processes", "process_id")


def _flag_type(field: dataclasses.Field, value):
    """The argparse type of a RunConfig field: from its default, or for None defaults its annotation."""
    if value is not None:
        return type(value)
    return {"float": float, "int": int}.get(str(field.type).split(" |")[0], str)


def build_parser(preset_name: str) -> argparse.ArgumentParser:
    preset = get_preset(preset_name)
    defaults = preset.config()
    description = preset.doc.strip().splitlines()[0] if preset.doc else preset.name
    p = ArgumentParser(prog=f"python -m experiments.{preset.name}", description=description,
                                epilog=f"Preset {preset.name!r} (arner_jax.configs.presets); defaults below are its "
                                       "settings.")
    p.add_argument("--output_path", type=storage_path,
                   help="run folder, local or gs://BUCKET/PATH (default: a new folder under the system temp dir)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete --output_path (a run folder of arner_jax only) and start again")
    p.add_argument("--resume", action="store_true", help="continue the run in --output_path from its checkpoint")
    p.add_argument("--preset", default=preset.name, choices=list(PRESETS),
                   help="named settings (arner_jax.configs.presets)")
    p.add_argument("--smoke", action="store_true",
                   help="the preset's smoke variant: tiny encoder, synthetic corpus, one epoch (seconds on a CPU)")
    p.add_argument("--compilation_cache", type=local_path, help="folder of JAX's persistent compilation cache "
                                               "(default: ~/.cache/arner_jax/jax_compilation_cache)")
    p.add_argument("--no_compilation_cache", action="store_true", help="do not use the persistent compilation cache")
    p.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                   help="multi-process JAX: when settings are given or the environment is a multi-host job (Cloud "
                        "TPU pod, SLURM) (auto), always (on), never (off)")
    p.add_argument("--coordinator_address", help="host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num_processes", type=int, help="processes in the job (default: $JAX_NUM_PROCESSES)")
    p.add_argument("--process_id", type=int, help="this process's index (default: $JAX_PROCESS_ID)")
    # every setting, then the options of the preset's families (other families' options are not flags here)
    flags = [(f, getattr(defaults, f.name)) for f in settings_fields()]
    families = list(dict.fromkeys(family_for(kind) for kind in preset.kinds))
    for family in families:
        own = type(defaults.options) is family.Options
        flags += [(f, getattr(defaults.options, f.name) if own else _default(f))
                  for f in dataclasses.fields(family.Options)]
    for field, value in flags:
        name = field.name
        help_text = field.metadata["help"] + ("" if isinstance(value, bool) else f" (default: {value})")
        choices = list(preset.kinds) if name == "kind" else field.metadata.get("choices")
        if isinstance(value, bool):
            p.add_argument(f"--{name}", action="store_true", default=argparse.SUPPRESS, help=help_text)
        elif isinstance(value, tuple):
            p.add_argument(f"--{name}", type=int, nargs=len(value), default=argparse.SUPPRESS, help=help_text)
        else:
            p.add_argument(f"--{name}", type=_flag_type(field, value), choices=choices, default=argparse.SUPPRESS,
                           help=help_text)
    return p


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def main(argv: Sequence[str] | None = None, *, preset: str = "wojood_nested") -> dict | None:
    """Parse flags and train; returns the run's metrics."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with exit_on_user_error():
        # --preset decides which flags exist and their defaults: read it first
        first = ArgumentParser(add_help=False)
        first.add_argument("--preset", default=preset)
        args = build_parser(first.parse_known_args(argv)[0].preset).parse_args(argv)
        given = {k: v for k, v in vars(args).items() if k not in RUN_FLAGS}
        config = None if args.resume else get_preset(args.preset).config(args.smoke, **given)
        if args.resume and args.output_path is None:
            raise UserError("--resume needs the --output_path of the run to continue")
        if args.resume and given:
            print(f"--resume uses the run's saved settings; not read again: --{' --'.join(given)}", file=sys.stderr)
        from arner_jax.system import distributed, executables

        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id, args.distributed)
        executables.enable_compilation_cache(None if args.no_compilation_cache
                                         else args.compilation_cache or executables.default_cache_dir())
        if args.output_path is None:
            if distributed.process_info()[1] > 1:
                raise UserError("--output_path: needed with several processes (a folder every process can reach)")
            args.output_path = tempfile.mkdtemp(prefix=f"arner_{config.kind}_{time.strftime('%Y%m%d_%H%M%S')}_")
        from arner_jax.train.experiment import train_and_evaluate
        from arner_jax.train.loop import Preempted

        try:
            metrics = train_and_evaluate(config, args.output_path, overwrite=args.overwrite, resume=args.resume)
        except Preempted as stop:
            print(f"preempted: {stop}; continue with the same command and --output_path {args.output_path} "
                  "--resume", file=sys.stderr)
            raise SystemExit(PREEMPTED_STATUS) from None
    if distributed.is_primary():
        print(f"\n{format_per_type(metrics['test'])}")
        print(f"\nval  micro-F1 {metrics['val']['f1']:.4f}   test micro-F1 {metrics['test']['f1']:.4f}  "
              f"({metrics['kind']}, kept epoch {metrics['best_epoch']} of {metrics['epochs_run']})")
        print(f"results in {absolute(args.output_path)}: {run_folder.CONFIG}, {run_folder.METRICS}, "
              f"predictions_val.txt, predictions_test.txt, {run_folder.LOG}, {run_folder.TENSORBOARD}/, "
              f"{run_folder.BEST}")
    return metrics
