"""Data (numpy only, no JAX): Wojood files, label vocabularies, alignment, batching, synthetic corpus."""
from arner_jax.data.align import AlignStats, Window, encode_sentences, scatter_to_words
from arner_jax.data.batching import collate, eval_batches, iterate, train_batches
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus, Sentence, WojoodFormatError, parse_wojood, read_wojood, write_wojood

__all__ = [
    "AlignStats", "Corpus", "LabelVocab", "Sentence", "Window", "WojoodFormatError", "collate",
    "encode_sentences", "eval_batches", "iterate", "parse_wojood", "read_wojood", "scatter_to_words",
    "train_batches", "write_wojood",
]
