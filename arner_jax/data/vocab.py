"""Label vocabularies: flat tags and per-type classes, as JSON in the run folder.

Owns the mapping between tags and class ids. Nested/MTN heads: every type has the same class
layout (0 = O, 1 = B-X, 2 = I-X) and a class mask says which of them the training data has, so
that one fused head serves all types. Flat head: O, then B-/I- of each type in type order.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from arner_jax.data.wojood import Corpus

NESTED_CLASSES = ("O", "B", "I")  # class id -> prefix, the same for every type


@dataclasses.dataclass(frozen=True)
class LabelVocab:
    types: tuple[str, ...]  # sorted by name
    # per type, the classes (subset of O/B/I) seen in training; O is always present
    type_classes: tuple[tuple[str, ...], ...]

    # ---------------------------------------------------------------- building
    @classmethod
    def from_corpus(cls, corpus: Corpus) -> LabelVocab:
        types = corpus.types
        seen = {t: {"O"} for t in types}
        for s in corpus.sentences:
            for tags in s.tags:
                for tag in tags:
                    if tag != "O":
                        seen[tag[2:]].add(tag[0])
        return cls(tuple(types), tuple(tuple(c for c in NESTED_CLASSES if c in seen[t]) for t in types))

    # ---------------------------------------------------------------- nested / MTN
    @property
    def num_types(self) -> int:
        return len(self.types)

    def class_mask(self) -> np.ndarray:
        """[T, 3] bool: which classes each type's head may predict."""
        return np.array([[c in cls for c in NESTED_CLASSES] for cls in self.type_classes], dtype=bool)

    def type_class_id(self, tag: str) -> int:
        return 0 if tag == "O" else NESTED_CLASSES.index(tag[0])

    def type_tag(self, type_index: int, class_id: int) -> str:
        return "O" if class_id == 0 else f"{NESTED_CLASSES[class_id]}-{self.types[type_index]}"

    # ---------------------------------------------------------------- flat
    @property
    def flat_tags(self) -> tuple[str, ...]:
        tags = ["O"]
        for t, classes in zip(self.types, self.type_classes):
            tags += [f"{c}-{t}" for c in classes if c != "O"]
        return tuple(tags)

    def flat_id(self, tag: str) -> int:
        return self.flat_tags.index(tag)

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {"types": list(self.types), "type_classes": {t: list(c) for t, c in zip(self.types, self.type_classes)},
                "flat_tags": list(self.flat_tags)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, raw: dict) -> LabelVocab:
        types = tuple(raw["types"])
        return cls(types, tuple(tuple(raw["type_classes"][t]) for t in types))

    @classmethod
    def load(cls, path: str | Path) -> LabelVocab:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
