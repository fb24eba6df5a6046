"""The sweep folder and the plan of a sweep: every configuration of a grid x every seed, a run folder each.

    python -m arner_jax.sweep --preset um6p_table --output_path DIR [--seeds N] [--smoke] [--shard I/N]
                              [--only PATTERN] [--dry_run] [--encoder HUB_ID=FOLDER] [training flags]

Owns the sweep folder's layout and what runs in it (readers such as arner_jax.sweep.report use this
module; running the runs is arner_jax.sweep.run's):
  DIR/sweep.json                 the grid: its configurations with their settings, labels and published
                                 figures, seeds, notes, shards that ran; what the report expects
  DIR/sweep.log                  one line per event: run started, finished (with F1), skipped, failed
  DIR/failures.json              the runs whose last attempt failed, one line of error each
  DIR/<configuration>/seed<k>/   the run folder of seed k (RunConfig seed 3407 + k); a failed run keeps
                                 its exception (type, message, traceback) in sweep_failure.json there
`--shard I/N` runs every N-th run from the I-th, so N machines share a grid; their run folders
merge in one DIR (a shared disk, or copied together) for `python -m arner_jax.sweep report DIR`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import shlex
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arner_jax.config import RunConfig
from arner_jax.configs.grids import Configuration, Grid
from arner_jax.configs.presets import SMOKE_OFFLINE
from arner_jax.data import files
from arner_jax.data.files import atomic_write_json
from arner_jax.errors import UserError
from arner_jax.runs import run_folder

FORMAT = "arner_jax-sweep/1"
SWEEP, LOG, FAILURES = "sweep.json", "sweep.log", "failures.json"
FAILURE = "sweep_failure.json"  # in a run folder: the exception of its last attempt
DATA_FLAGS = ("train_path", "val_path", "test_path")


def run_dir(root: str | Path, configuration: str, seed_index: int) -> Path:
    """The run folder of one configuration's seed `seed_index` in a sweep folder."""
    return files.location(root) / configuration / f"seed{seed_index}"


@dataclasses.dataclass(frozen=True)
class Run:
    configuration: Configuration  # with the sweep's encoder folders applied
    seed_index: int
    config: RunConfig

    @property
    def id(self) -> str:
        return f"{self.configuration.name}/seed{self.seed_index}"


# ---------------------------------------------------------------------- the plan
def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: must be I/N, e.g. 2/3 (the second of three machines)") from None
    if not 1 <= index <= count:
        raise UserError(f"--shard {text!r}: needs 1 <= I <= N")
    return index, count


def select(grid: Grid, only: Sequence[str] = ()) -> list[Configuration]:
    """The grid's configurations whose names match one of the `only` globs (all when none is given)."""
    if not only:
        return list(grid.configurations)
    patterns = [p.strip() for text in only for p in text.split(",") if p.strip()]
    chosen = [c for c in grid.configurations if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        raise UserError(f"--only {','.join(patterns)}: matches no configuration of {grid.name}; its names: "
                        + ", ".join(c.name for c in grid.configurations))
    return chosen


def with_encoders(configuration: Configuration, encoders: dict[str, str]) -> Configuration:
    """The configuration with its encoder replaced by the folder given for its hub id (--encoder HUB_ID=FOLDER)."""
    name = configuration.settings.get("bert_model")
    if name not in encoders:
        return configuration
    return dataclasses.replace(configuration, settings={**configuration.settings, "bert_model": encoders[name]})


def plan(grid: Grid, seeds: int = 1, smoke: bool = False, overrides: dict[str, Any] | None = None,
         only: Sequence[str] = (), encoders: dict[str, str] | None = None) -> list[Run]:
    """Every run of the sweep, in order: seed 0 of every configuration, then seed 1, ... (so a partial
    sweep fills the whole table first)."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: must be at least 1")
    configurations = [with_encoders(c, encoders or {}) for c in select(grid, only)]
    return [Run(c, k, c.run_config(k, smoke, **(overrides or {})).with_absolute_inputs())
            for k in range(seeds) for c in configurations]


def take_shard(runs: Sequence[Run], shard: tuple[int, int]) -> list[Run]:
    """Shard I/N's runs: every N-th run from the I-th (deterministic, disjoint, together all runs)."""
    index, count = shard
    return list(runs[index - 1::count])


def command(run: Run, root: str | Path, smoke: bool = False, overrides: dict[str, Any] | None = None) -> str:
    """The `python -m arner_jax.train` command that trains the same run on its own."""
    settings = {**run.configuration.settings, **(overrides or {})}
    if smoke:  # the smoke variant ignores them
        settings = {k: v for k, v in settings.items() if k not in SMOKE_OFFLINE}
    words = ["python", "-m", "arner_jax.train", "--preset", run.configuration.preset] + (["--smoke"] if smoke else [])
    for name in settings:
        value = run.config.get(name)  # as the run will use it (paths absolute)
        if value is None or value is False:
            continue
        words.append(f"--{name}")
        if value is not True:
            words.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
    words += ["--seed", str(run.config.seed), "--output_path", str(run_dir(root, run.configuration.name,
                                                                            run.seed_index))]
    return shlex.join(words)


STATES = ("finished", "failed", "interrupted", "damaged", "new")


def status(folder: Path) -> str:
    """One of STATES: finished, failed (its last attempt), interrupted (resumable), damaged (to start
    again: a run folder without its settings, or other files), new."""
    if (folder / run_folder.METRICS).is_file():
        return "finished"
    if (folder / FAILURE).is_file():
        return "failed"
    if run_folder.is_run_folder(folder) and (folder / run_folder.CONFIG).is_file():
        return "interrupted"
    return "damaged" if folder.is_dir() and any(folder.iterdir()) else "new"


# ---------------------------------------------------------------------- sweep.json
def grid_record(grid: Grid, runs: Sequence[Run], smoke: bool, seeds: int, shard: tuple[int, int],
                shard_runs: int, root: Path) -> dict:
    """sweep.json for the sweep's runs (all shards), merged with the one already in `root` (other --only selections,
    more seeds, other shards); a configuration whose settings changed is refused, since its finished
    runs would not be comparable with the new ones."""
    configurations = {}
    for run in runs:
        c = run.configuration
        if c.name not in configurations:
            config = json.loads(json.dumps(run.config.replace(seed=run.config.seed - run.seed_index).to_dict()))
            configurations[c.name] = {"name": c.name, "preset": c.preset, "labels": c.labels, "paper": c.paper,
                                      "seeds": seeds, "run_config": config}
    shards = {f"{shard[0]}/{shard[1]}": {"host": socket.gethostname(), "runs": shard_runs,
                                         "time": time.strftime("%Y-%m-%d %H:%M:%S")}}
    path = root / SWEEP
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old.get("grid"), old.get("smoke")) != (grid.name, smoke):
            raise UserError(f"{root}: holds the sweep of grid {old.get('grid')}{' (smoke)' * bool(old.get('smoke'))}; "
                            "give another --output_path, or the same --preset and --smoke")
        for entry in old["configurations"]:
            new = configurations.get(entry["name"])
            if new is None:
                configurations[entry["name"]] = entry
                continue
            changed = sorted(k for k in {**entry["run_config"], **new["run_config"]}
                             if entry["run_config"].get(k) != new["run_config"].get(k))
            if changed:
                raise UserError(f"{root}: {entry['name']} ran with other settings ({', '.join(changed)}); give the "
                                "same flags as before, or another --output_path")
            new["seeds"] = max(new["seeds"], entry["seeds"])
        shards = {**old.get("shards", {}), **shards}
    order = {c.name: i for i, c in enumerate(grid.configurations)}
    return {"format": FORMAT, "grid": grid.name, "description": grid.summary,
            "smoke": smoke, "notes": list(grid.notes),
            "configurations": sorted(configurations.values(), key=lambda e: order.get(e["name"], len(order))),
            "shards": shards}


def read_record(root: str | Path) -> dict:
    """A sweep folder's sweep.json; UserError when it has none."""
    path = files.location(root) / SWEEP
    if not path.is_file():
        raise UserError(f"{root}: no {SWEEP}; pass the --output_path of a sweep (python -m arner_jax.sweep)")
    return json.loads(path.read_text(encoding="utf-8"))


def write_failures(root: Path, record: dict) -> list[dict]:
    """failures.json: every run of the sweep whose last attempt failed (read from the run folders, so
    that shards sharing DIR see each other's)."""
    failures = []
    for entry in record["configurations"]:
        for seed_index in range(entry["seeds"]):
            folder = run_dir(root, entry["name"], seed_index)
            if (folder / FAILURE).is_file() and not (folder / run_folder.METRICS).is_file():
                failure = json.loads((folder / FAILURE).read_text(encoding="utf-8"))
                failures.append({key: failure[key] for key in ("run", "type", "error", "time")})
    atomic_write_json(root / FAILURES, failures)
    return failures


