"""A SpanMarker model on nested Wojood data: every type layer's entities are gold spans, and
decoding keeps spans that nest or are disjoint; scored with the Wojood nested micro-F1.

    python -m experiments.wojood_span_nested                       # synthetic corpus, small encoder from scratch
    python -m experiments.wojood_span_nested --train_path ... --val_path ... --test_path ... \\
        --bert_model UBC-NLP/ARBERTv2 --output_path runs/span_nested
    python -m experiments.wojood_span_nested --kind span_flat ...  # the same model on flat tags
"""
from arner_jax.train.cli import main

DEFAULTS = dict(batch_size=8, max_epochs=15, max_length=256, entity_max_length=12, marker_max_length=128,
                select_by="f1")

if __name__ == "__main__":
    main(default_kind="span_nested", kinds=("span_nested", "span_flat"), description=__doc__, defaults=DEFAULTS)
