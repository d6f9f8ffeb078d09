"""A real notebook run by nbclient in an ipykernel: `%load_ext tracked`, `%%tracked`, `.start()`/`.finish()`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from tracked.testing import read_experiment  # noqa: E402

pytestmark = pytest.mark.slow  # one notebook run in a kernel, shared by every test here

NOTEBOOK_NAME = "03_introspection_experiments.ipynb"


def build_notebook(store: Path):
    """The notebook: an experiment started in one cell, a `%%tracked` cell, a plain call, finish, display."""
    cells = [
        "%load_ext tracked",
        "import tracked\n\n"
        "@tracked.tracked\n"
        "def ask(question):\n"
        "    return {'tokens_in': 10, 'tokens_out': 5, 'cost_usd': 0.01}",
        f"exp = tracked.experiment('nb', dir={str(store)!r}, wandb=False).start()",
        "%%tracked my_cell\nfirst = ask('a')\nsecond = ask('b')",
        "ask('c')",
        "exp.finish()",
        "exp",
        # A second experiment: a %%tracked cell that raises.
        f"exp2 = tracked.experiment('nb_errors', dir={str(store)!r}, wandb=False).start()",
        "%%tracked bad_cell\nask('d')\nraise ValueError('boom in a cell')",
        "print('after the error')",
        "exp2.finish()",
        # A third: its start cell run twice, then a %%tracked cell with top-level await.
        f"exp3 = tracked.experiment('rerun', dir={str(store)!r}, wandb=False).start()",
        f"exp3 = tracked.experiment('rerun', dir={str(store)!r}, wandb=False).start()",
        "import asyncio\n\n"
        "@tracked.tracked\n"
        "async def aask(question):\n"
        "    await asyncio.sleep(0)\n"
        "    return {'tokens_in': 7, 'tokens_out': 1, 'cost_usd': 0.001}",
        "%%tracked async_cell\nfirst = await aask('e')\nsecond = await aask('f')\n40 + 2",
        "ask('g')",
        "exp3.finish()",
    ]
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.cells[8].metadata["tags"] = ["raises-exception"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after execution in a python3 kernel (this venv's ipykernel), and the store it wrote."""
    root = tmp_path_factory.mktemp("notebook")
    store = root / "store"
    store.mkdir()
    nb = build_notebook(store)
    with pytest.MonkeyPatch.context() as mp:
        # The kernel inherits this process's environment: the notebook name for W&B, and Jupyter and
        # IPython directories of its own, so nothing under the user's home is read or written.
        mp.setenv("WANDB_NOTEBOOK_NAME", NOTEBOOK_NAME)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("TRACKED_DIR", str(store))
        mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
        mp.setenv("JUPYTER_DATA_DIR", str(root / "jupyter-data"))
        mp.setenv("JUPYTER_CONFIG_DIR", str(root / "jupyter-config"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(root / "jupyter-runtime"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        # ipykernel's own spec: "python" is replaced by this interpreter when the kernel starts.
        assert spec.argv[0] in ("python", sys.executable), spec.argv
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(root)}}
        )
        client.execute()
    (exp_dir,) = [p for p in (store / "experiments").iterdir() if p.name.startswith("nb_2")]
    (err_dir,) = [p for p in (store / "experiments").iterdir() if p.name.startswith("nb_errors_")]
    return nb, exp_dir, err_dir


def errors(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "error"]


def test_cells_run_and_the_experiment_displays_its_totals(executed):
    """Every cell but the raising one runs cleanly; displaying the finished experiment gives an HTML table of totals."""
    nb, _, _ = executed
    for i, cell in enumerate(nb.cells):
        if i != 8:
            assert errors(cell) == [], (i, cell.source)
    outputs = nb.cells[6].outputs
    (result,) = [o for o in outputs if o.output_type == "execute_result"]
    html = result.data["text/html"]
    assert "total/calls" in html
    assert "<td>total/calls</td><td>2</td>" in html
    assert "<td>total/tokens_in</td><td>30</td>" in html
    assert "(finished)" in html
    assert result.data["text/plain"] == "<Experiment 'nb' finished>"


def test_tracked_cell_is_one_row_with_its_calls_rolled_up(executed):
    """The `%%tracked my_cell` cell is one row (tokens 20, cost 0.02, 2 LLM calls); the plain call is another."""
    _, exp_dir, _ = executed
    stored = read_experiment(exp_dir)
    rows = stored.rows
    assert [r["call"] for r in rows] == ["my_cell", "ask"]
    cell_row = rows[0]
    assert cell_row["tokens_in"] == 20
    assert cell_row["tokens_out"] == 10
    assert cell_row["cost_usd"] == pytest.approx(0.02)
    assert cell_row["llm_calls"] == 2
    assert cell_row["error"] == 0
    assert rows[1]["tokens_in"] == 10
    assert stored.summary["status"] == "finished"
    assert stored.summary["total/calls"] == 2
    assert stored.summary["total/tokens_in"] == 30
    assert stored.summary["total/cost_usd"] == pytest.approx(0.03)
    assert stored.summary["my_cell/calls"] == 1


def test_calls_inside_the_tracked_cell_are_its_children(executed):
    """calls.jsonl has the cell call and, under it, the two calls made in the cell; the direct call has no parent."""
    _, exp_dir, _ = executed
    calls = read_experiment(exp_dir).calls
    by_name: dict[str, list] = {}
    for call in calls:
        by_name.setdefault(call["name"], []).append(call)
    (cell,) = by_name["my_cell"]
    assert cell["parent_id"] is None
    asks = by_name["ask"]
    assert len(asks) == 3
    assert sorted(str(a["parent_id"]) for a in asks) == sorted([cell["id"], cell["id"], "None"])


def test_notebook_name_is_recorded(executed):
    """WANDB_NOTEBOOK_NAME, set for the kernel, is in the system info of config.json."""
    _, exp_dir, _ = executed
    config = json.loads((exp_dir / "config.json").read_text())
    assert config["system"]["notebook"] == NOTEBOOK_NAME
    assert config["name"] == "nb"


def test_a_raising_tracked_cell_records_the_error_and_shows_one_traceback(executed):
    """A `%%tracked` cell that raises is a row with the error; the notebook shows the traceback once and goes on."""
    nb, _, err_dir = executed
    shown = errors(nb.cells[8])
    assert len(shown) == 1
    assert shown[0].ename == "ValueError"
    assert "after the error" in "".join(o.get("text", "") for o in nb.cells[9].outputs)
    stored = read_experiment(err_dir)
    (row,) = stored.rows
    assert row["call"] == "bad_cell"
    assert row["error"] == 1
    assert row["error_type"] == "ValueError"
    assert row["tokens_in"] == 10  # the call made before the error still counts
    assert stored.summary["total/errors"] == 1
    assert stored.summary["status"] == "finished"


def test_running_the_start_cell_again_finishes_the_open_experiment_and_starts_a_top_level_one(executed):
    """A start cell run twice leaves two top-level experiments, the first finished with a one-line note, not nested."""
    nb, exp_dir, _ = executed
    notes = [o.text for o in nb.cells[12].outputs if o.output_type == "stream" and o.name == "stderr"]
    assert len(notes) == 1 and notes[0].count("\n") == 1
    assert notes[0].startswith("tracked: rerun finished: 0 calls") and "the cell that started it ran again" in notes[0]
    first, second = sorted((p for p in exp_dir.parent.iterdir() if p.name.startswith("rerun_")), key=lambda p: p.name)
    earlier, later = read_experiment(first), read_experiment(second)
    assert earlier.summary["status"] == later.summary["status"] == "finished"
    assert earlier.rows == [] and earlier.summary.get("children") in (None, [])
    assert not later.config["system"].get("parents")  # top-level, not a child of the first
    assert [r["call"] for r in later.rows] == ["async_cell", "ask"]


def test_a_tracked_cell_may_await_at_top_level_and_shows_its_last_value(executed):
    """A `%%tracked` cell with top-level `await` runs, is one row of its awaited calls, and displays its last value."""
    nb, exp_dir, _ = executed
    assert errors(nb.cells[14]) == []
    (shown,) = [o for o in nb.cells[14].outputs if o.output_type == "execute_result"]
    assert shown.data["text/plain"] == "42"
    (later,) = [p for p in exp_dir.parent.iterdir() if p.name.startswith("rerun_") and read_experiment(p).rows]
    stored = read_experiment(later)
    cell_row, plain = stored.rows
    assert (cell_row["call"], cell_row["tokens_in"], cell_row["llm_calls"]) == ("async_cell", 14, 2)
    assert plain["call"] == "ask" and plain["tokens_in"] == 10  # the next cell's call is not inside the cell's
    cell = next(c for c in stored.calls if c["name"] == "async_cell")
    assert sorted(c["parent_id"] for c in stored.calls if c["name"] == "aask") == [cell["id"], cell["id"]]
