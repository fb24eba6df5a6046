"""Compiled programs kept on disk, so that a repeated run starts warm.

Owns: JAX's persistent compilation cache (on by default, in the user cache folder:
`enable_compilation_cache`), and beside it `ProgramStore`, the serialized XLA executables of a run's
train and eval steps, and the fingerprint that names each one. JAX's persistent compilation cache
saves the XLA compile, but a run still traces and lowers every program before it can look the cache
up (about 12 s of a 13 s first epoch on the main job). The store skips both: a program's file is
named by a fingerprint computed from what the caller knows without tracing, and holds the executable
(`jax.experimental.serialize_executable`), which loads in milliseconds.

A stale executable must never run, so the fingerprint is conservative; it holds
  - the program: its name, the wrapper (pmap / shard_map), every argument's tree path, shape,
    dtype, weak type and sharding;
  - the run: the caller's context (arner_jax.train.loop gives the family, every setting that can
    reach a program, the label space, the encoder configuration, a digest of the tokenizer and of
    the data, the number of updates);
  - the code: a digest of every source file of arner_jax, and the versions of python, jax,
    jaxlib, flax, optax and numpy;
  - the machine: backend, platform version, every device (id, kind, process), the process count
    and index, the CPU model and flags on CPU, JAX's configuration (its cache settings aside) and
    the XLA / JAX / TPU / CUDA environment variables.
Anything else that changes a program is a change of code, which the source digest catches. An
entry that cannot be read is compiled again (and rewritten); a program that cannot be serialized
(one with closed-over constants) is compiled as usual and simply not stored. Multi-process runs
do not use the store (an executable spans the processes' devices; each process would need the
others' entries at once).

Each run also keeps a manifest (`manifests/`): the entries it used, in order of first use, under a
key known before its set-up (the settings that reach programs and a digest of the data:
arner_jax.train.loop.manifest_key). A repeated run starts loading them in a background thread as
soon as its inputs are read (`prefetch`), and runs each loaded program once on zeros there
(`warm=True`): XLA's CPU runtime resolves a loaded executable's kernels on its first execution
(about 0.17 s a train program), and deserializing costs about 0.14 s, both now overlapping the
set-up (tokenizer, model, encoding) instead of the first epoch. The fingerprint still decides which
executable runs.

What the store saves it compiles itself with JAX's persistent cache off: an XLA CPU executable read
back from that cache serializes without its kernels (loading it later fails with "Function ... not
found"), so a store miss costs one real compile.

Entries are written once, atomically (a temporary file in the store folder, then a rename), and
never removed by arner_jax: the folder lives inside the compilation cache folder, which the user
owns and may clear.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import pickle
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

log = logging.getLogger("arner_jax")

FOLDER = "arner_jax_executables"  # inside the compilation cache folder
SUFFIX = ".jaxexe"
FORMAT = "arner_jax-executable/2"  # 2: entries compiled outside JAX's cache
MANIFESTS = "manifests"  # per run context: the entries it used, in order (what the next run prefetches)
_ENV_PREFIXES = ("XLA_", "JAX_", "LIBTPU", "TPU_", "CUDA_", "NVIDIA_", "NCCL_", "ROCM_", "HIP_")
# JAX settings that do not change a compiled program (where programs are cached, logging).
_CONFIG_IGNORED = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                   "jax_persistent_cache_min_entry_size_bytes", "jax_enable_compilation_cache",
                   "jax_persistent_cache_enable_xla_caches", "jax_raise_persistent_cache_errors",
                   "jax_explain_cache_misses", "jax_log_compiles", "jax_logging_level")


def _stable(value: Any) -> str:
    """`value` as text that is the same in every process; refuses text holding a memory address."""
    text = json.dumps(value, sort_keys=True, default=repr)
    if " at 0x" in text:
        raise ValueError(f"a program fingerprint would hold a memory address (not stable across processes): "
                         f"{text[:200]}")
    return text


_SOURCE_DIGEST: str | None = None
PACKAGE = Path(__file__).resolve().parents[1]  # arner_jax/


def source_digest(root: Path | None = None) -> str:
    """Digest of every Python source file of arner_jax (paths and contents); `root`: another copy of it."""
    global _SOURCE_DIGEST
    if root is None and _SOURCE_DIGEST is not None:
        return _SOURCE_DIGEST
    folder = PACKAGE if root is None else Path(root)
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    if root is None:
        _SOURCE_DIGEST = h.hexdigest()
    return h.hexdigest()


def _cpu() -> dict:
    """The CPU model and its flags (XLA compiles CPU code for the host's instruction sets)."""
    info: dict[str, str] = {"machine": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info | {"processor": platform.processor()}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU implementer", "CPU part") and key not in info:
            info[key] = " ".join(value.split())
    return info


def environment() -> dict:
    """The code, libraries, devices and settings a compiled program depends on beyond its inputs."""
    import flax
    import jaxlib
    import optax

    devices = jax.devices()
    backend = jax.default_backend()
    env = {
        "source": source_digest(),
        "versions": {"python": sys.version, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__},
        "backend": backend,
        "platform_version": devices[0].client.platform_version,
        "devices": [[d.id, d.device_kind, d.process_index] for d in devices],
        "processes": [jax.process_count(), jax.process_index()],
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
        "jax_config": {k: repr(v) for k, v in sorted(jax.config.values.items()) if k not in _CONFIG_IGNORED},
    }
    if backend == "cpu":
        env["cpu"] = _cpu()
    return env


def _argument_signature(args: tuple) -> list:
    """Tree path, shape, dtype, weak type and sharding of every array argument."""
    out = []
    for path, x in jax.tree_util.tree_flatten_with_path(args)[0]:
        aval = jax.typeof(x)
        sharding = getattr(x, "sharding", None)
        out.append([jax.tree_util.keystr(path), list(aval.shape), str(aval.dtype),
                    bool(getattr(aval, "weak_type", False)), _sharding_signature(sharding)])
    return out


def _sharding_signature(sharding) -> list | None:
    """How an argument is laid out: the sharding and its devices in order (a mesh's repr omits them)."""
    if sharding is None:
        return None
    mesh = getattr(sharding, "mesh", None)
    if mesh is not None and hasattr(mesh, "devices"):
        ids = [d.id for d in np.asarray(mesh.devices).flat]
    elif hasattr(sharding, "devices"):
        ids = [d.id for d in np.asarray(sharding.devices).flat]
    else:
        ids = sorted(d.id for d in sharding.device_set)
    return [repr(sharding), ids]


def _memo_key(name: str, args: tuple) -> tuple:
    """In-process lookup: program name, tree structure and every leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(args)
    return name, treedef, tuple((np.shape(x), getattr(x, "dtype", None)) for x in leaves)


class ProgramStore:
    """Executables of one run's programs, loaded from `folder` or compiled and saved there.

    `context`: what the caller knows that shapes its programs (see the module docstring).
    `compiled(name, jitted, args, scope)` gives the compiled program of `jitted` (a `jax.jit` or
    `jax.pmap` function) for these arguments; `scope` names the data-parallel wrapper and the
    devices it runs on.
    """

    def __init__(self, folder: str | Path, context: dict | None = None, manifest_key: str | None = None):
        """`context` may be given later (`bind`): a store opened before the run's set-up can prefetch by
        `manifest_key` (what is known then) and be bound to the full context once the model exists."""
        self.folder = Path(folder)
        self.context = None if context is None else _stable(context)
        self.manifest_key = manifest_key
        self.loaded = 0  # programs read from the store
        self.saved = 0  # programs compiled and written to it
        self.prefetched = 0  # entries a background thread started loading (see prefetch)
        self.warmed = 0  # loaded programs that the background thread ran once on zeros (prefetch(warm=True))
        self._memo: dict[tuple, Callable] = {}
        self._environment: str | None = None
        self._pending: dict[str, concurrent.futures.Future] = {}  # entry name -> its loading
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._used: list[str] = []  # entry names in order of first use: the run's manifest

    def _environment_text(self) -> str:
        if self._environment is None:
            self._environment = _stable(environment())
        return self._environment

    def bind(self, context: dict) -> ProgramStore:
        """Give a store opened by manifest key the run's context (what its fingerprints hold)."""
        self.context = _stable(context)
        return self

    def fingerprint(self, name: str, args: tuple, scope: dict) -> str:
        """The name of the program's entry (a sha256 hex digest)."""
        if self.context is None:
            raise RuntimeError("ProgramStore.bind(context) must come before the store names programs")
        program = _stable({"format": FORMAT, "name": name, "scope": scope, "arguments": _argument_signature(args)})
        h = hashlib.sha256()
        for part in (program, self.context, self._environment_text()):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    # ------------------------------------------------------------------ the manifest and prefetching
    def _manifest(self) -> Path:
        """Where the entries a run of this manifest key (or context) and environment used are listed, in order of
        first use."""
        key = self.manifest_key if self.manifest_key is not None else self.context
        h = hashlib.sha256((key + "\0" + self._environment_text()).encode()).hexdigest()
        return self.folder / MANIFESTS / f"{h}.json"

    def prefetch(self, warm: bool = False) -> int:
        """Start loading, in a background thread, the entries that the last run of the same manifest key and
        environment used (its manifest), in the order it first used them, so that deserializing overlaps
        with the set-up and the first steps; `warm`: also run each one once on zeros there, which makes XLA
        resolve its kernels then, not at its first real step. A listed entry is only a guess: `compiled`
        still computes each program's fingerprint from its arguments and takes a loaded executable only under
        that exact name; one that fails to load is compiled as usual. Returns how many entries are being
        loaded."""
        try:
            names = json.loads(self._manifest().read_text(encoding="utf-8"))["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        names = [n for n in names if isinstance(n, str) and (self.folder / (n + SUFFIX)).is_file()]
        if not names:
            return 0
        pool = self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="arner_jax-programs")
        read = _read_and_warm if warm else (lambda path: (_read_entry(path), False))
        for n in names:
            self._pending[n] = pool.submit(read, self.folder / (n + SUFFIX))
        pool.shutdown(wait=False)
        self.prefetched = len(names)
        return len(names)

    def close(self) -> None:
        """Drop the loads not started yet (a run that ended or failed early does not wait for them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _note_use(self, entry: str) -> None:
        if entry in self._used:
            return
        self._used.append(entry)
        try:
            self._manifest().parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(self._manifest(), json.dumps({"format": FORMAT, "entries": self._used}).encode())
        except OSError as e:  # costs the next run's prefetch, never this run
            log.debug("manifest of compiled programs not written: %s", e)

    def compiled(self, name: str, jitted, args: tuple, scope: dict) -> Callable:
        memo = _memo_key(name, args) + (id(jitted),)
        program = self._memo.get(memo)
        if program is None:
            program = self._memo[memo] = self._load_or_compile(name, jitted, args, scope)
        return program

    def _load_or_compile(self, name: str, jitted, args: tuple, scope: dict):
        from jax.experimental import serialize_executable

        entry = self.fingerprint(name, args, scope)
        path = self.folder / (entry + SUFFIX)
        pending = self._pending.pop(entry, None)
        if pending is not None or path.is_file():
            try:
                program, warmed = pending.result() if pending is not None else (_read_entry(path), False)
                self.loaded += 1
                self.warmed += warmed
                self._note_use(entry)
                return program
            except Exception as e:  # noqa: BLE001 - any unreadable entry is compiled again
                log.warning("compiled program %s could not be loaded (%s: %s); compiling it again", path.name,
                            type(e).__name__, e)
        # Compiled here, never taken from JAX's persistent cache: XLA's CPU executables read back from that
        # cache serialize without their kernels, and a later run loading such an entry dies ("Function ...
        # not found", jax 0.10.2). A store miss therefore costs one real compile, once.
        with _without_persistent_cache():
            program = jitted.lower(*args).compile()
        try:
            blob = pickle.dumps(serialize_executable.serialize(program))
        except Exception as e:  # noqa: BLE001 - e.g. closed-over constants: run it, do not store it
            log.debug("compiled program %s not stored: %s: %s", name, type(e).__name__, e)
            return program
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._atomic_write(path, blob)
        except OSError as e:  # a full or read-only cache folder costs speed, never the run
            log.warning("compiled program not saved to %s: %s", self.folder, e)
            return program
        self.saved += 1
        self._note_use(entry)
        return program

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _read_entry(path: Path):
    """A stored executable, loaded onto this process's devices."""
    from jax.experimental import serialize_executable

    with open(path, "rb") as f:
        blob, in_tree, out_tree = pickle.load(f)
    return serialize_executable.deserialize_and_load(blob, in_tree, out_tree)


def _read_and_warm(path: Path) -> tuple[Callable, bool]:
    """A stored executable, loaded and run once on zeros (its results dropped), so that XLA's CPU runtime has
    resolved its kernels before its first real call; and whether it ran. A program that cannot be run so is
    returned as loaded."""
    program = _read_entry(path)
    try:
        infos, tree = jax.tree.flatten(program.args_info)
        shardings = jax.tree.leaves(program.input_shardings)
        if len(shardings) != len(infos):
            return program, False
        zeros = [jax.device_put(np.zeros(i.shape, i.dtype), s) for i, s in zip(infos, shardings)]
        args, kwargs = jax.tree.unflatten(tree, zeros)
        jax.block_until_ready(program(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - warming is an optimisation: a program that cannot be warmed is used as is
        log.debug("compiled program %s not warmed: %s: %s", path.name, type(e).__name__, e)
        return program, False
    return program, True


@contextlib.contextmanager
def _without_persistent_cache():
    """JAX's persistent compilation cache off for the block, then on again. JAX decides once per process
    whether it uses the cache (and keeps it open): the setting alone changes nothing once a program was
    compiled, so the cache is also reset, before and after, and decided again from the setting."""
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
        compilation_cache.reset_cache()


def store_folder(compilation_cache: str | Path) -> Path:
    return Path(compilation_cache) / FOLDER


# ---------------------------------------------------------------------- the compilation cache
def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "arner_jax" / "jax_compilation_cache"


_program_store: Path | None = None


def enable_compilation_cache(folder: str | Path | None) -> Path | None:
    """Use the persistent compilation cache in `folder`, and keep runs' compiled programs there
    (this module) so that a repeated run starts warm. None or "": no program store for the
    runs that follow (JAX's own cache, once on, stays on in this process: it only saves time)."""
    global _program_store
    if not folder:
        _program_store = None
        return None
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program, small ones included, so that a second run compiles nothing.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _program_store = store_folder(folder)
    return folder


def program_store_folder() -> Path | None:
    """Where runs keep their compiled programs (None: not kept)."""
    return _program_store
