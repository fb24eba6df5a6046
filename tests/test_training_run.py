"""Training runs end to end: the CLI, the run folder, resume after SIGKILL, compilations, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arner_jax.data.synthetic import write_synthetic_corpus
from arner_jax.train import cli
from tests.conftest import REPO


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return write_synthetic_corpus(folder, seed=3, sizes={"train": 1200, "val": 80, "test": 80})


def run_args(corpus, model, out, *extra):
    return ["--output_path", str(out), "--train_path", str(corpus["train"]), "--val_path", str(corpus["val"]),
            "--test_path", str(corpus["test"]), "--bert_model", str(model), "--batch_size", "4",
            "--max_length", "64", "--lr", "1e-3", "--log_every", "100000", *extra]


def results(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "timing"}


def spawn(args, log: Path):
    """The CLI in a new process; its output goes to `log` (a pipe nobody reads would block it)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(log, "w") as sink:
        return subprocess.Popen([sys.executable, "-m", "experiments.wojood_nested", *args], cwd=REPO, env=env,
                                stdout=sink, stderr=subprocess.STDOUT)


def complete_checkpoints(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists())


EPOCHS = 3  # 1200 training sentences (one window each) in batches of 4, cut per length bucket


@pytest.fixture(scope="module")
def straight_run(corpus, tiny_bert, tmp_path_factory):
    """An uninterrupted run; it also fills a persistent compilation cache for the runs below."""
    folder = tmp_path_factory.mktemp("straight")
    common = ["--max_epochs", str(EPOCHS), "--compilation_cache", str(folder / "jax_cache")]
    proc = spawn(run_args(corpus, tiny_bert, folder / "run", *common), folder / "out.txt")
    assert proc.wait(timeout=600) == 0, (folder / "out.txt").read_text()[-3000:]
    return folder / "run", common


@pytest.mark.parametrize("when", ["after_epoch_1", "mid_epoch_2"])
def test_killed_run_resumes_to_the_same_metrics(corpus, tiny_bert, straight_run, tmp_path, when):
    straight, common = straight_run
    per_epoch = json.loads((straight / "metrics.json").read_text())["steps"] // EPOCHS
    assert per_epoch >= 300
    extra = ["--checkpoint_every", "70"] if when == "mid_epoch_2" else []
    wanted = (lambda s: s > per_epoch and s % per_epoch) if extra else (lambda s: s == per_epoch)
    killed_dir = tmp_path / "killed"
    proc = spawn(run_args(corpus, tiny_bert, killed_dir, *common, *extra), tmp_path / "killed.out")
    deadline = time.time() + 600
    while not any(wanted(s) for s in complete_checkpoints(killed_dir / "checkpoints" / "latest")):
        assert proc.poll() is None, "the run ended before the checkpoint: " + (tmp_path / "killed.out").read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # really killed: no cleanup, no final save
    assert proc.wait() == -signal.SIGKILL
    assert not (killed_dir / "metrics.json").exists(), "killed too late: the run had finished"

    resumed = spawn(run_args(corpus, tiny_bert, killed_dir, *common, *extra, "--resume"), tmp_path / "resumed.out")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.out").read_text()[-3000:]
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed_dir / "metrics.json").read_text())
    assert results(b) == results(a)
    assert a["epochs_run"] == EPOCHS and a["val"]["gold_entities"] > 0 and a["val"]["f1"] > 0.3
    log = (killed_dir / "train.log").read_text()
    assert "resumed from checkpoints/latest" in log
    if extra:
        assert "(epoch 2, batch " in log and "(epoch 2, batch 0)" not in log
    for split in ("val", "test"):
        assert (killed_dir / f"predictions_{split}.txt").read_text() == (straight / f"predictions_{split}.txt").read_text()
    # The persistent compilation cache filled by the first run: the killed run's first epoch compiled nothing.
    assert a["timing"]["epochs"][0]["compilations"] > 0
    assert b["timing"]["epochs"][0]["compilations"] == 0
    assert b["timing"]["epochs"][0]["compilation_cache_hits"] > 0


def test_second_epoch_compiles_nothing_new_and_run_folder(corpus, tiny_bert, tmp_path):
    out = tmp_path / "run"
    metrics = cli.main(run_args(corpus, tiny_bert, out, "--max_epochs", "2", "--no_compilation_cache",
                                "--patience", "5"))
    epochs = metrics["timing"]["epochs"]
    assert epochs[0]["compilations"] > 0  # the counter sees compilations at all
    assert epochs[1]["compilations"] == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "vocab.json", "tokenizer", "checkpoints", "metrics.json", "train.log", "tensorboard",
            "predictions_val.txt", "predictions_test.txt"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "nested" and config["heads"] == {"num_heads": 12, "num_classes": 3}
    assert any((out / "tensorboard").iterdir())
    assert (out / "predictions_test.txt").read_text().startswith("Token\tGold Tag\tPredicted Tag\n")
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]


def test_non_empty_folder_is_refused_without_overwrite_or_resume(corpus, tiny_bert, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not empty"):
        cli.main(run_args(corpus, tiny_bert, out, "--max_epochs", "1", "--no_compilation_cache"))
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit, match="nothing to resume"):
        cli.main(run_args(corpus, tiny_bert, tmp_path / "new", "--resume", "--no_compilation_cache"))


def test_non_finite_loss_stops_the_run_naming_the_step(corpus, tiny_bert, tmp_path):
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(epoch 1, batch \d+\)"):
        cli.main(run_args(corpus, tiny_bert, tmp_path / "nan", "--max_epochs", "1", "--no_compilation_cache",
                          "--lr", "1e30"))


@pytest.mark.parametrize("kind", ["flat", "mtn"])
def test_flat_kinds_train_and_score_flat(corpus, tiny_bert, tmp_path, kind):
    metrics = cli.main(run_args(corpus, tiny_bert, tmp_path / kind, "--max_epochs", "1", "--no_compilation_cache",
                                "--kind", kind), default_kind="flat", kinds=("flat", "mtn"))
    assert metrics["val"]["mode"] == "flat" and metrics["kind"] == kind
    lines = (tmp_path / kind / "predictions_val.txt").read_text().splitlines()
    assert all(len(line.split("\t")) == 3 for line in lines[1:] if line)
    assert all("|" not in line.split("\t")[2] for line in lines[1:] if line)  # one predicted tag per word
    assert np.isfinite(metrics["val"]["loss"])


def test_bfloat16_shard_map_accumulation_and_warmup(corpus, tiny_bert, tmp_path):
    """The other switches together: bfloat16 compute, the shard_map wrapper, accumulation, warmup, F1 selection."""
    out = tmp_path / "bf16"
    metrics = cli.main(run_args(corpus, tiny_bert, out, "--max_epochs", "2", "--no_compilation_cache",
                                "--dtype", "bfloat16", "--parallel", "shard_map", "--grad_accum", "2",
                                "--warmup_ratio", "0.1", "--select_by", "f1"))
    assert metrics["timing"]["parallel"] == "shard_map" and metrics["select_by"] == "f1"
    assert all(np.isfinite(h["train_loss"]) for h in metrics["history"])
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    saved = json.loads((out / "config.json").read_text())["run"]
    assert (saved["dtype"], saved["grad_accum"], saved["warmup_ratio"]) == ("bfloat16", 2, 0.1)
    best = max(metrics["history"], key=lambda h: h["val_f1"])
    assert metrics["best_epoch"] == best["epoch"]
