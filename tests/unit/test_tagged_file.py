"""The fast reader of `arner_jax.score` (arner_jax.scoring.tagged_file) against the reference reader
(`arner_jax.scoring.metrics.read_tagged_file`): the same words, tags, lines, dropped duplicates and errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from arner_jax.data.wojood import WojoodFormatError
from arner_jax.scoring import tagged_file
from arner_jax.scoring.metrics import PREDICTIONS_HEADER, encode_tags, read_tagged_file, score_tags
from arner_jax.scoring.tagged_file import read_tagged, score_files
from tests.conftest import REPO, shared_path

HEADER = PREDICTIONS_HEADER + "\n"


def same_as_reference(path, fast: bool = True) -> None:
    """read_tagged(path) reads what the reference reader reads, by the fast path or not as `fast` says."""
    got = read_tagged(path)
    assert got.fast is fast
    assert got.to_corpus() == read_tagged_file(path)
    assert [s.tags for s in read_tagged_file(path).sentences] == got.tags()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_the_sample_reads_the_same_fast(split):
    same_as_reference(shared_path("data", "wojood_sample", f"{split}.txt"))


READ_FAST = {
    "repeated blank lines": "a O\nb B-ORG\n\n\n\nc O\n\n\n",
    "leading blank lines": "\n\n\na O\n",
    "blank lines of spaces and tabs": "a O\n \t \nb O\n\t\n\nc O\n",
    "no final blank line": "a O\nb B-ORG\n\nc O\n",
    "no final line break": "a O\nb B-ORG\n\nc I-ORG",
    "CRLF": "a O\r\nb B-ORG I-OCC\r\n\r\n\r\nc O\r\n",
    "CRLF without the last one": "a O\r\n\r\nb B-ORG",
    "$#$ words": "$#$ O\nx B-PERS\n$#$ I-PERS\n\n$#$ O\n",
    "multi-tag lines": "w1 B-OCC B-ORG B-GPE\nw2 I-OCC I-ORG\nw3 I-OCC\n",
    "tabs and runs of spaces": "w1\tB-OCC\tB-ORG   B-GPE  \nw2  \t I-OCC\t\n",
    "same-type duplicates dropped": "w B-ORG I-ORG B-GPE\nv I-ORG B-ORG I-ORG\n",
    "byte order mark": "\ufeffa B-ORG\nb O\n",
    "control bytes inside words": "a\x01b O\nc\x00 B-ORG\n",
    "long tag fields": "w " + " ".join(f"B-T{k}" for k in range(40)) + "\n",
    "one word": "a O",
    "empty": "",
    "only blank lines": "\n\n \n",
    "Arabic punctuation and joiners": "\u0645\u200c\u0646 O\n\u2026 B-ORG\n\u201cx\u201d I-ORG\n",
    "predictions": HEADER + "a\tO\tO|B-ORG\nb\tB-ORG\tI-ORG|B-GPE\n\nc\tO\tO|O\n",
    "predictions, CRLF": (HEADER + "a\tO\tB-ORG\n\nb\tO\tO\n").replace("\n", "\r\n"),
    "predictions, empty predicted field and spaces in gold": HEADER + "a\tB-ORG I-OCC\t\nb\t \tB-ORG||I-ORG\n",
    "predictions, BOM and no final line break": "\ufeff" + HEADER + "\na\tO\tB-ORG",
    "predictions, header only": HEADER,
}
READ_BY_REFERENCE = {  # whitespace a split on space, tab, CR and LF reads otherwise than str.split does
    "lone CR": "a O\rb O\n",
    "CR at the end": "a O\r",
    "vertical tab": "a O\x0bb O\n",
    "file separator": "a O\x1cb O\n",
    "no-break space": "a O\u00a0\n",
    "ideographic space": "a B-ORG\u3000I-OCC\n",
    "line separator": "a O\u2028b O\n",
    "two byte order marks": "\ufeff\ufeffa O\n",
    "predictions, a space in the word": HEADER + "a \tO\tO\n",
    "predictions, a space in the predicted field": HEADER + "a\tO\tB-ORG |O\n",
}


@pytest.mark.parametrize("text", READ_FAST.values(), ids=READ_FAST)
def test_edge_cases_read_fast_and_the_same(tmp_path, text):
    (tmp_path / "f.txt").write_bytes(text.encode("utf-8"))
    same_as_reference(tmp_path / "f.txt")


@pytest.mark.parametrize("text", READ_BY_REFERENCE.values(), ids=READ_BY_REFERENCE)
def test_odd_whitespace_is_left_to_the_reference_reader(tmp_path, text):
    (tmp_path / "f.txt").write_bytes(text.encode("utf-8"))
    same_as_reference(tmp_path / "f.txt", fast=False)


ERRORS = {
    "bad tag": ("a O\nb B-ORG\nc Q\n", "f.txt:3: tag 'Q'"),
    "word without a tag": ("a O\n\nb\n", "f.txt:3: a word without a tag"),
    "O with other tags": ("a O B-ORG\n", "f.txt:1: `O` together with other tags"),
    "predictions line of two fields": (HEADER + "a\tO\tO\nb\tO\n", "f.txt:3: 2 tab-separated fields"),
    "not UTF-8": (b"a O\n\xff O\n", "f.txt:2: not UTF-8"),
}


@pytest.mark.parametrize("text, message", ERRORS.values(), ids=ERRORS)
def test_errors_are_the_reference_readers(tmp_path, text, message):
    path = tmp_path / "f.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(WojoodFormatError) as reference:
        read_tagged_file(path)
    with pytest.raises(WojoodFormatError) as fast:
        read_tagged(path)
    assert str(fast.value) == str(reference.value) and message in str(fast.value)
    with pytest.raises(WojoodFormatError, match="no such file"):
        read_tagged(tmp_path / "missing.txt")


def random_file(rng: np.random.Generator) -> str:
    """Wojood text with every layout the fast path takes: blank-line runs, CRLF or LF, tabs and space runs,
    0-4 tags (same-type repeats, a few bad tags and tagless words), `$#$` and Arabic words."""
    words, tags = ["$#$", "\u0645\u062c\u0644\u0633", "a", "\u2026", "x\u200cy"], ["O", "B-ORG", "I-ORG", "B-GPE",
                                                                                      "I-OCC", "B-PERS_X", "Q"]
    lines = []
    for _ in range(rng.integers(0, 30)):
        if rng.random() < 0.2:
            lines.append(str(rng.choice(["", " ", "\t", " \t "])))
            continue
        n = int(rng.choice([1, 1, 1, 2, 3, 4, 0], p=[.3, .2, .2, .15, .1, .04, .01]))
        line_tags = [str(t) for t in rng.choice(tags[:-1] if rng.random() < 0.97 else tags, n)]
        if rng.random() < 0.9 and "O" in line_tags and n > 1:
            line_tags = [t for t in line_tags if t != "O"] or ["O"]
        seps = [str(rng.choice([" ", "\t", "  ", " \t"])) for _ in range(n)]
        lines.append(str(rng.choice(words)) + "".join(s + t for s, t in zip(seps, line_tags)))
    newline = "\r\n" if rng.random() < 0.3 else "\n"
    return newline.join(lines) + (newline if rng.random() < 0.7 else "")


def test_random_files_read_the_same(tmp_path):
    rng = np.random.default_rng(24)
    path = tmp_path / "f.txt"
    read = errors = 0
    for _ in range(300):
        path.write_bytes(random_file(rng).encode("utf-8"))
        try:
            reference = read_tagged_file(path)
        except WojoodFormatError as err:
            with pytest.raises(WojoodFormatError) as fast:
                read_tagged(path)
            assert str(fast.value) == str(err)
            errors += 1
            continue
        got = read_tagged(path)
        assert got.fast and got.to_corpus() == reference, path.read_bytes()
        read += 1
    assert read > 100 and errors > 20  # both sides of the fuzzing ran


def test_distinct_tag_fields_survive_hash_collisions(tmp_path, monkeypatch):
    """With a 2-slot table every distinct tag field collides: the reader sorts instead, and reads the same."""
    path = shared_path("data", "wojood_sample", "val.txt")
    monkeypatch.setattr(tagged_file, "HASH_BITS", 1)
    same_as_reference(path)


def test_tag_cells_are_the_non_o_ids_of_encode_tags():
    corpus = read_tagged_file(shared_path("data", "wojood_sample", "test.txt"))
    words = [tags for s in corpus.sentences for tags in s.tags]
    words[3] = ["B-ORG", "I-GPE", "B-ORG"]  # a second tag of a type does not count, nor does a type left out
    tagged = tagged_file.TaggedFile.from_corpus(corpus)
    tagged.tag_lists.append(tuple(words[3]))
    tagged.tag_list_of_word[3] = len(tagged.tag_lists) - 1
    for types, nested in ((corpus.types, True), (corpus.types, False), (["ORG", "PERS"], True)):
        dense = encode_tags(words, nested, types).ravel()
        at, ids = tagged.tag_cells(types, nested)
        np.testing.assert_array_equal(at, np.flatnonzero(dense))
        np.testing.assert_array_equal(ids, dense[at])


def test_score_files_gives_score_tags_dicts(tmp_path):
    """On the sample's test split against a retagged copy: the same dicts, both modes and both scorers."""
    test = shared_path("data", "wojood_sample", "test.txt")
    lines = test.read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    retag = ["O", "B-ORG", "I-ORG", "B-GPE I-OCC", "I-PERS B-LOC"]
    pred_lines = [f"{line.split()[0]} {rng.choice(retag)}" if line.strip() and rng.random() < 0.1 else line
                  for line in lines]
    (tmp_path / "pred.txt").write_text("\n".join(pred_lines) + "\n", encoding="utf-8")
    gold, pred = read_tagged(test), read_tagged(tmp_path / "pred.txt")
    assert gold.fast and pred.fast and gold.same_words(pred)
    reference = [[s.tags for s in read_tagged_file(p).sentences] for p in (test, tmp_path / "pred.txt")]
    for nested in (False, True):
        fast = score_files(gold, pred, nested)
        assert fast == score_tags(*reference, nested)
        assert fast == score_files(gold, pred, nested, scorer="seqeval")
        assert 0 < fast["f1"] < 1  # the retagging changed the figures, and not to nothing


def test_same_words_finds_a_changed_word_or_boundary(tmp_path):
    texts = {"gold": "ab O\nc O\n\nd O\n", "same": "ab B-ORG\nc I-ORG\n\n\nd O\r\n", "word": "ab O\nC O\n\nd O\n",
             "boundary": "ab O\n\nc O\nd O\n", "longer": "ab O\nc O\n\nd O\ne O\n", "split": "a O\nbc O\n\nd O\n"}
    files = {}
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        files[name] = read_tagged(tmp_path / name)
    assert files["gold"].same_words(files["same"])
    assert not any(files["gold"].same_words(files[name]) for name in ("word", "boundary", "longer", "split"))


def test_score_command_does_not_import_jax():
    code = ("import sys, arner_jax.score; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax'));"
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
