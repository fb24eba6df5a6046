"""What the tests that run training in other processes share (kills, SIGTERM, several processes, gs:// runs):
the flags of a small run, starting the training command, killing it at a point, comparing results. Test
modules import from here, never from each other."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import QUIET, REPO

# two local processes of one device each (arner_jax.launch), and the smoke run they train
LAUNCH = [sys.executable, "-m", "arner_jax.launch", "--num_processes", "2", "--devices_per_process", "1", "--"]
TRAIN = [sys.executable, "-m", "arner_jax.train", "--preset", "wojood_nested", "--smoke", "--max_epochs", "2",
         "--no_compilation_cache", "--log_every", "100000"]


def results(metrics: dict) -> dict:
    """What a run's metrics say about the model (timings differ between a resumed and a straight run)."""
    return {k: v for k, v in metrics.items() if k != "timing"}


def folder_results(folder: Path) -> dict:
    return results(json.loads((folder / "metrics.json").read_text()))


def small(files, tiny_bert, *flags) -> list[str]:
    """A small run on the corpus `files` fine-tuning the tiny BERT (seconds an epoch)."""
    return ["--train_path", str(files["train"]), "--val_path", str(files["val"]), "--test_path", str(files["test"]),
            "--bert_model", str(tiny_bert), "--max_length", "64", "--batch_size", "8", "--lr", "2e-3", *flags]


def spawn(args: list[str], log: Path, preset: str = "wojood_nested") -> subprocess.Popen:
    """The training command in another process, its output appended to `log`."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(log, "a") as sink:
        return subprocess.Popen([sys.executable, "-m", "arner_jax.train", "--preset", preset, *args, *QUIET],
                                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)


def signal_when(proc: subprocess.Popen, reached: Callable[[], bool], log: Path, sig: int, poll: float = 0.002,
                timeout: float = 900) -> None:
    """Send `sig` to `proc` as soon as `reached()` holds; it must still be running then."""
    deadline = time.time() + timeout
    while not reached():
        assert proc.poll() is None, "the run ended before the point: " + log.read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(poll)
    proc.send_signal(sig)


def kill_when(proc: subprocess.Popen, reached: Callable[[], bool], log: Path, poll: float = 0.002) -> None:
    """SIGKILL `proc` (no cleanup, no final save) as soon as `reached()` holds, and wait for it."""
    signal_when(proc, reached, log, signal.SIGKILL, poll)
    assert proc.wait() == -signal.SIGKILL


def one_process_two_devices() -> dict:
    """The environment of one process with two CPU devices; the caller's XLA flags (--xla_cpu_max_isa=AVX2,
    say) stay, as arner_jax.launch keeps them for its processes: both sides of a comparison run the same ISA."""
    xla = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f)
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{xla} --xla_force_host_platform_device_count=2".strip())
