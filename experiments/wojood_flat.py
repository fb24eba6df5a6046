"""Wojood flat NER: one classifier over the flat tags (--kind flat), or per-type heads trained on
flat data and decoded to one tag per word (--kind mtn).

    python -m experiments.wojood_flat                        # synthetic corpus, small encoder from scratch
    python -m experiments.wojood_flat --kind mtn --train_path ... --val_path ... --test_path ... \\
        --bert_model UBC-NLP/ARBERTv2 --output_path runs/flat_mtn
"""
from arner_jax.train.cli import main

if __name__ == "__main__":
    main(default_kind="flat", kinds=("flat", "mtn"), description=__doc__)
