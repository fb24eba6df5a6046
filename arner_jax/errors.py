"""User errors: the exceptions a user can act on, and how command lines report them.

Owns: `UserError`, the base of every error caused by an input (a file, a flag, a folder) rather
than by a bug, and `exit_on_user_error`, which turns one into a single line on stderr,
`error: FILE:LINE: what is wrong; what to do`, and exit status 2, without a traceback.
Programming errors are not caught: they keep their traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from typing import NoReturn


class UserError(Exception):
    """An input that cannot be used; the message names it (file and line, or flag) and what to do."""


class ConfigError(UserError, ValueError):
    """A setting that cannot be used; the message starts with the flag's name (arner_jax.config)."""


def one_line(message: str) -> str:
    """A message on one line (multi-line details joined with '; ')."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Report a UserError raised inside as one `error: ...` line on stderr and exit with status 2."""
    try:
        yield
    except UserError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
URL_REFUSED = ("a URL where a local path is needed; give a local path (gs:// is read and written for run folders "
               "and data files only)")
STORAGE_URL = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/+[^/].*$")  # a folder in a bucket


def is_url(text: object) -> bool:
    """Whether a path a user gave is a URL (gs://bucket/run, https://...) rather than a local path."""
    return isinstance(text, str) and bool(_URL.match(text))


def local_path(text: str) -> str:
    """The argparse type of a flag naming a local file or folder: a URL is refused, in one line, before
    anything is created (pathlib would make gs://bucket/run a local folder `gs:/bucket/run`)."""
    if is_url(text):
        raise argparse.ArgumentTypeError(f"{text}: {URL_REFUSED}")
    return text


def storage_url_problem(text: object) -> str | None:
    """What is wrong with `text` as a path that may be on Cloud Storage (None: a local path or a gs:// URL)."""
    if not is_url(text) or STORAGE_URL.match(text):
        return None
    if text.startswith("gs://"):
        return ("not a Cloud Storage folder; write gs://BUCKET/FOLDER (a bucket name of 3-222 lower-case letters, "
                "digits, dots, dashes, underscores, and a folder in it: never the bucket itself)")
    return "only gs:// URLs are supported; give a local path or gs://BUCKET/PATH"


def storage_path(text: str) -> str:
    """The argparse type of a flag naming a file or folder that may live on Cloud Storage: a local path or a
    gs://bucket/path URL; any other URL (s3://, https://) or a malformed bucket name is refused in one line."""
    problem = storage_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text.rstrip("/") if is_url(text) else text


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, reporting a bad command line in one line (`error: ...; see --help`), status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {one_line(message)}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(2)
