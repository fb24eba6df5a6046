"""The machine a benchmark ran on, recorded beside every figure: CPU model and ISA extensions (AVX2,
AVX-512, AMX), cores and threads, accelerator, and the versions of the libraries that were timed."""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ISA_PREFIXES = ("avx2", "avx512", "amx")  # every flag with one of these prefixes is listed


def cpu() -> dict:
    """CPU model, ISA extensions, cores and threads (from /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name", platform.processor() or "unknown"),
        "isa": sorted(f for f in flags if f.startswith(ISA_PREFIXES)),
        "cores_per_socket": int(fields.get("cpu cores", 0) or 0),
        "threads_per_socket": int(fields.get("siblings", 0) or 0),
        "logical_cpus": info.count("processor\t:"), "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average": list(os.getloadavg()),  # other work on the machine skews a timing; say how much there was
    }


def isa_summary(isa: list[str]) -> str:
    """'AVX2, AVX-512, no AMX' and the like, for tables."""
    has = {name: any(f.startswith(prefix) for f in isa) for name, prefix in
           (("AVX2", "avx2"), ("AVX-512", "avx512"), ("AMX", "amx"))}
    return ", ".join(name if present else f"no {name}" for name, present in has.items())


def versions(*packages: str) -> dict:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine(*packages: str) -> dict:
    """The CPU, the JAX devices when JAX is imported, and the versions of `packages`."""
    from arner_jax.system import host_memory

    record = {**cpu(), "platform": platform.platform(), "versions": versions(*packages),
              "host_malloc": host_memory.describe()}
    import sys

    if "jax" in sys.modules:
        import jax

        devices = jax.devices()
        record.update(backend=jax.default_backend(), devices=len(devices), device_kind=devices[0].device_kind)
    return record


def describe(record: dict) -> str:
    """One line: CPU, ISA, cores/threads, devices, versions."""
    v = ", ".join(f"{k} {val}" for k, val in record.get("versions", {}).items() if val)
    device = f"; {record['devices']} x {record['device_kind']} ({record['backend']})" if "backend" in record else ""
    return (f"{record['cpu']} ({isa_summary(record['isa'])}), {record['usable_cpus']} usable CPUs "
            f"({record['cores_per_socket']} cores / {record['threads_per_socket']} threads per socket), "
            f"load average {record['load_average'][0]:.1f}{device}; {v}"
            + (f"; {record['host_malloc']}" if record.get("host_malloc") else ""))
