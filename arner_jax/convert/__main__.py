"""`python -m arner_jax.convert verify --hf_model PATH_OR_ID`: checks our encoder against PyTorch.

Exit status: 0 when the largest difference is under the tolerance, 1 when it is not, 2 when the
checkpoint cannot be used (the message says which file and why).
"""
from __future__ import annotations

import argparse
import sys

from arner_jax.encoders import CheckpointError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arner_jax.convert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="compare our Flax encoder with transformers on a checkpoint")
    verify.add_argument("--hf_model", required=True, help="Hugging Face model folder or hub id")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |difference|")
    verify.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="our compute dtype (bfloat16 needs a looser --tolerance, e.g. 5e-2)")
    verify.add_argument("--text", action="append", help="a sentence to run (repeatable); default: built-in Arabic")
    args = parser.parse_args(argv)

    from arner_jax.convert.verify import SAMPLE_SENTENCES, verify_encoder

    try:
        result = verify_encoder(args.hf_model, args.text or SAMPLE_SENTENCES, dtype=args.dtype)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.notes:
        print(result.notes)
    source = "its tokenizer" if result.used_tokenizer else "random token ids (the folder has no tokenizer)"
    print(f"{result.num_sentences} sentences, {result.num_tokens} tokens from {source}")
    ok = result.max_abs_diff < args.tolerance
    print(f"max |difference| of the last hidden state: {result.max_abs_diff:.3e} "
          f"({'OK' if ok else 'FAIL'}, tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
