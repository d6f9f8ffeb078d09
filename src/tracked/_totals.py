"""Totals of an experiment: kept by us, because W&B has no `sum` summary."""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from ._values import is_number, sha256_hex8

#: Row columns written by tracked itself; every other numeric column of a row is a custom metric.
ROW_FIELDS = frozenset(
    {"_step", "_timestamp", "_join", "call", "call_id", "latency_s", "ttft_s", "tokens_in", "tokens_out", "cost_usd",
     "llm_calls", "unpriced_calls", "usage_unknown_calls", "error", "error_type", "model", "output", "strategy",
     "provider", "timestamp", "worker"}
)  # fmt: skip

#: Latencies kept exactly per group; past this many, a log-bucket sketch takes over, so memory
#: stays bounded (about a thousand buckets from a microsecond to an hour) with percentiles within
#: 1% of the true value.
EXACT_LATENCIES = 10_000
_GAMMA = 1.02
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-9


class Quantiles:
    """Mean and percentiles of a stream of non-negative numbers in bounded memory."""

    __slots__ = ("buckets", "count", "exact", "total", "zeros")

    def __init__(self) -> None:
        self.exact: array[float] | None = array("d")
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0

    def __len__(self) -> int:
        return self.count

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if self.exact is not None:
            self.exact.append(value)
            if len(self.exact) > EXACT_LATENCIES:
                self._to_sketch()
        else:
            self._bucket(value, 1)

    def _bucket(self, value: float, n: int) -> None:
        if value <= _TINY:
            self.zeros += n
        else:
            key = math.ceil(math.log(value) / _LOG_GAMMA)
            self.buckets[key] = self.buckets.get(key, 0) + n

    def _to_sketch(self) -> None:
        exact, self.exact = self.exact, None
        for value in exact or ():
            self._bucket(value, 1)

    def merge(self, other: Quantiles) -> None:
        if other.exact is not None:
            for value in other.exact:
                self.add(value)
            return
        if self.exact is not None:
            self._to_sketch()
        self.count += other.count
        self.total += other.total
        self.zeros += other.zeros
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n

    def mean(self) -> float:
        return self.total / self.count

    def quantile(self, q: float) -> float:
        if self.exact is not None:
            return _percentile(sorted(self.exact), q)
        rank = q * (self.count - 1)
        seen = self.zeros
        if rank < seen:
            return 0.0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if rank < seen:
                # The bucket's midpoint in relative terms: within (gamma-1)/(gamma+1) of any value in it.
                return 2 * _GAMMA**key / (_GAMMA + 1)
        return 2 * _GAMMA ** max(self.buckets) / (_GAMMA + 1)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def metric_value(key: str, value: Any) -> float | None:
    """The value a user metric counts with in the aggregates (`<m>/mean`, `/n`, `/stderr`): a
    number, or a boolean as 0/1; None for strings, NaN, identifiers (`id`, `*_id`) and tracked's
    own row fields."""
    if key in ROW_FIELDS or key == "id" or key.endswith("_id"):
        return None
    if isinstance(value, bool):
        return float(value)
    return float(value) if is_number(value) else None


class _Group:
    __slots__ = (
        "calls",
        "cost_usd",
        "errors",
        "latencies",
        "llm_calls",
        "priced_rows",
        "priced_rows_cost",
        "tokens_in",
        "tokens_out",
        "unpriced_calls",
        "usage_unknown_calls",
    )  # fmt: skip

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.llm_calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.usage_unknown_calls = 0
        # Rows whose cost is complete (no LLM call without a cost; none at all costs 0) and their
        # cost: what the mean cost per row is taken over.
        self.priced_rows = 0
        self.priced_rows_cost = 0.0
        self.latencies = Quantiles()

    def add(
        self,
        latency_s: float,
        error: bool,
        llm_calls: int,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None,
        unpriced: int,
        unknown: int = 0,
    ) -> None:
        self.calls += 1
        self.errors += error
        self.latencies.add(latency_s)
        if not unpriced:
            self.priced_rows += 1
            self.priced_rows_cost += cost_usd or 0.0
        self.add_usage(llm_calls, tokens_in, tokens_out, cost_usd, unpriced, unknown)

    def add_usage(
        self, llm_calls: int, tokens_in: int, tokens_out: int, cost_usd: float | None, unpriced: int, unknown: int = 0
    ) -> None:
        """LLM calls and their usage, without a row (a late call, or one LLM call under its model);
        `unknown` of them had usage that could not be read (their tokens are not in `tokens_*`)."""
        self.usage_unknown_calls += unknown
        self.llm_calls += llm_calls
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        if cost_usd is not None:
            self.cost_usd += cost_usd
        self.unpriced_calls += unpriced

    def merge(self, other: _Group) -> None:
        for name in _Group.__slots__:
            if name == "latencies":
                continue
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.merge(other.latencies)

    def known_cost(self) -> float | None:
        """The cost in USD, or None when every LLM call counted is unpriced: unknown, not 0."""
        if self.unpriced_calls and self.unpriced_calls >= self.llm_calls and not self.cost_usd:
            return None  # (results of the older tracker count as unpriced with no LLM call)
        return self.cost_usd

    def tokens_known(self) -> bool:
        """False when every LLM call counted had usage that could not be read: tokens unknown, not 0."""
        return not self.usage_unknown_calls or self.usage_unknown_calls < self.llm_calls

    def figures(self, prefix: str) -> dict[str, Any]:
        known = self.tokens_known()
        out: dict[str, Any] = {
            f"{prefix}calls": self.calls,
            f"{prefix}errors": self.errors,
            f"{prefix}llm_calls": self.llm_calls,
            f"{prefix}tokens_in": self.tokens_in if known else None,
            f"{prefix}tokens_out": self.tokens_out if known else None,
            f"{prefix}cost_usd": self.known_cost(),
            f"{prefix}unpriced_calls": self.unpriced_calls,
            f"{prefix}usage_unknown_calls": self.usage_unknown_calls,
        }
        return out

    def latency(self, prefix: str) -> dict[str, float]:
        q = self.latencies
        if not q.count:
            return {}
        return {f"{prefix}mean": q.mean(), f"{prefix}p50": q.quantile(0.5), f"{prefix}p95": q.quantile(0.95)}


_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-]+")


def model_key(model: str) -> str:
    """A model's name as one W&B key segment: "llama3.2:3b" is "llama3_2_3b"."""
    return _UNSAFE_KEY.sub("_", model).strip("_")[:100] or "unknown"


def model_keys(models: Iterable[str]) -> dict[str, str]:
    """Each model's key segment (`model_key`); names that would share one ("gpt-4.1-mini" and
    "gpt-4_1-mini") each get 8 hex digits of their name's SHA-256 added, so none hides another."""
    names = sorted(set(models))
    plain = {m: model_key(m) for m in names}
    seen: dict[str, int] = {}
    for key in plain.values():
        seen[key] = seen.get(key, 0) + 1
    return {m: k if seen[k] == 1 else f"{k[:91]}_{sha256_hex8(m)}" for m, k in plain.items()}


class Totals:
    """Counts over the rows (top-level calls) of an experiment, overall and per call name, and the
    mean of every numeric custom metric. Not thread-safe on its own: the experiment holds a lock.
    """

    def __init__(self) -> None:
        self.all = _Group()
        self.by_name: dict[str, _Group] = {}
        self.by_model: dict[str, _Group] = {}
        self.metric_sums: dict[str, list[Any]] = {}
        self.ttfts = Quantiles()  # time to first token of the rows that streamed

    def add_model(
        self,
        model: str | None,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None,
        llm_calls: int = 1,
        unpriced: int | None = None,
        unknown: int = 0,
    ) -> None:
        """Count usage under its model: one LLM call (a call that measured its own usage), or a
        result of the older tracker that reported tokens without a measured call (`llm_calls` 0)."""
        group = self.by_model.get(model or "unknown")
        if group is None:
            group = self.by_model[model or "unknown"] = _Group()
        if unpriced is None:
            unpriced = 1 if cost_usd is None else 0
        group.add_usage(llm_calls, tokens_in, tokens_out, cost_usd, unpriced, unknown)

    def add_call(
        self,
        name: str,
        latency_s: float,
        error: bool,
        llm_calls: int,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None,
        unpriced: int,
        unknown: int = 0,
    ) -> None:
        args = (latency_s, error, llm_calls, tokens_in, tokens_out, cost_usd, unpriced, unknown)
        self.all.add(*args)
        group = self.by_name.get(name)
        if group is None:
            group = self.by_name[name] = _Group()
        group.add(*args)

    def add_late(
        self,
        name: str,
        llm_calls: int,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None,
        unpriced: int,
        unknown: int = 0,
    ) -> None:
        """Count the usage of a call that ended after its parent had returned (its parent's row
        does not hold it): in the totals and under the name of the row it belongs to, not as a row."""
        for group in (self.all, self.by_name.setdefault(name, _Group())):
            group.add_usage(llm_calls, tokens_in, tokens_out, cost_usd, unpriced, unknown)

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Count a row as stored in `results.jsonl` (a worker's, or one read back by the commands).
        Rows of metrics only are not calls; rows of the older tracker lack some fields: usage
        without a cost is unpriced."""
        latency = row.get("latency_s")
        if not is_number(latency):
            return
        cost = row.get("cost_usd")
        llm_calls = row.get("llm_calls")
        if llm_calls is None:  # rows written before `llm_calls` was stored
            llm_calls = 1 if row.get("tokens_in") or row.get("tokens_out") else 0
        llm_calls = int(llm_calls)
        unpriced = row.get("unpriced_calls")
        if unpriced is None:
            unpriced = 1 if llm_calls and not is_number(cost) else 0
        unknown = row.get("usage_unknown_calls")
        if unknown is None:  # rows written before the count was stored: null tokens were unknown
            unknown = llm_calls if llm_calls and row.get("tokens_in") is None else 0
        ttft = row.get("ttft_s")
        if is_number(ttft):
            self.add_ttft(float(ttft))
        self.add_call(
            str(row.get("call") or "result"), float(latency), bool(row.get("error")), llm_calls,
            int(row.get("tokens_in") or 0), int(row.get("tokens_out") or 0),
            float(cost) if is_number(cost) else None, int(unpriced), int(unknown),
        )  # fmt: skip

    def add_ttft(self, ttft_s: float) -> None:
        self.ttfts.add(ttft_s)

    def add_metric(self, key: str, value: float, sign: int = 1) -> None:
        """Count a metric value (`sign=-1` takes one back, when a row's value is replaced).

        Infinities are counted apart from the finite sums, so that taking one back is exact.
        """
        slot = self.metric_sums.get(key)
        if slot is None:
            slot = self.metric_sums[key] = [0.0, 0, 0, 0, 0.0]  # finite sum, count, +inf, -inf, sum of squares
        if math.isfinite(value):
            slot[0] += sign * value
            slot[4] += sign * value * value
        elif value > 0:
            slot[2] += sign
        else:
            slot[3] += sign
        slot[1] += sign

    def merge(self, other: Totals) -> None:
        self.all.merge(other.all)
        for mine_by, theirs_by in ((self.by_name, other.by_name), (self.by_model, other.by_model)):
            for name, group in theirs_by.items():
                mine = mine_by.get(name)
                if mine is None:
                    mine = mine_by[name] = _Group()
                mine.merge(group)
        for key, theirs in other.metric_sums.items():
            sums = self.metric_sums.setdefault(key, [0.0, 0, 0, 0, 0.0])
            for i in range(5):
                sums[i] += theirs[i]
        self.ttfts.merge(other.ttfts)

    def as_dict(self) -> dict[str, Any]:
        """The summary: `total/...`, `latency_s/...` and `ttft_s/...` (mean, p50, p95), `cost_usd/mean`
        (per top-level call), per call name when there are two or more, per model, and for each user
        metric `<metric>/mean`, `/n` and `/stderr` (the standard error of the mean).

        `total/cost_complete` is False when any LLM call has no cost (an unpriced model, or usage
        that could not be read): `total/cost_usd` is then the cost of the others only."""
        out = self.all.figures("total/")
        out["total/cost_complete"] = self.all.unpriced_calls == 0
        out.update(self.all.latency("latency_s/"))
        if self.ttfts.count:
            q = self.ttfts
            out.update({"ttft_s/mean": q.mean(), "ttft_s/p50": q.quantile(0.5), "ttft_s/p95": q.quantile(0.95)})
        if self.all.calls:
            # Cost per top-level call, over the rows whose cost is complete (a row with an LLM call
            # of unknown cost would pull the mean down as if that call were free).
            priced = self.all.priced_rows
            out["cost_usd/mean"] = self.all.priced_rows_cost / priced if priced else None
            out["cost_usd/n"] = priced
        if len(self.by_name) > 1:  # one name's block would repeat total/*
            for name, group in sorted(self.by_name.items()):
                out.update(group.figures(f"{name}/"))
                out.update(group.latency(f"{name}/latency_s/"))
        keys = model_keys(self.by_model)
        for model, group in sorted(self.by_model.items()):
            key = keys[model]
            out[f"model/{key}/name"] = model
            for figure in ("llm_calls", "tokens_in", "tokens_out", "unpriced_calls", "usage_unknown_calls"):
                out[f"model/{key}/{figure}"] = getattr(group, figure)
            if not group.tokens_known():
                out[f"model/{key}/tokens_in"] = out[f"model/{key}/tokens_out"] = None
            out[f"model/{key}/cost_usd"] = group.known_cost()
        for key, (total, count, pos_inf, neg_inf, squares) in sorted(self.metric_sums.items()):
            if count:
                out[f"{key}/n"] = count
                if pos_inf and neg_inf:
                    out[f"{key}/mean"] = math.nan
                elif pos_inf or neg_inf:
                    out[f"{key}/mean"] = math.inf if pos_inf else -math.inf
                else:
                    mean = total / count
                    out[f"{key}/mean"] = mean
                    if count > 1:  # the standard error of the mean, from the sample variance
                        variance = max(squares - count * mean * mean, 0.0) / (count - 1)
                        out[f"{key}/stderr"] = math.sqrt(variance / count)
        return out
