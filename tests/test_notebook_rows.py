"""A real kernel (nbclient, ipykernel: each cell a task of its own): `exp.log()` in the next cell joins the row."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

import tracked  # noqa: E402
from tracked.testing import read_experiment  # noqa: E402

pytestmark = pytest.mark.slow  # a notebook run in a kernel


def test_log_in_the_cell_after_a_tracked_cell_joins_its_row(tmp_path, monkeypatch):
    """Four `%%tracked` cells, each followed by a cell with `exp.log()`: four rows, each with its own accuracy."""
    store = tmp_path / "store"
    cells = [
        "%load_ext tracked",
        "import tracked\n@tracked.tracked\ndef ask(q):\n    return {'tokens_in': 10, 'tokens_out': 5}",
        f"exp = tracked.experiment('nb_rows', dir={str(store)!r}, wandb=False).start()",
    ]
    for i in range(4):
        cells += [f"%%tracked cell{i}\nask('a')\nask('b')", f"exp.log({{'accuracy': {i}}})"]
    cells += ["exp.finish()"]
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    monkeypatch.setenv("TRACKED_QUIET", "1")
    # The kernel imports the `tracked` these tests import, wherever the working directory is.
    monkeypatch.setenv("PYTHONPATH", str(Path(tracked.__file__).resolve().parents[1]))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    for var, sub in (("JUPYTER_DATA_DIR", "jd"), ("JUPYTER_CONFIG_DIR", "jc"), ("JUPYTER_RUNTIME_DIR", "jr")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    (exp_dir,) = list(Path(store, "experiments").iterdir())
    rows = read_experiment(exp_dir).rows
    assert [(r["call"], r["accuracy"], r["llm_calls"]) for r in rows] == [(f"cell{i}", i, 2) for i in range(4)]
