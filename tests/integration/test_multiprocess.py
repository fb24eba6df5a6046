"""Several processes (real ones, on 127.0.0.1, through `python -m arner_jax.launch`) train exactly as one
process with as many devices: step by step, and whole runs (which also resume after both are killed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO
from tests.runs import LAUNCH, TRAIN, one_process_two_devices
from tests.runs import folder_results as results

pytestmark = pytest.mark.multiprocess
@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("steps")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    two = subprocess.run([*LAUNCH, sys.executable, "-m", "tests.multiprocess_worker", str(out / "two")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "[0] processes 2, devices 2" in two.stdout and "[1] processes 2, devices 2" in two.stdout
    one = subprocess.run([sys.executable, "-m", "tests.multiprocess_worker", str(out / "one")], cwd=REPO,
                         env=one_process_two_devices(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("wrapper", ["pmap", "shard_map"])
def test_two_processes_step_like_one_process_with_two_devices(steps, wrapper):
    one, two = np.load(steps / "one" / f"{wrapper}.npz"), np.load(steps / "two" / f"{wrapper}.npz")
    assert np.abs(one["gradient"]).max() > 1e-3
    assert np.abs(one["gradient"] - two["gradient"]).max() <= 1e-6
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6, atol=1e-6)
    assert np.abs(one["params"] - two["params"]).max() <= 1e-6
    assert (one["ids"] == two["ids"]).all() and abs(float(one["eval_loss"]) - float(two["eval_loss"])) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_two_process_run_equals_one_process_with_two_devices(parallel, tmp_path):
    """The default scratch encoder (its tokenizer built by process 0, loaded by process 1) and the synthetic
    corpus: the same metrics, and the same tokenizer files."""
    flags = ["--parallel", parallel]
    one = subprocess.run([*TRAIN, *flags, "--output_path", str(tmp_path / "one")], cwd=REPO,
                         env=one_process_two_devices(), capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*LAUNCH, *TRAIN, *flags, "--output_path", str(tmp_path / "two")], cwd=REPO,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert results(tmp_path / "two") == results(tmp_path / "one")
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["timing"]["devices"] == 2 and metrics["val"]["gold_entities"] > 0
    files = {run: {p.name: p.read_bytes() for p in (tmp_path / run / "tokenizer").iterdir()} for run in ("one", "two")}
    assert "tokenizer.json" in files["one"] and files["two"] == files["one"]


@pytest.mark.slow
def test_a_two_process_span_run_equals_one_process_with_two_devices(tmp_path):
    """A span model packs each step's rows and gives every process as many packed rows: two processes of one
    device each train what one process with two devices trains (the same metrics)."""
    train = [*TRAIN[:TRAIN.index("--preset") + 1], "wojood_span_nested", *TRAIN[TRAIN.index("--preset") + 2:]]
    one = subprocess.run([*train, "--output_path", str(tmp_path / "one")], cwd=REPO, env=one_process_two_devices(),
                         capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*LAUNCH, *train, "--output_path", str(tmp_path / "two")], cwd=REPO,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert results(tmp_path / "two") == results(tmp_path / "one")
    epochs = json.loads((tmp_path / "two" / "metrics.json").read_text())["timing"]["epochs"]
    assert all(0 < e["tokens"] < e["computed_tokens"] for e in epochs)


@pytest.mark.slow
def test_both_processes_killed_after_a_checkpoint_resume_to_the_same_metrics(tmp_path):
    from arner_jax.runs.checkpoints import complete_steps

    flags = ["--max_epochs", "3", "--checkpoint_every", "10"]
    straight = subprocess.run([*LAUNCH, *TRAIN, *flags, "--output_path", str(tmp_path / "straight")], cwd=REPO,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    assert straight.returncode == 0, straight.stdout[-3000:]
    run = tmp_path / "killed"
    launcher = subprocess.Popen([*LAUNCH, *TRAIN, *flags, "--output_path", str(run)], cwd=REPO,
                                env=dict(os.environ, JAX_PLATFORMS="cpu"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 900
    while len(complete_steps(run / "checkpoints" / "latest")) < 2:
        assert launcher.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.01)
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both training processes, no cleanup
    launcher.wait()
    time.sleep(1)
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run([*LAUNCH, *TRAIN[:3], "--output_path", str(run), "--resume"], cwd=REPO,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert results(run) == results(tmp_path / "straight")


def test_processes_given_different_settings_stop_with_one_line(tmp_path):
    code = ("import os, sys\n"
            "lr = '1e-3' if os.environ['JAX_PROCESS_ID'] == '0' else '2e-3'\n"
            "from arner_jax.train.cli import main\n"
            f"main(['--smoke', '--output_path', {str(tmp_path / 'run')!r}, '--lr', lr, '--no_compilation_cache'])\n")
    out = subprocess.run([*LAUNCH, sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2
    errors = [line for line in out.stdout.splitlines() if "error:" in line]
    assert errors and all("the processes differ in --lr" in line for line in errors), out.stdout[-2000:]
    assert not (tmp_path / "run").exists()
