"""Training runs end to end through the CLI's main, in-process: the run folder, compilations, the
switches (flat/MTN, bfloat16, shard_map, accumulation, warmup, F1 selection), a NaN loss, and one
subprocess smoke test of each training entry point."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, train_run

SMALL = ["--synthetic", "--synthetic_sizes", "240", "40", "40", "--max_length", "64", "--batch_size", "8",
         "--lr", "2e-3"]


def tiny(tiny_bert, *flags):
    return [*SMALL, "--bert_model", str(tiny_bert), *flags]


def test_second_epoch_compiles_nothing_new_and_run_folder(nested_run):
    out = nested_run  # the session's shared nested run (tests/conftest.py)
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = metrics["timing"]["epochs"]
    # the counter sees compilations at all: no other run of the session has these settings' programs
    assert epochs[0]["compilations"] > 0 and epochs[0]["programs_loaded"] == 0
    assert all(e["compilations"] == 0 and e["compilation_cache_hits"] == 0 for e in epochs[1:])
    # tokens trained on, and computed with the padding: the same every epoch (the same windows, reshuffled)
    assert all(0 < e["tokens"] < e["computed_tokens"] == epochs[0]["computed_tokens"] for e in epochs)
    names = {p.name for p in out.iterdir()}
    assert {".arner_jax_run", "config.json", "vocab.json", "tokenizer", "checkpoints", "metrics.json", "train.log",
            "tensorboard", "predictions_val.txt", "predictions_test.txt", "data"} <= names
    config = json.loads((out / "config.json").read_text())
    assert (config["format"], config["kind"], config["family"]) == ("arner_jax-run/2", "nested", "tagger")
    assert config["data"] == {"train": "data/train.txt", "val": "data/val.txt", "test": "data/test.txt"}
    assert any((out / "tensorboard").iterdir())
    assert (out / "predictions_test.txt").read_text().startswith("Token\tGold Tag\tPredicted Tag\n")
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, metrics["epochs_run"] + 1))
    assert metrics["epochs_run"] >= 2
    log = (out / "train.log").read_text()
    assert "\r" not in log and "epoch 2: train loss" in log  # compact lines, no progress-bar frames


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_bert, tmp_path):
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(epoch 1, batch \d+\)"):
        train_run(tmp_path / "nan", "wojood_nested", *tiny(tiny_bert, "--max_epochs", "1", "--lr", "1e30"))


@pytest.mark.slow
def test_mtn_trains_and_scores_flat(tiny_bert, tmp_path):
    metrics = train_run(tmp_path / "mtn", "wojood_flat", *tiny(tiny_bert, "--max_epochs", "1", "--kind", "mtn"))
    assert metrics["val"]["mode"] == "flat" and metrics["kind"] == "mtn"
    lines = (tmp_path / "mtn" / "predictions_val.txt").read_text().splitlines()
    assert all(len(line.split("\t")) == 3 for line in lines[1:] if line)
    assert all("|" not in line.split("\t")[2] for line in lines[1:] if line)  # one predicted tag per word
    assert np.isfinite(metrics["val"]["loss"])


def test_flat_run_scores_flat(flat_run):
    metrics = json.loads((flat_run / "metrics.json").read_text())
    assert metrics["kind"] == "flat" and metrics["val"]["mode"] == "flat" and metrics["val"]["f1"] > 0.5


@pytest.mark.slow
def test_bfloat16_shard_map_accumulation_and_f1_selection(tiny_bert, tmp_path):
    """The other switches together: bfloat16 compute, the shard_map wrapper, accumulation, warmup, F1 selection."""
    out = tmp_path / "bf16"
    metrics = train_run(out, "wojood_nested", *tiny(tiny_bert, "--max_epochs", "2", "--dtype", "bfloat16",
                                                    "--parallel", "shard_map", "--grad_accum", "2", "--batch_size",
                                                    "4", "--warmup_ratio", "0.1", "--select_by", "f1"))
    assert metrics["timing"]["parallel"] == "shard_map" and metrics["select_by"] == "f1"
    assert all(np.isfinite(h["train_loss"]) for h in metrics["history"])
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    saved = json.loads((out / "config.json").read_text())["run"]
    assert (saved["dtype"], saved["grad_accum"], saved["warmup_ratio"]) == ("bfloat16", 2, 0.1)
    best = max(metrics["history"], key=lambda h: h["val_f1"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["steps"] == 2 * 31  # 240 sentences in updates of 4 x 2 rows: 31 per epoch (buckets)


@pytest.mark.slow  # the default set runs `python -m experiments.wojood_nested --help` (test_host_memory.py)
@pytest.mark.parametrize("module", ["experiments.wojood_nested", "arner_jax.train"])
def test_training_entry_points_in_a_process(module, tmp_path):
    """`python -m experiments.NAME` (from the checkout) and `python -m arner_jax.train --preset` run a smoke run."""
    out = subprocess.run([sys.executable, "-m", module, "--smoke", "--output_path", str(tmp_path / "run"),
                          "--no_compilation_cache"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test micro-F1" in out.stdout and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow
def test_two_identical_runs_give_identical_metrics_and_the_second_compiles_almost_nothing(tmp_path):
    """Same seed and data, the from-scratch tokenizer included: the same metrics.json (timings aside), and the
    second run loads its programs from the persistent compilation cache instead of compiling them."""
    cache = tmp_path / "cache"
    first = train_run(tmp_path / "one", "wojood_nested", "--smoke", "--max_epochs", "2", cache=cache)
    second = train_run(tmp_path / "two", "wojood_nested", "--smoke", "--max_epochs", "2", cache=cache)
    assert {k: v for k, v in first.items() if k != "timing"} == {k: v for k, v in second.items() if k != "timing"}
    compiled = [sum(e["compilations"] for e in m["timing"]["epochs"]) for m in (first, second)]
    assert compiled[0] > 0 and compiled[1] <= 0.1 * compiled[0], compiled
    assert (tmp_path / "one" / "tokenizer" / "tokenizer.json").read_bytes() == \
        (tmp_path / "two" / "tokenizer" / "tokenizer.json").read_bytes()
