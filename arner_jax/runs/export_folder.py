"""Folders that exports are written to (`python -m arner_jax.convert to-pytorch / to-span-marker / export`).

Owns the policy: an export folder is new or empty, or an earlier export of arner_jax (it holds
`EXPORT_MARKER`), replaced only with overwrite; a run folder and a folder of other files are refused,
so that an export never deletes what arner_jax did not write. The folder may be local or on Cloud
Storage (gs://): the writers (safetensors, tokenizers, torch) write local files, so `export_target`
gives them a local folder and uploads what they wrote, one upload a file, once they are done.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from arner_jax.data import files
from arner_jax.data.files import remove_tree
from arner_jax.errors import UserError
from arner_jax.runs import run_folder

EXPORT_MARKER = ".arner_jax_export"


def prepare_export_folder(out: str | Path, overwrite: bool, what: str = "an export") -> Path:
    """An empty folder to write `what` into: refuses a run folder and folders of other files; an
    earlier export of arner_jax is replaced only with `overwrite`."""
    out = files.location(out)
    files.check_reachable(out)
    with files.storage_errors(out):
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: is a file; --output_path must be a folder")
        nonempty = out.is_dir() and any(out.iterdir())
    if nonempty:
        if run_folder.is_run_folder(out):
            raise UserError(f"{out}: is a run folder; write {what} to another --output_path")
        if not files.is_file(out / EXPORT_MARKER):
            raise UserError(f"{out}: holds files arner_jax did not write; choose an empty or new --output_path")
        if not overwrite:
            raise UserError(f"{out}: holds an earlier export; pass --overwrite to replace it")
        remove_tree(out)
    files.make_folder(out)
    files.atomic_write_text(out / EXPORT_MARKER, what + "\n")
    return out


@contextlib.contextmanager
def export_target(out: str | Path, overwrite: bool, what: str = "an export") -> Iterator[Path]:
    """The local folder to write an export into: `out` itself, prepared; for a gs:// `out` (prepared there) a
    temporary folder whose files are uploaded under `out` when the block ends without an error."""
    prepared = prepare_export_folder(out, overwrite, what)
    with files.staged(prepared) as local:
        yield local
