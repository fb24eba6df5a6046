"""Writing and removing files: the one owner of how arner_jax writes to disk.

Owns: atomic writes (a temporary file in the same folder, then a rename, so a reader never sees half
of a file) and removing a folder tree that arner_jax made (callers check that first: see
arner_jax.runs.run_folder.create). Paths are local today; everything that writes a run's files
goes through here, so that a path may later be a URL (gs://) with a change in this module only.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


def remove_tree(path: str | Path) -> None:
    """Delete a folder and everything in it (only folders arner_jax made: the caller has checked)."""
    shutil.rmtree(path)
