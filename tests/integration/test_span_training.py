"""Span models through the shared trainer: runs, their predictions, loading them back, export."""
from __future__ import annotations

import json

import numpy as np
import pytest

from arner_jax.models.span_marker import spans as S
from arner_jax.scoring.metrics import read_tagged_file
from tests.conftest import train_run


def test_nested_span_run_learns_and_scores_nested(span_run):
    out, metrics, _ = span_run
    assert metrics["kind"] == "span_nested" and metrics["val"]["mode"] == "nested"
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    saved = json.loads((out / "config.json").read_text())
    assert json.loads((out / "vocab.json").read_text())["labels"][0] == "O"
    assert saved["run"]["entity_max_length"] == 12 and saved["family"] == "span"
    assert saved["encoder"]["vocab_size"] % 8 == 0  # markers appended, padded to a multiple of 8
    assert metrics["timing"]["epochs"][1]["compilations"] == 0


def test_loaded_run_predicts_what_the_run_wrote(span_run):
    """SpanMarkerModel.from_pretrained(run folder) + nested predict == the run's predictions_val.txt."""
    from arner_jax.data.wojood import read_wojood
    from arner_jax.models.span_marker import SpanMarkerModel

    out, _, corpus = span_run
    model = SpanMarkerModel.from_pretrained(out)
    sentences = read_wojood(corpus["val"]).sentences
    written = read_tagged_file(out / "predictions_val.txt").sentences
    found = 0
    for sentence, expected in zip(sentences, written):
        records = model.predict(sentence.words, nested=True)
        entities = [(r["word_start_index"], r["word_end_index"], model.labels.index(r["label"]), r["score"])
                    for r in records]
        found += len(entities)
        assert S.entities_to_tags(entities, len(sentence), model.labels) == expected.tags
    assert found > 0


def test_export_to_span_marker_layout_and_back(span_run, tmp_path):
    from arner_jax.convert.__main__ import main as convert
    from arner_jax.models.span_marker import SpanMarkerModel

    out, _, _ = span_run
    assert convert(["to-span-marker", "--model_path", str(out), "--output_path", str(tmp_path / "sm"),
                    "--verify"]) == 0
    config = json.loads((tmp_path / "sm" / "config.json").read_text())
    assert config["model_type"] == "span-marker" and config["encoder"]["model_type"] == "bert"
    assert (tmp_path / "sm" / "model.safetensors").is_file() and (tmp_path / "sm" / "tokenizer.json").is_file()
    words = ["مجلس", "الأمن", "الدولي", "يعقد", "جلسة"]
    a = SpanMarkerModel.from_pretrained(out).span_logits([words])[0][1]
    b = SpanMarkerModel.from_pretrained(tmp_path / "sm").span_logits([words])[0][1]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SystemExit) as stop:  # a span run has no PyTorch tagger export
        convert(["to-pytorch", "--model_path", str(out), "--output_path", str(tmp_path / "pt")])
    assert stop.value.code == 2 and not (tmp_path / "pt").exists()


@pytest.mark.slow
def test_flat_span_run_with_wikiann_defaults(span_run, tiny_bert, tmp_path):
    _, _, corpus = span_run
    metrics = train_run(tmp_path / "flat", "wikiann_span_marker", "--train_path", str(corpus["train"]), "--val_path",
                        str(corpus["val"]), "--test_path", str(corpus["test"]), "--bert_model", str(tiny_bert),
                        "--max_length", "62", "--marker_max_length", "32", "--max_epochs", "1", "--parallel",
                        "shard_map")
    assert metrics["kind"] == "span_flat" and metrics["val"]["mode"] == "flat"
    saved = json.loads((tmp_path / "flat" / "config.json").read_text())["run"]
    assert (saved["batch_size"], saved["grad_accum"], saved["warmup_ratio"], saved["entity_max_length"]) == \
           (4, 2, 0.1, 30)
    with pytest.raises(SystemExit):  # tagger-only flags are not offered by the span presets
        train_run(tmp_path / "x", "wikiann_span_marker", "--loss", "dice")


def test_datasets_folder_becomes_wojood_files(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    from arner_jax.data.hf_datasets import dataset_splits

    names = ["O", "S-PER", "B-ORG", "E-ORG"]  # BIOES class names, as some hub datasets have
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    rows = {"tokens": [["زار", "محمد", "بنك", "فلسطين"]], "ner_tags": [[0, 1, 2, 3]]}
    data = DatasetDict({s: Dataset.from_dict(rows, features=features) for s in ("train", "validation", "test")})
    data.save_to_disk(str(tmp_path / "saved"))
    assert dataset_splits(str(tmp_path / "saved"))["val"][0].tags == [["O"], ["B-PER"], ["B-ORG"], ["I-ORG"]]


def test_evaluate_cli_scores_a_span_run_like_training(span_run, tmp_path):
    from arner_jax.evaluate import evaluate_files

    out, metrics, corpus = span_run
    got = evaluate_files(out, [corpus["val"]], tmp_path / "eval")[str(corpus["val"])]
    assert got["f1"] == pytest.approx(metrics["val"]["f1"]) and got["mode"] == "nested"
    assert (tmp_path / "eval" / "val" / "predictions.txt").read_text() == (out / "predictions_val.txt").read_text()
