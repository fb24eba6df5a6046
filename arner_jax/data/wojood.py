"""Wojood / CoNLL files: reading, validating and writing sentences of words with nested IOB2 tags.

Owns the file format of SPEC section 2 (numpy-free, JAX-free): one word per line followed by its
tags outermost first, `O` alone for a non-entity word, a blank line between sentences. Errors
name the file and line. Same-type duplicate tags on one word keep the first (the reference's
rule) and are counted, not fatal.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from arner_jax.errors import UserError

TAG_RE = re.compile(r"^[BI]-[A-Za-z_][A-Za-z0-9_]*$")
ANY_SCHEME_RE = re.compile(r"^[BIESLU]-[A-Za-z_][A-Za-z0-9_]*$")  # IOB1/IOB2/BIOES/BILOU
SCHEMES = ("iob2", "any")  # iob2: Wojood's own format, strictly; any: converted to IOB2 on reading


class WojoodFormatError(UserError, ValueError):
    """A Wojood file that cannot be read; the message names the file and line and what to fix."""

    def __init__(self, path, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


def type_layer(tags_per_word: Sequence[Sequence[str]], entity_type: str) -> list[str]:
    """One type's IOB2 sequence over words (O where a word has no tag of that type)."""
    return [next((t for t in tags if t[2:] == entity_type), "O") for tags in tags_per_word]


@dataclasses.dataclass
class Sentence:
    words: list[str]
    tags: list[list[str]]  # per word, outermost first; ["O"] for a non-entity word
    first_line: int = 0  # 1-based line of the first word in its file (0: not from a file)

    def __len__(self) -> int:
        return len(self.words)

    def type_tags(self, entity_type: str) -> list[str]:
        """The word-level IOB2 sequence of one type layer (O where the word has no tag of it)."""
        return type_layer(self.tags, entity_type)

    def flat_tags(self) -> list[str]:
        """The outermost tag of each word (for flat files, the only one)."""
        return [tags[0] for tags in self.tags]


@dataclasses.dataclass
class Corpus:
    sentences: list[Sentence]
    path: str = ""
    dropped_duplicates: int = 0  # same-type second tags removed (the reference keeps the first)
    nested: bool = False  # some word carries two or more tags

    @property
    def types(self) -> list[str]:
        """Entity types present, sorted by name (SPEC: the type set comes from the data)."""
        return sorted({t[2:] for s in self.sentences for tags in s.tags for t in tags if t != "O"})

    @property
    def num_words(self) -> int:
        return sum(len(s) for s in self.sentences)


def _parse_tags(fields: list[str], path, lineno: int, tag_re=TAG_RE) -> tuple[list[str], int]:
    if not fields:
        raise WojoodFormatError(path, lineno, "a word without a tag; every word line needs at least `O`.")
    if "O" in fields:
        if len(fields) > 1:
            raise WojoodFormatError(path, lineno, f"`O` together with other tags {fields}; "
                                    "a non-entity word has exactly `O`, remove it or the other tags.")
        return fields, 0
    kept, seen, dropped = [], set(), 0
    for tag in fields:
        if not tag_re.match(tag):
            if tag_re is TAG_RE:
                raise WojoodFormatError(path, lineno, f"tag {tag!r} is not `O`, `B-TYPE` or `I-TYPE` (IOB2); "
                                        "for IOB1/BIOES/BILOU files read with scheme='any' (--tag_scheme any).")
            raise WojoodFormatError(path, lineno, f"tag {tag!r} is not `O` or `X-TYPE` with X one of B I E S L U; "
                                    "correct or remove it.")
        if tag[2:] in seen:
            dropped += 1  # a second tag of the same type: the reference keeps only the first
            continue
        seen.add(tag[2:])
        kept.append(tag)
    return kept, dropped


def parse_wojood(text: str, path: str = "<string>", scheme: str = "iob2") -> Corpus:
    """Parse Wojood text (BOM and CRLF tolerated) into a Corpus.

    scheme "any" also reads IOB1, BIOES and BILOU tags and rewrites each type's layer in IOB2.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    tag_re = TAG_RE if scheme == "iob2" else ANY_SCHEME_RE
    if text.startswith("\ufeff"):
        text = text[1:]
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[list[str]] = []
    first_line = 0
    dropped = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:  # a blank line (or only spaces) ends a sentence; repeated ones add nothing
            if words:
                sentences.append(Sentence(words, tags, first_line))
                words, tags = [], []
            continue
        word_tags, n_dropped = _parse_tags(fields[1:], path, lineno, tag_re)
        if not words:
            first_line = lineno
        words.append(fields[0])
        tags.append(word_tags)
        dropped += n_dropped
    if words:
        sentences.append(Sentence(words, tags, first_line))
    if scheme != "iob2":
        sentences = [_as_iob2(s) for s in sentences]
    nested = any(len(t) > 1 for s in sentences for t in s.tags)
    return Corpus(sentences, path, dropped, nested)


def _as_iob2(sentence: Sentence) -> Sentence:
    """Each type's layer rewritten in IOB2; the word's tags keep their outermost-first order."""
    from arner_jax.data.schemes import to_iob2

    order = list(dict.fromkeys(t[2:] for tags in sentence.tags for t in tags if t != "O"))
    layers = {t: to_iob2(type_layer(sentence.tags, t)) for t in order}
    tags = [[layers[x[2:]][i] for x in word_tags if x != "O"] or ["O"]
            for i, word_tags in enumerate(sentence.tags)]
    return Sentence(sentence.words, tags, sentence.first_line)


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8 (a local path, or a gs:// URL: arner_jax.data.files); an unreadable file, or
    bad bytes (with their line), raise WojoodFormatError (a URL's storage errors: StorageError)."""
    from arner_jax.data import files

    path = path if files.is_url(str(path)) else Path(path)
    try:
        raw = files.read_bytes(path)
    except files.StorageError:  # an OSError too, already one line naming the URL
        raise
    except FileNotFoundError:
        raise WojoodFormatError(path, None, "no such file; check the path.") from None
    except IsADirectoryError:
        raise WojoodFormatError(path, None, "a directory, not a file; give the path of a file in it.") from None
    except OSError as err:
        raise WojoodFormatError(path, None, f"cannot be read ({err.strerror}); check its permissions.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = raw[: err.start].count(b"\n") + 1
        raise WojoodFormatError(path, lineno, f"not UTF-8 (byte 0x{raw[err.start]:02x}); "
                                "re-save the file as UTF-8.") from None


def read_wojood(path: str | Path, scheme: str = "iob2") -> Corpus:
    """Read a Wojood file; raises WojoodFormatError naming the file and line on bad input."""
    return parse_wojood(read_text(path), str(path), scheme)


def format_wojood(sentences: Iterable[Sentence]) -> str:
    """Wojood text: `word tag1 tag2` lines, a blank line after each sentence."""
    out = []
    for s in sentences:
        out.extend(f"{w} {' '.join(t)}" for w, t in zip(s.words, s.tags))
        out.append("")
    return "\n".join(out) + "\n" if out else ""


def write_wojood(path: str | Path, sentences: Sequence[Sentence]) -> None:
    """Write a Wojood file whole (a local path or a gs:// URL: arner_jax.data.files)."""
    from arner_jax.data import files

    files.atomic_write_text(path, format_wojood(sentences))
