"""The notebooks run top to bottom in smoke mode (ARNER_SMOKE=1: tiny offline corpus and encoder,
CPU), any cell error fails the test; and they are committed with their outputs stripped."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = {"train_wojood_nested_tpu.ipynb", "span_marker_wikiann_tpu.ipynb", "evaluate_and_convert.ipynb",
            "sweep_report.ipynb"}


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
    assert os.listdir(tmp_path / "workspace"), "the notebook wrote nothing into its workspace"
