"""Reading, writing and removing files: the one owner of how arner_jax touches storage.

Owns: reading a file's bytes (a local path, or a `gs://bucket/object` URL through fsspec/gcsfs),
atomic writes (locally a temporary file in the same folder, then a rename, so a reader never sees half
of a file; on Cloud Storage one direct upload, which makes an object appear whole or not at all) and
removing a folder tree that arner_jax made (callers check that first: see
arner_jax.runs.run_folder.create). Storage errors become one-line `StorageError`s that name the path
and what to do (no credentials, no such bucket or object, no permission).

What reads URLs today: Wojood and prediction files (`arner_jax.data.wojood.read_text`, so the score
command's --gold and --pred). Run folders, data paths of a training run and every other path flag
are local (their flags refuse URLs: arner_jax.errors.local_path); the rest of the gs:// work goes
through this module.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from arner_jax.errors import UserError, is_url

CREDENTIALS_HINT = ("run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
                    "service-account key file)")


class StorageError(UserError, OSError):
    """A file or folder that cannot be read or written; the message names it and what to do."""


def _filesystem(url: str):
    """The fsspec filesystem of a URL and the path inside it (gcsfs for gs://)."""
    try:
        import fsspec
    except ImportError:  # fsspec comes with datasets; a minimal environment may lack it
        raise StorageError(f"{url}: reading URLs needs fsspec and gcsfs: pip install 'arner_jax[gcs]'") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise StorageError(f"{url}: {err}; for gs:// URLs: pip install 'arner_jax[gcs]'") from None


def _storage_error(url: str, err: BaseException) -> StorageError:
    """One line for what went wrong reaching `url` (the clients raise their own types)."""
    name, text = type(err).__name__, " ".join(str(err).split())
    if name in ("DefaultCredentialsError", "RefreshError") or "credentials" in text.lower():
        return StorageError(f"{url}: no Google Cloud credentials ({text[:160]}); {CREDENTIALS_HINT}")
    bucket = url.split("/")[2] if url.count("/") >= 2 else url
    if isinstance(err, FileNotFoundError):
        if "bucket" in text.lower():
            return StorageError(f"{url}: the bucket gs://{bucket} does not exist; check the name (gsutil ls)")
        return StorageError(f"{url}: no such file; check the path")
    if isinstance(err, PermissionError) or "403" in text or "Forbidden" in text:
        return StorageError(f"{url}: permission denied (403); give this account access to gs://{bucket}, or "
                            f"use another bucket")
    return StorageError(f"{url}: cannot be reached ({name}: {text[:200]})")


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes. Local paths raise OSError as the file system does; a URL's failures are StorageError."""
    if not is_url(str(path)):
        return Path(path).read_bytes()
    url = str(path)
    fs, inner = _filesystem(url)
    try:
        return fs.cat_file(inner)  # one request (a "folder" is no object: no such file)
    except Exception as err:  # noqa: BLE001 - gcsfs and google-auth raise many types: all become one line
        raise _storage_error(url, err) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` whole: locally through a temporary file in the same folder renamed over `path`; to a URL
    in one upload (an object store has no rename: an upload is already all or nothing)."""
    if is_url(str(path)):
        url = str(path)
        fs, inner = _filesystem(url)
        try:
            fs.pipe_file(inner, data)
        except Exception as err:  # noqa: BLE001 - as in read_bytes
            raise _storage_error(url, err) from None
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


def remove_tree(path: str | Path) -> None:
    """Delete a folder and everything in it (only folders arner_jax made: the caller has checked)."""
    shutil.rmtree(path)
