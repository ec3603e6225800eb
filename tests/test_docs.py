"""The docs: the mkdocs site builds with ``--strict`` (API reference from the docstrings, task cards,
benchmark pages), and the quickstart notebook runs top to bottom on the tiny model, stored without outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "quickstart.ipynb"


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (site / "index.html").exists()
    assert (site / "tasks" / "AIME-v0" / "index.html").exists()
    assert (site / "benchmarks" / "sweep" / "index.html").exists()
    api = (site / "api" / "benchmarks" / "index.html").read_text()
    assert "run_sweep" in api and "EpisodeSpec" in api, "the API reference is rendered from the docstrings"
    assert (site / "notebooks" / "quickstart.ipynb").exists()


def test_quickstart_notebook_is_stored_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, "strip the outputs"


def test_quickstart_notebook_runs_on_the_tiny_model(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat", reason="the docs extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the docs extra is not installed")
    pytest.importorskip("ipykernel", reason="the docs extra is not installed")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the cell and its traceback
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    assert "hidden_test_score" in text and "# Leaderboard" in text and "| Manual SFT |" in text
    assert any(out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
               for cell in nb.cells for out in cell.get("outputs", [])), "the plot cell shows a figure"
