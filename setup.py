"""Install arner_jax: `pip install -e .` (core), `pip install -e ".[test]"` (tests)."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.4.30",
    "flax>=0.10",
    "optax>=0.2.3",
    "orbax-checkpoint>=0.6",
    "transformers>=4.40",
    "tokenizers>=0.19",
    "safetensors>=0.4",
    "huggingface_hub>=0.23",
    "datasets>=2.19",
    "seqeval==1.2.2",
    "numpy>=1.24",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
    # model cards' YAML front matter (arner_jax.model_card); transformers and flax require it already
    "pyyaml>=5.1",
    # paths that may be gs:// URLs (arner_jax.data.files.location); orbax-checkpoint requires it already
    "etils[epath]>=1.5",
]
# torch is only needed to read `pytorch_model.bin`, to export/verify against PyTorch and for
# the parity tests. On a machine without a GPU install a CPU build of torch *before* these
# extras, or pip resolves the default (CUDA) wheels.
TORCH = ["torch>=2.1"]
# The notebooks' plots and tables (Colab has these already).
NOTEBOOK = ["matplotlib>=3.7", "pandas>=1.5", "ipython>=8"]
# A local GCS server for the gs:// tests (tests/gcs_server.py builds on the emulator's internals:
# exact versions, as verified) and the clients it serves: gcsfs (etils.epath's gs:// without
# TensorFlow), google-cloud-storage (tensorboardX's gs://); Orbax goes through tensorstore.
GCS_TEST = ["gcp-storage-emulator==2026.7.19", "gcsfs==2026.10.1", "google-cloud-storage==3.17.2"]
EXTRAS = {
    # Run folders and data on gs:// (arner_jax.data.files: etils.epath over fsspec's gcsfs; TensorBoard
    # events through tensorboardX, which writes gs:// with google-cloud-storage; Orbax: tensorstore)
    "gcs": ["gcsfs>=2026.10.1", "google-cloud-storage>=3.0"],
    "torch": TORCH,
    "notebook": NOTEBOOK,
    # The tests execute the notebooks (nbclient, a Python kernel), run in two processes (pytest-xdist; the
    # shared trained runs are made once under a file lock) and serve gs:// locally (GCS_TEST).
    "test": TORCH + NOTEBOOK + ["pytest>=7", "pytest-xdist>=3.6", "filelock>=3.12", "nbclient>=0.9", "nbformat>=5.9",
                                "ipykernel>=6.25", "ruff>=0.6"] + GCS_TEST,
    # TPU VM / Colab TPU: the TPU build of JAX.
    "tpu": ["jax[tpu]"],
    # NVIDIA GPU hosts (CUDA 12 wheels; use jax[cuda13] on CUDA 13 drivers).
    "cuda": ["jax[cuda12]"],
}

setup(
    name="arner_jax",
    version="0.2.0",
    description="Arabic nested and flat NER (Wojood multi-task taggers, SpanMarker) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["arner_jax", "arner_jax.*"]),
    # The public Wojood sample (MIT, with its LICENSE): the experiments' default data.
    package_data={"arner_jax": ["resources/wojood_sample/*"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    license="MIT",
)
