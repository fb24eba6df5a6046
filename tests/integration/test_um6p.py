"""--recipe um6p: the UM6P & UL reference trainer, proven against its recorded trajectories.

The oracle is what the reference's own code computed (../shared/fixtures/um6p_trajectories,
written by shared/tools/um6p_trajectory.py from AbdelkaderMH/ArabicNER at 0055902): its tag
vocabularies, the rows it fed, every step's losses and gradient norm, its validation losses,
final weights and test predictions. `python -m arner_jax.parity um6p DIR` compares them all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SHARED, shared_path

FIXTURES = ("nested_var", "nested_novar", "mtn_var", "mtn_ghost")


def _meta(name: str) -> dict:
    return json.loads(shared_path("fixtures", "um6p_trajectories", name, "meta.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["nested_var", "mtn_var", "mtn_ghost"])
def test_tag_vocabularies_are_the_references(name):
    """Built from the whole sample files (train+val+test, file order), as the recording did."""
    from arner_jax.data.wojood import read_wojood
    from arner_jax.models.tagger.um6p import ReferenceVocab

    meta = _meta(name)
    sentences = [s for split in ("train", "val", "test")
                 for s in read_wojood(shared_path("data", "wojood_sample", f"{split}.txt")).sentences]
    for s in sentences:  # the recording's MTN data made these types O
        s.tags = [[t if t[2:] not in meta["types_made_O"] else "O" for t in tags[:1]] if meta["kind"] == "mtn"
                  else tags for tags in s.tags]
    vocab = ReferenceVocab.from_sentences(sentences, meta["kind"])
    assert list(vocab.types) == meta["types"]
    assert [list(v) for v in vocab.tags] == meta["tag_vocab"]
    assert vocab.num_labels == meta["num_labels"]


def _one_word_tokenizer(tmp_path, words):
    """A WordPiece tokenizer in which each of `words` is one subword."""
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False)


def test_a_word_without_subwords_shifts_its_sentences_labels_as_the_reference(tmp_path):
    """A word made only of a control character has no subword; the reference still gives it a tag slot
    ([tag] + [O] * (0 - 1) is [tag]), so every later label moves one position right, and the row's
    labels are one longer than its tokens (cut to the batch's longest row)."""
    from arner_jax.data.wojood import Sentence
    from arner_jax.models.tagger.um6p import ReferenceSplit, ReferenceVocab, collate_reference, encode_reference

    tok = _one_word_tokenizer(tmp_path, ["زيد", "في", "غزة"])
    sentence = Sentence(["زيد", "\x07", "في", "غزة"], [["B-PERS"], ["B-ORG"], ["O"], ["B-GPE"]])
    vocab = ReferenceVocab.from_sentences([sentence], "nested")
    rows, stats = encode_reference([sentence], tok, vocab)
    assert stats.words_without_subwords == 1
    row = rows[0]
    assert len(row.input_ids) == 5 and len(row.labels) == 6  # [CLS] 3 subwords [SEP]; 6 label slots
    t = {name: i for i, name in enumerate(vocab.types)}
    tag = lambda pos, name: vocab.tags[t[name]][row.labels[pos, t[name]]]  # noqa: E731
    # slot 1 زيد, slot 2 the control word, slot 3 في, slot 4 غزة; tokens: 1 زيد, 2 في, 3 غزة, 4 [SEP]
    assert tag(1, "PERS") == "B-PERS" and tag(2, "ORG") == "B-ORG" and tag(4, "GPE") == "B-GPE"
    batch = collate_reference(rows, [0], slice(0, 1), 1, 8, pad_id=0)
    assert batch["ref_length"][0] == 5 and batch["label_mask"][0].tolist() == [1] * 5 + [0] * 3
    gpe = batch["labels"][0, :, t["GPE"]]
    assert vocab.tags[t["GPE"]][gpe[4]] == "B-GPE"  # غزة's tag lands on [SEP]; its own token (3) is O
    assert vocab.tags[t["GPE"]][gpe[3]] == "O"
    split = ReferenceSplit([sentence], rows, vocab, 0, stats)
    assert "1 words without subwords" in split.describe()
    # decoding reads each word's slot: the control word's prediction is at token 2 (في's)
    assert row.word_pos.tolist() == [1, 2, 3, 4]


def test_batches_pad_to_the_longest_row_and_mask_the_rest(tmp_path):
    """Inside the batch's longest row everything is attended and trained (padding as <pad>, id 0); the
    positions added for a compiled length are neither; an empty row counts nowhere."""
    from arner_jax.data.wojood import Sentence
    from arner_jax.models.tagger.um6p import ReferenceVocab, collate_reference, encode_reference, padded_length

    tok = _one_word_tokenizer(tmp_path, ["زيد", "في", "غزة"])
    sents = [Sentence(["زيد"], [["B-PERS"]]), Sentence(["زيد", "في", "غزة"], [["B-PERS"], ["O"], ["B-GPE"]])]
    vocab = ReferenceVocab.from_sentences(sents, "nested")
    rows, _ = encode_reference(sents, tok, vocab)
    length = padded_length(5)
    batch = collate_reference(rows, [0, 1], slice(0, 2), 3, length, pad_id=0)
    assert length == 16 and batch["ref_length"].tolist() == [5, 5, 5]
    assert batch["attention_mask"][:, :5].all() and not batch["attention_mask"][:, 5:].any()
    assert batch["label_mask"][:2, :5].all() and not batch["label_mask"][:, 5:].any()
    assert not batch["label_mask"][2].any()
    assert (batch["labels"][0, 3:5] == 0).all()  # the short row's padding is <pad>, trained
    o = [v.index("O") for v in vocab.tags]
    assert batch["labels"][0, 0].tolist() == o and batch["labels"][0, 2].tolist() == o  # [CLS], [SEP]: O


def test_recipe_is_refused_for_the_flat_head():
    from arner_jax.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="--recipe um6p"):
        RunConfig(kind="flat", recipe="um6p")


def test_embedding_padding_rows_get_no_gradient_as_in_pytorch():
    """Hugging Face's nn.Embedding(padding_idx=pad) leaves the padding row's gradient 0 even where
    padding is attended to (the reference feeds padding with no attention mask)."""
    import jax
    import jax.numpy as jnp

    from arner_jax.encoders import Encoder, EncoderConfig

    cfg = EncoderConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    enc = Encoder(cfg)
    ids = jnp.array([[2, 5, 6, 3, 0, 0]], jnp.int32)
    params = enc.init(jax.random.PRNGKey(0), ids)["params"]
    grads = jax.jit(jax.grad(lambda p: (enc.apply({"params": p}, ids) ** 2).sum()))(params)
    table = np.asarray(grads["embeddings"]["word_embeddings"]["embedding"])
    assert not table[0].any() and table[5].any() and np.abs(table[5]).max() > 1e-6
    positions = np.asarray(grads["embeddings"]["position_embeddings"]["embedding"])
    assert positions[4].any()  # BERT's position table has no padding row: padding positions learn


def _parity(name: str, *flags: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "arner_jax.parity", "um6p",
                           str(SHARED / "fixtures" / "um6p_trajectories" / name), *flags],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"returncode": proc.returncode}


@pytest.mark.slow  # 30 s; the default set keeps the imported-checkpoint test against the reference's predictions
def test_parity_first_epoch_of_the_nested_penalty_run():
    """The paper's nested +var run, its first epoch replayed in this process: rows, every step's losses,
    penalty, gradient norm and learning rate, then the validation and test losses (the slow set
    replays every fixture to the end, weights and predictions included)."""
    from arner_jax import parity

    shared_path("fixtures", "um6p_trajectories", "nested_var")
    result = parity.compare_um6p(SHARED / "fixtures" / "um6p_trajectories" / "nested_var", steps=10)
    assert result["ok"], result["failures"]
    worst = result["largest"]
    assert worst["row_mismatches"] == 0 and result["partial"] and result["kept_epochs"] == [0]
    assert result["steps"] == 10 and result["evals_compared"] == 2  # val and test after the epoch
    assert worst["total"] < 1e-3 and worst["grad_norm_rel"] < 1e-3 and worst["eval_loss_rel"] < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_parity_every_fixture_one_device(name):
    shared_path("fixtures", "um6p_trajectories", name)
    result = _parity(name)
    assert result["returncode"] == 0 and result["ok"], result["failures"]


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
@pytest.mark.parametrize("name", FIXTURES)
def test_parity_four_devices(name, parallel):
    """The same numbers with each batch split over 4 (fake CPU) devices: statistics summed over devices,
    the IRM even/odd split global."""
    shared_path("fixtures", "um6p_trajectories", name)
    result = _parity(name, "--parallel", parallel, "--devices", "4")
    assert result["returncode"] == 0 and result["ok"], result["failures"]
    assert result["devices"] == 4 and result["parallel"] == parallel


def test_parity_refuses_a_folder_that_is_not_a_recording(tmp_path, capsys):
    from arner_jax import parity

    with pytest.raises(SystemExit) as exit_info:
        parity.main(["um6p", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing meta.json" in err and "\n" not in err


def test_a_reference_checkpoint_imported_predicts_what_the_reference_predicted(tmp_path, capsys):
    """nested_var's final weights (its kept model), read as a reference checkpoint with the files that define
    its vocabularies, predict its predictions_test.txt word by word; written back, they are the same tensors."""
    from safetensors.numpy import load_file

    from arner_jax import parity
    from arner_jax.convert.__main__ import main as convert
    from arner_jax.data.wojood import read_wojood
    from arner_jax.models import inference
    from arner_jax.models.parallel import PmapParallel, StepBodies
    from arner_jax.runs.loading import load_run

    fixture = shared_path("fixtures", "um6p_trajectories", "nested_var")
    sample = shared_path("data", "wojood_sample")
    run_dir = tmp_path / "imported"
    assert convert(["from-um6p", "--checkpoint", str(fixture / "final.safetensors"), "--kind", "nested",
                    *[x for s in ("train", "val", "test") for x in (f"--{s}_path", str(sample / f"{s}.txt"))],
                    "--bert_model", str(fixture / "encoder"), "--output_path", str(run_dir)]) == 0
    run = load_run(run_dir)
    sentences = read_wojood(fixture / "data" / "test.txt").sentences
    test = run.family.encode(run.config, run.labels, run.tokenizer, sentences, run.max_length)
    par = PmapParallel(StepBodies(run.family.objective(run.config, run.labels, run.model, with_logits=True)))
    outputs = inference.run(par, par.put_params(run.params), test, 16, run.max_length).outputs
    mismatches, ties, messages = parity.compare_predictions(test, outputs, fixture / "predictions_test.txt")
    # words whose two largest logits are within 1e-4 may go either way on another CPU (none here)
    assert mismatches == 0 and ties <= 3, messages[:5]
    # scored as the reference scores its predictions file: seqeval's default mode on each type layer, <pad> as
    # it is (a run of <pad> is a wrong entity of type "pad>"), the layers pooled (utils/metrics.py)
    import re

    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    rows = [line.split("\t") for line in (fixture / "predictions_test.txt").read_text(encoding="utf-8")
            .split("\n")[1:]]
    sentences, current = [], []
    for row in rows + [[""]]:
        if len(row) < 3:
            if current:
                sentences.append(current)
            current = []
        else:
            current.append((row[1].split("|"), row[2].split("|")))
    y, y_hat = [], []
    for i, vocab in enumerate(run.labels.tags):
        match = re.compile("|".join(t for t in vocab if "-" in t)).match
        y += [[next((g for g in gold if match(g)), "O") for gold, _ in sent] for sent in sentences]
        y_hat += [[pred[i] for _, pred in sent] for sent in sentences]
    assert sum(t == "<pad>" for seq in y_hat for t in seq) > 100  # the case this checks
    ours = inference.evaluate(par, par.put_params(run.params), run.family, run.config, run.labels, test, 16,
                              run.max_length).metrics
    assert ours["precision"] == precision_score(y, y_hat, scheme=IOB2)
    assert ours["recall"] == recall_score(y, y_hat, scheme=IOB2)
    assert ours["f1"] == f1_score(y, y_hat, average="micro", scheme=IOB2)
    assert ours["per_type"]["pad>"]["support"] == 0
    assert convert(["to-um6p", "--model_path", str(run_dir), "--output_path", str(tmp_path / "back.safetensors")]) == 0
    back, final = load_file(str(tmp_path / "back.safetensors")), load_file(str(fixture / "final.safetensors"))
    assert set(back) == set(final)
    assert all(np.array_equal(back[k], final[k]) for k in final if "pooler" not in k)
    capsys.readouterr()


def test_a_reference_head_of_the_wrong_shape_is_one_line_naming_it(tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    from arner_jax.convert.__main__ import main as convert

    fixture = shared_path("fixtures", "um6p_trajectories", "nested_var")
    sample = shared_path("data", "wojood_sample")
    state = load_file(str(fixture / "init.safetensors"))
    state["classifiers.3.weight"], state["classifiers.3.bias"] = state["classifiers.3.weight"][:3], \
        state["classifiers.3.bias"][:3]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(SystemExit) as exit_info:
        convert(["from-um6p", "--checkpoint", str(tmp_path / "bad.safetensors"), "--kind", "nested",
                 *[x for s in ("train", "val", "test") for x in (f"--{s}_path", str(sample / f"{s}.txt"))],
                 "--bert_model", str(fixture / "encoder"), "--output_path", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "classifiers.3 (type EVENT)" in err and "(3, 32)" in err and "(4, 32)" in err
    assert not (tmp_path / "run").exists()  # nothing created


def test_sentences_are_cut_as_the_reference_cuts_them(tmp_path):
    """Subwords, tags and word slots past the cut are dropped (the reference's 510; fewer with --max_length);
    the cut words are counted and predicted O, never placed on another word's token."""
    from arner_jax.data.wojood import Sentence
    from arner_jax.models.tagger.um6p import ReferenceVocab, encode_reference

    tok = _one_word_tokenizer(tmp_path, ["زيد", "في", "غزة"])
    words = ["زيد", "في", "غزة"] * 4
    sentence = Sentence(words, [["B-PERS"], ["O"], ["B-GPE"]] * 4)
    vocab = ReferenceVocab.from_sentences([sentence], "nested")
    rows, stats = encode_reference([sentence], tok, vocab, max_length=7)  # 5 subwords kept
    assert (stats.cut_sentences, stats.cut_words, stats.cut_at) == (1, 7, 5)
    assert len(rows[0].input_ids) == 7 and len(rows[0].labels) == 7
    assert rows[0].word_pos.tolist() == [1, 2, 3, 4, 5] + [-1] * 7
