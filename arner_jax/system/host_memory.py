"""How the host's C allocator serves XLA's CPU buffers: transparent huge pages for glibc malloc.

Owns: deciding whether a command-line process should restart itself with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, and doing it (`reexec_with_huge_pages`), before anything
else happens in the process.

Why (measured with a profile, `benchmarks/run.py` and getrusage): XLA's CPU runtime allocates a
step's temporaries afresh on every execution and frees them after it; allocations that large are
served by glibc with mmap and returned with munmap, so every step touches new pages and the kernel
zeroes and maps them one 4 KiB page at a time. A bert-base train step on 16 x 128 tokens took
768,000 page faults (1.5 s of system time) per step; the small encoder's 26,600 per step at the
same shape, about a quarter of its step. PyTorch's steps take 130,354 and 1,261 there.
With glibc's `hugetlb=1` tunable (glibc >= 2.35) malloc asks for transparent huge pages
(madvise), so the same memory arrives in 2 MiB pages: 2,100 faults per bert-base step, 0.27 s of
system time, and the small encoder's step 20-30% faster. The tunable is read only when a process
starts, so the entry points restart themselves with it (`os.execve`: same process id, same
arguments, standard streams and signals, so job schedulers and `arner_jax.launch` see nothing).

Nothing changes when the kernel's transparent huge pages are off ("never") or already "always",
on other C libraries or systems, when the tunable is already set, or with
`ARNER_HUGE_PAGES=0`. Why not a different allocator (jemalloc, tcmalloc through LD_PRELOAD): they
are not installed by pip, and glibc already does what is needed when asked.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
SWITCH = "ARNER_HUGE_PAGES"  # "0": leave the allocator as it is
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MIN_GLIBC = (2, 35)  # the first glibc with the malloc.hugetlb tunable


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the running glibc, or None on another C library or system."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def thp_mode(path: Path = THP_MODE) -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None when unknown."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def _hugetlb(environ: Mapping[str, str]) -> str | None:
    """The value GLIBC_TUNABLES gives glibc.malloc.hugetlb ("name=value" items joined by ':'), None if unset."""
    items = (item.partition("=") for item in environ.get("GLIBC_TUNABLES", "").split(":"))
    return next((value for name, _, value in items if name == "glibc.malloc.hugetlb"), None)


def huge_page_env(environ: Mapping[str, str], glibc: tuple[int, int] | None, mode: str | None) -> dict | None:
    """The environment to restart with, or None when a restart would change nothing."""
    if environ.get(SWITCH, "1") == "0" or glibc is None or glibc < MIN_GLIBC or mode != "madvise":
        return None
    if _hugetlb(environ) is not None:
        return None  # set already (by us before the restart, or by the user)
    tunables = environ.get("GLIBC_TUNABLES", "")
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return env


def reexec_with_huge_pages() -> None:
    """Restart this process with the tunable when it helps (see the module docstring); else return.

    Only for a command's `if __name__ == "__main__":` block, before it does anything: the process
    image is replaced, so anything done before is lost (never call it from code a test or a
    notebook imports and runs in-process).
    """
    if sys.platform != "linux" or not getattr(sys, "orig_argv", None):
        return
    env = huge_page_env(os.environ, glibc_version(), thp_mode())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return  # cannot restart (e.g. no executable path): run on with the default allocator


def describe(environ: Mapping[str, str] | None = None) -> str:
    """One line for logs and benchmark records: which allocator setting this process runs with."""
    environ = os.environ if environ is None else environ
    hugetlb = _hugetlb(environ)
    state = f"glibc.malloc.hugetlb={hugetlb}" if hugetlb else "the default (4 KiB pages)"
    return f"host malloc: {state}; transparent huge pages: {thp_mode() or 'unknown'}"
