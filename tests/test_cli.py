"""The `tracked` command: --help, ls, compare and sync, on stores written by the tests and by the older tracker."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

import tracked
from helpers import flat, genai_cost, run_python, wandb_run_dirs
from helpers import run_tracked as run_module
from tracked import cli
from tracked.testing import read_experiment, read_wandb_run

LEGACY_DIR = "old_20251103_143022"
LEGACY_TIME = datetime(2025, 11, 3, 14, 30, 22).timestamp()


@tracked.tracked(provider="openai", model="gpt-4o-mini")
def ask(tokens_in: int, tokens_out: int, cost_usd: float) -> dict:
    """A model call that reports its usage and cost."""
    return {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost_usd}


# name, config, group, (tokens_in, tokens_out, cost) per call, accuracy per call
STORE = [
    ("e_single_a", {"strategy": "single", "model": "a", "temperature": 0.7}, "g1", (10, 2, 0.01), [1, 0]),
    ("e_debate_a", {"strategy": "debate", "model": "a", "temperature": 0.7}, "g1", (100, 20, 0.1), [1, 1]),
    ("e_debate_b", {"strategy": "debate", "model": "b", "temperature": 0.9}, "g2", (50, 5, 0.05), [0]),
]


def write_store(root: Path) -> dict[str, Path]:
    """Three experiments (W&B off), oldest first, each one tracked call per task with an accuracy."""
    paths = {}
    for name, config, group, usage, accuracies in STORE:
        with tracked.experiment(name, config=config, group=group, dir=root, wandb=False) as exp:
            for accuracy in accuracies:
                ask(*usage)
                exp.log({"accuracy": accuracy})
        paths[name] = exp.path
        time.sleep(0.01)  # distinct start times
    return paths


def write_legacy(root: Path, *, old_mtime: bool = True) -> Path:
    """The older tracker's files: a flat config.json and results.jsonl lines without `_step`, no summary.json."""
    path = root / "experiments" / LEGACY_DIR
    path.mkdir(parents=True)
    config = {
        "experiment_name": "old",
        "strategy": "single",
        "provider": "ollama",
        "model": "llama3.2:latest",
        "temperature": 0.7,
    }
    (path / "config.json").write_text(json.dumps(config))
    line = {
        "latency_s": 0.5,
        "tokens_in": 100,
        "tokens_out": 10,
        "cost_usd": 0.0,
        "output": "basket",
        "metadata": {"accuracy": 1},
    }
    (path / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for _ in range(2)))
    if old_mtime:  # files that really were written on the day their directory is named after
        for p in (path / "config.json", path / "results.jsonl", path):
            os.utime(p, (LEGACY_TIME, LEGACY_TIME))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`tracked <argv>` in this process: exit code, stdout, stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines() if line.startswith("│")
    ]


# --- --help -----------------------------------------------------------------------------------------

SUBCOMMANDS = ["demo", "ls", "compare", "report", "sync", "sweep"]


def test_the_parser_has_exactly_the_documented_subcommands():
    """The subcommands checked below are all the parser has: demo, ls, compare, report, sync, sweep."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help_exits_zero_with_usage(capsys, command):
    """`tracked [COMMAND] --help` prints that command's usage and exits 0."""
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tracked" + ("" if command is None else f" {command}"))
    if command is None:
        for name in SUBCOMMANDS:
            assert name in out
    if command == "compare":
        assert "--by" in out and "--group" in out and "--json" in out and "--csv" in out


def test_help_through_python_m():
    """`python -m tracked --help` and `python -m tracked sync --help` work in a fresh interpreter."""
    top = run_module("--help")
    assert top.returncode == 0, top.stderr
    assert "usage: tracked" in top.stdout
    assert all(name in top.stdout for name in SUBCOMMANDS)
    sync = run_module("sync", "--help")
    assert sync.returncode == 0, sync.stderr
    assert "usage: tracked sync" in sync.stdout
    assert "--offline" in sync.stdout


def test_no_subcommand_is_a_usage_error(capsys):
    """`tracked` without a subcommand exits 2 with argparse's message."""
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "required" in capsys.readouterr().err


# --- ls ----------------------------------------------------------------------------------------------


def test_ls_lists_newest_first_with_status_group_calls_and_cost(capsys, tmp_path):
    """`tracked ls` shows every experiment newest first, with its status, group, calls and cost."""
    paths = write_store(tmp_path)
    write_legacy(tmp_path)

    code, out, err = run_cli(capsys, "ls", str(tmp_path))
    assert code == 0, err
    rows = table_rows(out)
    assert [r[1] for r in rows] == ["e_debate_b", "e_debate_a", "e_single_a", "old"]
    by_name = {r[1]: r for r in rows}
    # started, name, status, group, calls, cost, dir
    assert by_name["e_debate_b"][2:] == ["finished", "g2", "1", "$0.0500", paths["e_debate_b"].name]
    assert by_name["e_debate_a"][2:] == ["finished", "g1", "2", "$0.200", paths["e_debate_a"].name]
    assert by_name["e_single_a"][2:] == ["finished", "g1", "2", "$0.0200", paths["e_single_a"].name]
    assert by_name["old"][2:] == ["legacy", "", "2", "$0.00", LEGACY_DIR]
    assert by_name["old"][0] == "2025-11-03 14:30:22"

    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    assert code == 0
    listed = json.loads(out)
    assert [e["name"] for e in listed] == ["e_debate_b", "e_debate_a", "e_single_a", "old"]
    assert [e["calls"] for e in listed] == [1, 2, 2, 2]
    assert [e["status"] for e in listed] == ["finished", "finished", "finished", "legacy"]
    assert [e["group"] for e in listed] == ["g2", "g1", "g1", None]
    assert listed[1]["cost_usd"] == pytest.approx(0.2)
    assert listed[0]["started_at"] > listed[1]["started_at"] > listed[2]["started_at"] > listed[3]["started_at"]


def test_ls_defaults_to_tracked_dir_and_reads_experiments_dir_directly(capsys, tmp_path, monkeypatch):
    """Without an argument ls reads TRACKED_DIR; given `experiments/` itself it lists the same experiments."""
    write_store(tmp_path / "store")
    monkeypatch.setenv("TRACKED_DIR", str(tmp_path / "store"))
    _, default, _ = run_cli(capsys, "ls", "--json")
    _, direct, _ = run_cli(capsys, "ls", str(tmp_path / "store" / "experiments"), "--json")
    assert [e["name"] for e in json.loads(default)] == ["e_debate_b", "e_debate_a", "e_single_a"]
    assert json.loads(direct) == json.loads(default)


def test_ls_of_an_empty_store_says_so(capsys, tmp_path):
    """ls of a directory without experiments exits 0 and says there are none."""
    (tmp_path / "empty").mkdir()
    code, out, _ = run_cli(capsys, "ls", str(tmp_path / "empty"))
    assert code == 0
    assert "no experiments" in out


@pytest.mark.parametrize("command", ["ls", "compare", "sync"])
def test_a_missing_directory_is_an_error_naming_it(capsys, tmp_path, command):
    """ls, compare and sync of a directory that does not exist exit non-zero and name the path."""
    missing = tmp_path / "no_such_store"
    code, _, err = run_cli(capsys, command, str(missing))
    assert code != 0
    assert str(missing) in flat(err)
    assert "Traceback" not in err
    assert not missing.exists()


def test_ls_and_a_missing_directory_through_python_m(tmp_path):
    """`python -m tracked ls` lists a store, and exits non-zero naming a missing directory on stderr."""
    write_store(tmp_path)
    done = run_module("ls", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name, *_ in STORE:
        assert name in done.stdout
    assert done.stdout.index("e_debate_b") < done.stdout.index("e_single_a")

    missing = tmp_path / "nowhere"
    failed = run_module("ls", str(missing), cwd=tmp_path)
    assert failed.returncode != 0
    assert str(missing) in flat(failed.stderr)
    assert "Traceback" not in failed.stderr


def test_ls_shows_a_dead_process_as_crashed_and_skips_a_torn_line(capsys, tmp_path):
    """An experiment whose process died (no summary.json) is "crashed"; its torn last line is skipped with a warning."""
    script = textwrap.dedent(
        f"""
        import os, tracked

        @tracked.tracked
        def ask():
            return {{"tokens_in": 7, "tokens_out": 3, "cost_usd": 0.02}}

        exp = tracked.experiment("crashing", config={{"strategy": "single"}}, dir={str(tmp_path)!r}, wandb=False)
        exp.start()
        ask()
        ask()
        os._exit(1)  # killed: no summary.json
        """
    )
    done = run_python(script)
    assert done.returncode == 1, done.stderr
    (path,) = (tmp_path / "experiments").iterdir()
    assert not (path / "summary.json").exists()
    meta = json.loads((path / "config.json").read_text())
    assert meta["system"]["host"] == socket.gethostname()
    with pytest.raises(ProcessLookupError):
        os.kill(meta["system"]["pid"], 0)  # the process is gone
    with open(path / "results.jsonl", "a") as f:
        f.write('{"_step": 2, "call": "ask", "latency_s": 0.1, "tok')  # the write the crash cut short

    with pytest.warns(tracked.TrackedWarning, match="torn"):
        code, out, err = run_cli(capsys, "ls", str(tmp_path))
    assert code == 0, err
    (row,) = table_rows(out)
    assert row[1:6] == ["crashing", "crashed", "", "2", "$0.0400"]

    with pytest.warns(tracked.TrackedWarning, match=r"results\.jsonl:3"):
        _, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    (listed,) = json.loads(out)
    assert (listed["status"], listed["calls"]) == ("crashed", 2)
    assert listed["cost_usd"] == pytest.approx(0.04)


def test_ls_shows_a_live_process_without_summary_as_running(capsys, tmp_path):
    """An experiment without summary.json whose process (this one) is alive is "running", not crashed."""
    exp = tracked.experiment("live", dir=tmp_path, wandb=False).start()
    try:
        ask(1, 1, 0.0)
        code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    finally:
        exp.finish()
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["status"], listed["calls"]) == ("running", 1)


# --- compare ---------------------------------------------------------------------------------------------


def test_compare_table_by_strategy_is_the_default(capsys, tmp_path):
    """`tracked compare` groups by strategy and shows runs, calls, tokens, cost and the accuracy mean."""
    write_store(tmp_path)
    code, out, err = run_cli(capsys, "compare")  # TRACKED_DIR is tmp_path
    assert code == 0, err
    assert "by strategy" in out
    header = next(line for line in out.splitlines() if "strategy" in line and "calls" in line)
    assert "accuracy" in header
    rows = {r[0]: r for r in table_rows(out)}
    assert set(rows) == {"single", "debate"}
    # strategy, runs, status, calls, errors, LLM calls, tokens in, tokens out, cost, latency mean, latency p95,
    # TTFT p50, accuracy
    assert rows["single"][1:9] == ["1", "finished", "2", "0", "2", "20", "4", "$0.0200"]
    assert rows["debate"][1:9] == ["2", "finished", "3", "0", "3", "250", "45", "$0.250"]
    assert rows["single"][11] == "-"  # no call streamed: no time to first token
    assert rows["single"][-1] == "0.500"
    assert rows["debate"][-1] == "0.667"


def test_compare_json_numbers(capsys, tmp_path):
    """`compare --json` gives per-strategy experiments, calls, tokens, cost and accuracy mean over experiments."""
    write_store(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--json")
    assert code == 0
    rows = {r["strategy"]: r for r in json.loads(out)}
    assert set(rows) == {"single", "debate"}
    debate = rows["debate"]
    assert (debate["experiments"], debate["calls"], debate["llm_calls"], debate["errors"]) == (2, 3, 3, 0)
    assert (debate["tokens_in"], debate["tokens_out"]) == (250, 45)
    assert debate["cost_usd"] == pytest.approx(0.25)
    assert debate["accuracy_mean"] == pytest.approx(2 / 3)
    single = rows["single"]
    assert (single["experiments"], single["calls"], single["tokens_in"], single["tokens_out"]) == (1, 2, 20, 4)
    assert single["cost_usd"] == pytest.approx(0.02)
    assert single["accuracy_mean"] == pytest.approx(0.5)
    assert 0 < single["latency_s_mean"] <= single["latency_s_p95"]


def test_compare_by_model(capsys, tmp_path):
    """`compare --by model` makes one row per model value."""
    write_store(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--by", "model", "--json")
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    assert set(rows) == {"a", "b"}
    assert (rows["a"]["experiments"], rows["a"]["calls"], rows["a"]["tokens_in"]) == (2, 4, 220)
    assert rows["a"]["cost_usd"] == pytest.approx(0.22)
    assert rows["a"]["accuracy_mean"] == pytest.approx(0.75)
    assert (rows["b"]["experiments"], rows["b"]["calls"], rows["b"]["tokens_in"]) == (1, 1, 50)
    assert rows["b"]["accuracy_mean"] == 0


def test_compare_by_a_numeric_key(capsys, tmp_path):
    """`compare --by temperature` buckets numeric config values."""
    write_store(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--by", "temperature", "--json")
    assert code == 0
    rows = {r["temperature"]: r for r in json.loads(out)}
    assert set(rows) == {"0.7", "0.9"}
    assert rows["0.7"]["calls"] == 4
    assert rows["0.9"]["calls"] == 1


def test_compare_within_a_group(capsys, tmp_path):
    """`compare --group g1` leaves out the experiments of other groups."""
    write_store(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--group", "g1", "--json")
    assert code == 0
    rows = {r["strategy"]: r for r in json.loads(out)}
    assert (rows["debate"]["experiments"], rows["debate"]["calls"], rows["debate"]["tokens_in"]) == (1, 2, 200)
    assert rows["debate"]["accuracy_mean"] == 1.0
    assert (rows["single"]["experiments"], rows["single"]["calls"]) == (1, 2)

    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--group", "g1")
    assert code == 0
    assert "in group g1" in out


def test_compare_unknown_group_is_an_error_listing_groups(capsys, tmp_path):
    """A group no experiment belongs to exits non-zero, naming it and the groups there are."""
    write_store(tmp_path)
    code, _, err = run_cli(capsys, "compare", str(tmp_path), "--group", "nope")
    assert code != 0
    assert "'nope'" in err
    assert "g1" in err and "g2" in err


def test_compare_metric_ranks_rows(capsys, tmp_path):
    """`--metric accuracy` puts the best mean first; `--goal minimize` the worst."""
    write_store(tmp_path)
    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--metric", "accuracy", "--json")
    assert [r["strategy"] for r in json.loads(out)] == ["debate", "single"]
    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--metric", "accuracy", "--goal", "minimize", "--json")
    assert [r["strategy"] for r in json.loads(out)] == ["single", "debate"]


def test_compare_csv(capsys, tmp_path):
    """`compare --csv` prints a header and one parseable line per strategy, with the same numbers as --json."""
    write_store(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--csv")
    assert code == 0
    records = list(csv.DictReader(io.StringIO(out)))
    assert {r["strategy"] for r in records} == {"single", "debate"}
    debate = next(r for r in records if r["strategy"] == "debate")
    assert int(debate["experiments"]) == 2
    assert int(debate["calls"]) == 3
    assert int(debate["tokens_in"]) == 250
    assert float(debate["cost_usd"]) == pytest.approx(0.25)
    assert float(debate["accuracy_mean"]) == pytest.approx(2 / 3)
    assert list(records[0]) == [
        "strategy", "experiments", "status", "calls", "errors", "llm_calls", "tokens_in", "tokens_out", "cost_usd",
        "unpriced_calls", "usage_unknown_calls", "latency_s_mean", "latency_s_p95", "ttft_s_p50", "accuracy_mean",
    ]  # fmt: skip


def test_compare_json_and_csv_are_exclusive(capsys, tmp_path):
    """--json and --csv together are refused by the parser."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["compare", str(tmp_path), "--json", "--csv"])
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_compare_by_an_unknown_key_names_it(capsys, tmp_path):
    """`--by` a key no experiment has exits non-zero with an error naming the key and the keys there are."""
    write_store(tmp_path)
    code, out, err = run_cli(capsys, "compare", str(tmp_path), "--by", "n_debaters")
    assert code != 0
    assert "'n_debaters'" in err
    assert "strategy" in err and "model" in err
    assert out == ""


def test_compare_of_an_empty_store_is_an_error(capsys, tmp_path):
    """compare with no experiments exits non-zero saying so."""
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "compare", str(tmp_path / "empty"))
    assert code != 0
    assert "no experiments" in err


# --- the older tracker's files ------------------------------------------------------------------------


def test_older_tracker_experiment_is_listed_and_compared(capsys, tmp_path):
    """An older tracker's experiment dir is listed (status legacy, its rows counted) and compare includes it."""
    write_store(tmp_path)
    write_legacy(tmp_path)

    _, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    legacy = next(e for e in json.loads(out) if e["name"] == "old")
    assert legacy["status"] == "legacy"
    assert legacy["calls"] == 2
    assert legacy["cost_usd"] == 0.0
    assert legacy["dir"].endswith(LEGACY_DIR)

    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--json")
    single = next(r for r in json.loads(out) if r["strategy"] == "single")
    assert single["experiments"] == 2
    assert single["calls"] == 4
    assert single["tokens_in"] == 220
    assert single["tokens_out"] == 24
    assert single["llm_calls"] == 4
    assert single["cost_usd"] == pytest.approx(0.02)
    assert single["accuracy_mean"] == pytest.approx(0.5)  # the new experiment's
    assert single["metadata/accuracy_mean"] == 1.0  # the older tracker's metadata

    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--by", "model", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["llama3.2:latest"]["calls"] == 2
    assert rows["llama3.2:latest"]["latency_s_mean"] == pytest.approx(0.5)


def test_older_tracker_experiment_start_time_comes_from_its_directory_name(capsys, tmp_path):
    """ls shows an older tracker's experiment as started at the time in its directory name, and sorts it by that."""
    write_store(tmp_path)
    write_legacy(tmp_path, old_mtime=False)  # copied today: files and directory are new
    _, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    listed = json.loads(out)
    assert listed[-1]["name"] == "old"
    assert listed[-1]["started_at"] == pytest.approx(LEGACY_TIME)


# --- text from the user's experiments is shown as written -------------------------------------------


def test_ls_shows_names_with_brackets_verbatim(capsys, tmp_path):
    """An experiment named with square brackets appears in the ls table with its brackets."""
    with tracked.experiment("sweep[lr]", group="[bold]ablation", dir=tmp_path, wandb=False):
        pass
    code, out, _ = run_cli(capsys, "ls", str(tmp_path))
    assert code == 0
    assert table_rows(out)[0][1:4] == ["sweep[lr]", "finished", "[bold]ablation"]


def test_compare_by_a_prompt_template_with_brackets(capsys, tmp_path):
    """compare --by a config value holding a Llama-2 prompt template prints it instead of crashing."""
    template = "[INST] {question} [/INST]"
    with tracked.experiment("templated", config={"template": template}, dir=tmp_path, wandb=False):
        ask(1, 1, 0.0)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--by", "template")
    assert code == 0
    assert template in out


# --- sync --------------------------------------------------------------------------------------------------


def test_sync_replays_an_experiment_into_an_offline_wandb_run(capsys, tmp_path, monkeypatch):
    """A W&B-off experiment is replayed offline (no credentials): name, group, tags, notes, config, rows, totals."""
    with tracked.experiment(
        "replayed",
        project="sync-project",
        config={"strategy": "debate", "model": "llama3.2:3b", "temperature": 0.5},
        group="sync-group",
        tags=["strategy:debate", "benchmark:tombench"],
        notes="Does debate help?",
        dir=tmp_path,
        wandb=False,
    ) as exp:
        for usage, accuracy in [((10, 2, 0.01), 1), ((30, 4, 0.03), 0), ((20, 3, 0.02), 1)]:
            ask(*usage)
            exp.log({"accuracy": accuracy})
    local = read_experiment(exp.path)
    assert wandb_run_dirs(tmp_path) == []

    monkeypatch.delenv("WANDB_MODE")
    code, out, err = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0, out + err
    assert "offline" in out
    state = json.loads((exp.path / "wandb_sync.json").read_text())
    offline_dir = Path(state["offline_dir"])
    assert offline_dir.parent == tmp_path / "wandb"
    assert wandb_run_dirs(tmp_path) == [offline_dir]

    run = read_wandb_run(offline_dir)
    assert run.id == state["run_id"]
    assert (run.name, run.project, run.group, run.notes) == (
        "replayed",
        "sync-project",
        "sync-group",
        "Does debate help?",
    )
    assert sorted(run.tags) == ["benchmark:tombench", "strategy:debate"]
    assert {k: run.config[k] for k in ("strategy", "model", "temperature")} == local.config["config"]
    assert run.config["_tracked"]["version"] == tracked.__version__
    assert local.config["system"]["host"] == socket.gethostname()
    assert len(run.history) == 3
    for row, stored in zip(run.rows(), local.rows, strict=True):
        for key in ("call", "tokens_in", "tokens_out", "cost_usd", "llm_calls", "accuracy"):
            assert row[key] == stored[key]
    assert [row["accuracy"] for row in run.history] == [1, 0, 1]
    for key in (
        "total/calls",
        "total/tokens_in",
        "total/tokens_out",
        "total/cost_usd",
        "total/llm_calls",
        "accuracy/mean",
    ):
        assert run.summary[key] == pytest.approx(local.summary[key])
    assert run.summary["total/calls"] == 3
    assert run.summary["total/tokens_in"] == 60
    assert run.summary["tracked/status"] == "finished"
    assert run.exit_code == 0

    # Twice: skipped, no second run.
    code, out, _ = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0
    assert "skip" in out
    assert wandb_run_dirs(tmp_path) == [offline_dir]
    assert json.loads((exp.path / "wandb_sync.json").read_text()) == state


def test_sync_replays_an_older_tracker_experiment_into_hidden_layer(capsys, tmp_path, monkeypatch):
    """An older tracker's experiment syncs to project hidden-layer with its flat config, rows and recomputed totals."""
    path = write_legacy(tmp_path)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    code, out, err = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0, out + err
    state = json.loads((path / "wandb_sync.json").read_text())
    run = read_wandb_run(state["offline_dir"])
    assert run.project == "hidden-layer"
    assert run.name == "old"
    assert run.config == {"strategy": "single", "provider": "ollama", "model": "llama3.2:latest", "temperature": 0.7}
    assert len(run.history) == 2
    assert all(row["output"] == "basket" and row["metadata/accuracy"] == 1 for row in run.rows())
    assert run.summary["total/calls"] == 2
    assert run.summary["total/tokens_in"] == 200
    assert run.summary["total/tokens_out"] == 20
    assert run.summary["metadata/accuracy/mean"] == 1.0
    assert run.summary["tracked/status"] == "legacy"
    assert run.exit_code == 0


def test_sync_skips_an_experiment_that_has_an_offline_run(capsys, tmp_path, monkeypatch):
    """Offline, an experiment that already wrote a W&B offline run is skipped with a message naming `wandb sync`."""
    with tracked.experiment("had_wandb", config={"strategy": "single"}, dir=tmp_path) as exp:  # WANDB_MODE=offline
        ask(1, 1, 0.001)
    run_dir = exp.final_summary["wandb"]["dir"]
    before = wandb_run_dirs(tmp_path)
    assert [str(p) for p in before] == [run_dir]

    monkeypatch.delenv("WANDB_MODE")
    code, out, _ = run_cli(capsys, "sync", str(exp.path))
    assert code == 0
    text = flat(out)
    assert f"skip {exp.path.name}" in text
    assert f"wandb sync {run_dir}" in text
    assert wandb_run_dirs(tmp_path) == before
    assert not (exp.path / "wandb_sync.json").exists()


def test_sync_refuses_when_wandb_is_disabled(capsys, tmp_path, monkeypatch):
    """With WANDB_MODE=disabled sync exits non-zero and writes no run."""
    write_legacy(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code, _, err = run_cli(capsys, "sync", str(tmp_path))
    assert code != 0
    assert "WANDB_MODE=disabled" in err
    assert wandb_run_dirs(tmp_path) == []


def test_sync_of_a_directory_without_experiments_is_an_error(capsys, tmp_path):
    """sync of an existing directory with no experiments exits non-zero saying so."""
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "sync", str(tmp_path / "empty"))
    assert code != 0
    assert "no experiments" in err


def test_sync_online_whose_init_fails_is_a_failure_not_an_offline_run(capsys, tmp_path, monkeypatch):
    """An online sync whose `wandb.init` fails is reported as failed and retried next time, never written offline."""
    import wandb

    with tracked.experiment("unreached", dir=tmp_path, wandb=False) as exp:
        ask(10, 2, 0.01)
    real_init = wandb.init
    modes = []

    def init(*args, **kwargs):
        modes.append(kwargs.get("mode"))
        if kwargs.get("mode") == "online":
            raise wandb.errors.CommError("connection refused")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    for _ in range(2):
        code, out, err = run_cli(capsys, "sync", str(tmp_path))
        assert code == 1, out + err
        assert f"failed {exp.path.name}: CommError: connection refused" in out
        assert not (exp.path / "wandb_sync.json").exists()
    assert modes == ["online", "online"]


@tracked.tracked(provider="openai")
def ask_model(model: str, tokens_in: int, tokens_out: int) -> dict:
    """A model call that reports its usage but not its cost: priced from genai-prices, if it knows the model."""
    return {"tokens_in": tokens_in, "tokens_out": tokens_out, "model": model}


def test_unknown_cost_is_never_shown_as_zero(capsys, tmp_path):
    """`ls` and `compare` show a cost that leaves calls out as "$x + N unpriced", and no known cost as unknown."""
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        with tracked.experiment("mixed", dir=tmp_path, wandb=False, config={"strategy": "mixed"}):
            ask_model("gpt-4o-mini", 1000, 100)
            ask_model("no-such-model-xyz", 1000, 100)
        with tracked.experiment("unknown", dir=tmp_path, wandb=False, config={"strategy": "unknown"}) as exp:
            ask_model("no-such-model-xyz", 10, 10)
            ask_model("no-such-model-xyz", 10, 10)
    assert exp.final_summary["total/cost_complete"] is False
    assert exp.final_summary["total/cost_usd"] is None  # no call priced: unknown, not 0
    assert exp.final_summary["cost_usd/mean"] is None  # per top-level call: unknown too
    assert exp.final_summary["model/no-such-model-xyz/cost_usd"] is None
    priced = genai_cost("openai", "gpt-4o-mini", 1000, 100)
    assert priced == pytest.approx(0.00021)
    code, out, _ = run_cli(capsys, "ls", str(tmp_path))
    assert code == 0
    assert "$0.000210 + 1 unpriced" in flat(out)
    assert "unknown (2 unpriced)" in flat(out)
    assert "$0.00 " not in flat(out) + " "
    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--by", "strategy")
    assert code == 0
    assert "$0.000210 + 1 unpriced" in flat(out)
    assert "unknown (2 unpriced)" in flat(out)
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    listed = {e["name"]: e for e in json.loads(out)}
    assert listed["unknown"]["unpriced_calls"] == 2 and listed["mixed"]["unpriced_calls"] == 1


def test_compare_columns_are_the_metrics_the_summary_aggregates(capsys, tmp_path):
    """`compare` has a column for a boolean metric (as 0/1, like the summary) and none for an identifier."""
    with tracked.experiment("cols", dir=tmp_path, wandb=False, config={"strategy": "s"}) as exp:
        for i in range(4):
            exp.log({"ok": i % 2 == 0, "task_id": 10 + i})
    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--json")
    (row,) = json.loads(out)
    assert row["ok_mean"] == exp.final_summary["ok/mean"] == 0.5
    assert "task_id_mean" not in row and "task_id/mean" not in exp.final_summary


def test_sync_says_nothing_to_do_once_the_offline_run_is_uploaded(capsys, tmp_path, monkeypatch):
    """Offline, an experiment whose W&B run `wandb sync` has uploaded (its `.synced` marker) is skipped, and
    sync says "nothing to do" rather than that it wrote runs."""
    with tracked.experiment("uploaded", config={"strategy": "single"}, dir=tmp_path) as exp:
        ask(1, 1, 0.001)
    run_dir = Path(exp.final_summary["wandb"]["dir"])
    (wandb_file,) = run_dir.glob("*.wandb")
    monkeypatch.delenv("WANDB_MODE")
    code, out, _ = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0
    assert out.splitlines() == [
        f"skip {exp.path.name}: already has an offline W&B run; upload it with: wandb sync {run_dir}",
        "nothing new to write; 1 offline W&B run not uploaded yet: once logged in (wandb login), upload with: "
        f"wandb sync {run_dir}",
    ]
    wandb_file.with_name(wandb_file.name + ".synced").write_text("")  # what `wandb sync` leaves once uploaded
    code, out, _ = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0
    assert out.splitlines() == [
        f"skip {exp.path.name}: its W&B run is uploaded ({run_dir})",
        "nothing to do: every experiment is synced or has no rows of its own",
    ]


def test_sync_prints_long_commands_on_one_line(capsys, tmp_path, monkeypatch):
    """On an 80-column terminal, the upload command is printed on one line however long its path."""
    from rich.console import Console

    deep = tmp_path / ("a_rather_long_directory_name_" * 4) / "store"
    with tracked.experiment("long", config={"strategy": "single"}, dir=deep, wandb=False) as exp:
        ask(1, 1, 0.001)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setattr(cli, "_console", lambda stderr=False: Console(width=80, stderr=stderr))
    code, out, _ = run_cli(capsys, "sync", str(deep))
    assert code == 0
    run_dir = json.loads((exp.path / "wandb_sync.json").read_text())["offline_dir"]
    assert out.splitlines()[-1] == (
        f"1 offline W&B run written; once logged in (wandb login), upload with: wandb sync {run_dir}"
    )


def test_crashed_parent_of_only_children_is_listed_with_their_totals_and_gets_no_wandb_run(capsys, tmp_path):
    """A parent killed after its children finished: `ls` shows it crashed with their calls and cost, and
    `tracked sync` makes runs for the children only."""
    script = f"""
        import os, tracked

        @tracked.tracked
        def ask():
            return {{"tokens_in": 7, "tokens_out": 3, "cost_usd": 0.02}}

        tracked.experiment("parent", dir={str(tmp_path)!r}, wandb=False).start()
        for name, n in (("child_a", 20), ("child_b", 5)):
            with tracked.experiment(name, config={{"strategy": name}}):
                for _ in range(n):
                    ask()
        os._exit(1)  # killed: the parent has no summary.json
        """
    done = run_python(script)
    assert done.returncode == 1, done.stderr
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    listed = {e["name"]: e for e in json.loads(out)}
    assert [(listed[n]["status"], listed[n]["calls"]) for n in ("parent", "child_a", "child_b")] == [
        ("crashed", 25), ("finished", 20), ("finished", 5),
    ]  # fmt: skip
    assert listed["parent"]["cost_usd"] == pytest.approx(0.5)
    code, out, _ = run_cli(capsys, "ls", str(tmp_path))
    parent_row = next(r for r in table_rows(out) if r[1] == "parent")
    assert parent_row[2:6] == ["crashed", "", "25", "$0.500"]

    code, out, _ = run_cli(capsys, "sync", str(tmp_path))
    assert code == 0
    (parent,) = (tmp_path / "experiments").glob("parent_*")
    assert f"skip {parent.name}: no rows of its own (its children have their own runs)" in out.splitlines()
    runs = [read_wandb_run(d) for d in wandb_run_dirs(tmp_path)]
    assert sorted(r.name for r in runs) == ["child_a", "child_b"]
    assert not (parent / "wandb_sync.json").exists()


def test_end_line_without_a_local_store_names_a_wandb_sync_command_that_exists(capsys, tmp_path):
    """With the local store off, the end line's upload command is `wandb sync <wandb dir>` (wandb 0.31 has no
    `--sync-all`), and that directory holds the run."""
    with tracked.experiment("no_store", local=False) as exp:  # W&B offline, into tmp_path/wandb
        ask(1, 1, 0.001)
    err = capsys.readouterr().err
    assert f"upload with `wandb sync {tmp_path / 'wandb'}`" in err
    assert Path(exp.final_summary["wandb"]["dir"]).parent == tmp_path / "wandb"


def test_compare_leaves_out_failed_and_crashed_experiments_unless_all(capsys, tmp_path):
    """compare ranks only experiments that ran to their end, says what it left out, and with --all shows
    them with their status and errors."""
    with tracked.experiment("ok", config={"strategy": "debate"}, dir=tmp_path, wandb=False) as exp:
        ask(10, 2, 0.01)
        exp.log({"accuracy": 1})
    with pytest.raises(RuntimeError), tracked.experiment("boom", config={"strategy": "debate"}, dir=tmp_path,
                                                        wandb=False) as exp:  # fmt: skip
        ask(10, 2, 0.01)
        exp.log({"accuracy": 0})
        raise RuntimeError("the strategy broke")
    script = f"""
        import os, tracked

        @tracked.tracked
        def fails():
            raise ValueError("no answer")

        with tracked.experiment("killed", config={{"strategy": "debate"}}, dir={str(tmp_path)!r}, wandb=False) as exp:
            try:
                fails()
            except ValueError:
                pass
            exp.log({{"accuracy": 0}})
            os._exit(1)
        """
    assert run_python(script).returncode == 1

    code, out, err = run_cli(capsys, "compare", str(tmp_path))
    assert code == 0, err
    (row,) = table_rows(out)
    assert row[:5] == ["debate", "1", "finished", "1", "0"]  # strategy, runs, status, calls, errors
    assert row[-1] == "1.000"
    assert "left out: 1 crashed, 1 failed (--all includes them)" in out.splitlines()

    code, out, err = run_cli(capsys, "compare", str(tmp_path), "--json")
    assert code == 0
    assert [r["experiments"] for r in json.loads(out)] == [1]
    assert err.strip() == "left out: 1 crashed, 1 failed (--all includes them)"

    code, out, _ = run_cli(capsys, "compare", str(tmp_path), "--all")
    assert code == 0
    (row,) = table_rows(out)
    assert row[:5] == ["debate", "3", "1 crashed, 1 failed, 1 finished", "3", "1"]
    assert row[-1] == "0.333"
    assert "left out" not in out


def test_compare_shows_costs_with_three_significant_digits(capsys, tmp_path):
    """Costs in one column read alike: $0.00288, $0.0308, $0.00 for a free local model, cents from a dollar."""
    for strategy, cost in [("a", 0.00288), ("b", 0.0308), ("c", 0.0), ("d", 12.3456)]:
        with tracked.experiment(strategy, config={"strategy": strategy}, dir=tmp_path, wandb=False):
            ask(10, 2, cost)
    code, out, _ = run_cli(capsys, "compare", str(tmp_path))
    assert code == 0
    assert {r[0]: r[8] for r in table_rows(out)} == {"a": "$0.00288", "b": "$0.0308", "c": "$0.00", "d": "$12.35"}


def test_compare_shows_the_median_time_to_first_token(capsys, tmp_path, server):
    """compare's TTFT p50 column is the summary's `ttft_s/p50` of streamed calls, in milliseconds."""
    client = server.openai()
    tracked.instrument(client)
    try:
        with tracked.experiment("streamed", config={"strategy": "stream"}, dir=tmp_path, wandb=False) as exp:
            for _ in range(3):
                for _chunk in client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
                ):
                    pass
    finally:
        tracked.uninstrument(client)
    ttft = exp.final_summary["ttft_s/p50"]
    code, out, _ = run_cli(capsys, "compare", str(tmp_path))
    assert code == 0
    (row,) = table_rows(out)
    assert row[11] == f"{ttft * 1000:.1f} ms"
    _, out, _ = run_cli(capsys, "compare", str(tmp_path), "--json")
    assert json.loads(out)[0]["ttft_s_p50"] == pytest.approx(ttft)


def test_the_time_to_first_token_is_that_of_the_llm_calls_even_inside_a_strategy(capsys, tmp_path, server):
    """Streams read inside a `@tracked` strategy give `ttft_s/p50` (the LLM calls' median), which compare shows."""
    client = server.openai()
    tracked.instrument(client)

    @tracked.tracked(name="strategy")
    def strategy() -> None:
        for _chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass

    try:
        with tracked.experiment("inside", config={"strategy": "s"}, dir=tmp_path, wandb=False) as exp:
            for _ in range(3):
                strategy()
    finally:
        tracked.uninstrument(client)
    firsts = sorted(c["ttft_s"] for c in read_experiment(exp.dir).calls if c["name"] != "strategy")
    assert len(firsts) == 3 and exp.final_summary["ttft_s/p50"] == pytest.approx(firsts[1])
    code, out, _ = run_cli(capsys, "compare", str(tmp_path))
    assert code == 0
    (row,) = table_rows(out)
    assert row[11] == f"{firsts[1] * 1000:.1f} ms"
