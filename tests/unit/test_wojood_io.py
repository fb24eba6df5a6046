"""Reading and writing Wojood files: every rule of SPEC section 2 and every bad-input error."""
from __future__ import annotations

import pytest

from arner_jax.data import LabelVocab, WojoodFormatError, parse_wojood, read_wojood
from arner_jax.data.wojood import format_wojood
from tests.conftest import shared_path

NESTED = "مجلس B-ORG\nالأمن I-ORG\nضد I-ORG\nالأسد I-ORG B-PERS\n$#$ O\n\nنابلس B-GPE\n"


def test_nested_sentences_tags_outermost_first():
    corpus = parse_wojood(NESTED)
    assert [len(s) for s in corpus.sentences] == [5, 1]
    assert corpus.sentences[0].tags[3] == ["I-ORG", "B-PERS"]
    assert corpus.sentences[0].words[4] == "$#$"  # the placeholder is an ordinary word
    assert corpus.nested and corpus.types == ["GPE", "ORG", "PERS"]
    assert corpus.sentences[0].type_tags("PERS") == ["O", "O", "O", "B-PERS", "O"]
    assert corpus.sentences[0].first_line == 1 and corpus.sentences[1].first_line == 7


def test_blank_lines_bom_and_crlf():
    text = "\ufeff\r\n\r\nأ O\r\nب B-LOC\r\n\r\n\r\n   \r\nج O"
    corpus = parse_wojood(text)
    assert [s.words for s in corpus.sentences] == [["أ", "ب"], ["ج"]]
    assert not corpus.nested


def test_same_type_duplicates_keep_first_and_are_counted():
    corpus = parse_wojood("x B-ORG I-ORG B-GPE\ny I-ORG B-ORG\n")
    assert corpus.sentences[0].tags == [["B-ORG", "B-GPE"], ["I-ORG"]]
    assert corpus.dropped_duplicates == 2


@pytest.mark.parametrize("text,line,needle", [
    ("a O\nb\n", 2, "without a tag"),
    ("a O\n\nb B-ORG X-ORG\n", 3, "'X-ORG' is not"),
    ("a B-\n", 1, "'B-' is not"),
    ("a O B-ORG\n", 1, "`O` together with other tags"),
    ("a o\n", 1, "'o' is not"),
])
def test_bad_lines_name_file_and_line(text, line, needle):
    with pytest.raises(WojoodFormatError, match=needle) as info:
        parse_wojood(text, "bad.txt")
    assert info.value.line == line and str(info.value).startswith(f"bad.txt:{line}:")


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"a O\nb O\n" + b"caf\xe9 O\n")
    with pytest.raises(WojoodFormatError, match=r"latin.txt:3: not UTF-8 \(byte 0xe9\)"):
        read_wojood(path)


def test_missing_file(tmp_path):
    with pytest.raises(WojoodFormatError, match="no such file"):
        read_wojood(tmp_path / "nope.txt")


def test_vocab_refuses_unknown_types(tmp_path):
    vocab = LabelVocab.from_corpus(parse_wojood("a B-ORG\nb I-ORG\n\nc B-GPE\n"))
    assert vocab.types == ("GPE", "ORG") and vocab.type_classes == (("O", "B"), ("O", "B", "I"))
    assert vocab.flat_tags == ("O", "B-GPE", "B-ORG", "I-ORG")
    assert vocab.class_mask().tolist() == [[True, True, False], [True, True, True]]
    vocab.save(tmp_path / "vocab.json")
    assert LabelVocab.load(tmp_path / "vocab.json") == vocab
    from arner_jax.config import RunConfig
    from arner_jax.models.base import family_for

    # the line of the word that carries the unknown type (line 4), not of its sentence's first word
    with pytest.raises(WojoodFormatError, match=r"test.txt:4: entity types \['PERS'\] are not among"):
        family_for("nested").check_corpus(RunConfig(kind="nested"), vocab,
                                          parse_wojood("a O\n\nb O\nc B-PERS\n", "test.txt"))


@pytest.mark.parametrize("split,sentences,words", [("train", 1114, 18887), ("val", 158, 2743), ("test", 357, 5344)])
def test_sample_counts_and_round_trip(tmp_path, split, sentences, words):
    path = shared_path("data", "wojood_sample", f"{split}.txt")
    corpus = read_wojood(path)
    assert len(corpus.sentences) == sentences and corpus.num_words == words
    assert len(corpus.types) <= 21 and corpus.nested
    # Byte-identical up to blank-line normalisation (the sample omits the last blank line).
    original = path.read_text(encoding="utf-8")
    written = format_wojood(corpus.sentences)
    if corpus.dropped_duplicates == 0:
        assert written.rstrip("\n") == original.rstrip("\n")
    else:  # duplicates are dropped by design; every other line is unchanged
        diff = [(a, b) for a, b in zip(original.splitlines(), written.splitlines()) if a != b]
        assert len(diff) <= corpus.dropped_duplicates
        assert len(original.splitlines()) == len(written.rstrip("\n").splitlines())
