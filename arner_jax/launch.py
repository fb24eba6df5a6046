"""Run a command as N local JAX processes: multi-host training tried on one machine.

    python -m arner_jax.launch --num_processes N [--devices_per_process K] [--port P]
        [--grace_period S] -- <command ...>

Owns: starting the N processes with the variables `arner_jax.system.distributed.initialize` reads
(JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>, JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=i), optionally K
fake CPU devices each; prefixing every output line of process i with "[i] " (its stdout and
stderr merged); and stopping them together. When a process fails, the others are terminated
(their whole process groups: SIGTERM, then SIGKILL after S seconds, 5 by default) and the
launcher exits with the failed process's status; SIGINT/SIGTERM to the launcher is forwarded to
all of them, and it exits 128 + the signal's number.
The launcher itself never imports JAX.
"""
from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, NoReturn

from arner_jax.errors import ArgumentParser

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
POLL_SECONDS = 0.05


def _usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's options (before `--`) and the command (after it)."""
    argv = list(argv)
    parser = ArgumentParser(prog="python -m arner_jax.launch", description=__doc__.split("\n\n")[0],
                     usage="%(prog)s --num_processes N [--devices_per_process K] [--port P] [--grace_period S] "
                           "-- command ...")
    parser.add_argument("--num_processes", type=int, required=True, help="how many processes to start")
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="give each process K CPU devices (sets JAX_PLATFORMS=cpu and XLA_FLAGS)")
    parser.add_argument("--port", type=int, default=None, help="the coordinator's port (default: a free one)")
    parser.add_argument("--grace_period", type=float, default=5.0,
                        help="seconds between SIGTERM and SIGKILL when stopping the processes")
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        _usage_error("no command to run: put it after '--', e.g. "
                     "python -m arner_jax.launch --num_processes 2 -- python train.py")
    if args.num_processes < 1:
        _usage_error(f"--num_processes must be at least 1, got {args.num_processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        _usage_error(f"--devices_per_process must be at least 1, got {args.devices_per_process}")
    if args.port is not None and not 0 < args.port < 65536:
        _usage_error(f"--port must be in 1..65535, got {args.port}")
    if args.grace_period < 0:
        _usage_error(f"--grace_period must not be negative, got {args.grace_period}")
    return args, command


def free_port() -> int:
    """A TCP port free at the moment (the coordinator binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def process_env(base: dict[str, str], index: int, count: int, port: int, devices: int | None) -> dict[str, str]:
    """The environment of process `index`: the JAX_* settings, unbuffered Python, fake devices."""
    env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(count),
               JAX_PROCESS_ID=str(index), PYTHONUNBUFFERED="1")
    if devices is not None:
        # A device count already in XLA_FLAGS is replaced: XLA does not say which of two wins.
        flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_COUNT_FLAG + "=")]
        env["XLA_FLAGS"] = " ".join(flags + [f"{DEVICE_COUNT_FLAG}={devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    return env


class Group:
    """The N processes, each the leader of its own process group, and their output pumps."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.lock = threading.Lock()  # one line at a time on the shared output
        self.exits: queue.Queue[tuple[int, int]] = queue.Queue()
        self.procs: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        self.signalled: int | None = None

    def on_signal(self, signum: int, _frame: object) -> None:
        """SIGINT/SIGTERM handler: the main loop forwards the first; a second one kills at once."""
        if self.signalled is None:
            self.signalled = signum
        else:
            self.signal_all(signal.SIGKILL)

    def start(self, command: list[str], envs: list[dict[str, str]]) -> None:
        for index, env in enumerate(envs):
            # A session of its own: the whole tree of process i can be signalled at once
            # (os.killpg), and a Ctrl-C in the terminal reaches the launcher only, which forwards it.
            try:
                proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                self.stop(signal.SIGTERM, grace=0.0)
                _usage_error(f"cannot run {command[0]!r}: {exc.strerror or exc}")
            self.procs.append(proc)
            for target in (self._pump, self._wait):
                thread = threading.Thread(target=target, args=(index, proc), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, index: int, proc: subprocess.Popen) -> None:
        prefix = f"[{index}] ".encode()
        for line in iter(proc.stdout.readline, b""):
            with self.lock:
                self.out.write(prefix + line + (b"" if line.endswith(b"\n") else b"\n"))
                self.out.flush()

    def _wait(self, index: int, proc: subprocess.Popen) -> None:
        self.exits.put((index, proc.wait()))

    def wait(self) -> int:
        """Wait until all processes succeed (0), one fails (its status, shell-style) or a signal comes."""
        running = len(self.procs)
        while running and self.signalled is None:
            try:
                _, code = self.exits.get(timeout=POLL_SECONDS)  # short: a signal is seen promptly
            except queue.Empty:
                continue
            running -= 1
            if code:
                return 128 - code if code < 0 else code  # killed by signal s: 128 + s, as shells say
        return 0

    def signal_all(self, signum: int) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:  # the group is gone already
                pass

    def _alive(self) -> bool:
        """Whether any process of any group (children's children included) still runs."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 0)
                return True
            except ProcessLookupError:
                pass
        return False

    def stop(self, signum: int, grace: float) -> None:
        """Send `signum` to every group; SIGKILL what still runs after `grace` seconds."""
        self.signal_all(signum)
        deadline = time.monotonic() + grace
        while self._alive() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        # Let the pumps write what is left (bounded: a pipe held open elsewhere would block).
        for thread in self.threads:
            thread.join(timeout=1.0)


def run(command: list[str], count: int, devices: int | None, port: int | None, grace: float) -> int:
    """Run `command` as `count` processes; the launcher's exit status."""
    port = port or free_port()
    envs = [process_env(dict(os.environ), i, count, port, devices) for i in range(count)]
    group = Group(sys.stdout.buffer)
    previous = {s: signal.signal(s, group.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.start(command, envs)
        status = group.wait()
        if group.signalled is not None:
            group.stop(group.signalled, grace)
            return 128 + group.signalled
        # After a failure this ends the others; after success, what the processes left running.
        group.stop(signal.SIGTERM, grace)
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    return run(command, args.num_processes, args.devices_per_process, args.port, args.grace_period)


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.launch:main", xla=False)
