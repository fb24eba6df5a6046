"""Running a sweep: `python -m arner_jax.sweep [run]` (arner_jax.sweep.folder owns its folder and plan).

Runs go one after another in this process through `train_and_evaluate`, so programs compiled by
one run are loaded by the next from JAX's persistent compilation cache. Started again with the
same command a sweep skips finished runs (metrics.json), resumes interrupted ones from their
checkpoints and trains the rest; a failing run (an encoder that cannot be loaded, any exception)
is recorded and the sweep goes on, exiting with status 1 at the end.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arner_jax.config import settings_fields
from arner_jax.configs.grids import GRIDS, Grid, get_grid
from arner_jax.data import files
from arner_jax.data.files import atomic_write_json
from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error, local_path, one_line, storage_path
from arner_jax.sweep.folder import (
    DATA_FLAGS,
    FAILURE,
    FAILURES,
    LOG,
    SWEEP,
    Run,
    command,
    grid_record,
    parse_shard,
    plan,
    run_dir,
    status,
    take_shard,
    write_failures,
)


@dataclasses.dataclass
class SweepResult:
    """What one invocation did with its share of the runs."""

    runs: list[str]  # this shard's runs, in order
    trained: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)  # finished before
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # run -> one line of error


# ---------------------------------------------------------------------- running
class Progress:
    """Progress lines: printed, and appended to DIR/sweep.log with the time."""

    def __init__(self, root: Path, echo: Callable[[str], None] = print):
        self.path, self.echo = root / LOG, echo

    def __call__(self, message: str) -> None:
        self.echo(message)
        files.append_text(self.path, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"


def _train(run: Run, folder: Path) -> tuple[dict, str]:
    """Train, resume or restart one run folder; returns its metrics and what was done."""
    from arner_jax.train.experiment import train_and_evaluate

    files.remove_file(folder / FAILURE)  # a new attempt: the old failure no longer stands
    if status(folder) == "interrupted":
        return train_and_evaluate(None, folder, resume=True), "resumed"
    restart = folder.is_dir() and any(folder.iterdir())  # a run folder stopped before it saved its settings
    return train_and_evaluate(run.config, folder, overwrite=restart), "restarted" if restart else "new"


def _record_failure(run: Run, folder: Path, err: Exception) -> str:
    line = one_line(str(err)) or type(err).__name__
    files.make_folder(folder)
    atomic_write_json(folder / FAILURE, {
        "run": run.id, "type": type(err).__name__, "error": line, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "traceback": traceback.format_exception(type(err), err, err.__traceback__)})
    return f"{type(err).__name__}: {line}"


def run_sweep(grid_name: str, output_path: str | Path, *, seeds: int = 1, smoke: bool = False,
              only: Sequence[str] = (), shard: tuple[int, int] = (1, 1), overrides: dict[str, Any] | None = None,
              encoders: dict[str, str] | None = None, compilation_cache: str | Path | None = None,
              echo: Callable[[str], None] = print) -> SweepResult:
    """Train this shard's runs of a grid into `output_path`, skipping finished ones; see the module docstring.

    `overrides`: RunConfig settings for every run (data paths, epochs, dtype; not those the grid varies);
    `encoders`: hub id -> local folder; `compilation_cache`: a folder for JAX's persistent cache (None:
    as it is). Raises Preempted when SIGTERM stopped a run (it resumes when the sweep is started again).
    """
    import gc

    import jax

    from arner_jax.system import executables
    from arner_jax.train.loop import Preempted

    grid, root = get_grid(grid_name), files.location(output_path)  # local or gs://
    everything = plan(grid, seeds, smoke, overrides, only, encoders)
    runs = take_shard(everything, shard)
    record = grid_record(grid, everything, smoke, seeds, shard, len(runs), root)
    files.make_folder(root)
    atomic_write_json(root / SWEEP, record)
    if compilation_cache:
        executables.enable_compilation_cache(compilation_cache)
    say = Progress(root, echo)
    result = SweepResult([r.id for r in runs])
    todo = sum(status(run_dir(root, r.configuration.name, r.seed_index)) != "finished" for r in runs)
    say(f"sweep {grid.name}{' (smoke)' * smoke}, shard {shard[0]}/{shard[1]}: {len(runs)} runs, "
        f"{len(runs) - todo} finished before, {todo} to train; in {files.absolute(root)}")
    seconds: list[float] = []
    for i, run in enumerate(runs, 1):
        folder = run_dir(root, run.configuration.name, run.seed_index)
        head = f"[{i}/{len(runs)}] {run.id}"
        if status(folder) == "finished":
            result.skipped.append(run.id)
            say(f"{head}: skipped (finished before)")
            continue
        left = todo - len(result.trained) - len(result.failed)
        eta = f"about {duration(left * sum(seconds) / len(seconds))} left" if seconds else "time left: after a run"
        say(f"{head}: training ({left - 1} more after it; {eta})")
        start = time.perf_counter()
        try:
            metrics, how = _train(run, folder)
        except Preempted:
            say(f"{head}: preempted (SIGTERM); the same command resumes it")
            raise
        except Exception as err:  # noqa: BLE001 - any failure of one run is recorded; the sweep goes on
            result.failed[run.id] = _record_failure(run, folder, err)
            say(f"{head}: FAILED: {result.failed[run.id]}")
            write_failures(root, record)
            continue
        finally:
            # The next run builds its own jitted functions (found again in the persistent cache): the
            # in-memory executables of this one would only grow the process over a long sweep.
            jax.clear_caches()
            gc.collect()
        seconds.append(time.perf_counter() - start)
        result.trained.append(run.id)
        say(f"{head}: finished ({how}) in {duration(seconds[-1])}: val F1 {metrics['val']['f1']:.4f}, "
            f"test F1 {metrics['test']['f1']:.4f}")
    write_failures(root, record)
    say(f"sweep {grid.name} shard {shard[0]}/{shard[1]} done: {len(result.trained)} trained, "
        f"{len(result.skipped)} finished before, {len(result.failed)} failed"
        + (f" (listed in {root / FAILURES})" if result.failed else "")
        + f"; table: python -m arner_jax.sweep report {root}")
    return result


# ---------------------------------------------------------------------- command line
def build_parser() -> ArgumentParser:
    # allow_abbrev=False: --seed (a training flag, refused) must not be read as --seeds
    p = ArgumentParser(prog="python -m arner_jax.sweep", allow_abbrev=False,
                       description="Train every configuration of a grid x seed, one run folder each; restartable.",
                       epilog="Any other training flag (python -m arner_jax.train --help) applies to every run, e.g. "
                              "--max_epochs 3 --dtype bfloat16, unless the grid varies it (--kind, --loss, ...).")
    p.add_argument("--preset", required=True, choices=list(GRIDS), help="the grid (arner_jax.configs.grids)")
    p.add_argument("--output_path", type=storage_path, required=True,
                   help="the sweep folder, local or gs://: DIR/<configuration>/seed<k>/ per run")
    p.add_argument("--seeds", type=int, default=1, help="runs per configuration; seed k is RunConfig seed 3407 + k")
    p.add_argument("--smoke", action="store_true",
                   help="each run's preset smoke variant: tiny encoder, synthetic corpus, one epoch (offline)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only the configurations whose names match a glob (nested-arbertv2-*); repeat or "
                        "separate with commas; a name without * ? [ matches itself only")
    p.add_argument("--shard", default="1/1", metavar="I/N", help="run every N-th run from the I-th (N machines)")
    p.add_argument("--dry_run", action="store_true", help="list the runs and their training commands; train nothing")
    p.add_argument("--encoder", action="append", default=[], metavar="HUB_ID=FOLDER",
                   help="load this hub id's encoder from a local folder (machines without the hub)")
    for name in DATA_FLAGS:
        p.add_argument(f"--{name}", type=storage_path,
                       help="Wojood file, local or gs:// (all three, or none: the Wojood sample of arner_jax)")
    p.add_argument("--compilation_cache", type=local_path, help="folder of JAX's persistent compilation cache "
                                               "(default: ~/.cache/arner_jax/jax_compilation_cache)")
    p.add_argument("--no_compilation_cache", action="store_true", help="do not use the persistent compilation cache")
    return p


def training_overrides(grid: Grid, argv: Sequence[str]) -> dict[str, Any]:
    """The training flags given to the sweep, parsed by the training CLI's parser of each preset."""
    from arner_jax.models.base import kinds, options_type
    from arner_jax.train.cli import RUN_FLAGS
    from arner_jax.train.cli import build_parser as training_parser

    fields = {f.name for f in settings_fields()}
    fields |= {o.name for kind in kinds() for o in dataclasses.fields(options_type(kind))}
    for word in argv:
        name = word[2:].split("=")[0] if word.startswith("--") else None
        if name is None:
            continue
        if name not in fields:
            raise UserError(f"--{name}: neither a flag of the sweep nor a training setting; see "
                            "python -m arner_jax.sweep --help")
        if name == "seed":
            raise UserError("--seed: the sweep gives seed k of each configuration RunConfig seed 3407 + k; "
                            "choose how many with --seeds N")
        if name in grid.varied():
            hint = "; --encoder HUB_ID=FOLDER loads an encoder from a local folder" if name == "bert_model" else ""
            raise UserError(f"--{name}: the grid {grid.name} sets it per configuration{hint}")
    given: dict[str, Any] = {}
    for preset in dict.fromkeys(c.preset for c in grid.configurations):
        args = training_parser(preset).parse_args(list(argv))
        given.update({k: v for k, v in vars(args).items() if k not in RUN_FLAGS})
    return given


def dry_run(grid_name: str, output_path: str | Path, *, seeds: int = 1, smoke: bool = False,
            only: Sequence[str] = (), shard: tuple[int, int] = (1, 1), overrides: dict[str, Any] | None = None,
            encoders: dict[str, str] | None = None) -> list[Run]:
    """Print this shard's runs, their state and the training command of each; writes nothing."""
    grid = get_grid(grid_name)
    everything = plan(grid, seeds, smoke, overrides, only, encoders)
    runs = take_shard(everything, shard)
    # refuses changed settings
    grid_record(grid, everything, smoke, seeds, shard, len(runs), files.location(output_path))
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.id} ({status(run_dir(output_path, run.configuration.name, run.seed_index))})")
        print(f"    {command(run, output_path, smoke, overrides)}")
    return runs


def main(argv: Sequence[str] | None = None) -> SweepResult | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    with exit_on_user_error():
        args, rest = build_parser().parse_known_args(argv)
        options = {"seeds": args.seeds, "smoke": args.smoke, "only": args.only, "shard": parse_shard(args.shard),
                   "overrides": {**training_overrides(get_grid(args.preset), rest), **_data_paths(args)},
                   "encoders": dict(_pair(text) for text in args.encoder)}
        files.check_reachable(args.output_path)  # a gs:// sweep folder: credentials and bucket, in one line
        if args.dry_run:
            with files.storage_errors(args.output_path):
                dry_run(args.preset, args.output_path, **options)
            return None
        from arner_jax.system import executables
        from arner_jax.train.cli import PREEMPTED_STATUS
        from arner_jax.train.loop import Preempted

        cache = None if args.no_compilation_cache else args.compilation_cache or executables.default_cache_dir()
        try:
            with files.storage_errors(args.output_path):  # the sweep folder's own files (each run's are its own)
                result = run_sweep(args.preset, args.output_path, compilation_cache=cache, **options)
        except Preempted as stop:
            print(f"preempted: {stop}; run the same command again to continue", file=sys.stderr)
            raise SystemExit(PREEMPTED_STATUS) from None
    if result.failed:
        raise SystemExit(1)
    return result


def _data_paths(args) -> dict[str, str]:
    """--train_path/--val_path/--test_path, checked up front (a missing file would fail every run)."""
    paths = {name: getattr(args, name) for name in DATA_FLAGS if getattr(args, name)}
    for name, path in paths.items():
        if not files.is_file(path):
            raise UserError(f"--{name} {path}: no such file")
    return paths


def _pair(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--encoder {text!r}: must be HUB_ID=FOLDER, e.g. UBC-NLP/ARBERTv2=/models/arbertv2")
    return name, folder
