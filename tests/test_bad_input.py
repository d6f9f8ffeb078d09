"""Whatever users hand over, the SDK either refuses it at their call (TypeError/ValueError) or stores it
faithfully: the local store reads back what it accepted, and what it could only keep as a `repr` is a
string announced by one TrackedWarning per type. No other exception escapes from the SDK or wandb.

The stored form of an accepted value is `expected()` below: JSON values as they are (tuples become
lists), integers past 2**63 as their decimal text, anything else (and containers nested deeper than
32 levels) as its `repr`.
"""

from __future__ import annotations

import contextlib
import math
import types
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracked
import tracked.testing
from strategies import (
    RaisingRepr,
    any_values,
    bad_key_dicts,
    json_keys,
    nested_dict,
    nested_list,
    usage_kwargs,
    usage_like,
)
from tracked import _config, current_call
from tracked._values import redact
from tracked.testing import read_experiment, read_wandb_run, wandb_records
from tracked.usage import Usage, extract

MAX_DEPTH = 32  # containers nested deeper than this are stored as their repr
#: Values for the round-trip properties: anything, and mappings with a non-string key somewhere.
values = st.one_of(any_values, bad_key_dicts)
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the oracle -----------------------------------------------------------------------------------


class Rejected(Exception):
    """The value holds a non-string key: the SDK must raise TypeError."""


def expected(value: Any, depth: int = 0, reprs: set[type] | None = None) -> Any:
    """What the local store must hold for `value` cleaned at nesting `depth`; repr'd types go in `reprs`."""
    if reprs is None:
        reprs = set()
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if depth < MAX_DEPTH:
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise Rejected(k)
                out[k] = expected(v, depth + 1, reprs)
            return out
        if isinstance(value, (list, tuple)):
            return [expected(v, depth + 1, reprs) for v in value]
    reprs.add(type(value))
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def same(a: Any, b: Any) -> bool:
    """Equal as stored JSON: same types, NaN equal to NaN, -0.0 apart from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@contextlib.contextmanager
def recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning, with the SDK's warn-once memory cleared (one Hypothesis example each)."""
    _config._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def check_warnings(caught: list[warnings.WarningMessage], reprs_by_where: Mapping[str, set[type]]) -> None:
    """Only TrackedWarnings, and exactly one "stored as their repr" warning per repr'd type and place."""
    others = [
        f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, tracked.TrackedWarning)
    ]
    assert not others, others
    repr_warnings = sorted(str(w.message) for w in caught if "stored as their repr" in str(w.message))
    want = sorted(
        f"tracked: {where}: {t.__name__} values cannot be logged as they are; stored as their repr"
        for where, types_ in reprs_by_where.items()
        for t in types_
    )
    assert repr_warnings == want


def oracle(value: Any, depth: int = 0) -> tuple[Any, set[type]] | None:
    """(stored form, repr'd types), or None when the value must be refused with a TypeError."""
    reprs: set[type] = set()
    try:
        return expected(value, depth, reprs), reprs
    except Rejected:
        return None


# --- properties: arbitrary values through every entry point ------------------------------------


@pytest.mark.slow
@FUZZ
@given(value=values)
def test_exp_log_stores_any_value_faithfully_or_refuses_it(value):
    """`exp.log({"v": value})` raises TypeError for a non-string key, else results.jsonl reads back the value."""
    want = oracle(value)
    with recorded() as caught, tracked.experiment("bad-log", wandb=False) as exp:
        if want is None:
            with pytest.raises(TypeError):
                exp.log({"v": value})
        else:
            exp.log({"v": value})
    rows = read_experiment(exp.path).rows
    if want is None:
        assert rows == []
        return
    assert len(rows) == 1
    assert same(rows[0]["v"], want[0])
    check_warnings(caught, {"log": want[1]})
    assert exp.final_summary["sinks"]["local"] == "ok"


@pytest.mark.slow
@FUZZ
@given(value=values)
def test_experiment_config_stores_any_value_faithfully_or_refuses_it(value):
    """`experiment(config={"v": value})` raises TypeError for a non-string key, else config.json reads it back."""
    want = oracle(value, depth=1)
    with recorded() as caught:
        if want is None:
            with pytest.raises(TypeError):
                tracked.experiment("bad-config", config={"v": value}, wandb=False)
            return
        with tracked.experiment("bad-config", config={"v": value}, wandb=False) as exp:
            pass
    stored = read_experiment(exp.path).config["config"]
    # Secret-looking strings are redacted (tested in test_secrets.py); the rest is kept as it is.
    assert same(stored, redact({"v": want[0]}))
    assert same(exp.config, stored)
    check_warnings(caught, {"config": want[1]})
    assert exp.final_summary["sinks"]["local"] == "ok"


@pytest.mark.slow
@FUZZ
@given(value=values)
def test_summary_stores_any_value_faithfully_or_refuses_it(value):
    """`exp.summary["v"] = value` raises TypeError for a non-string key, else summary.json reads it back."""
    want = oracle(value)
    with recorded() as caught, tracked.experiment("bad-summary", wandb=False) as exp:
        if want is None:
            with pytest.raises(TypeError):
                exp.summary["v"] = value
        else:
            exp.summary["v"] = value
    summary = read_experiment(exp.path).summary
    assert summary["status"] == "finished"
    if want is None:
        assert "v" not in summary
        return
    assert same(summary["v"], want[0])
    check_warnings(caught, {"summary": want[1]})


@tracked.tracked(name="logs")
def logs_metric(value: Any) -> None:
    current_call().log({"v": value})


@pytest.mark.slow
@FUZZ
@given(value=values)
def test_call_log_stores_any_value_faithfully_or_refuses_it(value):
    """`current_call().log({"v": value})`: TypeError for a non-string key, else calls.jsonl and the row hold it."""
    want = oracle(value)
    with recorded() as caught, tracked.experiment("bad-call-log", wandb=False) as exp:
        if want is None:
            with pytest.raises(TypeError):
                logs_metric(value)
        else:
            logs_metric(value)
    stored = read_experiment(exp.path)
    (call,) = stored.calls
    (row,) = stored.rows
    assert call["name"] == row["call"] == "logs"
    if want is None:
        assert call["error"] == "TypeError"
        assert "metrics" not in call and "v" not in row
        return
    assert call["error"] is None
    assert same(call["metrics"]["v"], want[0])
    assert same(row["v"], want[0])
    check_warnings(caught, {"log": want[1]})


@pytest.mark.slow
@FUZZ
@given(bad=bad_key_dicts)
def test_non_string_keys_are_refused_at_every_entry_point(bad):
    """A mapping with a non-string key (at any depth) is a TypeError wherever it is given, and nothing is stored."""
    with recorded() as caught:
        with pytest.raises(TypeError, match=r"keys must be strings|metric names must be strings"):
            tracked.experiment("bad-keys", config=bad, wandb=False)
        with tracked.experiment("bad-keys", wandb=False) as exp:
            with pytest.raises((TypeError, ValueError)):
                exp.log(bad)
            with pytest.raises(TypeError):
                exp.log({"v": bad})
            with pytest.raises(TypeError):
                exp.summary["v"] = bad
            with pytest.raises(TypeError):
                exp.summary.update({"v": bad})
            for key in [k for k in bad if not isinstance(k, str)][:2]:
                with pytest.raises(TypeError):
                    exp.summary[key] = 1
            with pytest.raises(TypeError):
                logs_metric(bad)
    stored = read_experiment(exp.path)
    (row,) = stored.rows  # the call that failed, and nothing from the refused log() calls
    assert row["call"] == "logs" and row["error"] == 1 and "v" not in row
    assert "v" not in stored.summary
    assert stored.summary["total/calls"] == 1
    check_warnings(caught, {})


@pytest.mark.slow
@FUZZ
@given(
    metrics=st.one_of(
        st.dictionaries(json_keys, st.integers(-(2**63), 2**63 - 1), max_size=4),
        st.lists(st.integers()),
        st.text(),
        st.none(),
        st.integers(),
    )
)
def test_metric_names_are_checked_at_the_users_call(metrics):
    """Metric names must be non-empty strings not starting with '_' (else TypeError/ValueError); others are stored."""
    with recorded() as caught, tracked.experiment("names", wandb=False) as exp:
        if not isinstance(metrics, dict):
            with pytest.raises(TypeError):
                exp.log(metrics)
            ok = False
        elif any(k == "" or k.startswith("_") for k in metrics):
            with pytest.raises(ValueError):
                exp.log(metrics)
            ok = False
        else:
            exp.log(metrics)
            ok = True
    rows = read_experiment(exp.path).rows
    if ok:
        assert len(rows) == 1
        assert {k: v for k, v in rows[0].items() if k not in ("_step", "_timestamp")} == metrics
    else:
        assert rows == []
    check_warnings(caught, {})


# --- add_usage -------------------------------------------------------------------------------------


def _valid_count(n: Any) -> bool:
    return n is None or (type(n) is int and n >= 0)


def _valid_name(s: Any) -> bool:
    return s is None or (isinstance(s, str) and s != "")


def _valid_cost(c: Any) -> bool:
    return c is None or (type(c) in (int, float) and math.isfinite(c) and c >= 0)


def _valid_usage_kwargs(kw: Mapping[str, Any]) -> bool:
    counts = ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens")
    return (
        all(_valid_count(kw.get(k)) for k in counts)
        and all(_valid_name(kw.get(k)) for k in ("model", "provider"))
        and _valid_cost(kw.get("cost_usd"))
    )


@tracked.tracked(name="usage")
def reports_usage(kwargs_list: list[dict[str, Any]], outcomes: list[str]) -> None:
    call = current_call()
    for kw in kwargs_list:
        try:
            call.add_usage(**kw)
        except (TypeError, ValueError):
            outcomes.append("refused")
        else:
            outcomes.append("accepted")


@pytest.mark.slow
@FUZZ
@given(kwargs_list=st.lists(usage_kwargs, min_size=1, max_size=3))
def test_add_usage_refuses_bad_figures_and_records_good_ones(kwargs_list):
    """`add_usage` refuses bad counts, names and costs (TypeError/ValueError); accepted ones add up in calls.jsonl."""
    outcomes: list[str] = []
    with recorded() as caught, tracked.experiment("usage", wandb=False) as exp:
        reports_usage(kwargs_list, outcomes)
    assert outcomes == ["accepted" if _valid_usage_kwargs(kw) else "refused" for kw in kwargs_list]
    accepted = [kw for kw in kwargs_list if _valid_usage_kwargs(kw)]
    stored = read_experiment(exp.path)
    (call,) = stored.calls
    (row,) = stored.rows
    assert call["error"] is None
    for field in ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens"):
        assert call[field] == sum(kw.get(field) or 0 for kw in accepted), field
    assert row["tokens_in"] == call["tokens_in"] and row["tokens_out"] == call["tokens_out"]
    assert stored.summary["total/tokens_in"] == call["tokens_in"]
    models = [kw["model"] for kw in accepted if kw.get("model")]
    providers = [kw["provider"] for kw in accepted if kw.get("provider")]
    assert call["model"] == (models[-1] if models else None)
    assert call["provider"] == (providers[-1] if providers else None)
    assert call["llm_calls"] == (1 if accepted else 0)
    costs = [kw["cost_usd"] for kw in accepted if kw.get("cost_usd") is not None]
    if costs:
        assert call["cost_usd"] == pytest.approx(sum(float(c) for c in costs), rel=1e-12)
        assert call["cost_source"] == "reported"
    elif not accepted:
        assert call["cost_usd"] is None
    else:
        cost = call["cost_usd"]
        assert cost is None or (isinstance(cost, float) and math.isfinite(cost) and cost >= 0)
    check_warnings(caught, {})


# --- usage.extract ---------------------------------------------------------------------------------


def valid_usage(found: Any) -> bool:
    counts = (found.tokens_in, found.tokens_out, found.cache_read_tokens, found.cache_write_tokens)
    return (
        type(found) is Usage
        and found.reported
        and all(n is None or (type(n) is int and n >= 0) for n in counts)
        and all(s is None or (type(s) is str and 0 < len(s) <= 256) for s in (found.model, found.provider))
        and (
            found.cost_usd is None
            or (type(found.cost_usd) is float and math.isfinite(found.cost_usd) and found.cost_usd >= 0)
        )
    )


@settings(FUZZ, max_examples=300)
@given(obj=usage_like)
def test_extract_never_raises_and_returns_only_sane_usage(obj):
    """`usage.extract` of anything returns None or a Usage with non-negative int counts, short names, finite cost."""
    with recorded() as caught:
        found = extract(obj)
    assert found is None or valid_usage(found), found
    check_warnings(caught, {})


@FUZZ
@given(
    tokens_in=st.integers(0, 10**15),
    tokens_out=st.integers(0, 10**15),
    cost=st.one_of(st.none(), st.floats(0, 1e6)),
    model=st.one_of(st.none(), st.text(min_size=1, max_size=256)),
    provider=st.one_of(st.none(), st.text(min_size=1, max_size=256)),
    as_object=st.booleans(),
)
def test_extract_reads_a_harness_result_faithfully(tokens_in, tokens_out, cost, model, provider, as_object):
    """A result with valid `tokens_in`/`tokens_out`/`cost_usd`/`model`/`provider` fields is read back exactly."""
    fields = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost, "model": model, "provider": provider}
    obj = types.SimpleNamespace(**fields) if as_object else fields
    found = extract(obj)
    if not tokens_in and not tokens_out and not cost:
        assert found is None
    else:
        assert found == Usage(tokens_in, tokens_out, None, None, model, provider, cost)


# --- W&B on: a few fixed cases, wandb must take them all ------------------------------------------

WANDB_CASES = {
    "json-edges": {
        "nan": math.nan,
        "inf": [math.inf, -math.inf, -0.0],
        "ints": [2**63 - 1, -(2**63), 2**63, 10**30],
        "text": "\x00\u202e\U0001f600\ufeff" + "x" * 20_000,
        "empty": [{}, [], ""],
        "keys": {"": {"a.b/c": [None, True]}, "_type": "image-file", "path": "x.png", "_step": "x"},
    },
    "odd-objects": {
        "bytes": b"\xff\x00",
        "obj": object(),
        "bad": RaisingRepr(),
        "set": {1, 2},
        "tuple": (1, (2, 3)),
        "complex": 1j,
    },
    "deep": {"list": nested_list(40), "dict": nested_dict(40), "very": nested_list(5_000)},
    "mapping-proxy": types.MappingProxyType({"a": types.MappingProxyType({"b": [1.5, math.nan]})}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(WANDB_CASES))
def test_wandb_takes_every_value_the_sdk_accepts(tmp_path, case):
    """With W&B offline on, odd values in config, rows, call metrics and summary never fail the W&B sink."""
    value = WANDB_CASES[case]
    reprs: dict[str, set[type]] = {"config": set(), "log": set(), "summary": set()}
    want_config = expected(value, 1, reprs["config"])
    want = expected(value, 0, reprs["log"])
    expected(value, 0, reprs["summary"])
    with recorded() as caught:
        with tracked.experiment("wandb-odd", config={"v": value}, dir=tmp_path) as exp:
            exp.log({"v": value})
            logs_metric(value)
            exp.summary["v"] = value
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    check_warnings(caught, reprs)
    stored = read_experiment(exp.path)
    assert same(stored.config["config"]["v"], redact(want_config))
    assert [same(r["v"], want) for r in stored.rows] == [True, True]
    assert same(stored.calls[0]["metrics"]["v"], want)
    assert same(stored.summary["v"], want)
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert run.exit_code == 0
    assert len(run.history) == 2
    assert "v" in run.config
    assert run.summary["total/calls"] == 1


# --- known bugs ------------------------------------------------------------------------------------


def test_add_usage_refuses_a_cost_too_large_for_a_float_with_value_error():
    """An integer cost past the float range is refused with ValueError, like other bad costs."""
    with tracked.experiment("huge-cost", wandb=False):
        with pytest.raises(ValueError):
            reports_usage_raw(cost_usd=10**400)


@tracked.tracked(name="raw")
def reports_usage_raw(**kwargs: Any) -> None:
    current_call().add_usage(**kwargs)


@pytest.mark.parametrize("where", ["config", "summary", "log"])
def test_lone_surrogate_is_refused_or_stored_faithfully(where):
    """A string with a lone surrogate is either refused at the user's call or read back unchanged."""
    text = "a\ud800b"
    with recorded():
        try:
            with tracked.experiment("surrogate", config={"v": text} if where == "config" else None, wandb=False) as exp:
                if where == "summary":
                    exp.summary["v"] = text
                elif where == "log":
                    exp.log({"v": text})
        except (TypeError, ValueError):
            return
    assert exp.final_summary["sinks"]["local"] == "ok"
    stored = read_experiment(exp.path)
    got = {"config": stored.config.get("config", {}), "summary": stored.summary, "log": (stored.rows or [{}])[0]}[where]
    assert got.get("v") == text


class FloatFails:
    """A value whose `float()` raises RuntimeError (a lazy tensor, a proxy), as a reported cost."""

    def __float__(self) -> float:
        raise RuntimeError("cannot convert")


def test_extract_never_raises_for_a_usage_whose_cost_cannot_be_converted():
    """`usage.extract` of a `Usage` whose cost_usd raises on float() returns None or a sane Usage."""
    found = extract(Usage(tokens_in=1, tokens_out=1, cost_usd=FloatFails()))
    assert found is None or valid_usage(found)


@tracked.tracked(name="returns_usage")
def returns_usage(usage: Usage) -> Usage:
    return usage


def test_a_call_whose_result_usage_cannot_be_read_is_still_recorded():
    """A call returning a `Usage` whose cost raises on float() still gets its row and call record."""
    _config.config.raise_internal_errors = False  # as users run it (the conftest restores it)
    with recorded() as caught, tracked.experiment("odd-usage", wandb=False) as exp:
        returns_usage(Usage(tokens_in=1, tokens_out=1, cost_usd=FloatFails()))
    stored = read_experiment(exp.path)
    assert exp.final_summary["total/calls"] == 1, [str(w.message) for w in caught]
    assert len(stored.rows) == len(stored.calls) == 1


# --- regressions: bugs found while writing these tests (fixed in the working tree since) --------


class FloatRaises:
    """A value whose `float()` raises something other than TypeError/ValueError (a lazy tensor, a proxy)."""

    def __float__(self) -> float:
        raise RuntimeError("cannot convert")

    def __repr__(self) -> str:
        return "FloatRaises()"


def test_value_whose_float_conversion_raises_is_stored_as_its_repr():
    """An object whose `__float__` raises RuntimeError is stored as its repr, not raised from exp.log."""
    with recorded() as caught, tracked.experiment("float-raises", wandb=False) as exp:
        exp.log({"v": FloatRaises()})
    assert read_experiment(exp.path).rows[0]["v"] == "FloatRaises()"
    check_warnings(caught, {"log": {FloatRaises}})


@pytest.mark.parametrize("how", ["setdefault", "ior"])
def test_summary_dict_methods_check_keys_and_values_too(how):
    """`exp.summary.setdefault(...)` and `exp.summary |= ...` refuse non-string keys like `summary[k] = v` does."""
    # W&B off: a bad key that got through would fail the W&B sink at finish, tested in the next test.
    with recorded() as caught, tracked.experiment("summary-bypass", wandb=False) as exp:
        try:
            if how == "setdefault":
                exp.summary.setdefault(1, object())
            else:
                exp.summary |= {(1, 2): b"x"}
        except TypeError:
            refused = True
        else:
            refused = False
    assert exp.final_summary["sinks"]["local"] == "ok", [str(w.message) for w in caught]
    assert refused


def test_a_wandb_run_is_ended_even_when_wandb_fails_while_finishing(tmp_path, wandb_in_thread):
    """If W&B raises while the summary is written, the sink is off but its run still ends (it is not left open)."""
    import wandb
    from wandb.sdk import wandb_setup, wandb_summary

    update = wandb_summary.SummaryDict.update

    def failing_update(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("W&B failed")

    wandb_summary.SummaryDict.update = failing_update  # type: ignore[method-assign]
    try:
        with recorded() as caught, tracked.experiment("wandb-fails", dir=tmp_path) as exp:
            exp.log({"a": 1})
        assert exp.final_summary["sinks"]["wandb"] == "RuntimeError: W&B failed"
        assert any("the wandb sink" in str(w.message) for w in caught)
        (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
        assert read_wandb_run(run_dir, wait_s=30).exit_code is not None, "the W&B run was left open"
        assert wandb_setup.singleton().most_recent_active_run is None
    finally:
        wandb_summary.SummaryDict.update = update  # type: ignore[method-assign]
        wandb_setup.singleton().finish_all_active_runs()  # a run left open must not reach later tests
        assert wandb.run is None


def test_numpy_scalars_are_stored_as_numbers():
    """numpy integer and float scalars are stored as plain numbers, without a warning."""
    np = pytest.importorskip("numpy")
    with recorded() as caught, tracked.experiment("numpy", wandb=False) as exp:
        exp.log({"i": np.int64(3), "f": np.float32(0.5), "n": np.float64("nan")})
    row = read_experiment(exp.path).rows[0]
    assert row["i"] == 3 and row["f"] == 0.5 and math.isnan(row["n"])
    check_warnings(caught, {})


@pytest.mark.parametrize("make", ["complex", "array"])
def test_numpy_values_that_are_not_real_scalars_are_not_squashed_to_a_float(make):
    """A numpy complex scalar or a one-element array is not squashed to one float: repr, list, or refused."""
    np = pytest.importorskip("numpy")
    value = np.complex128(1 + 2j) if make == "complex" else np.array([1.5])
    with recorded(), tracked.experiment("numpy-odd", wandb=False) as exp:
        try:
            exp.log({"v": value})
        except (TypeError, ValueError):
            return
    stored = read_experiment(exp.path).rows[0]["v"]
    assert stored in (repr(value), value.tolist()), stored


class UnhashableMeta(type):
    """A metaclass with `__eq__` and no `__hash__`: its classes are unhashable."""

    def __eq__(cls, other: object) -> bool:
        return cls is other

    __hash__ = None  # type: ignore[assignment]


class OddResult(metaclass=UnhashableMeta):
    tokens_in = 5
    tokens_out = 1


def test_extract_never_raises_for_a_result_whose_type_is_unhashable():
    """`usage.extract` of an instance of a class with an unhashable metaclass returns a Usage or None."""
    found = extract(OddResult())
    assert found is None or valid_usage(found)


def test_extract_does_not_depend_on_what_it_read_before():
    """Two objects of the same class: the second is read the same whether or not the first was read before."""
    plain = types.SimpleNamespace(tokens_in=5, tokens_out=1)
    openai_like = types.SimpleNamespace(
        usage=types.SimpleNamespace(prompt_tokens=3, completion_tokens=2), tokens_in=7, tokens_out=1
    )
    fresh = extract(openai_like)
    extract(plain)
    assert extract(openai_like) == fresh


@pytest.mark.slow
def test_a_wandb_file_still_being_written_reads_as_its_complete_records(tmp_path):
    """`wandb_records` of a `.wandb` file cut anywhere returns the records complete before the cut."""
    with tracked.experiment("torn", dir=tmp_path, config={"v": "x" * 20_000}) as exp:
        exp.log({"v": "y" * 20_000})
    run_dir = Path(exp.final_summary["wandb"]["dir"])
    read_wandb_run(run_dir)  # the file is complete
    (path,) = run_dir.glob("*.wandb")
    data = path.read_bytes()
    whole = [r.SerializeToString() for r in wandb_records(path)]
    cut_file = tmp_path / "cut.wandb"
    for cut in range(7, len(data), 101):  # as wandb-core's writer may have left it at any moment
        cut_file.write_bytes(data[:cut])
        records = [r.SerializeToString() for r in wandb_records(cut_file)]
        assert records == whole[: len(records)], cut


@pytest.mark.parametrize(
    ("field", "limit"), [("name", 128), ("project", 128), ("entity", 128), ("group", 128), ("job_type", 64)]
)
def test_a_value_longer_than_wandb_takes_is_refused_at_the_call(field, limit):
    """A run field longer than W&B's server takes is a ValueError naming the limit; one at the limit is taken."""
    kwargs = {"name": "x"}
    kwargs[field] = "a" * limit
    tracked.experiment(**kwargs)
    kwargs[field] = "a" * (limit + 1)
    with pytest.raises(ValueError, match=f"at most {limit}"):
        tracked.experiment(**kwargs)


@pytest.mark.parametrize("char", list("/\\#?%:"))
def test_a_project_name_with_a_character_wandb_refuses_is_refused_at_the_call(char):
    """A project name with a character W&B refuses is a ValueError at the call."""
    with pytest.raises(ValueError, match="cannot contain"):
        tracked.experiment("x", project=f"my{char}project")


def test_a_long_derived_group_and_job_type_are_shortened_deterministically(tmp_path):
    """A child's job_type derived from a long parent name fits W&B's limit, with a hash keeping such names apart."""
    from tracked._options import shorten

    root = "r" * 128  # the longest name W&B takes: the group derived from it fits
    middle = "m" * 81
    with tracked.testing.capture() as captured:
        with tracked.experiment(root, dir=tmp_path, wandb=False):
            with tracked.experiment(middle, wandb=False):
                with tracked.experiment("leaf", wandb=False) as leaf:
                    pass
    assert leaf.group == root
    assert len(leaf.job_type) == 64 and leaf.job_type.startswith("m" * 50)
    assert leaf.job_type == shorten(middle, 64)
    assert shorten("m" * 80 + "a", 64) != shorten("m" * 80 + "b", 64)
    assert len(shorten("s" * 141, 128)) == 128
    assert captured["leaf"].run.group == leaf.group and captured["leaf"].run.job_type == leaf.job_type
