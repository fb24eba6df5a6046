"""Wojood-exact metrics (SPEC 6), predictions.txt, and the `arner_jax.score` command."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arner_jax.data import parse_wojood, read_wojood
from arner_jax.score import main as score_main
from arner_jax.scoring.metrics import format_predictions, parse_predictions, score_tags
from tests.conftest import REPO, shared_path


def tags(*words):
    return [w.split() for w in words]


def test_flat_counts_by_hand():
    gold = [tags("B-PERS", "I-PERS", "O", "B-GPE"), tags("B-ORG", "O")]
    pred = [tags("B-PERS", "I-PERS", "O", "B-ORG"), tags("B-ORG", "B-GPE")]
    m = score_tags(gold, pred, nested=False)
    # gold 3 entities, predicted 4, correct 2 (PERS, ORG)
    assert (m["precision"], m["recall"]) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["gold_entities"] == 3 and m["per_type"]["GPE"]["support"] == 1


def test_lenient_versus_strict_on_i_after_o():
    gold = [tags("O", "B-ORG", "I-ORG", "O")]
    pred = [tags("O", "I-ORG", "I-ORG", "O")]  # starts with I-: conlleval accepts, strict IOB2 does not
    m = score_tags(gold, pred, nested=False)
    assert m["f1"] == 1.0
    assert m["strict"]["f1"] == 0.0 and m["strict"]["precision"] == 0.0


def test_nested_word_with_three_tags_pools_type_layers():
    gold = [tags("B-OCC", "I-OCC B-ORG", "I-OCC I-ORG B-GPE", "O")]
    pred = [tags("B-OCC", "I-OCC B-ORG", "I-OCC I-ORG", "O")]  # GPE missed
    m = score_tags(gold, pred, nested=True)
    assert m["gold_entities"] == 3
    assert (m["precision"], m["recall"]) == (1.0, pytest.approx(2 / 3))
    assert m["per_type"]["GPE"]["recall"] == 0.0 and m["per_type"]["OCC"]["f1"] == 1.0
    # flat scoring of the same data sees only the outermost layer
    assert score_tags(gold, pred, nested=False)["gold_entities"] == 1


def test_nested_pooling_counts_sentence_copies_per_type():
    """An I- continuing across the seam of two type copies must not join entities (lists, not one list)."""
    gold = [tags("O", "B-ORG"), tags("I-ORG", "O")]
    m = score_tags(gold, gold, nested=True)
    assert m["gold_entities"] == 2 and m["f1"] == 1.0


def test_predictions_round_trip():
    gold = parse_wojood("مجلس B-ORG\nالأمن I-ORG B-GPE\n\nنابلس B-GPE\n")
    pred = [[["O", "B-ORG"], ["B-GPE", "I-ORG"]], [["B-GPE", "O"]]]  # one tag per type, type order
    text = format_predictions(gold.sentences, pred)
    assert text.splitlines()[:3] == ["Token\tGold Tag\tPredicted Tag", "مجلس\tB-ORG\tO|B-ORG",
                                     "الأمن\tI-ORG|B-GPE\tB-GPE|I-ORG"]
    back = parse_predictions(text)
    assert [s.tags for s in back.sentences] == [[["B-ORG"], ["B-GPE", "I-ORG"]], [["B-GPE"]]]


def test_score_command_on_sample_gold_against_itself(tmp_path):
    test = shared_path("data", "wojood_sample", "test.txt")
    for nested, expected in ((True, 865), (False, 711)):
        argv = [sys.executable, "-m", "arner_jax.score", "--gold", str(test), "--pred", str(test)]
        proc = subprocess.run(argv + (["--nested"] if nested else []), capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        m = json.loads(proc.stdout)
        assert m["f1"] == 1.0 and m["strict"]["f1"] == 1.0 and m["gold_entities"] == expected
    # the same gold written as predictions.txt (nested: one tag per type) scores 1.0 too
    corpus = read_wojood(test)
    types = corpus.types
    pred = [[[next((t for t in w if t[2:] == x), "O") for x in types] for w in s.tags] for s in corpus.sentences]
    (tmp_path / "predictions.txt").write_text(format_predictions(corpus.sentences, pred), encoding="utf-8")
    assert score_main(["--gold", str(test), "--pred", str(tmp_path / "predictions.txt"), "--nested"]) == 0


def test_score_command_names_first_difference(tmp_path, capsys):
    (tmp_path / "g.txt").write_text("a O\nb B-ORG\n\nc O\nd O\n", encoding="utf-8")
    (tmp_path / "p.txt").write_text("a O\nb B-ORG\n\nc O\nX O\n", encoding="utf-8")
    (tmp_path / "short.txt").write_text("a O\nb B-ORG\n\nc O\n", encoding="utf-8")
    assert score_main(["--gold", str(tmp_path / "g.txt"), "--pred", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err
    assert "p.txt:5: word 'X'" in err and "g.txt:5 has 'd'" in err
    assert score_main(["--gold", str(tmp_path / "g.txt"), "--pred", str(tmp_path / "short.txt")]) == 2
    assert "short.txt:5: sentence 2 has 1 words, but 2" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("a O\nb B-ORG\n\nc O\nd Q\n", encoding="utf-8")
    assert score_main(["--gold", str(tmp_path / "g.txt"), "--pred", str(tmp_path / "bad.txt")]) == 2
    assert "bad.txt:5: tag 'Q'" in capsys.readouterr().err
