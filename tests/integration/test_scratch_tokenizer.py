"""The from-scratch WordPiece tokenizer is a function of its corpus and settings alone.

Multi-process training builds the tokenizer in every process, so the token ids (and the length
buckets derived from them) must agree across processes and runs, whatever PYTHONHASHSEED is.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arner_jax.data.wojood import read_wojood
from arner_jax.encoders import train_wordpiece_tokenizer
from arner_jax.encoders.scratch import SPECIAL_TOKENS, wordpiece_vocabulary
from tests.conftest import ARABIC_TEXT, REPO, shared_path

TRAIN_AND_SAVE = """
import sys
from arner_jax.data.wojood import read_wojood
from arner_jax.encoders import train_wordpiece_tokenizer
texts = [" ".join(s.words) for s in read_wojood(sys.argv[1]).sentences]
train_wordpiece_tokenizer(texts, vocab_size=4000).save_pretrained(sys.argv[2])
"""


def _texts(split: str) -> list[str]:
    return [" ".join(s.words) for s in read_wojood(shared_path("data", "wojood_sample", f"{split}.txt")).sentences]


def _encodings(tok, texts: list[str]) -> list[tuple]:
    return [(e.ids, e.offsets) for e in tok.backend_tokenizer.encode_batch(texts)]


def test_saved_files_identical_across_processes(tmp_path: Path):
    """Two processes with different hash seeds write the same files, byte for byte.

    The sample corpus has many equally frequent pairs: the library trainer gives 4000-token
    vocabularies that differ in about 50 tokens from one process to the next."""
    train = shared_path("data", "wojood_sample", "train.txt")
    folders = []
    for seed in ("1", "2"):
        folder = tmp_path / f"seed{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        subprocess.run([sys.executable, "-c", TRAIN_AND_SAVE, str(train), str(folder)], cwd=REPO, env=env,
                       check=True, timeout=120)
        folders.append(folder)
    names = sorted(p.name for p in folders[0].iterdir())
    assert "tokenizer.json" in names
    assert names == sorted(p.name for p in folders[1].iterdir())
    for name in names:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_same_corpus_same_ids():
    first, second = (train_wordpiece_tokenizer(_texts("train"), vocab_size=4000) for _ in range(2))
    assert first.get_vocab() == second.get_vocab()
    assert len(first) == 4000
    test = _texts("test")
    assert _encodings(first, test) == _encodings(second, test)


def test_different_corpus_different_vocab():
    assert (train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200).get_vocab()
            != train_wordpiece_tokenizer(ARABIC_TEXT[:2], vocab_size=200).get_vocab())


def test_special_tokens_first():
    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4]
    special_ids = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]
    assert special_ids == [0, 1, 2, 3, 4]
    ids = tok("سوريا [MASK] نابلس ☃")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and 4 in ids and 1 in ids  # the snowman is not in the corpus


def test_round_trip_through_save_pretrained(tmp_path: Path):
    from transformers import AutoTokenizer

    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    tok.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded.get_vocab() == tok.get_vocab()
    texts = ARABIC_TEXT[:4] + ["وتدخلت روسيا, عسكرياً!"]
    assert _encodings(loaded, texts) == _encodings(tok, texts)
    words = texts[0].split()
    assert (loaded(words, is_split_into_words=True).word_ids() == tok(words, is_split_into_words=True).word_ids())


def test_vocabulary_order_and_ties():
    """Characters, then ## characters, by code point; equally frequent pairs in id order."""
    vocab = wordpiece_vocabulary({"cd": 2, "ab": 2, "a": 1}, vocab_size=100)
    assert vocab == SPECIAL_TOKENS + ["a", "b", "c", "d", "##b", "##d", "ab", "cd"]
    assert wordpiece_vocabulary({"cd": 2, "ab": 2}, vocab_size=12) == SPECIAL_TOKENS + ["a", "b", "c", "d", "##b",
                                                                                         "##d", "ab"]
    assert wordpiece_vocabulary({"cd": 2, "ab": 3}, vocab_size=100, min_frequency=3)[-1] == "ab"


def test_repeated_pairs():
    """a ##a ##a ##a: (##a, ##a) occurs twice (overlapping), so ##aa comes first, merged left to right
    (a ##aa ##a); then (a, ##aa) ties (##aa, ##a) and has the smaller ids: aaa; then aaaa."""
    assert wordpiece_vocabulary({"aaaa": 1}, vocab_size=100) == SPECIAL_TOKENS + ["a", "##a", "##aa", "aaa", "aaaa"]
