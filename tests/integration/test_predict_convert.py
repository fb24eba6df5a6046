"""Using trained runs: predict with character offsets, evaluate, export to PyTorch and import back."""
from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from arner_jax.data.entities import entity_records, layer_entities, split_words
from arner_jax.data.synthetic import generate_sentences
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import parse_wojood, read_wojood
from arner_jax.models.tagger.family import KINDS, class_mask, tag_layers
from tests.conftest import REPO
from tests.cross_machine import near_top

TRICKY = "قال  الرئيسُ، محمــد عبّاس: (بلدية نابلس)   2023!"


@pytest.fixture(scope="module")
def nested_tagger(nested_run):
    from arner_jax.predict import NERTagger

    return NERTagger.from_pretrained(nested_run, with_logits=True)  # logits: to tell near ties (see below)


# ----------------------------------------------------------------------------- offsets, handcrafted
def test_words_and_offsets_of_tricky_text():
    words, spans = split_words(TRICKY)
    assert words == ["قال", "الرئيسُ", "،", "محمــد", "عبّاس", ":", "(", "بلدية", "نابلس", ")", "2023", "!"]
    assert all(TRICKY[a:b] == w for w, (a, b) in zip(words, spans))


def test_nested_records_from_handcrafted_predictions():
    vocab = LabelVocab(("GPE", "ORG", "PERS"), (("O", "B", "I"),) * 3)
    words, spans = split_words(TRICKY)
    ids = np.zeros((len(words), 3), np.int32)
    ids[3, 2], ids[4, 2] = 1, 2  # PERS: محمــد عبّاس
    ids[7, 1], ids[8, 1] = 1, 2  # ORG: بلدية نابلس
    ids[8, 0] = 1  # GPE inside it: نابلس
    probs = np.full(ids.shape, 0.5, np.float32)
    probs[8, 0] = 0.9
    found = layer_entities(tag_layers(KINDS["nested"], vocab, ids), probs)
    records = entity_records(found, words, spans, TRICKY)
    assert [(r["label"], r["text"]) for r in records] == [("PERS", "محمــد عبّاس"), ("ORG", "بلدية نابلس"),
                                                          ("GPE", "نابلس")]
    assert all(TRICKY[r["start"]:r["end"]] == r["text"] for r in records)
    assert records[2]["score"] == pytest.approx(0.9) and records[1]["score"] == pytest.approx(0.5)
    by_words = entity_records(found, words)
    assert [(r["start"], r["end"]) for r in by_words] == [(3, 5), (7, 9), (8, 9)]


# ----------------------------------------------------------------------------- predict on a trained run
def _tricky_texts():
    texts = []
    for i, s in enumerate(generate_sentences(40, seed=77)):
        words = list(s.words)
        if i % 3 == 0:  # tatweel and a diacritic inside words
            words = [w[:1] + "ـ" + w[1:] if len(w) > 3 else w + "ُ" for w in words]
        sep = "   " if i % 2 else " "
        texts.append(sep.join(words) + ("،" if i % 4 == 0 else ""))
    return texts


def test_offsets_slice_the_raw_input(nested_tagger):
    texts = _tricky_texts()
    results = nested_tagger.predict(texts)
    found = [r for rs in results for r in rs]
    assert len(found) > 20, "the tiny run must predict entities for this test to mean anything"
    for text, records in zip(texts, results):
        for r in records:
            assert text[r["start"]:r["end"]] == r["text"] and 0 <= r["score"] <= 1
        assert [(r["start"], -r["end"]) for r in records] == sorted((r["start"], -r["end"]) for r in records)
    assert any(a["start"] <= b["start"] and b["end"] <= a["end"] and a is not b
               for rs in results for a in rs for b in rs), "nested entities are returned"


# One text alone runs in other batch shapes than twelve together (other padding, rows, XLA kernels), so
# logits agree to float32 rounding, not to the bit: this run's logits stay below 9, where a float32 ulp is
# 9.5e-7, and differ by up to 3.8e-6 (measured, AMD EPYC); 5e-5 leaves room for other CPUs and is far
# below what a mixed-up row or position changes (0.1 or more). Scores (mean probabilities) move by at most
# half as much. A head's argmax is compared where no logits within the tolerance could change it; a word
# whose top two classes are closer may go either way.
BATCH_LOGIT_TOL = 5e-5


def test_batched_equals_one_at_a_time_and_edge_inputs(nested_tagger):
    texts = _tricky_texts()[:12]
    mask = class_mask(KINDS["nested"], nested_tagger.labels)
    sentences = [split_words(t)[0] for t in texts]
    split, outputs = nested_tagger.outputs(sentences)
    clear = []
    for sentence, together in zip(sentences, split.per_word(outputs)):
        one_split, one_outputs = nested_tagger.outputs([sentence])
        [alone] = one_split.per_word(one_outputs)
        np.testing.assert_allclose(alone["logits"], together["logits"], atol=BATCH_LOGIT_TOL)
        allowed = near_top(together["logits"], BATCH_LOGIT_TOL, mask)  # [n, T, C]
        assert np.take_along_axis(allowed, alone["ids"][..., None], axis=-1).all()
        clear.append(bool((allowed.sum(-1) == 1).all()))
    assert sum(clear) >= 10, clear  # a trained run: near ties are rare
    batched = nested_tagger.predict(texts)
    single = [nested_tagger.predict(t) for t in texts]  # other batch shapes: scores equal to float precision
    strip = lambda rs: [[{k: v for k, v in r.items() if k != "score"} for r in x] for x in rs]  # noqa: E731
    assert strip([b for b, ok in zip(batched, clear) if ok]) == strip([s for s, ok in zip(single, clear) if ok])
    np.testing.assert_allclose([r["score"] for x, ok in zip(batched, clear) if ok for r in x],
                               [r["score"] for x, ok in zip(single, clear) if ok for r in x], atol=BATCH_LOGIT_TOL)
    assert nested_tagger.predict("") == [] and nested_tagger.predict(["", texts[0]])[0] == []
    words = texts[1].split()
    by_words = nested_tagger.predict(words, is_split_into_words=True)
    assert all(" ".join(words[r["start"]:r["end"]]) == r["text"] for r in by_words)
    by_text = [(r["label"], " ".join(r["text"].split())) for r in single[1]]  # alone, as by_words
    assert [(r["label"], r["text"]) for r in by_words] == by_text


def test_long_text_is_windowed_not_cut(nested_tagger):
    sentences = generate_sentences(80, seed=5)
    words = [w for s in sentences for w in s.words]  # far more subwords than max_length 512
    assert len(words) > 600
    split, outputs = nested_tagger.outputs([words])
    tagged = split.per_word(outputs)[0]
    assert tagged["ids"].shape[0] == len(words) and len(split.windows) > 1
    # words far beyond the first window are tagged (entities found there), not dropped or padded
    assert (tagged["ids"][-150:] > 0).any()
    records = nested_tagger.predict([" ".join(words)])[0]
    assert max(r["end"] for r in records) > len(" ".join(words)) - 300


def run_module(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_predict_command_line_in_a_process(nested_run):
    """The one subprocess smoke test of `python -m arner_jax.predict` (the rest call main in-process)."""
    out = run_module("arner_jax.predict", "--model_path", str(nested_run), "--text", TRICKY)
    assert out.returncode == 0, out.stderr[-2000:]
    assert isinstance(json.loads(out.stdout.splitlines()[0]), list)


def test_predict_and_evaluate_command_lines(nested_run, tmp_path, capsys):
    from arner_jax.evaluate import main as evaluate_main
    from arner_jax.predict import main as predict_main

    test_file = nested_run / "data" / "test.txt"
    conll = tmp_path / "tagged.txt"
    assert predict_main(["--model_path", str(nested_run), "--input", str(test_file), "--format", "conll",
                         "--output", str(conll)]) == 0
    tagged, gold = parse_wojood(conll.read_text()), read_wojood(test_file)
    assert [s.words for s in tagged.sentences] == [s.words for s in gold.sentences]
    assert evaluate_main(["--model_path", str(nested_run), "--data_paths", str(test_file), "--output_path",
                          str(tmp_path / "eval")]) == 0
    written = json.loads((tmp_path / "eval" / "test" / "metrics.json").read_text())
    kept = json.loads((nested_run / "metrics.json").read_text())["test"]
    assert written["f1"] == pytest.approx(kept["f1"]) and f"F1 {kept['f1']:.4f}" in capsys.readouterr().out
    assert (tmp_path / "eval" / "test" / "predictions.txt").read_text() == \
        (nested_run / "predictions_test.txt").read_text()
    with pytest.raises(SystemExit) as stop:
        predict_main(["--model_path", str(tmp_path), "--text", "x"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "not a run folder" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- conversion
def with_logits(run):
    from arner_jax.predict import NERTagger

    return NERTagger.from_pretrained(run, with_logits=True)


def words_of(path) -> list[list[str]]:
    return [s.words for s in read_wojood(path).sentences]


def test_nested_export_matches_and_imports_without_jax(nested_run, tmp_path):
    from arner_jax.models.tagger.export import export_run, verify_export

    out = export_run(nested_run, tmp_path / "torch")
    check = verify_export(with_logits(nested_run), out, words_of(nested_run / "data" / "test.txt"))
    assert check.words > 500 and check.max_logit_diff < 1e-4 and check.differing_tags == 0
    code = ("import sys; sys.modules['jax'] = None; sys.modules['flax'] = None\n"
            "from arner_jax.models.tagger.torch_tagger import TorchTagger\n"
            f"t = TorchTagger.from_pretrained({str(out)!r})\n"
            "print(t.word_tags([['مجلس', 'الأمن', 'في', 'نابلس']])[0])\n"
            "assert 'jax' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_flat_export_runs_in_the_pipeline_and_imports_back(flat_run, tmp_path):
    from transformers import pipeline

    from arner_jax.models.tagger.export import (
        export_run,
        import_token_classifier,
        verify_export,
    )
    from arner_jax.predict import NERTagger
    from arner_jax.runs.loading import load_run

    out = export_run(flat_run, tmp_path / "hf")
    check = verify_export(with_logits(flat_run), out, words_of(flat_run / "data" / "test.txt"))
    assert check.max_logit_diff < 1e-4 and check.differing_tags == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"] and config["id2label"]["0"] == "O"

    ours = NERTagger.from_pretrained(flat_run)
    ner = pipeline("token-classification", model=str(out), aggregation_strategy="first")
    texts = [" ".join(s.words) for s in generate_sentences(30, seed=11)]
    mine = [[(r["label"], r["start"], r["end"]) for r in rs] for rs in ours.predict(texts)]
    theirs = [[(e["entity_group"], e["start"], e["end"]) for e in ner(t)] for t in texts]
    assert sum(map(len, mine)) > 10 and mine == theirs

    back = import_token_classifier(out, tmp_path / "imported")
    a, b = load_run(flat_run).params, load_run(back).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert NERTagger.from_pretrained(back).predict(texts) == ours.predict(texts)


def test_import_refuses_labels_that_are_not_iob2(flat_run, tmp_path):
    from arner_jax.encoders import CheckpointError
    from arner_jax.models.tagger.export import export_run, import_token_classifier

    out = export_run(flat_run, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    config["id2label"] = {k: f"LABEL_{k}" for k in config["id2label"]}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="IOB2"):
        import_token_classifier(out, tmp_path / "imported")
