"""`tracked report`: the comparison drawn in one self-contained HTML file, its numbers compare's own."""

from __future__ import annotations

import errno
import html
import io
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

import tracked
from tracked import _report, cli
from tracked._store import find_experiments
from tracked._values import money

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FIGURE = re.compile(
    r'<script type="application/json" class="tracked-figure" data-target="chart-(\w+)"[^>]*>(.*?)</script>', re.S
)


@tracked.tracked(provider="openai")
def ask_model(model: str, tokens_in: int, tokens_out: int) -> dict:
    """A model call that reports its usage: priced from genai-prices when it knows the model."""
    return {"tokens_in": tokens_in, "tokens_out": tokens_out, "model": model}


@tracked.tracked
def single(task: int) -> str:
    ask_model("gpt-4o-mini", 100 + task, 10)
    return "basket"


@tracked.tracked
def debate(task: int) -> str:
    for _ in range(3):
        ask_model("gpt-4o-mini", 300, 40)
    ask_model("gpt-4o", 500, 20)
    if task == 1:
        raise TimeoutError("the judge did not answer")
    return "basket"


@tracked.tracked
def local(task: int) -> str:
    ask_model("my-finetune-xyz", 80, 8)  # no price: unknown, never $0
    return "box"


@tracked.tracked
def streamed(task: int):
    """A generator: its row has a time to first item (TTFT)."""
    ask_model("gpt-4o-mini", 120, 12)
    yield "bas"
    yield "ket"


# name, strategy, function, accuracy per task (three tasks, ids logged as task_id)
STORE = [
    ("single_seed0", "single", single, [1, 0, 1]),
    ("single_seed1", "single", single, [1, 1, 0]),
    ("debate_seed0", "debate", debate, [1, 1, 1]),
    ("local_seed0", "local", local, [0, 1, 0]),
    ("stream_seed0", "stream", streamed, [1, 0, 0]),
]


def write_store(root: Path) -> None:
    """Five experiments of three tasks (W&B off): priced, partly failed, unpriced and streamed calls."""
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        for name, strategy, fn, accuracies in STORE:
            config = {"strategy": strategy, "model": "gpt-4o-mini" if strategy != "local" else "my-finetune-xyz"}
            group = "g_local" if strategy == "local" else "g1"
            with tracked.experiment(name, config=config, group=group, dir=root, wandb=False) as exp:
                for task, accuracy in enumerate(accuracies):
                    try:
                        result = fn(task)
                        if strategy == "stream":
                            list(result)
                    except TimeoutError:
                        pass
                    exp.log({"accuracy": accuracy, "task_id": f"t{task}"})
            time.sleep(0.01)  # distinct start times


def add_experiment(root: Path, name: str, strategy: str, fn, accuracies: list, **config) -> None:
    """One more experiment of `fn` over tasks t0, t1, ... in the store, logging each accuracy (None: no metric)."""
    with tracked.experiment(name, config={"strategy": strategy, **config}, dir=root, wandb=False) as exp:
        for task, accuracy in enumerate(accuracies):
            try:
                fn(task)
            except TimeoutError:
                pass
            exp.log({"task_id": f"t{task}"} if accuracy is None else {"accuracy": accuracy, "task_id": f"t{task}"})
    time.sleep(0.01)


def task_row(page: str, task: str) -> list[str]:
    """The cells of one row of the per-task table, as text."""
    table = page[page.index('<table class="sortable"') :]
    row = re.search(rf"<tr><td[^>]*>{task}</td>(.*?)</tr>", table).group(1)
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def figures(page: str) -> dict[str, dict]:
    """Every chart's plotly figure (data and layout), as embedded in the page, by chart name."""
    return {name: json.loads(data) for name, data in FIGURE.findall(page)}


def traces(figure: dict, kind: str, **meta: str) -> list[dict]:
    """The traces of a figure whose `meta.figure` is `kind` (and whose other meta keys match)."""
    return [
        t for t in figure["data"]
        if (t.get("meta") or {}).get("figure") == kind and all(t["meta"].get(k) == v for k, v in meta.items())
    ]  # fmt: skip


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_store(root)
    return root


@pytest.fixture
def report(store, capsys):
    """The report of the store (by strategy), its page and figures, and `compare --json --metric accuracy`'s rows."""
    code, out, err = run_cli(capsys, "report", str(store))
    assert code == 0, err
    path = store / "report.html"
    assert out.strip().startswith(f"report: {path.resolve()}")
    page = path.read_text(encoding="utf-8")
    code, out, _ = run_cli(capsys, "compare", str(store), "--json", "--metric", "accuracy")
    assert code == 0
    return page, figures(page), json.loads(out)


def test_every_chart_is_in_the_page(report):
    """The page has the summary, frontier, running, latency (with TTFT) and models charts, and the task table."""
    page, figs, _ = report
    assert list(figs) == ["summary", "frontier", "running", "latency", "models"]
    for name in figs:
        assert f'<div class="chart" id="chart-{name}"' in page
    assert '<table class="sortable" id="tasks">' in page
    assert "time to first token" in json.dumps(figs["latency"]["layout"])


def test_the_bars_are_compares_numbers(report):
    """Each bar (metric means, cost, tokens) is `compare --json`'s figure for that strategy, in compare's order."""
    _, figs, rows = report
    summary = figs["summary"]
    labels = [r["strategy"] for r in rows]
    (mean,) = traces(summary, "mean", metric="accuracy")
    assert mean["x"] == labels
    assert mean["y"] == pytest.approx([r["accuracy_mean"] for r in rows])
    (cost,) = traces(summary, "cost_usd")
    assert cost["x"] == labels
    assert cost["y"] == [pytest.approx(r["cost_usd"]) if r["cost_usd"] is not None else None for r in rows]
    for figure in ("tokens_in", "tokens_out"):
        (bars,) = traces(summary, figure)
        assert bars["y"] == [r[figure] for r in rows]


def test_without_metric_the_order_is_by_accuracy(report):
    """Without `--metric` the strategies are ranked by accuracy, best first, as `--help` says."""
    _, figs, _ = report
    (mean,) = traces(figs["summary"], "mean", metric="accuracy")
    assert mean["y"] == sorted(mean["y"], reverse=True) and mean["y"][0] > mean["y"][-1]
    assert mean["x"][0] == "debate"


def test_the_error_bars_are_the_standard_errors_of_the_summaries(report, store):
    """A strategy of one experiment has its summary's `accuracy/stderr` as error bar; two seeds pool their tasks."""
    _, figs, _ = report
    (mean,) = traces(figs["summary"], "mean", metric="accuracy")
    errors = dict(zip(mean["x"], mean["error_y"]["array"], strict=True))
    debate = next(p for p in (store / "experiments").iterdir() if p.name.startswith("debate"))
    summary = json.loads((debate / "summary.json").read_text())
    assert errors["debate"] == pytest.approx(summary.get("accuracy/stderr", 0.0))
    # single: 6 tasks, 4 right: the standard error of the mean of [1, 0, 1, 1, 1, 0]
    values = [1, 0, 1, 1, 1, 0]
    m = sum(values) / 6
    assert errors["single"] == pytest.approx((sum((v - m) ** 2 for v in values) / 5 / 6) ** 0.5)


def test_latency_percentiles_are_compares(report):
    """The p95 marked on each strategy's latency distribution is compare's `latency_s_p95`."""
    _, figs, rows = report
    for row in rows:
        (marks,) = traces(figs["latency"], "latency_s/percentiles", bucket=row["strategy"])
        assert marks["text"] == ["p50", "p95"]
        assert marks["customdata"][1] == pytest.approx(row["latency_s_p95"])  # seconds; drawn in milliseconds
        assert marks["x"][1] == pytest.approx(row["latency_s_p95"] * 1000)
    (ttft,) = traces(figs["latency"], "ttft_s/percentiles", bucket="stream")
    assert ttft["customdata"][0] == pytest.approx(next(r for r in rows if r["strategy"] == "stream")["ttft_s_p50"])


def test_the_latency_bars_reach_the_slowest_task_and_stay_apart(report, store):
    """The latency histogram's bars span every latency, the slowest inside the last bar, and each bar is closed
    (down to 0 on both sides), so equal neighbours do not merge into one."""
    _, figs, _ = report
    latencies = [r["latency_s"] * 1000 for e in find_experiments(store) for r in e.rows if "latency_s" in r]
    xs = [x for t in traces(figs["latency"], "latency_s") for x in t["x"] if x is not None]
    assert min(xs) <= min(latencies) and max(xs) >= max(latencies)
    for t in traces(figs["latency"], "latency_s"):
        bars = [t["y"][i : i + 5] for i in range(0, len(t["y"]), 5)]
        assert bars and all(b[0] == 0 and b[1] == b[2] > 0 and b[3] == 0 and b[4] is None for b in bars)


def test_the_ttft_chart_is_per_task_as_compares_p50(report, store):
    """The TTFT distribution has one value per streamed task (the rows compare's `ttft_s_p50` is taken over), and
    says so."""
    page, figs, _ = report
    (ttft,) = traces(figs["latency"], "ttft_s", bucket="stream")
    stream = next(e for e in find_experiments(store) if e.name == "stream_seed0")
    assert ttft["meta"]["n"] == sum(1 for r in stream.rows if r.get("ttft_s")) == 3
    assert "time to first token (TTFT), one per task" in json.dumps(figs["latency"]["layout"])
    assert "one per task as compare's TTFT p50 is" in html.unescape(page)


def test_cost_by_model_adds_up_to_the_per_model_totals(report, store):
    """Each model's stacked costs, summed over the strategies, are the per-model totals `compare --by model` prints
    (`model_rows`), a model without a price staying unknown."""
    _, figs, _ = report
    by_model = {r["model"]: r for r in cli.model_rows(find_experiments(store), None)}
    assert by_model["my-finetune-xyz"]["cost_usd"] is None
    for model, row in by_model.items():
        (bars,) = traces(figs["models"], "model_cost", model=model)
        known = [y for y in bars["y"] if y is not None]
        if row["cost_usd"] is None:
            assert known == []
        else:
            assert sum(known) == pytest.approx(row["cost_usd"])


def test_a_priced_models_calls_of_unknown_usage_are_said_usage_unknown():
    """Cost by model names the reason calls are left out: "usage unknown" for a priced model's unread usage."""
    (bucket,) = [
        _report.Bucket("s", [], {}, {}, models=[
            {"model": "gpt-4o-mini", "cost_usd": None, "llm_calls": 4, "unpriced_calls": 4, "usage_unknown_calls": 4},
            {"model": "gpt-4o", "cost_usd": 0.5, "llm_calls": 4, "unpriced_calls": 3, "usage_unknown_calls": 1},
        ])
    ]  # fmt: skip
    chart = _report._models_chart([bucket], "strategy")
    (marks,) = [t for t in chart.figure.data if (t.meta or {}).get("figure") == "unknown"]
    assert list(marks.text) == [
        "gpt-4o-mini: unknown (4 usage unknown)",
        "gpt-4o: $0.500 + 2 unpriced, 1 usage unknown",
    ]


def test_unknown_cost_is_labelled_never_drawn_as_zero(report):
    """The unpriced strategy has no cost bar but a mark saying "unknown (3 unpriced)"; its table cells say so too."""
    page, figs, _ = report
    (cost,) = traces(figs["summary"], "cost_usd")
    position = cost["x"].index("local")
    assert cost["y"][position] is None
    assert cost["text"][position] == "unknown (3 unpriced)"
    marks = traces(figs["summary"], "unknown")
    assert any("local" in m["x"] and "unknown (3 unpriced)" in m["text"] for m in marks)
    models = traces(figs["models"], "unknown")
    assert models and "my-finetune-xyz: unknown (3 unpriced)" in models[0]["text"]
    assert "unknown (1 unpriced)" in page  # a task's cell
    assert "1 failed, 0 failed inside a task (an exception it caught), 3 unpriced, 0 with usage unknown" in page


def test_the_frontier_is_the_cheapest_best(report):
    """One point per experiment of known cost; the frontier's points are ones no other beats on cost and accuracy."""
    _, figs, _ = report
    points = traces(figs["frontier"], "experiments")
    drawn = [(x, y) for t in points for x, y in zip(t["x"], t["y"], strict=True)]
    assert len(drawn) == 4  # the unpriced experiment is not drawn, and is named below the chart
    (frontier,) = traces(figs["frontier"], "frontier")
    for x, y in zip(frontier["x"], frontier["y"], strict=True):
        assert (x, y) in drawn
        assert not any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in drawn)


def test_the_frontier_rings_and_names_its_points_and_says_what_it_is(report):
    """The frontier is a ring around each of its points (their colours show), each named; the text states the rule."""
    page, figs, _ = report
    (ring,) = traces(figs["frontier"], "frontier")
    assert ring["marker"]["symbol"] == "circle-open" and ring["text"] == ring["customdata"]
    assert "that no other is at least as cheap and at least as good as (higher accuracy) while better on one" in page


@tracked.tracked
def mixed(task: int) -> str:
    """A strategy whose judge has no price: its cost is a lower bound."""
    ask_model("gpt-4o-mini", 100, 10)
    ask_model("my-finetune-xyz", 80, 8)
    return "basket"


def test_a_partly_unpriced_point_is_hollow_and_said_not_considered(capsys, tmp_path):
    """An experiment with unpriced calls is a hollow point, above the frontier or not, and the text says it is not
    considered for the frontier."""
    add_experiment(tmp_path, "cheap", "cheap", single, [0, 0])
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        add_experiment(tmp_path, "part", "part", mixed, [1, 1])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    frontier = figures(page)["frontier"]
    (part,) = [t for t in traces(frontier, "experiments") if t["name"] == "part"]
    assert part["marker"]["symbol"] == ["circle-open"]
    (ring,) = traces(frontier, "frontier")
    assert ring["customdata"] == ["cheap"]
    assert "are not considered for the frontier, even when above it: part." in page


def test_each_total_cost_is_labelled_once(capsys, tmp_path):
    """A partly unpriced strategy's cost label is on its bar only, not repeated over it by the unknown mark."""
    add_experiment(tmp_path, "cheap", "cheap", single, [0])
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        add_experiment(tmp_path, "part", "part", mixed, [1])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    summary = figures((tmp_path / "report.html").read_text())["summary"]
    (cost,) = traces(summary, "cost_usd")
    label = cost["text"][cost["x"].index("part")]
    assert label.endswith(" + 1 unpriced")
    (mark,) = traces(summary, "unknown")
    assert mark["x"] == ["part"] and mark["text"] == [""]


def test_the_frontier_keeps_equal_points(report):
    """Two experiments of the same cost and quality, neither better on one: both are on the frontier."""
    a = _report._Point("s", "a", 1.0, 0, 0.5)
    b = _report._Point("s", "b", 1.0, 0, 0.5)
    c = _report._Point("s", "c", 2.0, 0, 0.5)
    assert [p.name for p in _report._frontier([a, b, c], "maximize")] == ["a", "b"]


def test_running_curves_end_at_each_experiments_totals(report, store):
    """Each running curve ends at its experiment's total cost and accuracy mean."""
    _, figs, _ = report
    stored = {e.name: e.summary for e in find_experiments(store) if e.name != "local_seed0"}
    lines = traces(figs["running"], "running")
    assert sorted(t["name"] for t in lines) == sorted(stored)
    for line in lines:
        summary = stored[line["name"]]
        assert line["y"][-1] == pytest.approx(summary["accuracy/mean"])
        assert line["x"][-1] == pytest.approx(summary["total/cost_usd"] or 0.0)


def test_an_experiment_of_unknown_cost_has_no_running_curve_and_is_named(report):
    """The all-unpriced experiment is not drawn on the cost axis (it would read as $0) but named as not drawn."""
    page, figs, _ = report
    assert "local_seed0" not in [t["name"] for t in traces(figs["running"], "running")]
    assert "Not drawn, cost unknown: local_seed0." in page[page.index('id="section-running"') :].split("</section>")[0]


def test_the_task_table_flags_failed_and_unpriced_calls(report):
    """The table has a row per task id with each strategy's columns; failed and unpriced calls are flagged."""
    page, _, _ = report
    table = page[page.index('<table class="sortable"') :]
    rows = re.findall(r"<tr><td[^>]*>(t\d)</td>", table)
    assert rows == ["t0", "t1", "t2"]
    assert "debate: accuracy" in table and "single (mean of 2 runs): cost" in table
    assert "TimeoutError" in table
    assert '<td class="flag">error</td>' in table or "error, unpriced" in table


def test_a_run_of_unknown_cost_is_not_averaged_in_as_zero(capsys, tmp_path):
    """Two runs of a strategy, one unpriced: a task's cost is the priced run's, with the unknown run said."""
    add_experiment(tmp_path, "priced", "mixed", single, [1, 0])
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        add_experiment(tmp_path, "unpriced", "mixed", local, [0, 1])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    priced = next(e for e in find_experiments(tmp_path) if e.name == "priced")
    cost = next(r["cost_usd"] for r in priced.rows if "latency_s" in r)  # task t0's
    cells = task_row(page, "t0")
    assert cells[1] == f"{money(cost)} (mean of 1; 1 run unknown)"
    assert re.search(rf'<td data-v="{re.escape(repr(cost))}" class="flag">', page)


def test_experiments_without_the_metric_are_named_and_one_value_has_no_error_bar(capsys, tmp_path):
    """A strategy that logged no accuracy is named as not drawn in the cost/quality charts and its bar says "no
    value"; a mean of one value has no error bar and says n=1."""
    add_experiment(tmp_path, "two", "two", single, [1, 0])
    add_experiment(tmp_path, "one", "one", single, [1])
    add_experiment(tmp_path, "silent", "silent", single, [None, None])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    figs = figures(page)
    (mean,) = traces(figs["summary"], "mean", metric="accuracy")
    bars = dict(zip(mean["x"], zip(mean["y"], mean["error_y"]["array"], mean["text"], strict=True), strict=True))
    assert bars["one"] == (1, None, "n=1") and bars["two"][1] > 0 and bars["two"][2] == ""
    (empty,) = traces(figs["summary"], "no value", metric="accuracy")
    assert empty["x"] == ["silent"] and empty["text"] == ["no value"]
    for chart in ("frontier", "running"):
        section = page[page.index(f'id="section-{chart}"') :].split("</section>")[0]
        assert "Not drawn, no accuracy logged: silent." in section


@tracked.tracked
def careful(task: int) -> str:
    """A strategy that catches its model call's failure on task 1 (and retries)."""
    if task == 1:
        try:
            ask_model_or_fail()
        except TimeoutError:
            pass
    ask_model("gpt-4o-mini", 100, 10)
    return "basket"


@tracked.tracked(provider="openai")
def ask_model_or_fail() -> dict:
    raise TimeoutError("the model did not answer")


def test_a_failed_call_inside_a_task_is_flagged_in_the_table(capsys, tmp_path):
    """A call that failed inside a task (its exception caught by the strategy) is flagged in that task's row."""
    add_experiment(tmp_path, "careful", "careful", careful, [1, 1, 0])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert task_row(page, "t1")[3:] == ["1 failed call inside", "failed call inside"]
    assert task_row(page, "t0")[3:] == ["", ""]
    assert "0 failed, 1 failed inside a task (an exception it caught)" in page


def test_a_strategy_keeps_its_colour_across_groups_and_models_have_their_own(store, capsys, tmp_path):
    """A strategy's colour is the same in a report of all strategies and of one group; no model has a strategy's
    colour; one experiment is "1 experiment"."""
    colours = {}
    for name, args in (("all", []), ("g1", ["--group", "g1"]), ("one", ["--group", "g_local"])):
        out = tmp_path / f"{name}.html"
        code, _, err = run_cli(capsys, "report", str(store), *args, "-o", str(out))
        assert code == 0, err
        page = out.read_text()
        (mean,) = traces(figures(page)["summary"], "mean", metric="accuracy")
        colours[name] = dict(zip(mean["x"], mean["marker"]["color"], strict=True))
        models = {t["marker"]["color"] for t in traces(figures(page)["models"], "model_cost")}
        assert not models & set(colours[name].values())
    assert all(colours["all"][k] == v for k, v in colours["g1"].items())
    assert '<p class="meta">1 experiment from' in (tmp_path / "one.html").read_text()


@tracked.tracked
def hasty(task: int) -> str:
    raise TimeoutError("gave up at once")


def test_a_call_that_failed_at_once_shows_its_latency_not_zero(capsys, tmp_path):
    """A task that failed in microseconds shows its latency in three significant digits, never "0.0 ms"."""
    add_experiment(tmp_path, "hasty", "hasty", hasty, [0])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    (exp,) = find_experiments(tmp_path)
    latency = next(r["latency_s"] for r in exp.rows if "latency_s" in r)
    assert latency < 1e-4
    assert task_row((tmp_path / "report.html").read_text(), "t0")[2] == f"{latency * 1000:.3g} ms"


def test_the_page_fetches_nothing(report):
    """No script, style, image or font is loaded from elsewhere: plotly.js is embedded, the page has no src or href."""
    page, _, _ = report
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page)
    assert "@import" not in page and "url(http" not in page
    assert page.count("<script>") == 2  # plotly.js, then the page's own drawing and sorting


def test_group_and_by_choose_as_compare_does(store, capsys, tmp_path):
    """`--group` keeps that group's experiments only, `--by` buckets by another key, `-o` names the file."""
    out = tmp_path / "g1.html"
    code, _, err = run_cli(capsys, "report", str(store), "--group", "g1", "-o", str(out))
    assert code == 0, err
    (mean,) = traces(figures(out.read_text())["summary"], "mean", metric="accuracy")
    assert sorted(mean["x"]) == ["debate", "single", "stream"]
    code, _, err = run_cli(capsys, "report", str(store), "--by", "model", "-o", str(out))
    assert code == 0, err
    (mean,) = traces(figures(out.read_text())["summary"], "mean", metric="accuracy")
    assert sorted(mean["x"]) == ["gpt-4o-mini", "my-finetune-xyz"]


def test_experiments_without_the_by_key_are_counted_as_left_out(capsys, tmp_path):
    """`--by KEY` says, on the page and on stderr, how many experiments it leaves out for not having the key."""
    add_experiment(tmp_path, "three", "debate", single, [1], n_debaters=3)
    add_experiment(tmp_path, "plain", "single", single, [1])
    add_experiment(tmp_path, "plain2", "single", single, [0])
    code, _, err = run_cli(capsys, "report", str(tmp_path), "--by", "n_debaters")
    assert code == 0, err
    assert "left out: 2 experiments without config key 'n_debaters'" in err
    assert (
        "Left out: 2 experiments without config key &#x27;n_debaters&#x27;." in (tmp_path / "report.html").read_text()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{empty}"], "no experiments under"),
        (["{store}", "--group", "nope"], "no experiments in group 'nope'"),
        (["{store}", "--by", "n_debaters"], "no experiment has config key 'n_debaters'"),
        (["{store}", "--metric", "acuracy"], "no metric 'acuracy' in the experiments compared (metrics: accuracy)"),
        (["{store}", "-o", "{store}/missing/report.html"], "cannot write the report"),
        (["{store}", "-o", "{store}/experiments"], "cannot write the report"),
        (["{store}", "-o", "{file}/report.html"], "cannot write the report"),
        (["{store}", "-o", ""], "-o names no file"),
        (["{store}", "-o", "{fifo}"], "it is not a regular file"),
        (["{store}", "-o", "{link_to_fifo}"], "it is not a regular file"),
    ],
)
def test_bad_input_exits_2_with_a_message(store, capsys, tmp_path, args, message):
    """No experiments, an unknown group or key, an unwritable output: a one-line message and exit code 2."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    paths = {"empty": tmp_path / "empty", "file": tmp_path / "file", "fifo": tmp_path / "fifo"}
    argv = [a.format(store=store, link_to_fifo=tmp_path / "link", **paths) for a in args]
    code, out, err = run_cli(capsys, "report", *argv)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err and out == ""
    assert stat.S_ISFIFO((tmp_path / "fifo").stat().st_mode) and (tmp_path / "link").is_symlink()
    assert not (store / "report.html").exists()


def test_a_link_to_a_file_writes_the_file_and_keeps_the_link(store, capsys, tmp_path):
    """`-o LINK` to a regular file replaces the file it names (its permissions kept); the link stays a link."""
    (tmp_path / "old.html").write_text("old")
    (tmp_path / "old.html").chmod(0o640)
    (tmp_path / "link.html").symlink_to("old.html")
    code, _, err = run_cli(capsys, "report", str(store), "-o", str(tmp_path / "link.html"))
    assert code == 0, err
    assert (tmp_path / "link.html").is_symlink()
    assert (tmp_path / "old.html").read_text().startswith("<!DOCTYPE html>")
    assert stat.S_IMODE((tmp_path / "old.html").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.html", "old.html", "store"]


def test_a_full_disk_exits_2_and_leaves_the_old_report(store, capsys, tmp_path, monkeypatch):
    """An error while writing (no space left) exits 2 naming it, prints no success, keeps the old file, no temp."""
    out = tmp_path / "r.html"
    out.write_text("old")

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_on_a_full_disk(fd: int, *args: object, **kwargs: object) -> Full:
        os.close(fd)
        return Full()

    monkeypatch.setattr(cli, "open", open_on_a_full_disk, raising=False)
    code, printed, err = run_cli(capsys, "report", str(store), "-o", str(out))
    monkeypatch.undo()
    assert code == 2 and printed == ""
    assert "No space left on device" in " ".join(err.split())
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "store"]


def test_without_plotly_it_says_which_extra_to_install(store, capsys, monkeypatch):
    """Without plotly, `tracked report` exits 2 naming the extra, and the demo's last line says the same."""
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    code, _, err = run_cli(capsys, "report", str(store))
    assert code == 2
    assert "pip install 'tracked[report]'" in " ".join(err.split())
    assert not (store / "report.html").exists()
    line = cli._demo_report(find_experiments(store), store)
    assert line.startswith("for a report with charts: pip install 'tracked[report]'")


def test_a_large_store_is_sampled_and_says_so(tmp_path, capsys, monkeypatch):
    """More tasks than the table holds: it shows a sample with the flagged tasks first and says so; long running
    curves are drawn through evenly spaced points, also said."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import report_scale
    finally:
        sys.path.remove(str(BENCHMARKS))
    report_scale.write_store(tmp_path, experiments=5, tasks=600)
    monkeypatch.setattr(_report, "TABLE_CELLS", 500)  # 100 tasks for 5 strategies
    monkeypatch.setattr(_report, "MAX_LINE_POINTS", 50)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert re.search(r'id="table-note">The table shows 100 of 600 tasks: \d+ of the \d+ with a flagged call', page)
    table = page[page.index('<table class="sortable"') :]
    assert table.count("<tr>") == 1 + 100
    lines = traces(figures(page)["running"], "running")
    assert len(lines) == 4 and all(len(t["x"]) == 50 and t["meta"]["tasks"] == 600 for t in lines)  # 1 unpriced
    assert "drawn through 50 evenly spaced ones" in page


def crash(path: Path) -> None:
    """Make a finished experiment look killed: no summary.json, its process (on this host) gone."""
    import socket
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()  # a pid that has ended
    meta = json.loads((path / "config.json").read_text())
    meta["system"] = {**meta.get("system", {}), "host": socket.gethostname(), "pid": child.pid}
    (path / "config.json").write_text(json.dumps(meta))
    (path / "summary.json").unlink()


def test_a_crashed_run_is_left_out_unless_all_and_then_flagged(store, capsys, tmp_path):
    """As compare: a crashed experiment is left out (the page says so); with --all it is drawn and its tasks flagged."""
    debate = next(p for p in (store / "experiments").iterdir() if p.name.startswith("debate"))
    crash(debate)
    out = tmp_path / "r.html"
    code, _, err = run_cli(capsys, "report", str(store), "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    assert "Left out: 1 crashed (--all includes them)." in page
    assert "debate: accuracy" not in page
    code, _, err = run_cli(capsys, "report", str(store), "--all", "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    assert "debate: accuracy" in page and "crashed run" in page
    frontier = figures(page)["frontier"]
    (point,) = [t for t in traces(frontier, "experiments") if t["name"] == "debate"]
    assert point["marker"]["symbol"] == ["x"] and point["text"] == ["crashed"]
    (ring,) = traces(frontier, "frontier")
    assert not any(name.startswith("debate") for name in ring["customdata"])
    assert "not considered for the frontier: debate_seed0 (crashed)" in page
    assert "debate (crashed)" in page  # the summary's text
    running = [t["name"] for t in traces(figures(page)["running"], "running")]
    assert "debate_seed0 (crashed)" in running


def test_without_a_metric_the_cost_charts_are_drawn_and_the_page_says_why_others_are_not(capsys, tmp_path):
    """Experiments that logged no metric: bars of cost and tokens, latency, cost by model; a note for the rest."""
    for strategy, fn in (("single", single), ("debate", debate)):
        with tracked.experiment(strategy, config={"strategy": strategy}, dir=tmp_path, wandb=False):
            fn(0)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert list(figures(page)) == ["summary", "latency", "models"]
    assert "No custom metric was logged" in page
    (cost,) = traces(figures(page)["summary"], "cost_usd")
    assert all(y > 0 for y in cost["y"])


@tracked.tracked
def no_llm(task: int) -> str:
    return "basket"  # a baseline that asks no model


def test_a_task_with_no_llm_call_costs_zero_in_the_task_table(capsys, tmp_path):
    """A strategy whose calls make no LLM call: its task cells read $0, unflagged, as compare counts
    it (not "unknown (1 unpriced)")."""
    add_experiment(tmp_path, "baseline", "baseline", no_llm, [1, 0])
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    cells = task_row(page, "t0")
    assert cells[1] == money(0.0), cells
    assert "unpriced" not in " ".join(cells)
