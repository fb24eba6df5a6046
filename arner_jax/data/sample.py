"""The public Wojood sample shipped with arner_jax (MIT licence): the experiments' default data.

Owns: where the installed copy of the sample's train/val/test files is (package data under
arner_jax/resources/wojood_sample/, with its LICENSE and provenance).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

SPLITS = ("train", "val", "test")


def wojood_sample_paths() -> dict[str, Path]:
    """The sample's train, val and test files."""
    folder = Path(str(resources.files("arner_jax") / "resources" / "wojood_sample"))
    return {split: folder / f"{split}.txt" for split in SPLITS}
