"""Encoders trained from scratch: a WordPiece tokenizer trained on the data, a small BERT config.

Owns: what the experiments and tests use when no pretrained checkpoint is given (no hub, no
network): `train_wordpiece_tokenizer` (deterministic: the same vocabulary in every process and
run), the WordPiece vocabulary learner behind it, and `small_bert_config`.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise

from arner_jax.encoders.config import EncoderConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 1):
    """A BERT-style fast tokenizer (WordPiece, [CLS]/[SEP], offsets) trained on `texts`.

    The vocabulary is a function of the corpus and the settings alone: every process and every
    run builds the same one, byte for byte (see `wordpiece_vocabulary`). The result is wrapped in
    transformers' `BertTokenizerFast`, so it saves and loads like any Hugging Face tokenizer.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import BertTokenizerFast

    # No lowercasing or accent stripping: Arabic diacritics are kept, as in AraBERT-style vocabs.
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = wordpiece_vocabulary(counts, vocab_size, min_frequency)
    tok = Tokenizer(models.WordPiece(vocab={token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens(SPECIAL_TOKENS)  # already at ids 0..4; marks them special (never split)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=False, strip_accents=False,
                             tokenize_chinese_chars=False)


def wordpiece_vocabulary(word_counts: Mapping[str, int], vocab_size: int, min_frequency: int = 1,
                         prefix: str = "##") -> list[str]:
    """The WordPiece vocabulary (tokens in id order) learned from word counts by BPE merges.

    The same procedure as `tokenizers`' WordPieceTrainer, which is not used because its result
    changes from run to run (huggingface/tokenizers#1794): it numbers the word-internal `##c`
    tokens in hash-map order, and breaks ties between equally frequent pairs by those numbers,
    so two runs pick different merges. Here every step has a fixed order:
      ids: the special tokens, the characters, then the `##` characters, both by code point,
        then the merged tokens in the order they are made;
      merges: the most frequent adjacent pair of all words (weighted by word count) is merged
        next; ties go to the pair of smaller ids (the library's rule, on deterministic ids).
    Merging stops at `vocab_size` tokens or when no pair occurs `min_frequency` times (at least
    once). A merge of an existing token (`a` + `##bc` and `ab` + `##c`) adds no token.
    """
    chars = sorted({c for word in word_counts for c in word})
    inner = sorted({prefix + c for word in word_counts for c in word[1:]})
    vocab = list(SPECIAL_TOKENS) + chars + inner
    ids = {token: i for i, token in enumerate(vocab)}
    # Words as lists of token ids, in a fixed (sorted) order; the result does not depend on it.
    words = sorted(word_counts)
    weights = [word_counts[w] for w in words]
    symbols = [[ids[w[0]]] + [ids[prefix + c] for c in w[1:]] for w in words]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # words that hold (or held) the pair
    for i, word in enumerate(symbols):
        for pair in pairwise(word):
            pair_counts[pair] += weights[i]
            where[pair].add(i)
    # Max-heap by count, then smallest pair; an entry is stale when its count is no longer the
    # pair's count (a fresh entry is pushed whenever a count changes).
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    threshold = max(min_frequency, 1)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_counts[pair]:
            continue
        if -neg < threshold:
            break
        a, b = pair
        token = vocab[a] + vocab[b].removeprefix(prefix)
        if token not in ids:
            ids[token] = len(vocab)
            vocab.append(token)
        new = ids[token]
        changed = set()
        for i in where.pop(pair):
            old = symbols[i]
            merged = _merge(old, a, b, new)
            if len(merged) == len(old):
                continue
            for p in pairwise(old):
                pair_counts[p] -= weights[i]
                changed.add(p)
            for p in pairwise(merged):
                pair_counts[p] += weights[i]
                changed.add(p)
                where[p].add(i)
            symbols[i] = merged
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return vocab


def _merge(word: list[int], a: int, b: int, new: int) -> list[int]:
    """`word` with every non-overlapping (a, b), left to right, replaced by `new`."""
    out: list[int] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def small_bert_config(vocab_size: int, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 2,
                      max_positions: int = 512) -> EncoderConfig:
    """A small BERT for from-scratch runs on a CPU (about 0.5M parameters plus embeddings)."""
    return EncoderConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions, model_type="bert",
    )
