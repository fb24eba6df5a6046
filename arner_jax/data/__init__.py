"""Data (numpy only, no JAX): Wojood files, label vocabularies, alignment, batching, synthetic corpus."""
from arner_jax.data.align import AlignStats, Window, encode_sentences, scatter_to_words
from arner_jax.data.batching import (
    collate_windows,
    eval_batches,
    fit_buckets,
    train_batches,
)
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import (
    Corpus,
    Sentence,
    WojoodFormatError,
    parse_wojood,
    read_wojood,
    write_wojood,
)

__all__ = [
    "AlignStats", "Corpus", "LabelVocab", "Sentence", "Window", "WojoodFormatError", "collate_windows",
    "encode_sentences", "eval_batches", "fit_buckets", "parse_wojood", "read_wojood", "scatter_to_words",
    "train_batches", "write_wojood",
]
