"""SpanMarker on WikiANN Arabic (flat NER), with the published run's settings as defaults:
lr 1e-5 (fine-tuning), batch 4 x gradient accumulation 2, linear schedule with 10% warmup,
10 epochs, max 512 tokens (510 for BERT, whose positions would overflow), entities up to 30 words.

    python -m experiments.wikiann_span_marker                      # offline: synthetic corpus (flat), small encoder
    python -m experiments.wikiann_span_marker --dataset wikiann:ar --bert_model xlm-roberta-base \\
        --output_path runs/wikiann_xlmr                             # the published setting (needs the hub once)
    python -m experiments.wikiann_span_marker --dataset /data/wikiann_ar_saved ...   # a save_to_disk folder
    python -m experiments.wikiann_span_marker --train_path train.txt --val_path dev.txt --test_path test.txt \\
        --tag_scheme any                                            # CoNLL/Wojood flat files, IOB/BIOES/BILOU
"""
from arner_jax.train.cli import main

DEFAULTS = dict(lr=None, batch_size=4, grad_accum=2, warmup_ratio=0.1, max_epochs=10, patience=10,
                max_length=512, entity_max_length=30, marker_max_length=128, weight_decay=0.0,
                select_by="f1", tag_scheme="any")

if __name__ == "__main__":
    main(default_kind="span_flat", kinds=("span_flat", "span_nested"), description=__doc__, defaults=DEFAULTS)
