"""The call: one execution of a `@tracked` function, and the roll-up of usage into its parent."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._config import config, warn_once
from ._values import clean, redact
from .pricing import cost_of
from .usage import Usage, extract

if TYPE_CHECKING:
    from ._experiment import Experiment

__all__ = ["FIGURES", "UNKNOWN", "Call", "RemoteParent", "check_metrics"]

# Ids are a per-process random prefix and a counter: unique across processes (the prefix is
# renewed in forked children) and cheap, because the string is only built when it is read. A forked
# child keeps counting where its parent was: the calls numbered before `_since` were made by the
# parent process (a call still running when it forked, the parent of the child's first calls), and
# keep the parent's prefix (`_forked`), so their ids read the same in both processes.
_counter = itertools.count(1)
_prefix = os.urandom(4).hex()
_since = 1
_forked: list[tuple[int, str]] = []  # (first number, prefix) of each process this one was forked from


def _renew_prefix() -> None:
    global _prefix, _counter, _since
    n = next(_counter)
    _counter = itertools.count(n)
    _forked.append((_since, _prefix))
    _since = n
    _prefix = os.urandom(4).hex()


def _prefix_of(n: int) -> str:
    """The prefix of call number `n`, made before this process was forked."""
    for first, prefix in reversed(_forked):
        if n >= first:
            return prefix
    return _forked[0][1]  # pragma: no cover - numbers start at the first process's first


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_prefix)

# perf_counter() is cheaper than time.time() and monotonic; start times are derived from it.
_EPOCH = time.time() - perf_counter()

# Children of one parent can end in different threads, and after the parent; no lock is taken.
# Each child hands up its figures in a one-item list (a cell) appended to the list in the parent's
# `__dict__` under "_kids" (installed with an atomic `dict.setdefault`). The parent, ending, closes
# that slot with _CLOSED (atomic `setdefault` when there is no list, else a store) and then takes
# each cell's item with `list.pop()`; a child that finds the slot closed after appending takes its
# own item back the same way, and is late. `pop` is atomic, so each item is taken exactly once:
# counted by its parent, or (ending after it) by the experiment as late.
_CLOSED: list[Any] = []  # a parent's "_kids" once it has ended
_KIDS = "_kids"

#: The usage of an LLM call that could not be read (a stream left before its usage): set as a
#: call's own usage, it makes the call one LLM call of unknown tokens and cost.
UNKNOWN = Usage()


#: The names of a row's measured figures: a user metric of one of these names would replace what
#: tracked measured, in W&B's history and tables (the totals would disagree), so it is refused.
RESERVED = frozenset({
    "call", "call_id", "latency_s", "ttft_s", "tokens_in", "tokens_out", "cost_usd", "llm_calls", "unpriced_calls",
    "usage_unknown_calls", "error", "error_type", "model",
})  # fmt: skip


def check_metrics(metrics: Any, where: str) -> dict[str, Any]:
    """Validate user metrics at the user's call: a mapping with non-empty string keys, none of them
    the name of a measured figure (`RESERVED`).

    Raises:
        TypeError: not a mapping, or a key that is not a string.
        ValueError: an empty key, one starting with "_" (W&B's), or a measured figure's name.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{where} takes a mapping of metric names to values, got {type(metrics).__name__}")
    for key in metrics:
        if not isinstance(key, str):
            raise TypeError(f"{where}: metric names must be strings, got {key!r}")
        if not key or key.startswith("_"):
            raise ValueError(f"{where}: metric name {key!r} is empty or starts with '_', which W&B reserves")
        if key in RESERVED:
            raise ValueError(
                f"{where}: {key!r} is a figure tracked measures for each call, and a metric of that name would "
                f"replace it; log yours under another name (such as 'reported_{key}')"
            )
    return dict(metrics)


# A call's figures, in the order of `Call._figs`. Until the call ends they read as `_RUNNING`.
FIGURES = (
    "latency_s",
    "model",
    "provider",
    "tokens_in",
    "tokens_out",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "cost_source",
    "local",
    "llm_calls",
    "unpriced_calls",
    "usage_unknown_calls",
)
_RUNNING: tuple[Any, ...] = (None, None, None, 0, 0, 0, 0, None, None, False, 0, 0, 0)


class Call:
    """One execution of a `@tracked` function.

    While it runs, `tracked.current_call()` returns it, and code inside can add usage and metrics.
    When it has ended it holds its final figures: `latency_s`, `tokens_in`, `tokens_out`,
    `cost_usd`, `llm_calls`, ... (rolled up from its children when it reported no usage itself).
    """

    # Every call has these slots. The figures are one tuple, written once when the call ends;
    # rarer state lives in the instance dict, with class-level defaults, so most calls never
    # make one.
    __slots__ = ("__dict__", "_figs", "_n", "_own", "_t0", "experiment", "inputs", "name", "parent")

    ttft_s: float | None = None
    incomplete: bool = False  # a stream left before its end (break, close, garbage collection)
    usage_unknown: bool = False  # an LLM call whose usage could not be read: tokens and cost unknown
    cache_write_1h_tokens: int = 0  # of an LLM call's cache writes, those to a 1-hour cache
    web_searches: int = 0  # server-side web search requests an LLM call made (priced per request)
    reported: dict[str, Any] | None = None  # what the call reported where its children measured otherwise
    late: bool = False  # ended after its parent had returned
    _open_streams: int = 0  # instrumented streams opened directly in it and not ended yet (`_instrument`)
    metrics: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    output: Any = None
    _row: Any = None  # the experiment's row state when this is a top-level call
    _outer: bool = False  # a top-level call of its experiment (a row, or a child of the older tracker's result)
    _lane: Any = None  # the thread and task of a top-level call: where its row can still grow
    _adrift: bool = False  # begun in a thread that does not carry the context (its experiment found by `ambient`)
    _overlap: bool = False  # a top-level call begun while another task of its thread ran one
    _seal_at_end: bool = False  # its row was complete before it ended: sealed as soon as it is made
    _left: Any = None  # a top-level async generator its consumer left (`break`) and not closed yet

    def __init__(self, name: str, parent: Call | None, experiment: Experiment | None, t0: float) -> None:
        self.name = name
        self._n = next(_counter)
        self.parent = parent
        self.experiment = experiment
        self._t0 = t0  # perf_counter() at the start
        self._figs = _RUNNING
        # Read by every call as it ends: slots, which are faster to read than class-level defaults.
        self._own: Usage | None = None  # usage this call reported itself (add_usage, or its result)
        # What each ended child adds (in `__dict__["_kids"]`, see _CLOSED), summed column by
        # column when this call ends: tokens_in, tokens_out, cache_read, cache_write, cost (0.0 if
        # unpriced), llm_calls, unpriced llm calls, priced llm calls, local llm calls, llm calls
        # of unknown usage.
        self.inputs: dict[str, Any] | None = None  # captured inputs (capture_io)

    @property
    def ended(self) -> bool:
        """Whether the call has ended (its figures are final)."""
        return self._figs is not _RUNNING

    # --- the figures (final once the call has ended) -------------------------------------------

    @property
    def latency_s(self) -> float | None:
        """Seconds from the start to the return (or the last item of a generator)."""
        return self._figs[0]  # type: ignore[no-any-return]

    @property
    def model(self) -> str | None:
        """The model: from the response, else `@tracked(model=)`, else the call's `model` argument."""
        return self._figs[1]  # type: ignore[no-any-return]

    @property
    def provider(self) -> str | None:
        """The provider, from `@tracked(provider=)` or the response."""
        return self._figs[2]  # type: ignore[no-any-return]

    @property
    def tokens_in(self) -> int:
        """Input tokens, cached ones included (summed over the children if it reported none)."""
        return self._figs[3]  # type: ignore[no-any-return]

    @property
    def tokens_out(self) -> int:
        """Output tokens."""
        return self._figs[4]  # type: ignore[no-any-return]

    @property
    def cache_read_tokens(self) -> int:
        """Input tokens read from a prompt cache."""
        return self._figs[5]  # type: ignore[no-any-return]

    @property
    def cache_write_tokens(self) -> int:
        """Input tokens written to a prompt cache."""
        return self._figs[6]  # type: ignore[no-any-return]

    @property
    def cost_usd(self) -> float | None:
        """Cost in USD, or None if unpriced."""
        return self._figs[7]  # type: ignore[no-any-return]

    @property
    def cost_source(self) -> str | None:
        """Where the cost came from: "genai-prices X.Y.Z", "override", "local", "reported", "children"."""
        return self._figs[8]  # type: ignore[no-any-return]

    @property
    def local(self) -> bool:
        """Whether every LLM call in it ran on a local provider (at no cost)."""
        return self._figs[9]  # type: ignore[no-any-return]

    @property
    def llm_calls(self) -> int:
        """LLM calls: 1 for a call that reported usage, else the count below it."""
        return self._figs[10]  # type: ignore[no-any-return]

    @property
    def unpriced_calls(self) -> int:
        """LLM calls in it that have no cost."""
        return self._figs[11]  # type: ignore[no-any-return]

    @property
    def usage_unknown_calls(self) -> int:
        """LLM calls in it whose usage could not be read: its tokens leave them out."""
        return self._figs[12]  # type: ignore[no-any-return]

    @property
    def tokens_known(self) -> bool:
        """Whether its tokens are known: False when every LLM call in it has unknown usage."""
        unknown = self._figs[12]
        return not unknown or unknown < self._figs[10]

    @property
    def start_time(self) -> float:
        """When the call started, in seconds since the epoch."""
        return _EPOCH + self._t0

    # --- identity ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """Unique id of this call (unique across processes, the same in a process forked while it ran)."""
        n = self._n
        return f"{_prefix if n >= _since else _prefix_of(n)}-{n:x}"

    @property
    def parent_id(self) -> str | None:
        """Id of the tracked call this one ran inside, or None."""
        return self.parent.id if self.parent is not None else None

    def __repr__(self) -> str:
        state = f"latency_s={self.latency_s:.6f}" if self.latency_s is not None else "running"
        usage = f"tokens_in={self.tokens_in} tokens_out={self.tokens_out} cost_usd={self.cost_usd}"
        return f"<Call {self.name} {self.id} {state} {usage}>"

    # --- what user code may do while the call runs ---------------------------------------

    def add_usage(
        self,
        *,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        model: str | None = None,
        provider: str | None = None,
        cost_usd: float | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        cache_write_1h_tokens: int | None = None,
        web_searches: int | None = None,
    ) -> None:
        """Add usage by hand; repeated calls add up. The call's result is then not read for usage.

        `tokens_in` counts every input token; `cache_read_tokens` and `cache_write_tokens` are the
        part of them read from or written to a prompt cache, `cache_write_1h_tokens` the part of the
        writes that went to a 1-hour cache. `web_searches` counts server-side web search requests.
        Raises `ValueError` for a count that is not a non-negative int.

        Example:
            >>> @tracked
            ... def call_model(prompt):
            ...     out = my_client.generate(prompt)
            ...     tracked.current_call().add_usage(tokens_in=out.n_in, tokens_out=out.n_out, model="my-model")
        """
        for label, n in (
            ("tokens_in", tokens_in),
            ("tokens_out", tokens_out),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_tokens", cache_write_tokens),
            ("cache_write_1h_tokens", cache_write_1h_tokens),
            ("web_searches", web_searches),
        ):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ValueError(f"add_usage: {label} must be a non-negative int, got {n!r}")
        for label, s in (("model", model), ("provider", provider)):
            if s is not None and (not isinstance(s, str) or not s):
                raise ValueError(f"add_usage: {label} must be a non-empty string, got {s!r}")
        if cost_usd is not None:
            try:
                valid = (
                    not isinstance(cost_usd, bool)
                    and isinstance(cost_usd, (int, float))
                    and math.isfinite(cost_usd)
                    and cost_usd >= 0
                )
            except OverflowError:  # an int too large for a float
                valid = False
            if not valid:
                raise ValueError(f"add_usage: cost_usd must be a finite non-negative number, got {cost_usd!r}")
            cost_usd = float(cost_usd)
        if self.ended:
            raise RuntimeError(f"add_usage: call {self.name!r} has already ended")
        old = self._own
        if old is None:
            self._own = Usage(
                tokens_in, tokens_out, cache_read_tokens, cache_write_tokens, model, provider, cost_usd,
                cache_write_1h_tokens, web_searches,
            )  # fmt: skip
            return

        def plus(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else a + b

        self._own = Usage(
            plus(old.tokens_in, tokens_in),
            plus(old.tokens_out, tokens_out),
            plus(old.cache_read_tokens, cache_read_tokens),
            plus(old.cache_write_tokens, cache_write_tokens),
            model or old.model,
            provider or old.provider,
            plus(old.cost_usd, cost_usd),
            plus(old.cache_write_1h_tokens, cache_write_1h_tokens),
            plus(old.web_searches, web_searches),
        )

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Record metrics on this call; on a top-level call of an experiment they join its row."""
        checked = {k: clean(v, "log") for k, v in check_metrics(metrics, "Call.log").items()}
        if self.metrics is None:
            self.metrics = checked
        else:
            self.metrics.update(checked)
        if self._figs is not _RUNNING and self.experiment is not None and self._row is not None:
            self.experiment._join(self, checked)

    # --- the end of the call (SDK side; guarded by the wrapper) ---------------------------

    def _finish(
        self, latency_s: float, result: Any, spec_model: str | None, spec_provider: str | None, arg_model: Any
    ) -> None:
        own = self._own
        from_result = own is None and result is not None
        if from_result:
            own = extract(result)
        attrs = self.__dict__
        kids = self._close_kids()
        measured_model = None
        if kids:
            sums = kids[0] if len(kids) == 1 else tuple(map(sum, zip(*kids, strict=True)))
            if from_result and own is not None:
                measured = attrs.get("_measured")
                if measured is not None and id(result) in measured:
                    # The response a child measured (an instrumented request), not a report; its
                    # model still names this call's.
                    measured_model, own = own.model, None
        cost_source = None
        local = False
        if own is not None:
            # Unpacked (the Usage fields in order), which the interpreter does faster than by name.
            tokens_in, tokens_out, cache_read, cache_write, model, provider, cost, write_1h, searches = own
            model = model or spec_model or (arg_model if type(arg_model) is str else None)
            provider = spec_provider or provider
            below = sums[5] if kids else 0
            if below:
                # Measured beats reported: the LLM calls below measured tokens (and cost, where
                # priced), so those are the figures; the call's own report counts only for what
                # nothing below measured. A report that disagrees is kept on the record.
                self._check_report(tokens_in, tokens_out, cost, sums)
                tokens_in, tokens_out, cache_read, cache_write = sums[0], sums[1], sums[2], sums[3]
                llm_calls = below
                unknown = sums[9]
                if sums[7]:  # priced below
                    cost, cost_source, unpriced = sums[4], "children", sums[6]
                    local = sums[8] == below
                elif cost is not None:  # nothing below priced: the reported cost covers them
                    cost_source, unpriced = "reported", 0
                else:
                    unpriced = sums[6]
            else:
                tokens_in = tokens_in or 0
                tokens_out = tokens_out or 0
                cache_read = cache_read or 0
                cache_write = cache_write or 0
                if write_1h or searches:  # rare: on the record of this LLM call alone
                    if write_1h:
                        attrs["cache_write_1h_tokens"] = write_1h
                    if searches:
                        attrs["web_searches"] = searches
                if cost is not None:
                    cost_source = "reported"
                elif own is not UNKNOWN:
                    cost, cost_source, local = cost_of(
                        provider, model, tokens_in, tokens_out, cache_read, cache_write, self._t0 + latency_s,
                        write_1h or 0, searches or 0,
                    )  # fmt: skip
                elif provider is not None and provider.lower() in config.local_providers:
                    cost, cost_source, local = 0.0, "local", True  # usage unknown, but free all the same
                llm_calls = 1
                unpriced = 1 if cost is None else 0
                unknown = 1 if own is UNKNOWN else 0
                attrs["_leaf"] = True  # an LLM call itself: counted per model by its experiment
        else:
            model = spec_model or measured_model or (arg_model if type(arg_model) is str else None)
            provider = spec_provider
            if kids:
                tokens_in, tokens_out, cache_read, cache_write, cost, llm_calls = sums[:6]
                unpriced, priced, n_local, unknown = sums[6:]
                if priced:
                    cost_source = "children"
                else:
                    cost = None
                local = llm_calls > 0 and n_local == llm_calls
            else:
                tokens_in = tokens_out = cache_read = cache_write = llm_calls = unpriced = unknown = 0
                cost = None
        self._figs = (
            latency_s, model, provider, tokens_in, tokens_out, cache_read, cache_write,
            cost, cost_source, local, llm_calls, unpriced, unknown,
        )  # fmt: skip
        parent = self.parent
        if parent is not None:
            # The parent sums its children when it ends.
            up = (
                tokens_in, tokens_out, cache_read, cache_write,
                0.0 if cost is None else cost, llm_calls, unpriced,
                0 if cost is None else llm_calls - unpriced, llm_calls if local else 0, unknown,
            )  # fmt: skip
            attrs = parent.__dict__
            siblings = attrs.get(_KIDS)
            if siblings is None:
                siblings = attrs.setdefault(_KIDS, [])
            if siblings is _CLOSED:
                self._ended_late(parent)
            else:
                cell = [up]
                siblings.append(cell)
                if attrs[_KIDS] is _CLOSED:  # the parent ended meanwhile: did it take this item?
                    try:
                        cell.pop()
                    except IndexError:
                        pass  # it did
                    else:
                        self._ended_late(parent)

    def _close_kids(self) -> list[tuple[Any, ...]] | None:
        """Close the slot children hand their figures up in, and take what was handed up: the
        figures of each child that ended (None when none did). A child ending later is late."""
        attrs = self.__dict__
        cells = attrs.setdefault(_KIDS, _CLOSED)
        if cells is _CLOSED:
            return None
        attrs[_KIDS] = _CLOSED  # children handed up: close the slot, then take their items
        kids = []
        for cell in cells:
            try:
                kids.append(cell.pop())
            except IndexError:  # taken back by a child that found the slot closed: late
                pass
        return kids

    def _cut_short(self) -> tuple[Any, ...] | None:
        """This top-level call is still running as its experiment finishes: the figures of the
        children that had ended (and, for a generator that yielded a provider's stream items, one
        LLM call of unknown usage), summed as `Totals.add_late` takes them, or None."""
        kids = self._close_kids()
        if kids:
            sums = tuple(map(sum, zip(*kids, strict=True)))
            return sums[0], sums[1], None if not sums[7] else sums[4], sums[5], sums[6], sums[9]
        attrs = self.__dict__
        if attrs.get("_seen") and not attrs.get("_streaming_child"):
            return 0, 0, None, 1, 1, 1
        return None

    def _ended_late(self, parent: Call) -> None:
        """This call ended after its parent had returned: the parent's figures stay as they were,
        and the experiment counts this call's in its totals itself."""
        self.late = True
        # (a call begun after its parent's experiment had finished has no experiment of its own)
        exp = self.experiment if self.experiment is not None else parent.experiment
        if exp is None:
            return  # outside any experiment: nothing is recorded
        if exp.summarised:
            warn_once(
                ("after-finish", exp.name, self.name),  # one warning per call, begun or ended after the finish
                f"tracked: {self.name} ended after its experiment {exp.name!r} had finished, so it is in none of "
                "its figures; wait for the work an experiment starts before leaving it",
            )
            return
        warn_once(
            ("late", self.name),
            f"tracked: {self.name} ended after {parent.name}, the call it ran in, had returned; "
            f"it is counted in the experiment's totals, not in {parent.name}'s figures",
        )

    def _check_report(self, tokens_in: int | None, tokens_out: int | None, cost: float | None, sums: Any) -> None:
        """Compare what this call reported with what its children measured; more than 1% apart,
        the report is kept on the record (`reported_*`) and one warning per call name names both."""
        apart = []
        for label, reported, measured, measured_at_all in (
            ("tokens_in", tokens_in, sums[0], True),
            ("tokens_out", tokens_out, sums[1], True),
            ("cost_usd", cost, sums[4], sums[7] > 0),
        ):
            if reported is not None and measured_at_all and abs(reported - measured) > 0.01 * max(measured, reported):
                apart.append((label, reported, measured))
        if not apart:
            return
        if self.reported is None:
            self.reported = {}
        for label, reported, _ in apart:
            self.reported[label] = reported

        figures = ", ".join(
            f"{label} {reported!r} reported, {measured!r} measured" for label, reported, measured in apart
        )
        warn_once(
            ("report-disagrees", self.name),
            f"tracked: {self.name} returned its own usage, which disagrees with the LLM calls measured inside it "
            f"({figures}); the measured figures are used",
        )

    def _set_figures(self, **figures: Any) -> None:
        """End a call made by hand (a harness result that is not a tracked call) with these figures."""
        self._figs = tuple(figures.get(name, default) for name, default in zip(FIGURES, _RUNNING, strict=True))

    def _fail(self, exc: BaseException) -> None:
        self.error_type = type(exc).__qualname__
        try:
            self.error_message = redact(str(exc)[:2000])  # provider errors can quote the key
        except Exception:  # a user exception whose __str__ raises
            self.error_message = f"<unprintable {type(exc).__qualname__}>"

    # --- serialisation (off the caller's path where possible) ----------------------------

    def to_record(self) -> dict[str, Any]:
        """The call as a JSON-ready dict, as written to `calls.jsonl`."""
        # The figures read from their tuple directly (the properties above, without a call each):
        # this runs for every call, on the calls thread.
        f = self._figs
        parent = self.parent
        rec: dict[str, Any] = {
            "id": self.id,
            "parent_id": parent.id if parent is not None else None,
            "name": self.name,
            "start_time": _EPOCH + self._t0,
            "latency_s": f[0],
            "ttft_s": self.ttft_s,
            "model": f[1],
            "provider": f[2],
            "tokens_in": f[3],
            "tokens_out": f[4],
            "cache_read_tokens": f[5],
            "cache_write_tokens": f[6],
            "cost_usd": f[7],
            "cost_source": f[8],
            "local": f[9],
            "llm_calls": f[10],
            "error": self.error_type,
            "error_message": self.error_message,
        }
        if self.cache_write_1h_tokens:
            rec["cache_write_1h_tokens"] = self.cache_write_1h_tokens
        if self.web_searches:
            rec["web_searches"] = self.web_searches
        if "_leaf" in self.__dict__:
            rec["llm"] = True  # measured its own usage: the LLM calls' records sum to the totals
        if f[11]:  # LLM calls in it without a cost: its cost_usd leaves them out
            rec["unpriced_calls"] = f[11]
        if self.incomplete:
            rec["incomplete"] = True
        if self.usage_unknown:
            rec["usage_unknown"] = True
        unknown = f[12]
        if unknown:  # LLM calls in it whose usage could not be read: its tokens leave them out
            rec["usage_unknown_calls"] = unknown
            if unknown >= f[10]:  # (not `tokens_known`)
                rec["tokens_in"] = rec["tokens_out"] = None  # not read: unknown, not 0
        if self.late:
            rec["late"] = True
        if self.reported:
            for label, value in self.reported.items():
                rec[f"reported_{label}"] = value
        if self.metrics:
            rec["metrics"] = dict(self.metrics)
        if self.inputs is not None:
            rec["inputs"] = self.inputs
        if self.output is not None:
            rec["output"] = self.output
        return rec


class _Discard(list[Any]):
    """A list that keeps nothing appended to it."""

    def append(self, item: Any) -> None:
        pass


class RemoteParent(Call):
    """The call of another process that a worker process's top-level calls ran in (the one
    `exp.handle()` was made in): its id, for their records. What they add up to is counted by their
    experiment's rows, and not handed up to it (it is never ended here)."""

    __slots__ = ("_id",)

    def __init__(self, call_id: str) -> None:
        super().__init__("remote", None, None, 0.0)
        self._id = call_id
        self.__dict__[_KIDS] = _Discard()

    @property
    def id(self) -> str:
        """The id of the call in the other process."""
        return self._id
