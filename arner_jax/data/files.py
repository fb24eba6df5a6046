"""Reading, writing and removing files: the one owner of how arner_jax touches storage.

Owns: what a path a user gave is (`location`: a local `pathlib.Path`, or for a `gs://bucket/path`
URL an `etils.epath.Path` served by fsspec's gcsfs, with the same methods: `/`, `is_file`,
`iterdir`, `read_text`...), reading a file's bytes, atomic writes (locally a temporary file in the
same folder, then a rename, so a reader never sees half of a file; on Cloud Storage one direct
upload, which makes an object appear whole or not at all: never a temporary object and a rename),
folders that libraries read or write only on a local disk (`local_copy` downloads one, `staged`
uploads what was written into a temporary one), and removing a folder tree that arner_jax made
(callers check that first: see arner_jax.runs.run_folder.create). Storage errors become one-line
`StorageError`s that name the path and what to do (no credentials, no such bucket or object, no
permission); `storage_errors(url)` turns any client's failure inside it into one.

What takes gs:// URLs: run folders (train, resume, evaluate, predict, sweeps and their reports;
Orbax writes the checkpoints through its own gs:// support), exports (their source run and their
folder: arner_jax.runs.export_folder), the data files of a run and the score command's files. Flags
naming local-only things (the compilation cache, the importers' inputs and run folders) refuse URLs
(arner_jax.errors.local_path); those that may be on Cloud Storage use arner_jax.errors.storage_path.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
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
    # No listings cache: a run folder changes while it is read (a reader waiting for a checkpoint, a resume
    # finding what a killed run left); gcsfs would otherwise answer every later listing from the first one.
    # Set before the first filesystem is made (etils.epath makes its own from the same defaults).
    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise StorageError(f"{url}: {err}; for gs:// URLs: pip install 'arner_jax[gcs]'") from None


_CLIENT_MODULES = ("gcsfs", "google.auth", "google.api_core", "google.cloud", "aiohttp", "requests", "urllib3")


def is_storage_failure(err: BaseException) -> bool:
    """Whether `err` is a storage client's failure (not a bug of ours): OSError and the types of gcsfs,
    google-auth, google-cloud-storage, aiohttp and requests."""
    return isinstance(err, (OSError, TimeoutError)) or type(err).__module__.startswith(_CLIENT_MODULES)


def _bucket_exists(url: str) -> bool:
    fs, inner = _filesystem(url)
    try:
        fs.ls(inner.split("/")[0], refresh=True)  # objects.list (buckets.get may be denied)
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - unknown: say what the first error said
        return True
    return True


def _storage_error(url: str, err: BaseException) -> StorageError:
    """One line for what went wrong reaching `url`, chosen by the error's type and HTTP status (gcsfs: 404 is
    FileNotFoundError, 403 an OSError "Forbidden: ...", 401 an HttpError with code 401), never by words of
    the path."""
    if isinstance(err, StorageError):
        return err
    name, text = type(err).__name__, " ".join(str(err).split())
    code = getattr(err, "code", None)
    bucket = url.split("/")[2] if url.count("/") >= 2 else url
    if name in ("DefaultCredentialsError", "RefreshError") or code == 401:
        return StorageError(f"{url}: no Google Cloud credentials ({text[:160]}); {CREDENTIALS_HINT}")
    if isinstance(err, FileNotFoundError):
        if is_url(url) and not _bucket_exists(url):
            return StorageError(f"{url}: the bucket gs://{bucket} does not exist; check the name (gsutil ls), or "
                                f"create it (gsutil mb gs://{bucket})")
        return StorageError(f"{url}: no such file; check the path")
    if isinstance(err, PermissionError) or code == 403 or (isinstance(err, OSError) and text.startswith("Forbidden")):
        who = (f" (no credentials were used: {CREDENTIALS_HINT})" if "anonymous caller" in text.lower() else "")
        return StorageError(f"{url}: permission denied (403); give this account access to gs://{bucket}, or "
                            f"use another bucket{who}")
    return StorageError(f"{url}: cannot be reached ({name}: {text[:200]})")


def location(path: str | Path) -> Path:
    """What `path` names: a local pathlib.Path, or for a gs:// URL an etils.epath.Path (pathlib's methods, served
    by gcsfs). pathlib.Path would turn gs://bucket/run into the local folder gs:/bucket/run."""
    text = str(path)
    if not is_url(text):
        return path if isinstance(path, Path) else Path(path)
    if not text.startswith("gs://"):
        raise StorageError(f"{text}: only gs:// URLs are supported; give a local path or gs://BUCKET/PATH")
    _filesystem(text)  # a missing gcsfs is one line here, not a traceback later
    # gs:// through gcsfs, as every other access here: with TensorFlow installed (Colab) etils would use
    # tf.io.gfile (other credentials, its own stat cache); decided at etils' first gs:// path
    os.environ.setdefault("EPATH_USE_TF", "false")
    from etils import epath

    return epath.Path(text.rstrip("/"))


def absolute(path: str | Path) -> str:
    """`path` as a user reads it in logs and config.json: a URL as it is, a local path resolved."""
    return str(path) if is_url(str(path)) else str(Path(path).expanduser().resolve())


@contextlib.contextmanager
def storage_errors(path: str | Path) -> Iterator[None]:
    """Inside: any failure of a Cloud Storage client about `path` becomes a one-line StorageError (local paths'
    OSErrors pass through as they are)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as err:  # noqa: BLE001 - gcsfs, google-auth and aiohttp raise many types: all become one line
        if not is_url(str(path)) or not is_storage_failure(err):
            raise  # a local path's errors, and bugs, keep their type and traceback
        raise _storage_error(str(path), err) from None


def check_reachable(path: str | Path) -> None:
    """For a gs:// folder: list its bucket once, so that missing credentials, a missing bucket or no permission to
    list it is one line before anything is created (whether it can be written shows at the first write, also
    one line)."""
    url = str(path)
    if not is_url(url):
        return
    fs, inner = _filesystem(url)
    with storage_errors(url):
        fs.ls(inner.split("/")[0], refresh=True)  # objects.list, which a writer needs anyway (buckets.get may not)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes. Local paths raise OSError as the file system does; a URL's failures are StorageError."""
    if not is_url(str(path)):
        return Path(path).read_bytes()
    url = str(path)
    fs, inner = _filesystem(url)
    with storage_errors(url):
        return fs.cat_file(inner)  # one request (a "folder" is no object: no such file)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` whole: locally through a temporary file in the same folder renamed over `path`; to a URL
    in one upload (an object store has no rename: an upload is already all or nothing)."""
    if is_url(str(path)):
        url = str(path)
        fs, inner = _filesystem(url)
        with storage_errors(url):
            fs.pipe_file(inner, data)
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


def is_file(path: str | Path) -> bool:
    """Whether `path` is a file (a gs:// object); a storage failure is one line."""
    with storage_errors(path):
        return location(path).is_file()


def is_dir(path: str | Path) -> bool:
    """Whether `path` is a folder (on Cloud Storage: objects exist under it); a storage failure is one line."""
    with storage_errors(path):
        return location(path).is_dir()


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode("utf-8")


def remove_tree(path: str | Path) -> None:
    """Delete a folder and everything in it (only folders arner_jax made: the caller has checked)."""
    if not is_url(str(path)):
        shutil.rmtree(path)
        return
    fs, inner = _filesystem(str(path))
    if inner.strip("/").count("/") < 1:  # callers refuse bucket roots; never delete a bucket
        raise StorageError(f"{path}: a bucket, not a folder in one; nothing deleted")
    with storage_errors(path):
        # object by object, as listed: fs.rm would expand * ? [ in the name as a pattern (another folder's
        # files) and, given a bucket, delete it
        for name in fs.find(inner):
            fs.rm_file(name)


def remove_file(path: str | Path) -> None:
    """Delete one file we wrote, if it is there."""
    if not is_url(str(path)):
        Path(path).unlink(missing_ok=True)
        return
    fs, inner = _filesystem(str(path))
    with storage_errors(path):
        if fs.exists(inner):
            fs.rm_file(inner)


def append_text(path: str | Path, text: str) -> None:
    """Add `text` at the end of a file (made if missing). On Cloud Storage, where objects cannot be appended to,
    the file is read and uploaded again whole: for small, rarely written logs (a sweep's progress lines)."""
    if not is_url(str(path)):
        with open(path, "a", encoding="utf-8") as file:
            file.write(text)
        return
    atomic_write_text(path, (read_text(path) if is_file(path) else "") + text)


def make_folder(path: str | Path) -> None:
    """A local folder and its parents; nothing on Cloud Storage (no folders there: a path exists once an object
    is written under it, and making one could create a bucket from a mistyped name)."""
    if not is_url(str(path)):
        Path(path).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def local_copy(folder: str | Path) -> Iterator[Path]:
    """A folder as a local path for a library that reads only local folders (a tokenizer, a Hugging Face model):
    a local folder as it is; a gs:// one downloaded into a temporary folder, deleted after."""
    if not is_url(str(folder)):
        yield Path(folder)
        return
    fs, inner = _filesystem(str(folder))
    with tempfile.TemporaryDirectory(prefix="arner_jax_download_") as tmp:
        with storage_errors(folder):
            names = [name for name in fs.find(inner) if not name.endswith("/")]
            if not names:
                raise FileNotFoundError(f"{folder}: no such folder")
            for name in names:
                target = Path(tmp) / name[len(inner):].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(fs.cat_file(name))
        yield Path(tmp)


@contextlib.contextmanager
def staged(folder: str | Path) -> Iterator[Path]:
    """A local folder to write into for a library that writes only local folders: a local `folder` itself; for
    a gs:// one a temporary folder whose files are uploaded under `folder` (one upload each) when the block ends
    without an error."""
    if not is_url(str(folder)):
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="arner_jax_upload_") as tmp:
        yield Path(tmp)
        for file in sorted(Path(tmp).rglob("*")):
            if file.is_file():
                atomic_write_bytes(f"{str(folder).rstrip('/')}/{file.relative_to(tmp).as_posix()}", file.read_bytes())
