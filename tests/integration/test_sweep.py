"""Sweeps and their report: the plan of a grid (dry run, equivalent commands, shards, --only), a run
whose encoder cannot be loaded, the report of a partial sweep, a smoke sweep killed after its first
run and restarted. Every run trained here is the same smoke-sized program, compiled once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

UM6P_CE = "nested-arbertv2-ce"


def sweep_exit(argv: list[str], capsys) -> tuple[int, str, str]:
    """The sweep CLI in-process: its exit status, stdout and stderr."""
    from arner_jax.sweep import run as train_sweep

    capsys.readouterr()
    try:
        train_sweep.main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def dry_run(tmp_path: Path, capsys, *flags: str) -> list[str]:
    code, out, err = sweep_exit(["--output_path", str(tmp_path / "sweep"), "--dry_run", *flags], capsys)
    assert code == 0, err
    return [line.strip() for line in out.splitlines() if line.strip().startswith("python -m arner_jax.train")]


# ----------------------------------------------------------------------------- the plan (no training)
def test_dry_run_lists_every_configuration_and_seed(tmp_path, capsys):
    one = dry_run(tmp_path, capsys, "--preset", "um6p_table")
    two = dry_run(tmp_path, capsys, "--preset", "um6p_table", "--seeds", "2")
    assert (len(one), len(two)) == (24, 48)
    assert len(set(two)) == 48 and sum("--seed 3408 " in c for c in two) == 24
    assert len(dry_run(tmp_path, capsys, "--preset", "loss_ablation")) == 30
    assert not (tmp_path / "sweep").exists()  # a dry run writes nothing
    assert f"--output_path {tmp_path / 'sweep' / UM6P_CE / 'seed0'}" in one[0]


@pytest.mark.parametrize("grid, smoke, flags", [
    ("um6p_table", False, ["--max_epochs", "3", "--dtype", "bfloat16"]),
    ("um6p_table", True, ["--batch_size", "4"]),
    ("loss_ablation", False, ["--bert_model", "UBC-NLP/ARBERTv2", "--patience", "3"]),
])
def test_the_listed_commands_train_the_same_runs(grid, smoke, flags, tmp_path, capsys):
    """Each command of --dry_run, read by the training CLI, gives the RunConfig the sweep trains."""
    from arner_jax.configs.grids import get_grid
    from arner_jax.configs.presets import get_preset
    from arner_jax.sweep import folder as sweep
    from arner_jax.sweep import run as train_sweep
    from arner_jax.train import cli

    extra = ["--smoke"] * smoke + flags
    commands = dry_run(tmp_path, capsys, "--preset", grid, *extra)
    runs = sweep.plan(get_grid(grid), 1, smoke, train_sweep.training_overrides(get_grid(grid), flags))
    assert len(commands) == len(runs)
    for words, run in zip((c.split() for c in commands), runs):
        args = cli.build_parser(words[4]).parse_args(words[3:])
        given = {k: v for k, v in vars(args).items() if k not in cli.RUN_FLAGS}
        assert get_preset(args.preset).config(args.smoke, **given).with_absolute_inputs() == run.config, run.id


def test_shards_partition_the_runs_deterministically(tmp_path, capsys):
    from arner_jax.configs.grids import get_grid
    from arner_jax.sweep import folder as sweep

    runs = [r.id for r in sweep.plan(get_grid("um6p_table"), seeds=2)]
    shards = [dry_run(tmp_path, capsys, "--preset", "um6p_table", "--seeds", "2", "--shard", f"{i}/3")
              for i in (1, 2, 3)]
    assert [len(s) for s in shards] == [16, 16, 16]
    listed = [c.split("--output_path ")[1] for shard in shards for c in shard]
    assert len(set(listed)) == 48  # no run in two shards
    assert sorted(listed) == sorted(str(tmp_path / "sweep" / r) for r in runs)  # together all of them
    assert shards[1] == dry_run(tmp_path, capsys, "--preset", "um6p_table", "--seeds", "2", "--shard", "2/3")
    for bad in ("0/3", "4/3", "two"):
        code, _, err = sweep_exit(["--preset", "um6p_table", "--output_path", str(tmp_path), "--shard", bad,
                                   "--dry_run"], capsys)
        assert code == 2 and err.startswith("error: --shard") and err.count("\n") == 1


def test_only_selects_by_name_or_glob(tmp_path, capsys):
    assert len(dry_run(tmp_path, capsys, "--preset", "um6p_table", "--only", UM6P_CE)) == 1  # not ce-var
    assert len(dry_run(tmp_path, capsys, "--preset", "um6p_table", "--only", "nested-arbertv2-ce*")) == 2
    assert len(dry_run(tmp_path, capsys, "--preset", "um6p_table", "--only", "mtn-*", "--only", "*-qarib-ce")) == 13
    code, _, err = sweep_exit(["--preset", "um6p_table", "--output_path", str(tmp_path), "--only", "bert-*",
                               "--dry_run"], capsys)
    assert code == 2 and "matches no configuration" in err and UM6P_CE in err


def test_a_sweep_folder_keeps_its_settings_and_grows_by_rows_and_seeds(tmp_path, capsys):
    """sweep.json merges other --only selections, more seeds and shards; changed settings are refused."""
    from arner_jax.configs.grids import get_grid
    from arner_jax.data.files import atomic_write_json
    from arner_jax.sweep import folder as sweep

    grid, out = get_grid("um6p_table"), tmp_path / "sweep"
    runs = sweep.plan(grid, 1, True, only=["nested-*"])
    out.mkdir()
    atomic_write_json(out / sweep.SWEEP, sweep.grid_record(grid, runs, True, 1, (1, 1), len(runs), out))
    more = sweep.plan(grid, 2, True, only=["mtn-arbertv2-ce", "nested-qarib-ce"])
    record = sweep.grid_record(grid, more, True, 2, (2, 3), 2, out)
    assert len(record["configurations"]) == 13 and set(record["shards"]) == {"1/1", "2/3"}
    assert [c["name"] for c in record["configurations"]][-1] == "mtn-arbertv2-ce"  # in the grid's order
    assert {c["name"]: c["seeds"] for c in record["configurations"]}["nested-qarib-ce"] == 2
    smoke = ["--preset", "um6p_table", "--smoke", "--output_path", str(out), "--dry_run", "--only", "nested-qarib-ce"]
    code, _, err = sweep_exit([*smoke, "--max_epochs", "2"], capsys)
    assert code == 2 and "nested-qarib-ce ran with other settings (max_epochs)" in err
    code, _, err = sweep_exit(smoke[:2] + smoke[3:], capsys)  # the same folder without --smoke
    assert code == 2 and "holds the sweep of grid um6p_table (smoke)" in err


@pytest.mark.parametrize("flags, needle", [
    (["--loss", "ce"], "--loss: the grid um6p_table sets it per configuration"),
    (["--bert_model", "x"], "--encoder HUB_ID=FOLDER"),
    (["--seed", "1"], "--seeds N"),
    (["--resume"], "--resume: neither a flag of the sweep nor a training setting"),
    (["--max_epochs", "0"], "--max_epochs 0: must be a positive whole number"),
    (["--encoder", "UBC-NLP/ARBERTv2"], "must be HUB_ID=FOLDER"),
])
def test_flags_the_sweep_refuses_end_with_one_line(flags, needle, tmp_path, capsys):
    code, _, err = sweep_exit(["--preset", "um6p_table", "--output_path", str(tmp_path / "s"), *flags], capsys)
    assert code == 2 and needle in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- failures, partial sweeps
@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory, compilation_cache):
    """Shard 1/2 of a tiny grid of three configurations, not in smoke mode: `scratch-ce` trains (it is
    um6p_table's nested-arbertv2-ce --smoke, whose programs the kill test then finds in the cache),
    `missing-ce` names an encoder mapped by --encoder to a folder that does not exist, and
    `scratch-ce-var` is shard 2's, never started."""
    from arner_jax.configs.grids import GRIDS, Configuration, Grid
    from arner_jax.configs.presets import PRESETS
    from arner_jax.sweep import run as train_sweep

    smoke = PRESETS["wojood_nested"].config(smoke=True, loss="ce", var_penalty=0.0, lr=2e-5).to_dict()
    settings = {k: v for k, v in smoke.items() if k != "seed"}
    labels = {"encoder": "scratch", "loss": "CE"}
    tiny = Grid("tiny_test_grid", (
        Configuration("scratch-ce", "wojood_nested", settings, {**labels, "variance penalty": "off"}, 0.5),
        Configuration("scratch-ce-var", "wojood_nested", {**settings, "var_penalty": 5.0},
                      {**labels, "variance penalty": "on"}, 0.6),
        Configuration("missing-ce", "wojood_nested", {**settings, "bert_model": "example/missing"},
                      {**labels, "encoder": "missing"})))
    out = tmp_path_factory.mktemp("failing_sweep") / "sweep"
    argv = ["--preset", tiny.name, "--output_path", str(out), "--shard", "1/2",
            "--encoder", f"example/missing={out.parent / 'no_such_encoder'}",
            "--compilation_cache", str(compilation_cache)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GRIDS, tiny.name, tiny)
        try:
            train_sweep.main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code
    return out, code


def test_a_run_that_fails_is_recorded_and_the_others_finish(failing_sweep):
    out, code = failing_sweep
    assert code == 1
    assert (out / "scratch-ce" / "seed0" / "metrics.json").is_file()
    failures = json.loads((out / "failures.json").read_text())
    assert [f["run"] for f in failures] == ["missing-ce/seed0"]
    assert failures[0]["type"] == "CheckpointError" and "no_such_encoder: no such folder" in failures[0]["error"]
    kept = json.loads((out / "missing-ce" / "seed0" / "sweep_failure.json").read_text())
    assert "Traceback" in kept["traceback"][0] and "\n" not in kept["error"]
    failed_lines = [line for line in (out / "sweep.log").read_text().splitlines() if "FAILED" in line]
    assert len(failed_lines) == 1 and "missing-ce/seed0: FAILED: CheckpointError" in failed_lines[0]
    assert not (out / "scratch-ce-var").exists()  # shard 2's run


def test_report_of_a_partial_sweep_reads_only(failing_sweep, tmp_path):
    from arner_jax.sweep import report

    out, _ = failing_sweep
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    report.write_report(out, tmp_path / "tables")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written in the sweep
    rows = {r["configuration"]: r for r in json.loads((tmp_path / "tables" / "results.json").read_text())["rows"]}
    assert list(rows) == ["scratch-ce", "scratch-ce-var", "missing-ce"]
    assert [(r["seeds_finished"], r["seeds_failed"]) for r in rows.values()] == [(1, 0), (0, 0), (0, 1)]
    assert rows["scratch-ce"]["val_minus_paper"] == pytest.approx(rows["scratch-ce"]["val_f1_mean"] - 0.5)
    assert rows["missing-ce"]["val_f1_mean"] is None and rows["missing-ce"]["paper_val_f1"] is None
    md = (tmp_path / "tables" / "results.md").read_text()
    assert "## Failed runs" in md and "`missing-ce/seed0`: CheckpointError" in md
    assert "| scratch-ce-var | scratch | CE | on | 0/1 |  |  | 0.6000 |  |" in md
    assert "1 finished, 1 failed, 1 new (of 3)" in md
    assert (tmp_path / "tables" / "curves_f1.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- kill and restart
@pytest.mark.slow  # a kill, as the other kill tests (30 s); the default set records a failed run and reports it
def test_a_killed_sweep_restarts_without_retraining_its_finished_run(tmp_path, compilation_cache, capsys):
    from arner_jax.sweep import report

    out = tmp_path / "sweep"
    argv = ["--preset", "um6p_table", "--smoke", "--only", UM6P_CE, "--seeds", "2", "--output_path", str(out),
            "--compilation_cache", str(compilation_cache)]
    first = out / UM6P_CE / "seed0" / "metrics.json"
    with open(tmp_path / "log.txt", "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "arner_jax.sweep", *argv], cwd=REPO, stdout=sink,
                                stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    deadline = time.time() + 600
    while not first.is_file():
        assert proc.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    finished_at = first.stat().st_mtime_ns

    partial = report.collect(out)  # the report of the killed sweep: one seed of two
    assert [(r["seeds_finished"], r["seeds_expected"]) for r in partial["rows"]] == [(1, 2)]

    code, stdout, _ = sweep_exit(argv, capsys)
    assert code == 0
    assert f"{UM6P_CE}/seed0: skipped (finished before)" in stdout
    assert first.stat().st_mtime_ns == finished_at
    log = (out / "sweep.log").read_text()
    # trained once: a kill between writing metrics.json and logging may leave out its "finished" line
    assert log.count(f"{UM6P_CE}/seed0: training") == 1 and log.count(f"{UM6P_CE}/seed1: finished") == 1
    assert (out / UM6P_CE / "seed1" / "metrics.json").is_file()

    written = report.main([str(out)])
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["configuration"], r["seeds_finished"], r["paper_val_f1"]) for r in rows] == [(UM6P_CE, 2, 0.918)]
    assert rows[0]["seeds_used"] == "3407 3408" and rows[0]["val_f1_std"] is not None
    assert f"| {UM6P_CE} | nested | ARBERTv2 | CE | off | 2/2 |" in (out / "results.md").read_text()
    assert "0.9303" in (out / "results.md").read_text()  # the official test figure, as a note
    assert (out / "results.csv").read_text().splitlines()[0].startswith("configuration,kind,encoder,loss")
    for name in ("curves_f1.png", "curves_loss.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
