"""The model-family interface: a toy family defined here, with a setting and an export format of its own,
trains through the normal trainer, reloads from its run folder, predicts through NERTagger and exports
through the convert command, without any other file knowing about it."""
from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arner_jax.config import ConfigError, RunConfig
from arner_jax.data.align import encode_sentences, scatter_to_words
from arner_jax.data.batching import collate_windows
from arner_jax.data.entities import entity_tags, layer_entities
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus, read_wojood
from arner_jax.models import base as families


class BagTagger(nn.Module):
    """Each token's embedding and its neighbours' through a convolution, then the flat tags."""

    vocab_size: int
    num_tags: int
    window: int

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, deterministic: bool = True):
        h = nn.Embed(self.vocab_size, 32)(input_ids)  # [B, L, 32]
        h = nn.Conv(32, (self.window,))(h)
        return nn.Dense(self.num_tags)(jax.nn.relu(h))  # [B, L, C]


@dataclasses.dataclass(frozen=True)
class BagObjective:
    apply_fn: object
    batch_keys: tuple = ("input_ids", "labels", "label_mask")

    def statistics(self, params, batch, rngs, deterministic, rank_offset):
        logits = self.apply_fn({"params": params}, batch["input_ids"])
        logp = jax.nn.log_softmax(logits)
        nll = -jnp.take_along_axis(logp, batch["labels"][..., :1], axis=-1)[..., 0]
        return {"nll": (nll * batch["label_mask"]).sum(), "n": batch["label_mask"].sum()}, logits

    def loss(self, stats):
        return stats["nll"] / jnp.maximum(stats["n"], 1.0), {}

    def predict(self, logits):
        probs = jax.nn.softmax(logits)
        return {"ids": jnp.argmax(logits, -1).astype(jnp.int32), "probs": jnp.max(probs, -1)}


class BagSplit(families.EncodedSplit):
    def __init__(self, sentences, windows, vocab, pad_id):
        super().__init__(sentences)
        self.windows, self.vocab, self.pad_id = windows, vocab, pad_id

    def lengths(self):
        return [len(w) for w in self.windows]

    def collate(self, indices, rows, length):
        return collate_windows(self.windows, indices, rows, length, self.pad_id)

    def _layers(self, outputs):
        num_words = [len(s) for s in self.sentences]
        ids = scatter_to_words(self.windows, num_words, [o["ids"][:len(w)] for w, o in zip(self.windows, outputs)])
        probs = scatter_to_words(self.windows, num_words, [o["probs"][:len(w)] for w, o in zip(self.windows, outputs)])
        return [([self.vocab.flat_tags[i] for i in word_ids], p) for word_ids, p in zip(ids, probs)]

    def word_tags(self, outputs):
        return [entity_tags([[t] for t in tags]) for tags, _ in self._layers(outputs)]

    def entities(self, outputs):
        return [layer_entities([tags], probs[:, None]) for tags, probs in self._layers(outputs)]

    @staticmethod
    def tokens(batch):
        return int((batch["input_ids"] > 0).sum())


@dataclasses.dataclass
class BagOptions(families.FamilyOptions):
    window: int = families.option(3, "tokens each convolution reads", minimum=1)


class BagFamily(families.ModelFamily):
    name = "bag"
    kinds = ("toy_bag",)
    Options = BagOptions
    export_formats = ("bag-npz",)

    def export(self, run_dir, format, output_path, *, overwrite=False, license=None, **options):
        from arner_jax.runs.export_folder import prepare_export_folder
        from arner_jax.runs.loading import load_run

        run = load_run(run_dir)
        out = prepare_export_folder(output_path, overwrite, "a bag-npz export")
        flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(run.params)}
        np.savez(out / "params.npz", window=run.config.options.window, **flat)
        return out

    def label_space(self, config, corpora):
        return LabelVocab.from_corpus(Corpus([s for c in corpora for s in c.sentences]))

    def labels_to_json(self, labels):
        return labels.to_json()

    def labels_from_json(self, data):
        return LabelVocab.from_json(data)

    def entity_types(self, labels):
        return list(labels.types)

    def build(self, config, encoder, labels, tokenizer):
        return BagTagger(len(tokenizer), len(labels.flat_tags), config.options.window)

    def example_batch(self, labels):
        return {"input_ids": np.zeros((1, 8), np.int32)}

    def objective(self, config, labels, model, with_logits=False):
        return BagObjective(model.apply)

    def with_pretrained_encoder(self, params, encoder_params, encoder):
        return params

    def encode(self, config, labels, tokenizer, sentences, max_length, labelled=True):
        windows, _ = encode_sentences(sentences, tokenizer, labels, "flat", max_length)
        return BagSplit(sentences, windows, labels, int(tokenizer.pad_token_id))


def test_a_family_defined_here_trains_reloads_predicts_and_exports_through_the_library(tmp_path, monkeypatch,
                                                                                        capsys):
    from arner_jax.convert.__main__ import main as convert
    from arner_jax.predict import NERTagger
    from arner_jax.runs.loading import load_run
    from arner_jax.train.experiment import train_and_evaluate

    monkeypatch.setattr(families, "_REGISTRY", dict(families._REGISTRY))  # registered for this test only
    families.register_family(BagFamily())
    assert "toy_bag" in families.kinds()
    with pytest.raises(ConfigError, match="--window 0: must be a positive whole number"):
        RunConfig(kind="toy_bag", window=0)
    with pytest.raises(ConfigError, match="--loss: not a setting of --kind toy_bag"):
        RunConfig(kind="toy_bag", loss="ce")  # the taggers' option is theirs alone
    config = RunConfig(kind="toy_bag", window=5, synthetic=True, synthetic_sizes=(300, 40, 40), max_epochs=1,
                       batch_size=8, max_length=64, scratch_vocab_size=400, lr=5e-2)
    assert config.options == BagOptions(window=5)
    metrics = train_and_evaluate(config, tmp_path / "run", overwrite=False)
    assert metrics["kind"] == "toy_bag" and metrics["epochs_run"] == 1 and metrics["val"]["f1"] > 0.3
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["family"] == "bag" and saved["run"]["window"] == 5

    run = load_run(tmp_path / "run")  # the option comes back from the run folder: the kernel reads 5 tokens
    assert run.config.options.window == 5 and run.params["Conv_0"]["kernel"].shape[0] == 5
    tagger = NERTagger.from_pretrained(tmp_path / "run")
    texts = [" ".join(s.words) for s in read_wojood(tmp_path / "run" / "data" / "test.txt").sentences[:20]]
    records = tagger.predict(texts)
    assert sum(map(len, records)) > 0
    for text, found in zip(texts, records):
        assert all(r["label"] in tagger.labels.types and text[r["start"]:r["end"]] == r["text"] for r in found)

    out = tmp_path / "export"
    args = ["--model_path", str(tmp_path / "run"), "--output_path", str(out)]
    assert convert(["export", "--format", "bag-npz", *args]) == 0
    written = np.load(out / "params.npz")
    assert int(written["window"]) == 5
    np.testing.assert_array_equal(written["['Conv_0']['kernel']"], run.params["Conv_0"]["kernel"])
    with pytest.raises(SystemExit) as stop:  # a format of another family: one line naming the family's own
        convert(["to-pytorch", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "writes bag-npz (python -m arner_jax.convert export --format bag-npz)" in err
