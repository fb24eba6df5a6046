"""Multi-process JAX on one machine: `python -m arner_jax.launch` and `arner_jax.system.distributed`.

The launcher runs real processes: JAX ones that reduce across processes over CPU collectives,
and plain ones that fail or sleep, to check that a failure or a signal leaves nothing running.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arner_jax.system import distributed
from tests.conftest import REPO

pytestmark = pytest.mark.multiprocess

LAUNCH = [sys.executable, "-m", "arner_jax.launch"]
JAX_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

# Process 0 starts a grandchild and records both pids, then sleeps; process 1 fails once they are recorded.
FAIL_OR_SLEEP = """
import os, subprocess, sys, time
pids = sys.argv[1]
if os.environ["JAX_PROCESS_ID"] == "0":
    child = subprocess.Popen(["sleep", "60"])
    with open(pids + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(pids + ".tmp", pids)
    time.sleep(60)
else:
    while not os.path.exists(pids):
        time.sleep(0.05)
    print("failing now")
    sys.exit(3)
"""

PRINT_PID_AND_SLEEP = "import os, time; print('pid', os.getpid()); time.sleep(60)"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in JAX_VARS + ("XLA_FLAGS", "JAX_PLATFORMS"):
        env.pop(name, None)
    return env


def _launch(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(LAUNCH + args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def _gone(pid: int) -> bool:
    """No such process, or one that has exited and only waits to be reaped (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat[stat.rindex(")") + 2] == "Z"


def _wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    """The pids still running after up to `seconds` (an orphan's reaping may take a moment)."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if not _gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize("devices", [1, 2])
def test_reduction_spans_processes(devices: int):
    """2 processes x `devices` CPU devices: psum and process_allgather see both processes."""
    run = _launch(["--num_processes", "2", "--devices_per_process", str(devices), "--",
                   sys.executable, "-m", "tests.distributed_worker"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = {}
    for line in run.stdout.splitlines():
        if match := re.fullmatch(r"\[(\d)\] RESULT (.*)", line):
            results[int(match.group(1))] = json.loads(match.group(2))
    assert sorted(results) == [0, 1], run.stdout[-3000:]
    for index, result in results.items():
        assert result["index"] == index  # the "[i] " prefix names the process that printed
        assert result["count"] == result["jax_process_count"] == 2
        assert result["devices"] == 2 * devices and result["local_devices"] == devices
        # Each device adds its process index + 1: only a sum over both processes gives 3 per device.
        assert result["psum"] == [3.0 * devices] * devices
        assert result["gathered"] == [0, 1]
        assert result["primary"] == (index == 0)


def test_failure_stops_the_others(tmp_path: Path):
    """Process 1 exits 3: the launcher exits 3 at once, process 0 and its child are gone."""
    pids = tmp_path / "pids"
    start = time.monotonic()
    run = _launch(["--num_processes", "2", "--", sys.executable, "-c", FAIL_OR_SLEEP, str(pids)])
    elapsed = time.monotonic() - start
    assert run.returncode == 3, run.stdout + run.stderr
    assert "[1] failing now" in run.stdout.splitlines()
    assert elapsed < 15, f"the launcher took {elapsed:.1f} s to stop"
    assert _wait_gone([int(p) for p in pids.read_text().split()]) == []


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_is_forwarded(signum: int, status: int):
    proc = subprocess.Popen(LAUNCH + ["--num_processes", "2", "--", sys.executable, "-c", PRINT_PID_AND_SLEEP],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(proc.stdout.readline().split()[-1]) for _ in range(2)]
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == status
    finally:
        proc.kill()
        proc.wait()
    assert _wait_gone(pids) == []


@pytest.mark.parametrize("args,needle", [
    (["--num_processes", "0", "--", "true"], "--num_processes must be at least 1"),
    (["--num_processes", "2", "--"], "no command"),
    (["--num_processes", "2"], "no command"),
    (["--num_processes", "two", "--", "true"], "invalid int value"),
])
def test_user_errors(args: list[str], needle: str):
    run = _launch(args)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and needle in run.stderr
    assert run.stdout == ""


def _clear_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in JAX_VARS + ("TPU_WORKER_HOSTNAMES", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("env,kwargs,missing", [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, {}, ["JAX_NUM_PROCESSES", "JAX_PROCESS_ID"]),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, {}, ["JAX_COORDINATOR_ADDRESS"]),
    ({"JAX_NUM_PROCESSES": "2"}, {"coordinator_address": "127.0.0.1:1234"}, ["JAX_PROCESS_ID"]),
])
def test_partial_settings_error_is_one_line(monkeypatch: pytest.MonkeyPatch, env: dict, kwargs: dict,
                                            missing: list[str]):
    _clear_cluster_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedSetupError) as error:
        distributed.initialize(**kwargs)
    message = str(error.value)
    assert "\n" not in message
    match = re.fullmatch(r"multi-process JAX: (.+) given but (.+) missing; set \2 too \(.+\)", message)
    assert match, message
    given, wanted = match.groups()
    for name in JAX_VARS:
        assert (name in wanted) == (name in missing), message
        assert (name in given) == (name not in missing), message


@pytest.mark.parametrize("env,kwargs,needle", [
    ({"JAX_NUM_PROCESSES": "two"}, {}, "JAX_NUM_PROCESSES must be an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, {}, "JAX_PROCESS_ID=2"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}, {"num_processes": 1},
     "JAX_NUM_PROCESSES=1"),  # the argument wins over the variable
])
def test_invalid_settings(monkeypatch: pytest.MonkeyPatch, env: dict, kwargs: dict, needle: str):
    _clear_cluster_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedSetupError, match=needle):
        distributed.initialize(**kwargs)


def test_single_process_without_settings(monkeypatch: pytest.MonkeyPatch):
    _clear_cluster_env(monkeypatch)
    assert distributed.initialize() is False
    assert distributed.initialize(coordinator_address="127.0.0.1:1", mode="off") is False
    with pytest.raises(ValueError, match="mode"):
        distributed.initialize(mode="always")
