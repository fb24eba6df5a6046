"""From a RunConfig to everything a run trains and evaluates.

Owns: reading the three splits (data files, a `datasets` corpus saved into the run folder, or
the synthetic corpus written there), the tokenizer (the pretrained encoder's, or a WordPiece
trained on the training split; span models add the `<start>`/`<end>` markers), the label
vocabulary (taggers) or label list (span models), each split's windows or span rows, the
model and its initial parameters (a Hugging Face encoder's weights, or random from the seed),
the family's task for the loop, and writing/reading these in the run folder. `load_run`
rebuilds the model from a finished run folder.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.align import AlignStats, encode_sentences
from arner_jax.data.synthetic import write_synthetic_corpus
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus, read_wojood
from arner_jax.encoders import EncoderConfig, load_pretrained_encoder, small_bert_config, train_wordpiece_tokenizer
from arner_jax.span_marker.checkpoint import SpanConfig, add_markers, usable_length
from arner_jax.span_marker.model import SpanMarker
from arner_jax.tagger import Tagger, head_shape, label_layout
from arner_jax.train import config as files
from arner_jax.train.config import RunConfig, read_run_config, write_run_config
from arner_jax.train.evaluation import Split
from arner_jax.train.runtime import barrier, is_primary

log = logging.getLogger("arner_jax")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Assembled:
    config: RunConfig
    run_dir: Path
    tokenizer: object
    vocab: LabelVocab
    encoder: EncoderConfig
    model: Tagger | SpanMarker
    splits: dict  # split name -> Split (taggers) or span_marker.task.SpanSplit
    max_length: int
    init_params: dict  # a pretrained encoder's weights, or random; the restore template on resume
    task: object = None  # train.tasks.TaggerTask or span_marker.task.SpanTask
    span: SpanConfig | None = None

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def _dtype(dtype: str):
    return jnp.bfloat16 if dtype == "bfloat16" else jnp.float32


def build_model(kind: str, encoder: EncoderConfig, vocab: LabelVocab, dropout: float, dtype: str) -> Tagger:
    num_heads, num_classes = head_shape(kind, vocab)
    return Tagger(encoder, num_heads, num_classes, dropout=dropout, dtype=_dtype(dtype))


def build_span_model(encoder: EncoderConfig, span: SpanConfig, tokenizer, dropout: float, dtype: str) -> SpanMarker:
    start, end = add_markers(tokenizer)
    return SpanMarker(encoder, len(span.labels), start, end, dropout=dropout, dtype=_dtype(dtype))


def init_params(model: Tagger | SpanMarker, seed: int) -> dict:
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    ids = np.zeros((1, 8), np.int32)
    if isinstance(model, SpanMarker):
        one, slots = np.ones((1,), np.int32), np.zeros((1, 2), np.int32)
        return jax.jit(model.init)(key, ids, one, slots, slots, one)["params"]
    return jax.jit(model.init)(key, ids)["params"]


def _padded_vocab(n: int) -> int:
    return -(-n // 8) * 8  # embeddings padded to a multiple of 8, as SpanMarker resizes them


def _grow_embeddings(params: dict, rows: int) -> dict:
    """Append rows (the mean of the existing ones) for tokens added to a pretrained vocabulary."""
    table = params["embeddings"]["word_embeddings"]["embedding"]
    if table.shape[0] >= rows:
        return params
    extra = np.repeat(np.asarray(table).mean(0, keepdims=True), rows - table.shape[0], axis=0)
    emb = {**params["embeddings"], "word_embeddings": {"embedding": np.concatenate([table, extra])}}
    return {**params, "embeddings": emb}


def data_paths(config: RunConfig, run_dir: Path) -> dict[str, Path]:
    """The three split files: the given paths, or files in the run folder (a `datasets` corpus
    saved there, or the synthetic corpus), written once so that a resumed run reads the same."""
    if config.train_path:
        return {"train": Path(config.train_path), "val": Path(config.val_path), "test": Path(config.test_path)}
    folder = run_dir / files.DATA
    paths = {s: folder / f"{s}.txt" for s in SPLITS}
    if not all(p.exists() for p in paths.values()) and is_primary():
        if config.dataset:
            from arner_jax.data.hf_datasets import save_dataset_splits

            save_dataset_splits(config.dataset, folder)
        else:
            write_synthetic_corpus(folder, seed=config.seed, sizes=dict(zip(SPLITS, config.synthetic_sizes)))
    barrier("corpus written into the run folder")
    return paths


def _encode(name: str, corpus: Corpus, tokenizer, vocab: LabelVocab, kind: str, max_length: int) -> Split:
    windows, stats = encode_sentences(corpus.sentences, tokenizer, vocab, label_layout(kind), max_length)
    _log_alignment(name, corpus, stats)
    return Split(name, corpus, windows)


def _log_alignment(name: str, corpus: Corpus, stats: AlignStats) -> None:
    log.info("%s: %s, %d sentences, %d words, %d windows (%d sentences split), %d same-type duplicate tags "
             "dropped, %d words without subwords, %d over-long words clipped", name, corpus.path, stats.sentences,
             stats.words, stats.windows, stats.split_sentences, corpus.dropped_duplicates,
             stats.words_without_subwords, stats.clipped_words)


def _tokenizer_and_encoder(config: RunConfig, run_dir: Path, corpora: dict, resume: bool):
    from transformers import AutoTokenizer

    if resume:
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir / files.TOKENIZER))
        return tokenizer, EncoderConfig.from_dict(read_run_config(run_dir)["encoder"]), None
    if config.bert_model:
        pretrained = load_pretrained_encoder(config.bert_model)
        log.info("encoder %s from %s", config.bert_model, pretrained.model_dir)
        return AutoTokenizer.from_pretrained(str(pretrained.model_dir)), pretrained.config, pretrained
    texts = [" ".join(s.words) for s in corpora["train"].sentences]
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=config.scratch_vocab_size)
    if config.is_span:
        add_markers(tokenizer)
    vocab_size = _padded_vocab(len(tokenizer)) if config.is_span else len(tokenizer)
    encoder = small_bert_config(vocab_size, config.scratch_hidden_size, config.scratch_layers, config.scratch_heads)
    log.info("encoder trained from scratch: WordPiece vocabulary %d, hidden %d, %d layers",
             len(tokenizer), encoder.hidden_size, encoder.num_hidden_layers)
    return tokenizer, encoder, None


def assemble(config: RunConfig, run_dir: Path, resume: bool) -> Assembled:
    """Data, tokenizer, labels, model and initial parameters; written to the run folder on a new run."""
    paths = data_paths(config, run_dir)
    corpora = {s: read_wojood(paths[s], config.tag_scheme) for s in SPLITS}
    tokenizer, encoder, pretrained = _tokenizer_and_encoder(config, run_dir, corpora, resume)
    if config.is_span:
        return _assemble_spans(config, run_dir, resume, paths, corpora, tokenizer, encoder, pretrained)
    from arner_jax.train.tasks import TaggerTask

    if resume:
        vocab = LabelVocab.load(run_dir / files.VOCAB)
    else:
        # The label space of all three splits, as the reference builds it.
        everything = Corpus([s for c in corpora.values() for s in c.sentences], "train+val+test")
        vocab = LabelVocab.from_corpus(everything)
    for split, corpus in corpora.items():
        vocab.check_corpus(corpus)
    max_length = min(config.max_length, encoder.max_text_positions)
    model = build_model(config.kind, encoder, vocab, config.dropout, config.dtype)
    params = init_params(model, config.seed)
    if pretrained is not None:
        params = {**params, "encoder": pretrained.params}
    if not resume and is_primary():
        tokenizer.save_pretrained(str(run_dir / files.TOKENIZER))
        vocab.save(run_dir / files.VOCAB)
        write_run_config(run_dir, config, encoder.to_dict(), head_shape(config.kind, vocab),
                         {"data": {s: str(p) for s, p in paths.items()}, "max_length": max_length})
    splits = {s: _encode(s, corpora[s], tokenizer, vocab, config.kind, max_length) for s in SPLITS}
    run = Assembled(config, run_dir, tokenizer, vocab, encoder, model, splits, max_length, params)
    run.task = TaggerTask(run)
    return run


def _assemble_spans(config, run_dir, resume, paths, corpora, tokenizer, encoder, pretrained) -> Assembled:
    from arner_jax.span_marker.task import SpanTask, encode_split, span_labels

    nested = config.kind == "span_nested"
    if pretrained is not None:  # the markers extend a pretrained vocabulary
        add_markers(tokenizer)
        encoder = encoder.replace(vocab_size=max(encoder.vocab_size, _padded_vocab(len(tokenizer))))
    if resume:
        span = SpanConfig.from_dict(read_run_config(run_dir)["span"])
    else:
        labels = span_labels(list(corpora.values()), nested)
        span = SpanConfig(labels, config.marker_max_length, config.entity_max_length,
                          usable_length(config.max_length, encoder))
    model = build_span_model(encoder, span, tokenizer, config.dropout, config.dtype)
    params = init_params(model, config.seed)
    if pretrained is not None:
        params = {**params, "encoder": _grow_embeddings(pretrained.params, encoder.vocab_size)}
    if not resume and is_primary():
        tokenizer.save_pretrained(str(run_dir / files.TOKENIZER))
        write_run_config(run_dir, config, encoder.to_dict(), (1, len(span.labels)),
                         {"data": {s: str(p) for s, p in paths.items()}, "max_length": span.model_max_length,
                          "span": span.to_dict()})
    splits = {s: encode_split(s, corpora[s], tokenizer, span, span.model_max_length, nested) for s in SPLITS}
    task = SpanTask(config, span, splits, span.model_max_length, int(tokenizer.pad_token_id))
    return Assembled(config, run_dir, tokenizer, None, encoder, model, splits, span.model_max_length, params,
                     task, span)


@dataclasses.dataclass
class LoadedRun:
    """A trained run folder's model, without the training data."""

    run_dir: Path
    config: RunConfig
    kind: str
    tokenizer: object
    vocab: LabelVocab
    encoder: EncoderConfig
    model: Tagger | SpanMarker
    params: dict
    max_length: int
    span: SpanConfig | None = None  # span runs


def load_run(run_dir: str | Path, dtype: str | None = None) -> LoadedRun:
    """The kept (best) model of a run folder, with its tokenizer and vocabulary."""
    from transformers import AutoTokenizer

    from arner_jax.train.checkpoints import read_best_params

    run_dir = Path(run_dir)
    raw = read_run_config(run_dir)
    config = RunConfig.from_dict(raw["run"])
    encoder = EncoderConfig.from_dict(raw["encoder"])
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / files.TOKENIZER))
    span, vocab = None, None
    if config.is_span:
        span = SpanConfig.from_dict(raw["span"])
        model = build_span_model(encoder, span, tokenizer, config.dropout, dtype or config.dtype)
    else:
        vocab = LabelVocab.load(run_dir / files.VOCAB)
        model = build_model(config.kind, encoder, vocab, config.dropout, dtype or config.dtype)
    template = jax.eval_shape(lambda: init_params(model, 0))
    params, _ = read_best_params(run_dir, template)
    return LoadedRun(run_dir, config, config.kind, tokenizer, vocab, encoder, model, params, raw["max_length"], span)
