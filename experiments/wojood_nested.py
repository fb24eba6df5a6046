"""Wojood nested NER: one classifier per entity type on a BERT encoder (SPEC 1A, 4, 5).

    python -m experiments.wojood_nested                     # synthetic corpus, small encoder from scratch
    python -m experiments.wojood_nested --train_path train.txt --val_path val.txt --test_path test.txt \\
        --bert_model UBC-NLP/ARBERTv2 --output_path runs/nested
"""
from arner_jax.train.cli import main

if __name__ == "__main__":
    main(default_kind="nested", kinds=("nested",), description=__doc__)
