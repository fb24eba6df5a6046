"""The run folder: format-1 folders still load and predict identically, loading is read-only, a moved
folder loads, and the folder rules of training (new, refused, overwritten)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from arner_jax.data.files import atomic_write_json
from arner_jax.runs import checkpoints, run_folder
from arner_jax.runs.checkpoints import complete_steps, read_checkpoint
from arner_jax.runs.loading import load_run
from tests.conftest import REPO
from tests.cross_machine import named, near_top, span_outcomes, span_record_triples

FORMAT1 = REPO / "tests" / "fixtures" / "format1"


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# expected.json was computed on another CPU (an AMD EPYC): XLA's CPU kernels differ by instruction set
# (AVX2, AVX-512, ...) in summation order and fused multiply-adds, so its floats hold to float32 rounding,
# not to the bit (CI on an Intel AVX-512 CPU got other last bits; AVX-512 and AVX2 on the EPYC do not).
# The logits stay below 3.1 in size, where a float32 ulp is at most 2.4e-7: 1e-5 is some 40 ulps there,
# while a changed weight, layer or head order moves them by 1e-3 or more. Probabilities, and the entity
# scores (means of them), move by at most half as much as the logits. Decisions taken from these floats
# (a head's argmax, spans taken by score) are compared exactly where no logits within the tolerance could
# change them, and elsewhere must be one of the decisions those logits allow (tests/cross_machine.py).
LOGIT_TOL = 1e-5


def strip_scores(records: list[list[dict]]) -> list[list[dict]]:
    return [[{k: v for k, v in r.items() if k != "score"} for r in rs] for rs in records]


def assert_same_where_clear(got: list[list[dict]], expected: list[list[dict]], clear: list[bool]) -> None:
    """Records equal (scores to LOGIT_TOL) for every sentence whose decisions are clear."""
    for ours, theirs, ok in zip(got, expected, clear):
        if ok:
            assert strip_scores([ours]) == strip_scores([theirs])
            np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in theirs], atol=LOGIT_TOL)


def test_format1_tagger_run_predicts_what_that_version_predicted(tmp_path):
    from arner_jax.models.tagger.family import KINDS, class_mask
    from arner_jax.predict import NERTagger

    run = tmp_path / "nested"
    shutil.copytree(FORMAT1 / "nested", run)
    before = snapshot(run)
    expected = json.loads((run / "expected.json").read_text())
    tagger = NERTagger.from_pretrained(run, with_logits=True)
    assert tagger.config.kind == "nested"  # each head's argmax decides its type's tag alone
    mask = class_mask(KINDS[tagger.config.kind], tagger.labels)  # [T, C]
    split, outputs = tagger.outputs(expected["words"])
    clear = []
    for old, new in zip(expected["word_logits"], split.per_word(outputs)):
        np.testing.assert_allclose(new["logits"], old, atol=LOGIT_TOL)
        allowed = near_top(old, LOGIT_TOL, mask)  # [n, T, C]: the classes logits within the tolerance pick
        assert np.take_along_axis(allowed, new["ids"][..., None], axis=-1).all()
        clear.append(bool((allowed.sum(-1) == 1).all()))
    assert sum(clear) >= 2, clear  # the fixture's sentences are clear (top-2 margins >= 3.6e-3): exact below
    tags = tagger.word_tags(expected["words"])
    assert [t for t, ok in zip(tags, clear) if ok] == [t for t, ok in zip(expected["word_tags"], clear) if ok]
    assert_same_where_clear(tagger.predict(expected["texts"]), expected["predict_text"], clear)
    assert_same_where_clear(tagger.predict(expected["words"], is_split_into_words=True), expected["predict_words"],
                            clear)
    assert sum(len(rs) for rs, ok in zip(expected["predict_text"], clear) if ok) >= 3  # entities compared
    assert snapshot(run) == before  # nothing created, changed or cleaned


def test_format1_span_run_predicts_what_that_version_predicted(tmp_path):
    from arner_jax.models.span_marker import SpanMarkerModel

    run = tmp_path / "span"
    shutil.copytree(FORMAT1 / "span_nested", run)
    before = snapshot(run)
    expected = json.loads((run / "expected.json").read_text())
    model = SpanMarkerModel.from_pretrained(run)
    flat, nested = [], []  # per text: (sure, possible) entities of the fixture's logits
    for (spans, logits), (got_spans, got) in zip(expected["span_logits"], model.span_logits(expected["words"])):
        np.testing.assert_array_equal(got_spans, spans)
        np.testing.assert_allclose(got, logits, atol=LOGIT_TOL)
        flat.append([named(x, model.labels) for x in span_outcomes(got_spans, logits, LOGIT_TOL)])
        nested.append([named(x, model.labels) for x in span_outcomes(got_spans, logits, LOGIT_TOL, nested=True)])
    for got, want, inputs, outcomes in ((model.predict(expected["texts"]), expected["predict_text"],
                                         expected["texts"], flat),
                                        (model.predict(expected["words"]), expected["predict_words"],
                                         expected["words"], flat),
                                        (model.predict(expected["texts"], nested=True), expected["nested"],
                                         expected["texts"], nested)):
        for ours, theirs, text, (sure, possible) in zip(got, want, inputs, outcomes):
            assert sure <= span_record_triples(ours, text, model.tokenizer) <= possible
            assert sure <= span_record_triples(theirs, text, model.tokenizer) <= possible
        assert_same_where_clear(got, want, [sure == possible for sure, possible in outcomes])
    # that version's tiny span run predicts no entity: every candidate is O by a margin above 3 (clear)
    assert all(sure == possible == set() for sure, possible in flat + nested)
    assert snapshot(run) == before


def test_loading_and_predicting_write_nothing_and_a_moved_run_loads(nested_run, tmp_path):
    from arner_jax.predict import NERTagger

    before = snapshot(nested_run)
    first = NERTagger.from_pretrained(nested_run).predict("مجلس الأمن في نابلس")
    assert snapshot(nested_run) == before
    moved = tmp_path / "moved"
    shutil.copytree(nested_run, moved)
    record = run_folder.read_run(moved)
    assert record.data["test"] == moved / "data" / "test.txt"  # files inside the folder move with it
    assert NERTagger.from_pretrained(moved).predict("مجلس الأمن في نابلس") == first


def test_a_kept_model_replaced_while_it_is_read_loads_the_new_one(nested_run, tmp_path, monkeypatch):
    """The trainer saves a new best model, then deletes the old one, while a reader may be reading it:
    the reader then reads the new one instead of failing (seen in CI as a truncated Zstd stream)."""
    run = tmp_path / "run"
    shutil.copytree(nested_run, run)
    best = run / run_folder.BEST
    [old] = complete_steps(best)
    expected = load_run(run).params
    read, original = [], read_checkpoint

    def trainer_replaces_it_midway(step_dir, template):
        read.append(step_dir.name)
        if len(read) == 1:  # as the trainer would: a newer kept model, then the old one deleted
            shutil.copytree(best / str(old), best / str(old + 1))
            shutil.rmtree(best / str(old))
        return original(step_dir, template)

    monkeypatch.setattr(checkpoints, "read_checkpoint", trainer_replaces_it_midway)
    loaded = load_run(run)
    assert read == [str(old), str(old + 1)]
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(loaded.params)):
        np.testing.assert_array_equal(a, b)


def test_a_corrupt_kept_model_is_not_retried_away(nested_run, tmp_path, monkeypatch):
    """Only a kept model that changed under the reader is read again; a broken one still fails."""
    run = tmp_path / "run"
    shutil.copytree(nested_run, run)
    [step] = complete_steps(run / run_folder.BEST)
    for f in (run / run_folder.BEST / str(step) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(b"")
    calls = []
    original = read_checkpoint
    monkeypatch.setattr(checkpoints, "read_checkpoint", lambda *a: calls.append(1) or original(*a))
    with pytest.raises((ValueError, OSError)):
        load_run(run)
    assert len(calls) == 1


def test_folder_rules_of_a_new_run(tmp_path):
    run_folder.check_output(tmp_path / "new", overwrite=False, resume=False)  # missing: fine
    (tmp_path / "empty").mkdir()
    run_folder.check_output(tmp_path / "empty", overwrite=False, resume=False)  # empty: fine
    made = run_folder.create(tmp_path / "made", overwrite=False)
    assert run_folder.is_run_folder(made) and [p.name for p in made.iterdir()] == [run_folder.MARKER]
    (made / "train.log").write_text("a run's file")
    with pytest.raises(run_folder.RunFolderError, match="not empty"):
        run_folder.check_output(made, overwrite=False, resume=False)
    run_folder.check_output(made, overwrite=True, resume=False)
    assert [p.name for p in run_folder.create(made, overwrite=True).iterdir()] == [run_folder.MARKER]
    (tmp_path / "file").write_text("x")
    with pytest.raises(run_folder.RunFolderError, match="is a file"):
        run_folder.check_output(tmp_path / "file", overwrite=False, resume=False)
    with pytest.raises(run_folder.RunFolderError, match="saved its settings"):
        run_folder.check_output(made, overwrite=False, resume=True)


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    atomic_write_json(tmp_path / "metrics.json", {"f1": 0.5})
    atomic_write_json(tmp_path / "metrics.json", {"f1": 0.6})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"f1": 0.6}
