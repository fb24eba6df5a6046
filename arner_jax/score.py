"""`python -m arner_jax.score --gold GOLD --pred PRED [--nested]`: Wojood metrics without a model.

Both files are Wojood format with the same words (PRED may be a `predictions.txt`); either may be a
gs:// URL (read through arner_jax.data.files, with the credentials gcsfs finds). Prints the
metrics as JSON. A user error (a missing or unreadable file, a format error, files that do not line
up) exits 2 with one line on stderr, `error: FILE:LINE: what; what to do` (no LINE when the whole
file is at fault). The files are read by `arner_jax.scoring.tagged_file` (numpy over the bytes, the reference
reader's results and errors) and scored by `arner_jax.scoring.engine`; JAX is never imported.
"""
from __future__ import annotations

import json
import sys

from arner_jax.data.files import StorageError
from arner_jax.data.wojood import SCHEMES, Corpus, WojoodFormatError
from arner_jax.errors import ArgumentParser, one_line
from arner_jax.scoring.metrics import SCORERS
from arner_jax.scoring.tagged_file import read_tagged, score_files

SAME_WORDS = "the files must hold the same words and blank lines"


def check_aligned(gold: Corpus, pred: Corpus) -> None:
    """Raise WojoodFormatError at the first word or sentence boundary where the files differ."""
    for i, (g, p) in enumerate(zip(gold.sentences, pred.sentences)):
        for j, (gw, pw) in enumerate(zip(g.words, p.words)):
            if gw != pw:
                raise WojoodFormatError(pred.path, p.first_line + j,
                                        f"word {pw!r} where {gold.path}:{g.first_line + j} has {gw!r}; {SAME_WORDS}.")
        if len(g) != len(p):
            j = min(len(g), len(p))
            raise WojoodFormatError(
                pred.path, p.first_line + j,
                f"sentence {i + 1} has {len(p)} words, but {len(g)} in {gold.path} (from line {g.first_line}); "
                f"{SAME_WORDS}.")
    n_gold, n_pred = len(gold.sentences), len(pred.sentences)
    if n_pred > n_gold:
        raise WojoodFormatError(pred.path, pred.sentences[n_gold].first_line,
                                f"sentence {n_gold + 1}, but {gold.path} ends after {n_gold}; {SAME_WORDS}.")
    if n_pred < n_gold:
        last = pred.sentences[-1] if pred.sentences else None
        raise WojoodFormatError(pred.path, last.first_line + len(last) - 1 if last else None,
                                f"the file ends after {n_pred} sentences, but {gold.path} goes on at line "
                                f"{gold.sentences[n_pred].first_line}; {SAME_WORDS}.")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m arner_jax.score", description=__doc__.splitlines()[0])
    parser.add_argument("--gold", required=True, help="gold Wojood file (a path, or a gs:// URL)")
    parser.add_argument("--pred", required=True, help="predicted Wojood file or predictions.txt (a path or gs:// URL)")
    parser.add_argument("--nested", action="store_true", help="score per type layer, pooled (nested Wojood)")
    parser.add_argument("--scorer", choices=SCORERS, default="fast",
                        help="fast: vectorized (default); seqeval: seqeval 1.2.2 itself (same figures, slower)")
    parser.add_argument("--tag_scheme", choices=SCHEMES, default="iob2",
                        help="iob2: the files' tags must be IOB2 (default); any: IOB1/BIOES/BILOU read as IOB2")
    args = parser.parse_args(argv)
    try:
        gold = read_tagged(args.gold, args.tag_scheme)
        pred = read_tagged(args.pred, args.tag_scheme)
        if not gold.same_words(pred):  # the slow check words the first difference
            check_aligned(gold.to_corpus(), pred.to_corpus())
            raise AssertionError(f"{args.gold} and {args.pred} differ, but check_aligned found no difference")
    except (WojoodFormatError, StorageError) as err:  # StorageError: a gs:// file that cannot be read
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    metrics = score_files(gold, pred, args.nested, scorer=args.scorer)
    metrics["dropped_duplicate_tags"] = {"gold": gold.dropped_duplicates, "pred": pred.dropped_duplicates}
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.score:main", xla=False)
