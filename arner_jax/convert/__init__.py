"""Checkpoint conversion and cross-framework checks (`python -m arner_jax.convert ...`)."""
from arner_jax.convert.verify import VerifyResult, verify_encoder

__all__ = ["VerifyResult", "verify_encoder"]
