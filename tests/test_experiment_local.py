"""The local store of an experiment: `experiments/<name>_<YYYYmmdd_HHMMSS>/` with config.json,
results.jsonl, calls.jsonl, summary.json and files/. W&B is off (`wandb=False`) in these tests."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracked
from tracked import _store, _values
from tracked.testing import read_experiment
from workloads import llm, work

DIR_NAME = re.compile(r"^(?P<name>[A-Za-z0-9._\-]+)_(?P<stamp>\d{8}_\d{6})(_\d+)?$")


@tracked.tracked(name="step")
def step(n: int) -> int:
    return llm(n)


@tracked.tracked(name="strategy")
def strategy(n: int) -> int:
    return step(n) + llm(n + 1)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- where it goes ------------------------------------------------------------------------------


def test_store_is_a_timestamped_directory_under_dir(tmp_path):
    """The store is `experiments/<name>_<YYYYmmdd_HHMMSS>/` under `dir`, with config, results, calls, summary."""
    target = tmp_path / "elsewhere"
    before = datetime.now().replace(microsecond=0)
    with tracked.experiment("layout", dir=target, wandb=False) as exp:
        work(1)
    after = datetime.now()
    assert exp.path is not None and exp.dir == exp.path
    assert exp.path.parent == target / "experiments"
    match = DIR_NAME.match(exp.path.name)
    assert match and match["name"] == "layout"
    stamp = datetime.strptime(match["stamp"], "%Y%m%d_%H%M%S")
    assert before <= stamp <= after
    assert {p.name for p in exp.path.iterdir()} >= {"config.json", "results.jsonl", "calls.jsonl", "summary.json"}
    assert not (tmp_path / "experiments").exists()


def test_store_defaults_to_tracked_dir(monkeypatch, tmp_path):
    """Without `dir`, the store goes under TRACKED_DIR."""
    root = tmp_path / "from_env"
    monkeypatch.setenv("TRACKED_DIR", str(root))
    with tracked.experiment("env_dir", wandb=False) as exp:
        pass
    assert exp.path.parent == root / "experiments"


def test_store_falls_back_to_the_working_directory(monkeypatch, tmp_path):
    """Without `dir` and TRACKED_DIR, the store goes under the current working directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.delenv("TRACKED_DIR")
    monkeypatch.chdir(cwd)
    with tracked.experiment("cwd_dir", wandb=False) as exp:
        pass
    assert exp.path.parent == cwd / "experiments"


@pytest.mark.parametrize(
    "name",
    ["a/b c", "../../escape", "runs/2024/../x", "déjà vu ✓", "日本語", "tab\tand\nnewline", "..", "ends with slash/"],
)
def test_unsafe_names_become_safe_directory_names(tmp_path, name):
    """Names with slashes, spaces, dots or unicode give a safe directory directly under `experiments/`."""
    with tracked.experiment(name, wandb=False) as exp:
        work(1)
    assert exp.path.parent == tmp_path / "experiments"
    assert DIR_NAME.match(exp.path.name), exp.path.name
    assert exp.path.resolve().parent == (tmp_path / "experiments").resolve()
    assert read_experiment(exp.path).config["name"] == name  # the real name is kept in config.json
    assert not any(p.is_dir() and p.name != "experiments" and not p.name.startswith(".") for p in tmp_path.iterdir())


def test_same_name_in_the_same_second_does_not_collide(monkeypatch, tmp_path):
    """Experiments with the same name started in the same second get different directories."""

    class FrozenDatetime(datetime):
        @classmethod
        def fromtimestamp(cls, t, tz=None):
            return datetime(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(_store, "datetime", FrozenDatetime)
    exps = []
    for i in range(3):
        with tracked.experiment("twin", wandb=False) as exp:
            work(i + 1)
        exps.append(exp)
    names = [e.path.name for e in exps]
    assert names == ["twin_20240506_070809", "twin_20240506_070809_2", "twin_20240506_070809_3"]
    assert [[r["tokens_in"] for r in read_experiment(e.path).rows] for e in exps] == [[1], [2], [3]]


def test_same_name_started_concurrently_in_the_same_second_does_not_collide(monkeypatch, tmp_path):
    """Experiments with the same name opened at once from several threads each get their own directory."""

    class FrozenDatetime(datetime):
        @classmethod
        def fromtimestamp(cls, t, tz=None):
            return datetime(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(_store, "datetime", FrozenDatetime)
    barrier = threading.Barrier(4, timeout=30)
    paths: list[Path] = []

    def open_one(i: int) -> None:
        barrier.wait()
        exp = tracked.Experiment("racer", wandb=False)
        with exp:
            pass
        paths.append(exp.path)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 4 and len(set(paths)) == 4


def test_local_false_writes_nothing(tmp_path):
    """`local=False` writes no store at all, and `exp.path` is None."""
    with tracked.experiment("nothing", local=False, wandb=False) as exp:
        work(1)
        exp.log({"accuracy": 1.0})
    assert exp.path is None
    assert not (tmp_path / "experiments").exists()
    assert exp.final_summary["total/calls"] == 1
    assert exp.final_summary["sinks"]["local"] == "off"


# --- the files -----------------------------------------------------------------------------------


def test_config_json_holds_the_experiment_settings_and_system_info(tmp_path):
    """config.json has the name, project, group, job type, tags, notes, config and system info."""
    with tracked.experiment(
        "configured",
        project="p",
        config={"strategy": "debate", "nested": {"t": 0.5}},
        tags=["a", "b"],
        group="g",
        job_type="eval",
        notes="n",
        wandb=False,
    ) as exp:
        on_disk = json.loads((exp.path / "config.json").read_text())  # written at start already
        assert on_disk["config"] == {"strategy": "debate", "nested": {"t": 0.5}}
    config = read_experiment(exp.path).config
    assert config["name"] == "configured"
    assert config["project"] == "p"
    assert config["group"] == "g"
    assert config["job_type"] == "eval"
    assert config["tags"] == ["a", "b"]
    assert config["notes"] == "n"
    assert config["config"] == {"strategy": "debate", "nested": {"t": 0.5}}
    assert set(config["system"]) >= {"host", "python", "platform", "versions"}
    assert set(config["system"]["versions"]) >= {"tracked", "wandb", "genai-prices"}


def test_notes_and_tags_changed_while_running_are_in_config_json():
    """`exp.notes` and `exp.tags` changed while running are what config.json holds at the end."""
    with tracked.experiment("relabel", notes="old", tags=["old"], wandb=False) as exp:
        work(1)
        exp.notes = "new"
        exp.tags = ["x", "y", "x"]
        assert exp.notes == "new" and exp.tags == ("x", "y")
    config = read_experiment(exp.path).config
    assert config["notes"] == "new"
    assert config["tags"] == ["x", "y"]


def test_row_is_on_disk_before_the_call_returns_and_joined_metrics_follow_with_its_step():
    """A call's row is in results.jsonl when the call returns; later metrics are appended with its `_step`."""
    with tracked.experiment("durable", wandb=False) as exp:
        results = exp.path / "results.jsonl"
        work(3, tokens_out=5, cost=0.5)
        on_disk = lines(results)
        assert len(on_disk) == 1
        assert on_disk[0]["_step"] == 0
        assert on_disk[0]["call"] == "work" and on_disk[0]["tokens_in"] == 3 and on_disk[0]["tokens_out"] == 5
        exp.log({"accuracy": 0.75})
        on_disk = lines(results)
        assert len(on_disk) == 2
        assert on_disk[1] == {"_step": 0, "_join": True, "accuracy": 0.75}
        work(4)
        assert [line["_step"] for line in lines(results)] == [0, 0, 1]
        exp.log({"note": "standalone after call joins call 1"})
        exp.finish()
    rows = read_experiment(exp.path).rows
    assert [(r["_step"], r["tokens_in"]) for r in rows] == [(0, 3), (1, 4)]
    assert rows[0]["accuracy"] == 0.75
    assert rows[1]["note"] == "standalone after call joins call 1"


def test_own_row_is_on_disk_when_log_returns():
    """A metric row of its own is in results.jsonl as soon as `exp.log()` returns."""
    with tracked.experiment("own_row", wandb=False) as exp:
        exp.log({"warmup": 1.5})
        assert lines(exp.path / "results.jsonl") == [
            {"_step": 0, "_timestamp": pytest.approx(exp._started_at, abs=60), "warmup": 1.5}
        ]


def test_calls_jsonl_has_every_call_with_parent_ids():
    """calls.jsonl has a record per call, nested ones too, each pointing to its parent's id."""
    with tracked.experiment("calls_file", wandb=False) as exp:
        strategy(1)
        work(9)
    calls = read_experiment(exp.path).calls
    assert sorted(c["name"] for c in calls) == ["llm", "llm", "step", "strategy", "work"]
    by_id = {c["id"]: c for c in calls}
    assert len(by_id) == 5
    (top,) = [c for c in calls if c["name"] == "strategy"]
    (mid,) = [c for c in calls if c["name"] == "step"]
    assert top["parent_id"] is None
    assert mid["parent_id"] == top["id"]
    llm_parents = sorted(by_id[c["parent_id"]]["name"] for c in calls if c["name"] == "llm")
    assert llm_parents == ["step", "strategy"]
    assert [c["parent_id"] for c in calls if c["name"] == "work"] == [None]
    assert top["tokens_in"] == 3 and top["llm_calls"] == 2


def test_summary_json_has_totals_and_status():
    """summary.json has the status, the totals and the user's summary values when the experiment finishes."""
    with tracked.experiment("summarised", wandb=False) as exp:
        work(2, tokens_out=3, cost=0.25)
        exp.log({"accuracy": 1.0})
        work(4, tokens_out=5, cost=0.5)
        exp.log({"accuracy": 0.0})
        exp.summary["winner"] = "debate"
        assert not (exp.path / "summary.json").exists()
    summary = read_experiment(exp.path).summary
    assert summary["status"] == "finished"
    assert summary["name"] == "summarised"
    assert summary["total/calls"] == 2
    assert summary["total/errors"] == 0
    assert summary["total/llm_calls"] == 2
    assert summary["total/tokens_in"] == 6
    assert summary["total/tokens_out"] == 8
    assert summary["total/cost_usd"] == pytest.approx(0.75)
    assert summary["total/unpriced_calls"] == 0
    assert {"latency_s/mean", "latency_s/p50", "latency_s/p95"} <= summary.keys()
    assert not any(k.startswith("work/") for k in summary)  # one call name: total/* says it all
    assert summary["cost_usd/mean"] == pytest.approx(0.375)
    assert summary["accuracy/mean"] == 0.5
    assert summary["accuracy/n"] == 2
    assert summary["accuracy/stderr"] == pytest.approx(0.5)  # sd 0.7071 / sqrt(2)
    assert summary["winner"] == "debate"
    assert summary["finished_at"] >= summary["started_at"]


def test_summary_json_says_failed_when_the_block_raises():
    """summary.json has status "failed" and keeps the rows when an exception leaves the block."""
    with pytest.raises(ZeroDivisionError):
        with tracked.experiment("broken", wandb=False) as exp:
            work(1)
            1 / 0  # noqa: B018
    stored = read_experiment(exp.path)
    assert stored.summary["status"] == "failed"
    assert [r["tokens_in"] for r in stored.rows] == [1]


def test_summary_json_says_interrupted_on_keyboard_interrupt():
    """summary.json has status "interrupted" when a KeyboardInterrupt leaves the block, which still propagates."""
    with pytest.raises(KeyboardInterrupt):
        with tracked.experiment("stopped", wandb=False) as exp:
            work(1)
            raise KeyboardInterrupt
    assert read_experiment(exp.path).summary["status"] == "interrupted"


def test_saved_file_is_a_copy_in_files(tmp_path):
    """`exp.save(path)` keeps a copy in `files/` that later changes of the original do not touch."""
    src = tmp_path / "prompt.txt"
    src.write_text("v1")
    with tracked.experiment("saver", wandb=False) as exp:
        exp.save(src)
        src.write_text("v2")
        stored = exp.path / "files" / "prompt.txt"
        assert stored.read_text() == "v1"
    assert stored.read_text() == "v1"
    assert not stored.is_symlink()


def test_nan_and_inf_are_kept_in_results_jsonl():
    """NaN and infinities are written to results.jsonl and read back as the same values."""
    with tracked.experiment("nan_local", wandb=False) as exp:
        exp.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    text = (exp.path / "results.jsonl").read_text()
    assert "NaN" in text and "Infinity" in text and "-Infinity" in text
    (row,) = read_experiment(exp.path).rows
    assert row["nan"] != row["nan"] and row["inf"] == float("inf") and row["ninf"] == float("-inf")


# Any value a row or a call record may hold at its top level: the plain ones orjson writes, and those
# it would write wrongly or refuse (NaN and infinities, ints past 64 bits, lone surrogates, subclasses,
# nested values), which go to the standard library.
_LINE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.lists(st.floats(allow_nan=True) | st.integers() | st.text(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.floats() | st.none(), max_size=3),
)


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN and a float to the int of the same value never (types kept)."""
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _LINE_VALUES, max_size=12))
def test_a_line_reads_back_as_the_standard_library_writes_it(record):
    """Every line the local store writes (orjson for flat plain records, the standard library for
    the rest) reads back with `json.loads` as the standard library's own line of it does."""
    line = _values.dumps_bytes(record)
    assert line.count(b"\n") == 0
    oracle = json.loads(json.dumps(record, ensure_ascii=True))
    assert _same(json.loads(line), oracle)


def test_a_flat_row_of_plain_values_is_written_by_orjson():
    """A row of plain values (what tracked writes for every call) takes orjson's path: its bytes are orjson's."""
    import orjson

    record = {"call": "solve", "latency_s": 0.25, "tokens_in": 29, "cost_usd": 6.75e-06, "error": 0, "model": None}
    assert _values.dumps_bytes(record) == orjson.dumps(record)
    nan_row = {"loss": float("nan")}
    assert _values.dumps_bytes(nan_row) == b'{"loss":NaN}'  # not orjson's null
