"""Token-classification corpora from the `datasets` library, as Wojood sentences.

Owns: loading a hub dataset ("wikiann:ar" is `load_dataset("wikiann", "ar")`, which needs the
hub or its cache) or a folder written by `DatasetDict.save_to_disk`, reading its `tokens` and
`ner_tags` columns (class ids named by the ClassLabel feature, or tag strings) in any scheme
(IOB1/IOB2/BIOES/BILOU, rewritten as IOB2), as train/val/test sentences; a run writes them into
its folder as Wojood files, which the rest of arner_jax reads like any flat file.
"""
from __future__ import annotations

from pathlib import Path

from arner_jax.data.schemes import to_iob2
from arner_jax.data.wojood import Sentence
from arner_jax.errors import UserError


class DatasetError(UserError):
    """A `datasets` corpus that cannot be loaded or lacks what a run needs."""

SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "dev"), "test": ("test",)}


def load_dataset_dict(name_or_path: str):
    """A DatasetDict from a saved folder, or from the hub as `name` or `name:config`."""
    if Path(name_or_path).expanduser().is_dir():
        from datasets import load_from_disk

        return load_from_disk(str(Path(name_or_path).expanduser()))
    from datasets import load_dataset

    name, _, config = name_or_path.partition(":")
    try:
        return load_dataset(name, config or None)
    except Exception as err:  # noqa: BLE001 - offline, unknown name, ...: all need the same advice
        raise DatasetError(
            f"--dataset {name_or_path}: not a folder, and `load_dataset({name!r}, {config or None!r})` failed "
            f"({type(err).__name__}: {err}). Without the hub, pass a folder saved with "
            "DatasetDict.save_to_disk, or --train_path/--val_path/--test_path files.") from None


def dataset_sentences(split) -> list[Sentence]:
    """The sentences of one `datasets` split with `tokens` and `ner_tags` columns, tags in IOB2."""
    for column in ("tokens", "ner_tags"):
        if column not in split.column_names:
            raise DatasetError(f"the dataset has no {column!r} column (columns: {split.column_names}); a token "
                               "classification dataset needs `tokens` and `ner_tags`")
    feature = getattr(split.features["ner_tags"], "feature", None)
    names = getattr(feature, "names", None)
    out = []
    for tokens, tags in zip(split["tokens"], split["ner_tags"]):
        tags = [names[t] if names is not None and isinstance(t, int) else str(t) for t in tags]
        out.append(Sentence(list(tokens), [[t] for t in to_iob2(tags)]))
    return out


def dataset_splits(name_or_path: str) -> dict[str, list[Sentence]]:
    """The dataset's train/val/test splits as sentences with IOB2 tags (empty sentences dropped)."""
    data = load_dataset_dict(name_or_path)
    out = {}
    for ours, candidates in SPLIT_NAMES.items():
        name = next((c for c in candidates if c in data), None)
        if name is None:
            raise DatasetError(f"--dataset {name_or_path}: no {ours} split among {list(data)} (expected one of "
                               f"{candidates})")
        out[ours] = [s for s in dataset_sentences(data[name]) if len(s)]
    return out
