"""Tagging schemes: entity spans from IOB1, IOB2, BIOES (IOBES) and BILOU tags, and back to IOB2.

Owns: one lenient reading of every scheme (SPEC 7: "IOB/IOB2, BIOES and BILOU tags are converted
to spans first"). seqeval's chunker knows B/I/E/S but not BILOU's L/U, and IOB1 needs an I- after
O or another type to open an entity, so the rule is written here: `B-`, `S-` and `U-` always
open an entity; `I-`, `E-` and `L-` continue the open entity of the same type or else open one;
`S-`, `U-`, `E-` and `L-` close it. For IOB2 this is exactly seqeval's default chunking.
"""
from __future__ import annotations

from collections.abc import Sequence

PREFIXES = frozenset("BIESLU")


def tag_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of one tag sequence as (type, first word, end word exclusive), in order."""
    spans: list[tuple[str, int, int]] = []
    open_type, open_start = None, 0
    for i, tag in enumerate(tags):
        if tag == "O":
            if open_type is not None:
                spans.append((open_type, open_start, i))
            open_type = None
            continue
        prefix, entity_type = tag[0], tag[2:]
        if prefix not in PREFIXES or tag[1:2] != "-" or not entity_type:
            raise ValueError(f"tag {tag!r} is not O or X-TYPE with X one of B I E S L U")
        if prefix in "BSU" or open_type != entity_type:
            if open_type is not None:
                spans.append((open_type, open_start, i))
            open_type, open_start = entity_type, i
        if prefix in "SUEL":
            spans.append((open_type, open_start, i + 1))
            open_type = None
    if open_type is not None:
        spans.append((open_type, open_start, len(tags)))
    return spans


def spans_to_iob2(spans: Sequence[tuple[str, int, int]], length: int) -> list[str]:
    """IOB2 tags of non-overlapping spans (type, start, end exclusive) over `length` words."""
    tags = ["O"] * length
    for entity_type, start, end in spans:
        tags[start] = f"B-{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"I-{entity_type}"
    return tags


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Any supported scheme's sequence rewritten in IOB2 (IOB2 input comes back unchanged)."""
    return spans_to_iob2(tag_spans(tags), len(tags))
