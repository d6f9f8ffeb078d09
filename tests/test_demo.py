"""`python -m tracked demo --tasks 3`, run once in a fresh interpreter, and everything it leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import child_env
from tracked.testing import read_experiment, read_wandb_run

pytestmark = pytest.mark.slow  # one `python -m tracked demo` run, shared by every test here

N_TASKS = 3
STRATEGIES = ("single", "debate", "self_consistency")
# LLM calls per task: one; 3 debaters x 2 rounds + 1 judge; 5 samples.
LLM_CALLS_PER_TASK = {"single": 1, "debate": 3 * 2 + 1, "self_consistency": 5}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's completed process, its output directory and how long it took (run once for this module)."""
    root = tmp_path_factory.mktemp("demo")
    out = root / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKED_"))}
    env.update(
        WANDB_SILENT="true",
        WANDB_CONFIG_DIR=str(root / ".wandb-config"),
        WANDB_CACHE_DIR=str(root / ".wandb-cache"),
        WANDB_DATA_DIR=str(root / ".wandb-data"),
        NETRC=str(root / ".netrc-none"),  # no credentials: W&B writes offline
        PYTHONPATH=child_env()["PYTHONPATH"],  # the tracked under test, from any directory
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tracked", "demo", "--tasks", str(N_TASKS), "--dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - start
    return done, out, elapsed


def experiments(out: Path) -> dict[str, object]:
    """The demo's experiments in the local store, by name."""
    found = [read_experiment(p) for p in sorted((out / "experiments").iterdir())]
    return {e.config["name"]: e for e in found}


def test_demo_exits_zero_quickly(demo):
    """The demo with 3 tasks exits 0 well within a minute, without a traceback."""
    done, _, elapsed = demo
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 60


def test_demo_prints_the_comparison_and_the_sync_command(demo):
    """stdout has the comparison table (three strategies, accuracy per strategy) and the command to upload the runs."""
    done, out, _ = demo
    text = done.stdout
    assert f"strategy comparison: {N_TASKS} tasks" in text
    header = next(line for line in text.splitlines() if "strategy" in line and "accuracy" in line and "calls" in line)
    assert header.index("strategy") < header.index("accuracy")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.startswith("│") and cells[0] in STRATEGIES:
            rows[cells[0]] = cells
    assert set(rows) == set(STRATEGIES)
    stored = experiments(out)
    for strategy in STRATEGIES:
        summary = stored[f"demo_{strategy}"].summary
        assert rows[strategy][-1] == f"{summary['accuracy/mean']:.3f}"
        assert rows[strategy][2] == "finished"
        assert rows[strategy][3] == str(N_TASKS)  # calls
        assert rows[strategy][4] == "0"  # errors
        assert rows[strategy][5] == str(N_TASKS * LLM_CALLS_PER_TASK[strategy])
    flat = " ".join(text.split())
    assert f"wandb sync {out.resolve() / 'wandb'}/offline-run-*" in flat
    assert f"tracked sync {out}" in flat
    assert f"local store: {(out / 'experiments').resolve()}" in flat


def test_demo_writes_a_parent_and_three_finished_children(demo):
    """The local store holds the parent and one child per strategy, all finished, children grouped under the parent."""
    _, out, _ = demo
    stored = experiments(out)
    assert set(stored) == {"demo_strategy_comparison", *(f"demo_{s}" for s in STRATEGIES)}
    assert all(e.summary["status"] == "finished" for e in stored.values())
    parent = stored["demo_strategy_comparison"]
    group = parent.config["group"]
    assert group.startswith("demo_")
    assert [c["name"] for c in parent.summary["children"]] == [f"demo_{s}" for s in STRATEGIES]
    for strategy in STRATEGIES:
        child = stored[f"demo_{strategy}"]
        assert child.config["group"] == group
        assert child.config["parent"] == parent.path.name
        assert child.config["config"]["strategy"] == strategy
        assert child.config["project"] == "tracked-demo"
    assert parent.summary["total/calls"] == N_TASKS * len(STRATEGIES)


def test_demo_children_totals(demo):
    """Each child has one row per task; LLM calls are 3, 21 and 15; only debate (a priced judge) costs money."""
    _, out, _ = demo
    stored = experiments(out)
    for strategy in STRATEGIES:
        child = stored[f"demo_{strategy}"]
        assert child.summary["total/calls"] == N_TASKS
        assert child.summary["total/llm_calls"] == N_TASKS * LLM_CALLS_PER_TASK[strategy]
        assert child.summary["total/errors"] == 0
        assert child.summary["total/tokens_in"] > 0 and child.summary["total/tokens_out"] > 0
        assert len(child.rows) == N_TASKS
        assert all(row["call"] == "run_strategy" and row["accuracy"] in (0.0, 1.0) for row in child.rows)
        assert child.summary["accuracy/mean"] == pytest.approx(sum(r["accuracy"] for r in child.rows) / N_TASKS)
    assert stored["demo_single"].summary["total/llm_calls"] == 3
    assert stored["demo_debate"].summary["total/llm_calls"] == 21
    assert stored["demo_self_consistency"].summary["total/llm_calls"] == 15
    assert stored["demo_debate"].summary["total/cost_usd"] > 0
    assert stored["demo_single"].summary["total/cost_usd"] == 0
    assert stored["demo_self_consistency"].summary["total/cost_usd"] == 0
    parent = stored["demo_strategy_comparison"]
    assert parent.summary["total/llm_calls"] == 39
    assert parent.summary["total/cost_usd"] == pytest.approx(stored["demo_debate"].summary["total/cost_usd"])


def test_demo_writes_three_offline_wandb_runs_in_the_parents_group(demo):
    """<dir>/wandb holds three offline runs, one per child, in the parent's group, each with 3 rows with accuracy."""
    _, out, _ = demo
    stored = experiments(out)
    parent = stored["demo_strategy_comparison"]
    run_dirs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 3
    runs = {r.name: r for r in (read_wandb_run(d) for d in run_dirs)}
    assert set(runs) == {f"demo_{s}" for s in STRATEGIES}
    ids = {c["name"]: c.get("wandb_id") for c in parent.summary["children"]}
    for strategy in STRATEGIES:
        run = runs[f"demo_{strategy}"]
        child = stored[f"demo_{strategy}"]
        assert run.group == parent.config["group"]
        assert run.project == "tracked-demo"
        assert run.id == ids[run.name]
        assert run.config["strategy"] == strategy
        assert len(run.history) == N_TASKS
        assert [row["accuracy"] for row in run.history] == [row["accuracy"] for row in child.rows]
        assert run.summary["total/calls"] == N_TASKS
        assert run.summary["total/llm_calls"] == N_TASKS * LLM_CALLS_PER_TASK[strategy]
        assert run.summary["accuracy/mean"] == pytest.approx(child.summary["accuracy/mean"])
        assert "accuracy" not in run.summary  # not the last task's 0 or 1
        assert run.exit_code == 0
    # Sorted by the runs table's accuracy/mean column, the strategies rank as their means do.
    ranked = sorted(STRATEGIES, key=lambda s: runs[f"demo_{s}"].summary["accuracy/mean"], reverse=True)
    assert ranked == sorted(STRATEGIES, key=lambda s: stored[f"demo_{s}"].summary["accuracy/mean"], reverse=True)


def test_demo_says_its_runs_are_offline_and_prints_no_banners(demo):
    """Without credentials the demo says its W&B runs are offline and how to upload them; wandb prints nothing."""
    done, _, _ = demo
    assert "offline" in done.stdout and "wandb sync" in done.stdout
    assert "wandb:" not in done.stderr and "tracked: demo" not in done.stderr  # the demo's own footer says it


def test_demo_ends_with_its_report_next_to_its_runs(demo):
    """The demo's last line names the report it wrote beside experiments/ and wandb/: one strategy per bar."""
    done, out, _ = demo
    report = out / "report.html"
    assert done.stdout.strip().splitlines()[-1].strip() == f"report: {report.resolve()}"
    page = report.read_text(encoding="utf-8")
    assert page.count('class="tracked-figure"') == 5
    for strategy in STRATEGIES:
        assert f"{strategy}: accuracy" in page  # its columns in the per-task table
