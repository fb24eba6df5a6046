"""The machine line of every benchmark: CPU model, ISA extensions, cores, load and library versions."""
from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

ISA_FLAGS = ("avx2", "avx512", "amx")  # flag prefixes: every avx512* and amx* flag present is listed


def machine(packages: Sequence[str] = ("numpy",)) -> dict:
    """CPU model, ISA extensions, cores and threads (from /proc/cpuinfo), the load average now, and the
    versions of `packages` (None for one that is not installed)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return {
        "cpu": fields.get("model name", "unknown"),
        "isa": sorted(f for f in fields.get("flags", "").split() if f.startswith(ISA_FLAGS)),
        "cores_per_socket": int(fields.get("cpu cores", 0)), "threads_per_socket": int(fields.get("siblings", 0)),
        "logical_cpus_listed": info.count("processor\t:"), "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average": list(os.getloadavg()),
        **{name: _version(name) for name in packages},
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def describe(m: dict) -> str:
    """One line: CPU, ISA, usable CPUs, load."""
    return (f"{m['cpu']} ({', '.join(m['isa']) or 'no AVX2/AVX-512/AMX'}), {m['usable_cpus']} usable CPUs "
            f"({m['cores_per_socket']} cores x {m['threads_per_socket'] // max(m['cores_per_socket'], 1)} threads "
            f"listed), load average {m['load_average'][0]:.1f}")
