"""Folders that exports are written to (`python -m arner_jax.convert to-pytorch / to-span-marker / export`).

Owns the policy: an export folder is new or empty, or an earlier export of arner_jax (it holds
`EXPORT_MARKER`), replaced only with overwrite; a run folder and a folder of other files are refused,
so that an export never deletes what arner_jax did not write.
"""
from __future__ import annotations

from pathlib import Path

from arner_jax.data.files import remove_tree
from arner_jax.errors import UserError
from arner_jax.runs import run_folder

EXPORT_MARKER = ".arner_jax_export"


def prepare_export_folder(out: str | Path, overwrite: bool, what: str = "an export") -> Path:
    """An empty folder to write `what` into: refuses a run folder and folders of other files; an
    earlier export of arner_jax is replaced only with `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; --output_path must be a folder")
    if out.is_dir() and any(out.iterdir()):
        if run_folder.is_run_folder(out):
            raise UserError(f"{out}: is a run folder; write {what} to another --output_path")
        if not (out / EXPORT_MARKER).is_file():
            raise UserError(f"{out}: holds files arner_jax did not write; choose an empty or new --output_path")
        if not overwrite:
            raise UserError(f"{out}: holds an earlier export; pass --overwrite to replace it")
        remove_tree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_MARKER).write_text(what + "\n", encoding="utf-8")
    return out
