"""The helpers that compare decisions with another machine's (tests/cross_machine.py): what they call sure
is taken for every logits within the tolerance, what they call possible covers every outcome."""
from __future__ import annotations

import numpy as np
import pytest

from arner_jax.models.span_marker import spans as S
from tests.cross_machine import near_top, softmax, span_outcomes


def test_near_top_keeps_the_classes_within_twice_the_tolerance():
    logits = np.array([[1.0, 1.0 + 1.5e-5, -2.0], [0.0, 1.0, 0.5], [3.0, 2.0, 3.0 - 3e-5]])
    assert near_top(logits, 1e-5).tolist() == [[True, True, False], [False, True, False], [True, False, False]]
    mask = np.array([True, False, True])  # a head without the middle class
    assert near_top(logits, 1e-5, mask).tolist() == [[True, False, False], [False, False, True],
                                                       [True, False, False]]


def decoded(spans, logits, nested):
    probs = softmax(logits)
    return {(s, e, c) for s, e, c, _ in S.decode(spans, probs.argmax(-1), probs.max(-1), nested)}


def test_overlapping_spans_of_close_scores_may_go_either_way():
    spans = np.array([[0, 2], [1, 3], [3, 4]])
    logits = np.log(np.array([[0.1, 0.9, 0.0], [0.1, 0.9 - 1e-6, 0.0], [0.6, 0.1, 0.3]]) + 1e-12)
    sure, possible = span_outcomes(spans, logits, 1e-5)
    assert sure == set() and possible == {(0, 2, 1), (1, 3, 1)}  # span 2 is O by a clear margin
    sure, possible = span_outcomes(spans, logits, 1e-8)  # now the scores are far apart
    assert sure == possible == decoded(spans, logits, nested=False) == {(0, 2, 1)}
    # nested: different classes may overlap, so both spans are kept whatever their order
    logits[1] = np.log(np.array([0.1, 0.0, 0.9 - 1e-6]) + 1e-12)
    sure, possible = span_outcomes(spans, logits, 1e-5, nested=False)
    assert sure == set()
    assert span_outcomes(spans, logits, 1e-5, nested=True)[0] == set()  # they cross: one of them only
    spans[1] = [0, 1]  # inside the first span, another class: both
    assert span_outcomes(spans, logits, 1e-5, nested=True)[0] == {(0, 2, 1), (0, 1, 2)}


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_every_perturbed_decoding_lies_between_sure_and_possible(nested):
    """Random spans and logits with near ties, decoded after random moves of at most `tol` per logit."""
    rng = np.random.default_rng(7)
    tol, checked, clear = 1e-3, 0, 0
    for _ in range(60):
        spans = S.candidate_spans(int(rng.integers(2, 7)), 3)
        logits = rng.normal(0, 2, (len(spans), 4))
        near = rng.random(len(spans)) < 0.3  # near ties: of classes, and of scores between spans
        logits[near, 1] = logits[near].max(-1) - rng.uniform(0, 3 * tol, near.sum())
        logits[rng.random(len(spans)) < 0.3] = logits[0] + rng.uniform(-tol, tol)
        sure, possible = span_outcomes(spans, logits, tol, nested)
        assert sure <= possible
        clear += sure == possible
        for _ in range(20):
            got = decoded(spans, logits + rng.uniform(-tol, tol, logits.shape), nested)
            assert sure <= got <= possible, (spans, logits, sure, got, possible)
            checked += 1
    assert checked == 1200 and 0 < clear < 60  # both kinds of case came up
