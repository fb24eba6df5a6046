"""arner_jax.system.host_memory: entry points restart with glibc's huge-page malloc where it helps."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arner_jax.system import host_memory

REPO = Path(__file__).resolve().parents[2]
GLIBC = (2, 36)


def test_the_restart_env_adds_the_tunable_and_keeps_the_users_tunables():
    env = host_memory.huge_page_env({"PATH": "/bin"}, GLIBC, "madvise")
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    env = host_memory.huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise")
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, glibc, mode", [
    ({}, GLIBC, "always"),  # the kernel gives huge pages to everything already
    ({}, GLIBC, "never"),  # the kernel gives none: nothing to ask for
    ({}, GLIBC, None),  # not Linux, or no THP
    ({}, (2, 31), "madvise"),  # glibc without the tunable
    ({}, None, "madvise"),  # musl or another C library
    ({"ARNER_HUGE_PAGES": "0"}, GLIBC, "madvise"),  # the user's opt-out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise"),  # the user's own choice
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC, "madvise"),  # restarted already: no loop
])
def test_no_restart_where_it_would_change_nothing_or_the_user_decided(environ, glibc, mode):
    assert host_memory.huge_page_env(environ, glibc, mode) is None


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert host_memory.thp_mode(path) == "madvise"
    assert host_memory.thp_mode(tmp_path / "absent") is None


def _supported() -> bool:
    return sys.platform == "linux" and (host_memory.glibc_version() or (0, 0)) >= host_memory.MIN_GLIBC \
        and host_memory.thp_mode() == "madvise"


needs_madvise_thp = pytest.mark.skipif(not _supported(), reason="needs Linux, glibc >= 2.35 and transparent huge "
                                       "pages in 'madvise' mode (what the restart is for)")


@needs_madvise_thp
def test_a_process_restarts_itself_once_with_the_same_arguments():
    code = ("import os, sys; print('start', flush=True); from arner_jax.system import host_memory; "
            "host_memory.reexec_with_huge_pages(); print(sys.argv[1:], os.environ['GLIBC_TUNABLES'])")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES", "ARNER_HUGE_PAGES")}
    out = subprocess.run([sys.executable, "-c", code, "a", "--b"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # the first image printed "start", restarted; the second printed "start" and ran on
    assert out.stdout.splitlines() == ["start", "start", "['a', '--b'] glibc.malloc.hugetlb=1"]


@needs_madvise_thp
@pytest.mark.parametrize("module", ["experiments.wojood_nested", "arner_jax.predict", *[
    pytest.param(m, marks=pytest.mark.slow) for m in ("experiments.wojood_flat", "experiments.wojood_span_nested",
                                                      "experiments.wikiann_span_marker", "arner_jax.train",
                                                      "arner_jax.sweep", "arner_jax.evaluate", "benchmarks.run")]])
def test_every_command_that_runs_xla_restarts_with_huge_pages(module, tmp_path):
    """The restart happens before the flags are read: `--help` of a restarted process shows it."""
    probe = tmp_path / "sitecustomize.py"  # runs at every interpreter start: prints the tunables each image had
    probe.write_text("import os, sys\nprint('tunables:', os.environ.get('GLIBC_TUNABLES'), file=sys.stderr)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES", "ARNER_HUGE_PAGES")}
    env["PYTHONPATH"] = f"{tmp_path}:{REPO}"
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("tunables:")]
    assert lines == ["tunables: None", "tunables: glibc.malloc.hugetlb=1"], out.stderr[-2000:]


def test_describe_names_the_setting():
    assert host_memory.describe({}).startswith("host malloc: the default (4 KiB pages); transparent huge pages: ")
    assert host_memory.describe({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}).startswith(
        "host malloc: glibc.malloc.hugetlb=1;")


FAULTS = """
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda u, v, w: (u @ v) @ w)  # u @ v: a 64 MiB temporary per call
args = jnp.ones((8192, 64)), jnp.ones((64, 2048)), jnp.ones((2048, 1))
f(*args).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(*args).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def thp_fallbacks() -> int:
    """Huge-page faults the kernel served with small pages instead, machine-wide (/proc/vmstat)."""
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("thp_fault_fallback "):
            return int(line.split()[1])
    return 0


@needs_madvise_thp
def test_huge_pages_take_the_page_faults_of_xla_temporaries_away():
    """What the restart is for: XLA maps a large temporary afresh on every call; with 4 KiB pages each call
    faults on every page of it (16,384 for 64 MiB), with the tunable a few dozen times. Where the kernel
    has no free huge page to give (fragmented memory, THP defrag settings) it falls back to small pages:
    a property of the machine at that moment, so the test skips, saying so."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES", "ARNER_HUGE_PAGES")}
    faults = {}
    for tunables in ("", host_memory.TUNABLE):
        fallbacks = thp_fallbacks()
        out = subprocess.run([sys.executable, "-c", FAULTS], env={**env, "GLIBC_TUNABLES": tunables},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        faults[tunables] = int(out.stdout.split()[-1])
        fallbacks = thp_fallbacks() - fallbacks
    if faults[host_memory.TUNABLE] >= 1_000 and fallbacks:
        defrag = host_memory.thp_mode(Path("/sys/kernel/mm/transparent_hugepage/defrag")) or "unknown"
        pytest.skip(f"the kernel gave small pages for {fallbacks} huge-page faults (no free huge page; THP defrag "
                    f"{defrag}): page faults per call {faults}")
    assert faults[""] > 10_000 and faults[host_memory.TUNABLE] < 1_000, faults
