"""The tagger family: fused per-type heads, decoding for nested/flat/MTN, its objective through the
library's data-parallel step, and the synthetic corpus feeding it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training.train_state import TrainState

from arner_jax.config import RunConfig
from arner_jax.data import LabelVocab, parse_wojood
from arner_jax.data.entities import entity_tags
from arner_jax.data.synthetic import generate_sentences, write_synthetic_corpus
from arner_jax.data.wojood import Corpus, read_wojood
from arner_jax.encoders import Encoder, small_bert_config, train_wordpiece_tokenizer
from arner_jax.models import inference
from arner_jax.models.base import family_for
from arner_jax.models.parallel import PmapParallel, StepBodies
from arner_jax.models.tagger.family import (
    KINDS,
    Tagger,
    class_mask,
    decode_class_ids,
    head_shape,
    ids_to_tags,
)
from arner_jax.models.tagger.losses import LossConfig, total_loss
from arner_jax.runs.loading import init_params
from arner_jax.train.optim import OptimConfig, make_optimizer


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
    nested = np.asarray(decode_class_ids(logits, mask, KINDS["nested"].one_tag_per_word))
    assert nested.tolist() == [[1, 1], [0, 2]]
    assert ids_to_tags(KINDS["nested"], vocab, nested) == [["B-GPE", "B-ORG"], ["O", "I-ORG"]]
    mtn = np.asarray(decode_class_ids(logits, mask, KINDS["mtn"].one_tag_per_word))
    # word 0: GPE B has p = e/(1+e) = .73 after masking I, ORG B has p = e^2/(1+e^2+e) = .67 -> keep GPE
    assert mtn.tolist() == [[1, 0], [0, 2]]
    assert entity_tags(ids_to_tags(KINDS["mtn"], vocab, mtn)) == [["B-GPE"], ["I-ORG"]]


def test_flat_head_shape_and_tags():
    vocab = LabelVocab.from_corpus(parse_wojood("a B-ORG\nb I-ORG\nc B-GPE\n"))
    flat = KINDS["flat"]
    assert head_shape(flat, vocab) == (1, 4) and flat.layout == "flat"
    assert class_mask(flat, vocab).shape == (1, 4)
    assert ids_to_tags(flat, vocab, np.array([[0], [3]])) == [["O"], ["I-ORG"]]


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


def test_library_step_and_inference_on_synthetic_sentences():
    """Sentences -> the family's windows and batches -> the library's train step (its loss is the SPEC 4
    loss of the same logits) -> the inference driver -> word tags for every word."""
    sentences = generate_sentences(40, seed=1)
    config = RunConfig(kind="nested", synthetic=True, max_length=32)
    family = family_for("nested")
    vocab = family.label_space(config, [Corpus(sentences)])
    tok = train_wordpiece_tokenizer((" ".join(s.words) for s in sentences), vocab_size=300)
    model = family.build(config, small_bert_config(len(tok), hidden_size=16, num_layers=1), vocab, tok)
    split = family.encode(config, vocab, tok, sentences, 32)
    params = init_params(family, model, vocab, 0)
    parallel = PmapParallel(StepBodies(family.objective(config, vocab, model)))
    batch = split.collate(list(range(8)), 8, 32)
    state = TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(OptimConfig(lr=1e-3), 10))
    # the step's loss, recomputed from the model's own logits with the same dropout key
    key = jax.random.PRNGKey(7)
    _, metrics = parallel.train_step(parallel.put_state(state), batch, key)
    rngs = {"dropout": jax.random.fold_in(jax.random.fold_in(key, 0), 0)}
    mask = class_mask(KINDS["nested"], vocab)

    @jax.jit  # one program instead of the model's ops dispatched one by one (seconds on 2 cores)
    def reference_loss(params, rngs):
        logits = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"], deterministic=False,
                             rngs=rngs)
        return total_loss(logits, batch["labels"], batch["label_mask"], mask, LossConfig())[0]

    expected = reference_loss(params, rngs)
    assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-5)
    result = inference.run(parallel, parallel.put_params(params), split, 8, 32)
    tags = split.word_tags(result.outputs)
    assert [len(t) for t in tags] == [len(s) for s in sentences]
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for t in tags for word in t for tag in word)
