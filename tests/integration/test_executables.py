"""Compiled programs kept on disk (arner_jax.system.executables): a repeated run loads them instead of tracing,
lowering and compiling; anything that could change a program gives another fingerprint."""
from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arner_jax.system import executables
from arner_jax.system.executables import ProgramStore
from tests.conftest import train_run

SCOPE = {"wrapper": "pmap", "devices": [0]}
ARGS = (np.zeros((2, 3), np.float32), {"mask": np.ones((2, 3), np.int32)})


def fingerprint(folder, context=None, name="train", args=ARGS, scope=SCOPE) -> str:
    return ProgramStore(folder, {"setting": 1} if context is None else context).fingerprint(name, args, scope)


def test_the_same_program_gets_the_same_fingerprint_in_a_new_store(tmp_path):
    assert fingerprint(tmp_path) == fingerprint(tmp_path / "elsewhere")


@pytest.mark.parametrize("change", ["context", "name", "shape", "dtype", "devices", "wrapper", "sharding"])
def test_a_changed_program_misses(tmp_path, change):
    changed = {
        "context": lambda: fingerprint(tmp_path, context={"setting": 2}),
        "name": lambda: fingerprint(tmp_path, name="eval"),
        "shape": lambda: fingerprint(tmp_path, args=(np.zeros((2, 4), np.float32), ARGS[1])),
        "dtype": lambda: fingerprint(tmp_path, args=(np.zeros((2, 3), np.float16), ARGS[1])),
        "devices": lambda: fingerprint(tmp_path, scope={"wrapper": "pmap", "devices": [1]}),
        "wrapper": lambda: fingerprint(tmp_path, scope={"wrapper": "shard_map", "devices": [0]}),
        "sharding": lambda: fingerprint(tmp_path, args=(jnp.zeros((2, 3), jnp.float32), ARGS[1])),
    }[change]
    assert changed() != fingerprint(tmp_path)


def test_changed_code_libraries_or_machine_settings_miss(tmp_path, monkeypatch):
    base = fingerprint(tmp_path)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert fingerprint(tmp_path) != base
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(jax, "__version__", "0.0.0")
    assert fingerprint(tmp_path) != base
    monkeypatch.undo()
    monkeypatch.setattr(executables, "_SOURCE_DIGEST", "another version of arner_jax")
    assert fingerprint(tmp_path) != base
    monkeypatch.undo()
    with jax.default_matmul_precision("highest"):
        assert fingerprint(tmp_path) != base
    assert fingerprint(tmp_path) == base


def test_the_source_digest_covers_every_module(tmp_path):
    """A change to any source file of arner_jax, in any of its packages, changes the digest."""
    import shutil

    copy = tmp_path / "arner_jax"
    shutil.copytree(executables.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    assert executables.source_digest(copy) == executables.source_digest()
    for name in ("models/parallel.py", "models/base.py", "data/batching.py", "train/optim.py"):
        path = copy / name
        original = path.read_text()
        path.write_text(original + "\n# changed\n")
        assert executables.source_digest(copy) != executables.source_digest(), name
        path.write_text(original)


def test_a_context_holding_a_memory_address_is_refused(tmp_path):
    with pytest.raises(ValueError, match="memory address"):
        ProgramStore(tmp_path, {"objective": object()})


def test_the_store_loads_what_it_saved_and_compiles_an_unreadable_entry_again(tmp_path, caplog):
    step = jax.jit(lambda x, b: (x * 2 + b["mask"], {"sum": (x * b["mask"]).sum()}))
    expected = step(*ARGS)
    first = ProgramStore(tmp_path, {"setting": 1})
    out = first.compiled("train", step, ARGS, SCOPE)(*ARGS)
    assert (first.saved, first.loaded) == (1, 0)
    (entry,) = tmp_path.glob("*.jaxexe")
    assert entry.stem == first.fingerprint("train", ARGS, SCOPE)
    second = ProgramStore(tmp_path, {"setting": 1})
    again = second.compiled("train", step, ARGS, SCOPE)(*ARGS)
    assert (second.saved, second.loaded) == (0, 1)
    jax.tree.map(np.testing.assert_array_equal, (out, again), (expected, expected))
    entry.write_bytes(b"not an executable")
    third = ProgramStore(tmp_path, {"setting": 1})
    with caplog.at_level(logging.WARNING, logger="arner_jax"):
        repaired = third.compiled("train", step, ARGS, SCOPE)(*ARGS)
    assert "could not be loaded" in caplog.text and (third.saved, third.loaded) == (1, 0)
    jax.tree.map(np.testing.assert_array_equal, repaired, expected)
    assert ProgramStore(tmp_path, {"setting": 1}).compiled("train", step, ARGS, SCOPE) is not None
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    manifest = ProgramStore(tmp_path, {"setting": 1})._manifest()
    assert files == [entry.name, f"manifests/{manifest.name}"]  # no temporary file left behind


def test_a_repeated_store_prefetches_what_the_last_run_used_and_runs_only_matching_fingerprints(tmp_path, caplog):
    step = jax.jit(lambda x, b: (x * 2 + b["mask"], {"sum": (x * b["mask"]).sum()}))
    other = (np.zeros((4, 3), np.float32), {"mask": np.ones((4, 3), np.int32)})  # another shape: another program
    first = ProgramStore(tmp_path, {"setting": 1})
    assert first.prefetch() == 0  # no manifest yet
    first.compiled("train", step, ARGS, SCOPE)(*ARGS)
    first.compiled("train", step, other, SCOPE)(*other)
    entries = json.loads(first._manifest().read_text())["entries"]
    assert entries == [first.fingerprint("train", a, SCOPE) for a in (ARGS, other)]

    again = ProgramStore(tmp_path, {"setting": 1})
    assert again.prefetch() == 2
    out = again.compiled("train", step, other, SCOPE)(*other)  # taken from the background loads
    jax.tree.map(np.testing.assert_array_equal, out, step(*other))
    assert (again.loaded, again.saved) == (1, 0)
    third = (np.zeros((5, 3), np.float32), {"mask": np.ones((5, 3), np.int32)})
    again.compiled("train", step, third, SCOPE)  # listed nowhere: compiled, whatever was prefetched
    assert (again.loaded, again.saved) == (1, 1)

    elsewhere = ProgramStore(tmp_path, {"setting": 2})  # another run's settings: its own (empty) manifest
    assert elsewhere.prefetch() == 0
    (tmp_path / f"{entries[0]}.jaxexe").write_bytes(b"damaged")
    damaged = ProgramStore(tmp_path, {"setting": 1})
    assert damaged.prefetch() == 2
    with caplog.at_level(logging.WARNING, logger="arner_jax"):
        out = damaged.compiled("train", step, ARGS, SCOPE)(*ARGS)  # its load failed in the background: compiled
    assert "could not be loaded" in caplog.text and (damaged.loaded, damaged.saved) == (0, 1)
    jax.tree.map(np.testing.assert_array_equal, out, step(*ARGS))


def test_a_store_opened_before_the_set_up_loads_and_warms_by_manifest_key_then_binds(tmp_path):
    """The trainer's path: a store opened by manifest key (settings and data, before the tokenizer and model
    exist) prefetches and runs each listed program once on zeros; bound to the run's context, it serves them by
    fingerprint. A store of another manifest key prefetches nothing; one not bound cannot name programs."""
    step = jax.jit(lambda x, b: (x * 2 + b["mask"], {"sum": (x * b["mask"]).sum()}), donate_argnums=0)
    first = ProgramStore(tmp_path, manifest_key="settings+data").bind({"setting": 1})
    out_first = first.compiled("train", step, ARGS, SCOPE)(np.array(ARGS[0]), ARGS[1])
    early = ProgramStore(tmp_path, manifest_key="settings+data")
    assert early.prefetch(warm=True) == 1
    with pytest.raises(RuntimeError, match="bind"):
        early.fingerprint("train", ARGS, SCOPE)
    early.bind({"setting": 1})
    out = early.compiled("train", step, ARGS, SCOPE)(np.array(ARGS[0]), ARGS[1])
    assert (early.loaded, early.warmed, early.saved) == (1, 1, 0)
    jax.tree.map(np.testing.assert_array_equal, out, out_first)  # the run on zeros changed nothing
    assert ProgramStore(tmp_path, manifest_key="other settings").prefetch(warm=True) == 0


STORE_AFTER_CACHE = """
import sys
import jax, jax.numpy as jnp, numpy as np
from arner_jax.system.executables import ProgramStore, enable_compilation_cache
cache = enable_compilation_cache(sys.argv[1])
step = jax.jit(lambda x, w: (jnp.where(jnp.tanh(x @ w) > 0, x @ w, -2 * (x @ w)) ** 2).sum())
args = (np.ones((64, 128), np.float32), np.full((128, 128), 0.01, np.float32))
if sys.argv[2] == "fill_cache":  # JAX's own cache gets the program; the store has nothing
    step.lower(*args).compile()
    sys.exit()
jax.jit(lambda a: a + 1)(np.ones(3))  # the process has used JAX's cache before the store compiles (a run has)
store = ProgramStore(cache / "arner_jax_executables", {"setting": 1})
value = float(store.compiled("train", step, args, SCOPE)(*args))
print(sys.argv[2], store.saved, store.loaded, value)
"""


def test_a_program_found_in_jaxs_cache_is_stored_whole(tmp_path):
    """XLA's CPU executables read back from JAX's persistent cache serialize without their kernels (a run
    loading such an entry dies: "Function ... not found"); the store compiles what it saves itself, past
    JAX's cache, also when the program is in that cache under any key (a store emptied and refilled)."""
    import shutil
    import subprocess
    import sys

    def run(step: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", f"SCOPE = {SCOPE!r}\n" + STORE_AFTER_CACHE, str(tmp_path), step],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    run("fill_cache")
    first = run("store")  # a new process: the program is in JAX's cache
    shutil.rmtree(tmp_path / "arner_jax_executables")  # the store emptied (a cleared folder, changed code)
    again = run("store")
    loaded = run("load")
    assert first[1:3] == again[1:3] == ["1", "0"] and loaded[1:3] == ["0", "1"]
    assert loaded[3] == first[3]


RUN = ["--synthetic", "--synthetic_sizes", "96", "16", "16", "--max_length", "64", "--batch_size", "8",
       "--lr", "2e-3", "--max_epochs", "1", "--scratch_hidden_size", "32", "--scratch_layers", "1"]


def same_results(a: dict, b: dict) -> None:
    assert a["history"] == b["history"]
    assert (a["val"], a["test"]) == (b["val"], b["test"])


def test_a_repeated_run_loads_its_programs_and_ends_with_the_same_metrics(tmp_path):
    cache = tmp_path / "cache"
    first = train_run(tmp_path / "first", "wojood_nested", *RUN, cache=cache)
    again = train_run(tmp_path / "again", "wojood_nested", *RUN, cache=cache)
    start = again["timing"]["epochs"][0]
    assert first["timing"]["epochs"][0]["programs_loaded"] == 0
    assert start["programs_loaded"] > 0 and start["compilations"] == 0 and start["compilation_cache_hits"] == 0
    # the first run's manifest: the repeat loaded every program it used in the background
    assert first["timing"]["programs_prefetched"] == 0
    assert again["timing"]["programs_prefetched"] == again["timing"]["programs_loaded"] > 0
    # opened before the set-up (by the manifest key) and every loaded program run once on zeros there
    assert again["timing"]["programs_warmed"] == again["timing"]["programs_loaded"]
    same_results(again, first)
    # a loaded program computes what a traced and jitted one does: the slow set's seed test compares a loaded
    # run with one that has no cache and no store


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nested", "span_nested"])
def test_programs_saved_by_one_seed_run_another_seed_as_its_own_programs(tmp_path, kind, tiny_bert):
    """The seed is left out of the fingerprint (it reaches programs only as argument values): a run loading
    the programs of another seed's run ends exactly as that seed's run compiled from scratch."""
    from arner_jax.data.synthetic import write_synthetic_corpus

    files = write_synthetic_corpus(tmp_path / "data", seed=4, sizes={"train": 96, "val": 16, "test": 16})
    paths = [f for split in ("train", "val", "test") for f in (f"--{split}_path", str(files[split]))]
    flags = [*RUN[5:], "--max_epochs", "2", *paths]
    if kind == "span_nested":  # the data are fixed files: the synthetic corpus would change with the seed
        flags += ["--bert_model", str(tiny_bert), "--marker_max_length", "16"]
    preset = "wojood_nested" if kind == "nested" else "wojood_span_nested"
    cache = tmp_path / "cache"
    train_run(tmp_path / "seed1", preset, *flags, "--seed", "1", cache=cache)
    loaded = train_run(tmp_path / "seed2", preset, *flags, "--seed", "2", cache=cache)
    plain = train_run(tmp_path / "seed2_plain", preset, *flags, "--seed", "2")
    assert loaded["timing"]["epochs"][0]["programs_loaded"] > 0
    if kind == "nested":  # the tagger's buckets are fitted to the sentences' lengths: no new shape
        assert loaded["timing"]["epochs"][0]["compilations"] == 0
    # (a span run fits its lengths to the first epoch's shuffled batches, so another seed may add a shape,
    # compiled as a miss; the loaded programs must still compute what fresh ones do)
    same_results(loaded, plain)
