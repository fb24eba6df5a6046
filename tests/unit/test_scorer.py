"""The vectorized Wojood scorer (arner_jax.scoring.engine) against seqeval 1.2.2, its oracle, and by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from arner_jax.score import main as score_main
from arner_jax.scoring.engine import score_ids
from arner_jax.scoring.metrics import encode_tags, score_tags

# "_" is the type seqeval gives O itself; a real type of that name must not be confused with it
TYPES = ("ORG", "GPE", "PERS", "_")
# Random sentences per mode (flat, nested; nested scores one sequence per type and sentence): the default
# set compares 2,500 (about 8 s together; seqeval is the slow side), the slow set 20,000 more.
RANDOM_SENTENCES = {"default": 2_500, "slow": 20_000}


def random_layer(rng: np.random.Generator, n: int) -> list[str]:
    """n tags from a random Markov-like mix: all-O, well-formed runs, long runs, and every malformation
    (I- after O, I- after another type, single I-), depending on the drawn prefix and type-change rates."""
    if rng.random() < 0.15:
        return ["O"] * n
    prefix = rng.choice(3, size=n, p=rng.dirichlet([0.7, 0.7, 0.7]))  # O, B, I
    new_type = rng.random(n) >= rng.random()
    new_type[:1] = True
    draws = rng.integers(len(TYPES), size=n)
    types = draws[np.maximum.accumulate(np.where(new_type, np.arange(n), 0))]
    return ["O" if c == 0 else f"{'BI'[c - 1]}-{TYPES[t]}" for c, t in zip(prefix, types)]


def random_words(rng: np.random.Generator, n: int) -> list[list[str]]:
    """A sentence of n words, each with the non-O tags of 1-3 stacked layers (same-type repeats included:
    the first one counts), now and then an empty tag list or an `O` among tags."""
    layers = [random_layer(rng, n) for _ in range(rng.integers(1, 4))]
    words = [[tag for tag in tags if tag != "O"] or ["O"] for tags in zip(*layers)] if layers else []
    for w in words:
        odd = rng.random()
        if odd < 0.01:
            w.clear()
        elif odd < 0.02:
            w.insert(int(rng.integers(len(w) + 1)), "O")
    return words


def random_case(rng: np.random.Generator) -> tuple[list, list]:
    """Gold and predicted sentences: the prediction is gold with a random share of words retagged, or
    drawn independently."""
    lengths = [int(rng.choice([0, 1, 2, rng.integers(3, 13), rng.integers(30, 80)], p=[.05, .1, .1, .6, .15]))
               for _ in range(rng.integers(1, 25))]
    gold = [random_words(rng, n) for n in lengths]
    if rng.random() < 0.25:
        return gold, [random_words(rng, n) for n in lengths]
    rate = rng.random() * 0.3
    pred = [[random_words(rng, 1)[0] if rng.random() < rate else list(w) for w in s] for s in gold]
    return gold, pred


@pytest.mark.parametrize("size", ["default", pytest.param("slow", marks=pytest.mark.slow)])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_equals_seqeval_on_random_tags(nested, size):
    """Identical dicts (floats bit for bit, per-type tables, notes) over many random sentences (each size
    draws its own)."""
    rng = np.random.default_rng([20240 + nested, size == "slow"])
    done = cases = 0
    while done < RANDOM_SENTENCES[size]:
        gold, pred = random_case(rng)
        types = None
        if nested and rng.random() < 0.3:  # a given type list: a subset, another order, an absent type
            types = list(rng.permutation(TYPES + ("MISC",))[:rng.integers(0, len(TYPES) + 2)])
        fast = score_tags(gold, pred, nested, types)
        oracle = score_tags(gold, pred, nested, types, scorer="seqeval")
        assert fast == oracle, f"case {cases}: types={types} gold={gold!r} pred={pred!r}"
        done += len(gold)
        cases += 1


def tags(*words: str) -> list[list[str]]:
    return [w.split() for w in words]


def test_lenient_and_strict_counts_by_hand():
    gold = [tags("B-PER", "I-PER", "O", "I-ORG", "I-ORG"), tags("B-LOC", "I-ORG", "O")]
    pred = [tags("B-PER", "I-PER", "O", "B-ORG", "I-ORG"), tags("B-LOC", "B-ORG", "O")]
    for scorer in ("fast", "seqeval"):
        m = score_tags(gold, pred, nested=False, scorer=scorer)
        # lenient: I- after O and I- after LOC start entities; gold PER 0-1, ORG 3-4, LOC 0, ORG 1 (4),
        # predicted the same spans and types (4), all 4 correct
        assert (m["precision"], m["recall"], m["f1"], m["gold_entities"]) == (1.0, 1.0, 1.0, 4)
        # strict: gold keeps PER and LOC (2), predicted PER, ORG 3-4, LOC, ORG 1 (4); correct PER, LOC (2)
        s = m["strict"]
        assert (s["precision"], s["recall"], s["gold_entities"]) == (0.5, 1.0, 2)
        assert s["f1"] == 2 * 0.5 * 1.0 / 1.5
        assert s["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        assert m["per_type"]["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_sentence_boundary_and_type_switch_by_hand():
    # an I- at a sentence start opens an entity: seqeval puts an O between the sequences
    gold = [tags("B-ORG"), tags("I-ORG"), tags("B-PER", "I-ORG", "I-ORG", "I-PER")]
    pred = [tags("B-ORG"), tags("B-ORG"), tags("B-PER", "B-ORG", "I-ORG", "O")]
    m = score_tags(gold, pred, nested=False)
    # lenient gold: ORG, ORG, PER 0, ORG 1-2, PER 3 (5); predicted ORG, ORG, PER 0, ORG 1-2 (4), all correct
    assert (m["precision"], m["recall"], m["gold_entities"]) == (1.0, 4 / 5, 5)
    # strict gold: ORG (sentence 1), PER 0 (2); predicted 4; correct ORG and PER 0 (2)
    assert (m["strict"]["precision"], m["strict"]["recall"]) == (2 / 4, 2 / 2)


def test_score_ids_layout_by_hand():
    types = ("LOC", "ORG")  # ids: O 0, B-LOC 1, I-LOC 2, B-ORG 3, I-ORG 4
    gold = np.array([[1, 2, 0, 0, 1],    # LOC layer: sentences [0:3] and [3:5]
                     [3, 4, 4, 4, 0]])   # ORG layer: ORG 0-2, then an I-ORG opening sentence 2
    pred = np.array([[1, 2, 0, 0, 2],
                     [3, 4, 4, 3, 0]])
    m = score_ids(gold, pred, np.array([3, 2]), types)
    # gold: LOC 0-1, LOC 4, ORG 0-2, ORG 3 (4); predicted LOC 0-1, LOC 4 (from I-), ORG 0-2, ORG 3: all 4 correct
    assert (m["precision"], m["recall"], m["gold_entities"]) == (1.0, 1.0, 4)
    # strict: gold LOC 0-1, LOC 4, ORG 0-2 (3); predicted LOC 0-1, ORG 0-2, ORG 3 (3); correct 2
    assert (m["strict"]["precision"], m["strict"]["recall"]) == (2 / 3, 2 / 3)
    assert m["strict"]["per_type"]["LOC"]["support"] == 2 and m["strict"]["per_type"]["LOC"]["precision"] == 1.0
    with pytest.raises(ValueError, match="lie in"):
        score_ids(gold, pred + 1, np.array([3, 2]), types)
    with pytest.raises(ValueError, match="sum to 4"):
        score_ids(gold, pred, np.array([2, 2]), types)


def test_encode_tags_first_tag_of_a_type_wins():
    words = tags("B-ORG I-ORG B-GPE", "I-ORG", "O") + [["O", "B-GPE"]]
    np.testing.assert_array_equal(encode_tags(words, True, ("GPE", "ORG")), [[1, 0, 0, 1], [3, 4, 0, 0]])
    np.testing.assert_array_equal(encode_tags(words, False, ("GPE", "ORG")), [[3, 4, 0, 0]])


@pytest.mark.parametrize("scorer", ["fast", "seqeval"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("gold,pred,why", [
    ([], [], "no gold and no predicted entities"),
    ([[]], [[]], "no gold and no predicted entities"),
    ([tags("O", "O")], [tags("O", "O")], "no gold and no predicted entities"),
    ([tags("O", "O")], [tags("B-ORG", "O")], "no gold entities"),
    ([tags("I-ORG", "O")], [tags("O", "O")], "no predicted entities"),
])
def test_zero_figures_carry_a_note_and_no_warning(scorer, nested, gold, pred, why):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = score_tags(gold, pred, nested, scorer=scorer)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["note"].startswith(why)
    assert m["strict"]["note"]  # strict mode sees no entity here either
    assert m["mode"] == ("nested" if nested else "flat")


def test_only_iob2_tags_are_scored():
    with pytest.raises(ValueError, match="tag 'E-ORG' is not"):
        score_tags([tags("B-ORG", "E-ORG")], [tags("O", "O")], nested=False)
    for scorer in ("fast", "seqeval"):
        with pytest.raises(ValueError, match="type names repeat"):
            score_tags([tags("B-ORG")], [tags("B-ORG")], nested=True, types=["ORG", "ORG"], scorer=scorer)
    with pytest.raises(ValueError, match="scorer must be one of"):
        score_tags([], [], nested=False, scorer="conlleval")


# ----------------------------------------------------------------------------- the score command
def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_score_command_scorers_and_tag_scheme(tmp_path, capsys):
    gold = write(tmp_path / "g.txt", "a B-ORG\nb I-ORG B-GPE\nc O\n\nd B-PERS\n")
    pred = write(tmp_path / "p.txt", "a B-ORG\nb I-ORG\nc B-GPE\n\nd I-PERS\n")
    printed = []
    for scorer in ("fast", "seqeval"):
        assert score_main(["--gold", gold, "--pred", pred, "--nested", "--scorer", scorer]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and '"gold_entities": 3' in printed[0]
    bioes = write(tmp_path / "bioes.txt", "a B-ORG\nb E-ORG S-GPE\nc O\n\nd S-PERS\n")
    assert score_main(["--gold", gold, "--pred", bioes, "--nested"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bioes}:2: tag 'E-ORG'") and "--tag_scheme any" in err
    assert score_main(["--gold", gold, "--pred", bioes, "--nested", "--tag_scheme", "any"]) == 0
    assert '"f1": 1.0' in capsys.readouterr().out


@pytest.mark.parametrize("make_pred,where", [
    (lambda d: str(d / "missing.txt"), "missing.txt: no such file; "),
    (lambda d: str(d), ": a directory, not a file; "),
    (lambda d: write(d / "bad.txt", "a B-ORG\nb X-ORG\n"), "bad.txt:2: tag 'X-ORG' is not"),
    (lambda d: write(d / "long.txt", "a B-ORG\nb O\n\nc O\n"), "long.txt:4: sentence 2, but "),
    (lambda d: write(d / "empty.txt", ""), "empty.txt: the file ends after 0 sentences"),
])
def test_score_command_user_errors_are_one_line(tmp_path, capsys, make_pred, where):
    gold = write(tmp_path / "g.txt", "a B-ORG\nb O\n")
    assert score_main(["--gold", gold, "--pred", make_pred(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and where in err and ";" in err and err.count("\n") == 1, err


def test_score_command_on_empty_files(tmp_path, capsys):
    empty = write(tmp_path / "empty.txt", "")
    assert score_main(["--gold", empty, "--pred", empty, "--nested"]) == 0
    assert "no gold and no predicted entities" in capsys.readouterr().out
