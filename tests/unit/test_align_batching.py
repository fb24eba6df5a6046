"""Alignment (first subwords, windows, words without subwords) and bucketed batching."""
from __future__ import annotations

import numpy as np
import pytest

from arner_jax.data import (
    LabelVocab,
    encode_sentences,
    eval_batches,
    parse_wojood,
    read_wojood,
    scatter_to_words,
    train_batches,
)
from arner_jax.data.align import plan_windows
from arner_jax.data.batching import (
    EVAL_LENGTHS,
    bucket_lengths,
    collate_windows,
    fit_buckets,
)
from arner_jax.encoders import train_wordpiece_tokenizer
from tests.conftest import ARABIC_TEXT, shared_path


@pytest.fixture(scope="module")
def sample():
    corpus = read_wojood(shared_path("data", "wojood_sample", "train.txt"))
    tokenizer = train_wordpiece_tokenizer((" ".join(s.words) for s in corpus.sentences), vocab_size=1500)
    return corpus, tokenizer, LabelVocab.from_corpus(corpus)


def test_every_word_of_the_sample_scored_exactly_once_with_64_token_windows(sample):
    corpus, tokenizer, vocab = sample
    windows, stats = encode_sentences(corpus.sentences, tokenizer, vocab, "per_type", max_length=64)
    assert stats.split_sentences > 50  # the sample has sentences up to 202 words
    assert all(len(w) <= 64 for w in windows)
    counts = [np.zeros(len(s), int) for s in corpus.sentences]
    for w in windows:
        for word in w.word_index[w.word_index >= 0]:
            counts[w.sentence][word] += 1
    assert all((c == 1).all() for c in counts)
    # labels sit on first subwords and equal the gold tags of the word they score
    for w in windows[:200]:
        s = corpus.sentences[w.sentence]
        for pos in np.nonzero(w.word_index >= 0)[0]:
            tags = [vocab.type_tag(t, c) for t, c in enumerate(w.labels[pos])]
            assert sorted(t for t in tags if t != "O") == sorted(t for t in s.tags[w.word_index[pos]] if t != "O")
    # scatter back: per-word outputs land on their words
    outputs = [np.where(w.word_index >= 0, w.word_index, -7) for w in windows]
    words = scatter_to_words(windows, [len(s) for s in corpus.sentences], outputs)
    assert all((x == np.arange(len(x))).all() for x in words)


def test_window_owner_has_most_context():
    windows, owner = plan_windows([1] * 10, budget=4)
    assert windows[0] == (0, 4) and windows[-1][1] == 10
    for w, k in enumerate(owner):
        a, b = windows[k]
        assert a <= w < b
        ctx = min(w - a, b - 1 - w)
        others = [min(w - a2, b2 - 1 - w) for a2, b2 in windows if a2 <= w < b2]
        assert ctx == max(others)


def test_word_longer_than_a_window_is_clipped_not_dropped():
    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    long_word = "سكرتيرالقوميةالعربيةنابلسوزارةالصحة"  # many subwords with this small vocabulary
    corpus = parse_wojood(f"في O\n{long_word} B-ORG\nنابلس B-GPE\n")
    windows, stats = encode_sentences(corpus.sentences, tok, LabelVocab.from_corpus(corpus), "flat", max_length=6)
    assert stats.clipped_words == 1 and all(len(w) <= 6 for w in windows)
    scored = sorted(int(i) for w in windows for i in w.word_index if i >= 0)
    assert scored == [0, 1, 2]


def test_word_without_subwords_gets_unk():
    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    corpus = parse_wojood("مجلس B-ORG\n\u200f O\nالأمن I-ORG\n")
    vocab = LabelVocab.from_corpus(corpus)
    windows, stats = encode_sentences(corpus.sentences, tok, vocab, "flat", max_length=32)
    assert stats.words_without_subwords == 1
    w = windows[0]
    assert w.word_index.tolist().count(1) == 1
    assert w.input_ids[w.word_index.tolist().index(1)] == tok.unk_token_id
    assert w.labels[w.word_index >= 0, 0].tolist() == [vocab.flat_id("B-ORG"), 0, vocab.flat_id("I-ORG")]


def test_batches_have_few_shapes_cover_everything_and_depend_on_seed(sample):
    corpus, tokenizer, vocab = sample
    windows, _ = encode_sentences(corpus.sentences, tokenizer, vocab, "per_type", max_length=128)
    lengths, buckets = [len(w) for w in windows], fit_buckets([len(w) for w in windows], 16, 128)
    plan = train_batches(lengths, 16, seed=3, epoch=0, buckets=buckets)
    assert {length for length, _ in plan} <= set(buckets)
    assert sorted(i for _, idx in plan for i in idx) == list(range(len(windows)))
    assert plan == train_batches(lengths, 16, seed=3, epoch=0, buckets=buckets)
    assert plan != train_batches(lengths, 16, seed=3, epoch=1, buckets=buckets)
    batches = [collate_windows(windows, idx, 16, length, pad_id=0) for length, idx in plan]
    assert {b["input_ids"].shape[0] for b in batches} == {16}
    partial = [b for b in batches if (b["window_index"] < 0).any()]
    assert partial and all(b["label_mask"][b["window_index"] < 0].sum() == 0 for b in partial)
    assert sum(b["label_mask"].sum() for b in batches) == corpus.num_words


def test_eval_batches_sorted_and_restorable(sample):
    corpus, tokenizer, vocab = sample
    windows, _ = encode_sentences(corpus.sentences[:100], tokenizer, vocab, "per_type", max_length=128)
    plan = eval_batches([len(w) for w in windows], 8, bucket_lengths(128))
    lengths = [len(windows[i]) for _, idx in plan for i in idx]
    assert lengths == sorted(lengths)
    assert {length for length, _ in plan} <= set(EVAL_LENGTHS) | {128}
    seen = np.concatenate([collate_windows(windows, idx, 8, length, 0)["window_index"] for length, idx in plan])
    assert sorted(seen[seen >= 0].tolist()) == list(range(len(windows)))


def test_label_layouts_of_a_nested_word():
    from arner_jax.data.align import word_labels
    from arner_jax.models.tagger.family import KINDS

    corpus = parse_wojood("سكرتير B-OCC\nبلدية I-OCC B-ORG\nنابلس I-OCC I-ORG B-GPE\nأمس O\n\n")
    vocab = LabelVocab.from_corpus(corpus)  # types GPE, OCC, ORG
    s = corpus.sentences[0]
    nested = word_labels(s, vocab, KINDS["nested"].layout)
    mtn = word_labels(s, vocab, KINDS["mtn"].layout)  # per-type heads, outermost tag only
    flat = word_labels(s, vocab, KINDS["flat"].layout)
    np.testing.assert_array_equal(nested, [[0, 1, 0], [0, 2, 1], [1, 2, 2], [0, 0, 0]])
    np.testing.assert_array_equal(mtn, [[0, 1, 0], [0, 2, 0], [0, 2, 0], [0, 0, 0]])
    assert [vocab.flat_tags[i] for i in flat[:, 0]] == ["B-OCC", "I-OCC", "I-OCC", "O"]


def _computed_tokens(lengths, buckets, batch_size):
    """Tokens computed when the items are cut into batches per bucket (the last batch padded)."""
    per_bucket = {}
    for n in lengths:
        b = min(x for x in buckets if x >= n)
        per_bucket[b] = per_bucket.get(b, 0) + 1
    return sum(-(-count // batch_size) * batch_size * b for b, count in per_bucket.items())


def test_fit_buckets_hand_computed():
    # ends 8, 16, 24, 104; {3,5} -> 8: 2 x 8; {9} -> 16: 2 x 16; {17, 100} -> 104: 2 x 104; total 256
    assert fit_buckets([3, 5, 9, 17, 100], 2, 512) == (8, 16, 104)
    assert _computed_tokens([3, 5, 9, 17, 100], (8, 16, 104), 2) == 256
    assert fit_buckets([10] * 5 + [500], 4, 512, max_buckets=1) == (504,)
    assert fit_buckets([10] * 5 + [500], 4, 512) == (16, 504)
    assert fit_buckets([509, 510], 4, 510) == (510,)  # capped at max_length, not rounded past it
    with pytest.raises(ValueError, match="exceeds max_length"):
        fit_buckets([600], 4, 512)


def test_fit_buckets_is_optimal_against_brute_force():
    import itertools

    rng = np.random.default_rng(0)
    for trial in range(30):
        lengths = list(rng.integers(1, 120, size=int(rng.integers(1, 40))))
        batch, max_b = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        got = fit_buckets(lengths, batch, 128, max_buckets=max_b)
        assert len(got) <= max_b and got[-1] >= max(lengths)
        ends = sorted({-(-n // 8) * 8 for n in lengths})
        best = min(_computed_tokens(lengths, combo, batch) for k in range(1, max_b + 1)
                   for combo in itertools.combinations(ends, k) if combo[-1] == ends[-1])
        assert _computed_tokens(lengths, got, batch) == best, (trial, lengths, batch, max_b, got)


def test_fitted_buckets_cut_the_padding_of_the_sample(sample):
    corpus, tokenizer, vocab = sample
    windows, _ = encode_sentences(corpus.sentences, tokenizer, vocab, "per_type", 512)
    lengths = [len(w) for w in windows]
    fitted = fit_buckets(lengths, 16, 512)
    computed = {name: sum(16 * length for length, _ in train_batches(lengths, 16, 0, 0, b))
                for name, b in (("powers of two", (32, 64, 128, 256, 512)), ("fitted", fitted))}
    assert len(fitted) <= 8
    assert computed["fitted"] < 0.8 * computed["powers of two"], computed
    assert computed["fitted"] == _computed_tokens(lengths, fitted, 16)
