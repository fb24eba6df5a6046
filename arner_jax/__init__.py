"""arner_jax: Arabic flat and nested NER in JAX/Flax (Wojood multi-task taggers, SpanMarker)."""
import importlib.util
import os

__version__ = "0.2.0"


def _torch_missing() -> bool:
    try:
        return importlib.util.find_spec("torch") is None
    except ValueError:  # sys.modules["torch"] is None: importing it fails
        return True


# arner_jax uses transformers for tokenizers and configs; without PyTorch (the core install) transformers
# announces on import that its models are unavailable, which says nothing about arner_jax: silence that notice.
if _torch_missing():
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
