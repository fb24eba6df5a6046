"""`python -m arner_jax.score --gold GOLD --pred PRED [--nested]`: Wojood metrics without a model.

Both files are Wojood format with the same words (PRED may be a `predictions.txt`). Prints the
metrics as JSON; exits 2 with a message naming the first line that differs when the files do not
line up, or the line of any format error.
"""
from __future__ import annotations

import argparse
import json
import sys

from arner_jax.data.wojood import Corpus, WojoodFormatError
from arner_jax.metrics import read_tagged_file, score_tags


def check_aligned(gold: Corpus, pred: Corpus) -> None:
    """Raise WojoodFormatError at the first word or sentence boundary where the files differ."""
    for i, (g, p) in enumerate(zip(gold.sentences, pred.sentences)):
        for j, (gw, pw) in enumerate(zip(g.words, p.words)):
            if gw != pw:
                raise WojoodFormatError(pred.path, p.first_line + j,
                                        f"word {pw!r} where {gold.path}:{g.first_line + j} has {gw!r}.")
        if len(g) != len(p):
            j = min(len(g), len(p))
            raise WojoodFormatError(
                pred.path, p.first_line + j,
                f"sentence {i + 1} has {len(p)} words, but {len(g)} in {gold.path} (from line {g.first_line}); "
                "the files must hold the same words and blank lines.")
    if len(gold.sentences) != len(pred.sentences):
        raise WojoodFormatError(pred.path, None, f"{len(pred.sentences)} sentences, but {len(gold.sentences)} "
                                f"in {gold.path}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arner_jax.score", description=__doc__.splitlines()[0])
    parser.add_argument("--gold", required=True, help="gold Wojood file")
    parser.add_argument("--pred", required=True, help="predicted Wojood file or predictions.txt")
    parser.add_argument("--nested", action="store_true", help="score per type layer, pooled (nested Wojood)")
    args = parser.parse_args(argv)
    try:
        gold, pred = read_tagged_file(args.gold), read_tagged_file(args.pred)
        check_aligned(gold, pred)
    except WojoodFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metrics = score_tags([s.tags for s in gold.sentences], [s.tags for s in pred.sentences], args.nested)
    metrics["dropped_duplicate_tags"] = {"gold": gold.dropped_duplicates, "pred": pred.dropped_duplicates}
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
