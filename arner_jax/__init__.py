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


# The two loading APIs, importable from the package itself (loaded on first use: `import arner_jax` stays light).
_EXPORTS = {"NERTagger": "arner_jax.predict", "SpanMarkerModel": "arner_jax.models.span_marker"}
__all__ = ["NERTagger", "SpanMarkerModel", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'arner_jax' has no attribute {name!r}")
