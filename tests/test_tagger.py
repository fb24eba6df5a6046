"""Fused per-type heads, decoding for nested/flat/MTN, and the synthetic corpus feeding them."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data import LabelVocab, encode_sentences, eval_batches, iterate, parse_wojood, scatter_to_words
from arner_jax.data.synthetic import generate_sentences, write_synthetic_corpus
from arner_jax.data.wojood import Corpus, read_wojood
from arner_jax.encoders import Encoder, small_bert_config, train_wordpiece_tokenizer
from arner_jax.losses import LossConfig, total_loss
from arner_jax.data.entities import entity_tags, ids_to_tags
from arner_jax.tagger import Tagger, class_mask, decode, head_shape, label_layout


def test_fused_heads_equal_one_classifier_per_type():
    config = small_bert_config(50, hidden_size=16, num_layers=1)
    model = Tagger(config, num_heads=4, num_classes=3)
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 50, (2, 7)))
    params = model.init(jax.random.PRNGKey(0), ids)["params"]
    logits = model.apply({"params": params}, ids, jnp.ones((2, 7)))
    assert logits.shape == (2, 7, 4, 3) and logits.dtype == jnp.float32
    h = Encoder(config).apply({"params": params["encoder"]}, ids, jnp.ones((2, 7)))
    for t in range(4):  # what the reference does with 4 separate nn.Linear heads
        expected = h @ params["head_kernel"][:, t, :] + params["head_bias"][t]
        np.testing.assert_allclose(logits[:, :, t], expected, rtol=1e-5, atol=1e-6)


def test_decode_respects_class_mask_and_mtn_keeps_one_tag():
    vocab = LabelVocab(("GPE", "ORG"), (("O", "B"), ("O", "B", "I")))
    mask = jnp.asarray(vocab.class_mask())
    logits = jnp.asarray([[[0.0, 1.0, 5.0], [0.0, 2.0, 1.0]],    # GPE: I masked -> B; ORG: B
                          [[3.0, 0.0, 0.0], [0.0, 0.0, 0.5]]])   # GPE: O; ORG: I
    nested = np.asarray(decode("nested", logits, mask))
    assert nested.tolist() == [[1, 1], [0, 2]]
    assert ids_to_tags("nested", vocab, nested) == [["B-GPE", "B-ORG"], ["O", "I-ORG"]]
    mtn = np.asarray(decode("mtn", logits, mask))
    # word 0: GPE B has p = e/(1+e) = .73 after masking I, ORG B has p = e^2/(1+e^2+e) = .67 -> keep GPE
    assert mtn.tolist() == [[1, 0], [0, 2]]
    assert entity_tags(ids_to_tags("mtn", vocab, mtn)) == [["B-GPE"], ["I-ORG"]]


def test_flat_head_shape_and_tags():
    vocab = LabelVocab.from_corpus(parse_wojood("a B-ORG\nb I-ORG\nc B-GPE\n"))
    assert head_shape("flat", vocab) == (1, 4) and label_layout("flat") == "flat"
    assert class_mask("flat", vocab).shape == (1, 4)
    assert ids_to_tags("flat", vocab, np.array([[0], [3]])) == [["O"], ["I-ORG"]]


def test_synthetic_corpus_is_deterministic_nested_and_valid(tmp_path):
    assert generate_sentences(20, seed=4) == generate_sentences(20, seed=4)
    assert generate_sentences(20, seed=4) != generate_sentences(20, seed=5)
    paths = write_synthetic_corpus(tmp_path, sizes={"train": 300, "val": 50, "test": 50})
    train = read_wojood(paths["train"])  # re-reading validates every line
    assert len(train.sentences) == 300 and train.nested and train.dropped_duplicates == 0
    depth = max(len(t) for s in train.sentences for t in s.tags)
    assert depth >= 3  # OCC > ORG > GPE
    assert {"OCC", "ORG", "GPE", "DATE", "ORDINAL", "MONEY", "CURR"} <= set(train.types)
    assert set(read_wojood(paths["test"]).types) <= set(train.types)


def test_end_to_end_forward_loss_and_word_predictions():
    """Synthetic sentences -> windows -> batches -> tagger -> loss and per-word tags for every word."""
    sentences = generate_sentences(40, seed=1)
    corpus = Corpus(sentences)
    vocab = LabelVocab.from_corpus(corpus)
    tok = train_wordpiece_tokenizer((" ".join(s.words) for s in sentences), vocab_size=300)
    windows, _ = encode_sentences(sentences, tok, vocab, label_layout("nested"), max_length=32)
    T, C = head_shape("nested", vocab)
    model = Tagger(small_bert_config(len(tok), hidden_size=16, num_layers=1), T, C)
    mask = jnp.asarray(class_mask("nested", vocab))
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))["params"]

    @jax.jit
    def step(params, batch):
        logits = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"])
        loss, _ = total_loss(logits, batch["labels"], batch["label_mask"], mask, LossConfig())
        return loss, decode("nested", logits, mask)

    outputs = [None] * len(windows)
    for batch in iterate(windows, eval_batches(windows, 8, 32), 8, pad_id=tok.pad_token_id):
        loss, pred = step(params, {k: jnp.asarray(v) for k, v in batch.items()})
        assert np.isfinite(float(loss))
        for row, w in enumerate(batch["window_index"]):
            if w >= 0:
                outputs[w] = np.asarray(pred[row, : len(windows[w])])
    per_word = scatter_to_words(windows, [len(s) for s in sentences], outputs)
    assert [len(p) for p in per_word] == [len(s) for s in sentences]
    assert all(len(tags) == T for tags in ids_to_tags("nested", vocab, per_word[0]))
