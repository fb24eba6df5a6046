"""The notebooks run top to bottom in smoke mode (ARNER_SMOKE=1: tiny offline corpus and encoder,
CPU), any cell error fails the test, and what each one makes is there and readable (a run folder's
metrics, an exported model with its card, a sweep's tables); they are committed with their outputs
stripped."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = {"train_wojood_nested_tpu.ipynb", "span_marker_wikiann_tpu.ipynb", "evaluate_and_convert.ipynb",
            "sweep_report.ipynb"}


def _metrics(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= metrics["test"]["f1"] <= 1.0 and metrics["history"], run
    return metrics


def _exported(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config and any(folder.glob("*.safetensors")), folder
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "from_pretrained" in card, f"{folder}: no model card"


def _sweep(folder: Path) -> None:
    rows = json.loads((folder / "results.json").read_text(encoding="utf-8"))["rows"]
    assert rows and (folder / "results.md").read_text(encoding="utf-8").count("\n|") >= len(rows)
    assert (folder / "curves_f1.png").stat().st_size > 0


# What each notebook makes in its workspace, in smoke mode, and how to check it.
PRODUCES = {
    "train_wojood_nested_tpu": lambda work: _metrics(work / "runs" / "smoke_nested"),
    "span_marker_wikiann_tpu": lambda work: (_metrics(work / "runs" / "smoke_span_marker"),
                                             _exported(work / "exports" / "smoke_span_marker")),
    "evaluate_and_convert": lambda work: (_metrics(work / "runs" / "smoke_nested"),
                                          _exported(work / "exports" / "smoke_nested_pytorch")),
    "sweep_report": lambda work: _sweep(work / "sweeps" / "um6p_table_smoke"),
}


def test_every_notebook_says_what_it_makes():
    assert {p.stem for p in NOTEBOOKS} == set(PRODUCES)


def test_the_notebooks_are_there():
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} cell {i} has outputs"
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "ARNER_SMOKE" in "".join(nb["cells"][1]["source"]), "the smoke switch is read in the first code cell"
    assert "arner_jax" in code


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel inherits this environment: smoke mode, a private workspace, CPU only.
    monkeypatch.setenv("ARNER_SMOKE", "1")
    monkeypatch.setenv("ARNER_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # The checkout under test, not whichever arner_jax the environment has installed (another checkout's).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: figures become outputs
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:  # names the cell and the traceback
        pytest.fail(f"{path.name}: {err}")
    outputs = "".join(json.dumps(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
    assert "Traceback" not in outputs
    if "training_curves(" in "".join(c.source for c in nb.cells):
        assert "image/png" in outputs, "the curves were not drawn"
    PRODUCES[path.stem](tmp_path / "workspace")
