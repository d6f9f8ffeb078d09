"""The older tracker API, kept working: `ExperimentConfig`, `ExperimentTracker`, `get_tracker`.

Code written for the research harness's tracker runs unchanged on top of `experiment()`::

    from tracked.harness import ExperimentConfig, get_tracker

    config = ExperimentConfig(experiment_name="tombench_llama32", strategy="single", provider="ollama",
                              model="llama3.2:latest")
    tracker = get_tracker()              # W&B only if WANDB_ENABLED=true, as before
    tracker.start_experiment(config)
    for problem in problems:
        result = run_strategy("single", problem, provider="ollama")
        tracker.log_result(result)
    tracker.finish_experiment()

W&B stays off unless asked for (`use_wandb=True` or `WANDB_ENABLED=true`); the local store
(`experiments/<name>_<timestamp>/`) is always written.

Each `log_result` is one row. The LLM calls made for it since the previous one (through a client
instrumented with `tracked.instrument()` or `get_tracker(instrument=True)`, or `@tracked`
functions) are its children: the row's tokens, cost and `llm_calls` are what they measured, and
the result's own `tokens_in`/`tokens_out`/`cost_usd` are only a report (kept as `reported_*` on
the call record when more than 1% off, with one warning). A result with nothing measured for it
counts its own tokens and cost, and no LLM call (one warning: the number of calls is not known).
A `log_result` made inside a `@tracked` call makes that call the row.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._call import RESERVED, check_metrics
from ._config import warn_once
from ._context import current_call
from ._experiment import Experiment
from ._forksafe import loading
from ._instrument import instrument as _instrument
from ._options import check_str, check_tags
from ._values import clean
from .usage import Usage
from .usage.values import cost, count, get

if TYPE_CHECKING:
    from ._call import Call
    from .sinks.wandb import WandbSink

__all__ = ["ExperimentConfig", "ExperimentTracker", "get_tracker", "wandb_enabled"]

DEFAULT_PROJECT = "hidden-layer"


def wandb_enabled() -> bool:
    """`WANDB_ENABLED` as the older tracker read it: "true" turns W&B on, anything else leaves it off."""
    return os.environ.get("WANDB_ENABLED", "false").strip().lower() == "true"


class ExperimentConfig:
    """What an experiment is: its name, strategy, provider, model, temperature, and any extra field
    (the run's config); and how W&B files the run: `group`, `tags`, `notes`, `job_type` (not config).

    Raises:
        ValueError: a missing name, or a W&B field W&B would refuse (see `experiment(...)`).
    """

    def __init__(
        self,
        experiment_name: str,
        strategy: str,
        provider: str,
        model: str | None = None,
        temperature: float | None = None,
        *,
        group: str | None = None,
        tags: Any = None,
        notes: str | None = None,
        job_type: str | None = None,
        **extra: Any,
    ) -> None:
        if not isinstance(experiment_name, str) or not experiment_name:
            raise ValueError(f"experiment_name must be a non-empty string, got {experiment_name!r}")
        self.group = check_str("group", group)
        self.tags = check_tags(tags)
        self.notes = check_str("notes", notes)
        self.job_type = check_str("job_type", job_type)
        self.experiment_name = experiment_name
        self.strategy = strategy
        self.provider = provider
        self.model = model
        self.temperature = temperature
        self.extra = dict(extra)

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """The run's config: strategy, provider, model, temperature and every extra field."""
        return {
            "strategy": self.strategy,
            "provider": self.provider,
            "model": self.model,
            "temperature": self.temperature,
            **self.extra,
        }

    def __repr__(self) -> str:
        return f"ExperimentConfig(experiment_name={self.experiment_name!r}, {self.to_dict()!r})"


class ExperimentTracker:
    """The older tracker: one experiment at a time, `start_experiment` ... `finish_experiment`."""

    def __init__(
        self, use_wandb: bool = False, *, dir: str | os.PathLike[str] | None = None, instrument: bool = False
    ) -> None:
        """`instrument=True` instruments every installed provider library (`tracked.instrument()`),
        so each LLM call a strategy makes through an OpenAI, Anthropic or Ollama client is measured."""
        if not isinstance(instrument, bool):
            raise TypeError(f"instrument must be True or False, got {instrument!r}")
        if instrument:
            _instrument()
        self.use_wandb = bool(use_wandb)
        self.dir = dir
        self.experiment: Experiment | None = None
        self.config: ExperimentConfig | None = None
        self._last: Call | None = None  # the last result's row, open for `log` until the next result
        self._globals: Any = None  # undoes wandb's current run
        self._joined: Call | None = None  # the tracked call the last result joined

    def start_experiment(self, config: ExperimentConfig) -> Path | None:
        """Open an experiment for `config`; returns its local store directory."""
        if not isinstance(config, ExperimentConfig):
            raise TypeError(f"start_experiment takes an ExperimentConfig, got {type(config).__name__}")
        if self.experiment is not None and not self.experiment.finished:
            self.finish_experiment()  # also releases wandb's current run
        self.config = config
        self._last = None
        self.experiment = Experiment(
            config.experiment_name,
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            config=config.to_dict(),
            group=config.group,
            tags=config.tags,
            notes=config.notes,
            job_type=config.job_type,
            dir=self.dir,
            wandb=self.use_wandb,
        )
        # As the older tracker's `wandb.init` did, the run is wandb's current run (below): written
        # by this process, not W&B's writer process.
        self.experiment._in_process = self.use_wandb
        self.experiment.start()
        self.experiment.collect_results()
        if self.use_wandb:
            # As the older tracker's `wandb.init` did: the run is wandb's current run, so the
            # guide's `wandb.log(...)` after `log_result` joins that result's row.
            self._globals = make_current(self.experiment, log=self.log)
        return self.experiment.path

    def log_result(self, result: Any) -> None:
        """Log a result (an object or a dict with latency_s, tokens_in, tokens_out, cost_usd, output,
        metadata) as one row.

        The calls made since the previous result (through instrumented clients or `@tracked`
        functions) are its children: the row's tokens, cost and `llm_calls` are what they measured,
        its latency runs from the first of them, and the result's own figures are a report (kept
        as `reported_*` on the call record when more than 1% off, with one warning). With nothing
        measured, the row holds the result's own figures and counts no LLM call (one warning).
        Inside a `@tracked` call, that call becomes the row and the result's output joins it.

        Raises:
            RuntimeError: before `start_experiment()` or after `finish_experiment()`.
        """
        exp = self.experiment
        if exp is None or exp.finished:
            raise RuntimeError("log_result() needs start_experiment() first")
        extras: dict[str, Any] = {}
        output = get(result, "output")
        if output is not None:
            extras["output"] = output if isinstance(output, str) else repr(output)
        metadata = get(result, "metadata")
        if isinstance(metadata, Mapping):
            for key, value in metadata.items():
                extras[f"metadata/{key}"] = value
        for key in ("strategy", "provider", "model"):
            value = get(result, key)
            if isinstance(value, str):
                extras[key] = value
        extras = {k: clean(v, "log_result") for k, v in extras.items()}
        results = exp.collect_results()
        last, self._last = self._last, None
        if last is not None:  # the previous result's row is complete
            exp._seal(last)
        if current_call() is not None:
            # Inside a tracked call: that call is the result's row, its own measurements win; the
            # result's output and metadata join it.
            results.promote_current()
            if extras:
                exp.log(extras)
            return
        tokens_in = count(get(result, "tokens_in"))
        tokens_out = count(get(result, "tokens_out"))
        cost_usd = cost(get(result, "cost_usd"))
        latency_s = cost(get(result, "latency_s"))
        model = get(result, "model")
        model = model if isinstance(model, str) else None
        report = Usage(tokens_in, tokens_out, None, None, model, None, cost_usd)
        row = results.end(extras, report)
        if row is not None:
            self._last = row  # the calls measured for it are its children
            return
        # One result per call: a second one after the same call is a row of its own.
        joined = exp.join_last_row(extras, unless=self._joined)
        if joined is not None:
            self._joined = joined
            return
        # Nothing measured for it: the result's own figures are the row, with no LLM call
        # invented (how many it made is not known).
        if tokens_in or tokens_out or cost_usd:
            warn_once(
                "harness.unmeasured",
                "log_result: no LLM call was measured for this result, so its row holds the tokens and "
                "cost the result reports and llm_calls counts no call for it; LLM calls are measured when "
                "they go through a client instrumented with tracked.instrument() (or get_tracker(instrument=True)) "
                "or through a @tracked function",
            )
        self._last = exp.add_result(
            extras,
            latency_s=latency_s or 0.0,
            model=model if model is not None else self.config.model if self.config else None,
            tokens_in=tokens_in or 0,
            tokens_out=tokens_out or 0,
            cost_usd=cost_usd,
            llm_calls=0,
            unpriced=1 if cost_usd is None and (tokens_in or tokens_out) else 0,
        )

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Log metrics for the last result: they join its row (the preferred form of the guide's
        `wandb.log({...})` after `log_result`); before any result, or once its row is complete,
        they are a row of their own.

        Raises:
            RuntimeError: before `start_experiment()` or after `finish_experiment()`.
        """
        exp = self.experiment
        if exp is None or exp.finished:
            raise RuntimeError("log() needs start_experiment() first")
        if isinstance(metrics, Mapping) and any(k in RESERVED for k in metrics):
            # The guide's own pattern logs `latency_s`, `tokens_in`, ... with `wandb.log` after
            # `log_result`: kept as the result's report, beside what was measured.
            clash = sorted(k for k in metrics if k in RESERVED)
            warn_once(
                ("harness-reserved", tuple(clash)),
                f"tracked: {', '.join(clash)} {'is' if len(clash) == 1 else 'are'} measured by tracked; the values "
                f"logged are kept as {', '.join('reported_' + k for k in clash)}",
            )
            metrics = {(f"reported_{k}" if k in RESERVED else k): v for k, v in metrics.items()}
        checked = {k: clean(v, "log") for k, v in check_metrics(metrics, "tracker.log").items()}
        last = self._last
        if last is None or not exp._join(last, checked):
            exp.log(checked)

    def finish_experiment(self) -> dict[str, Any] | None:
        """Close the experiment; returns its summary (totals and status)."""
        exp, self.experiment = self.experiment, None
        if exp is None:
            return None
        if self._globals is not None:
            self._globals, undo = None, self._globals
            undo()
        self._last = None
        exp.finish()
        return getattr(exp, "final_summary", None)


def make_current(exp: Experiment, *, log: Callable[[Mapping[str, Any]], None]) -> Callable[[], None] | None:
    """Make `exp`'s W&B run wandb's current run (`wandb.run`, `wandb.config`, `wandb.summary`),
    with `wandb.log` calling `log` and `wandb.save` calling `exp.save`, as the older tracker's own
    `wandb.init` did. Returns what undoes it, or None when the experiment has no W&B run."""
    sink = cast("WandbSink | None", exp._sinks.background.get("wandb"))  # None: W&B off, or failed
    if sink is None:
        return None
    try:
        run = sink.start()  # now, on this thread: the guide calls wandb.log right after log_result
        with loading():
            from wandb.sdk.lib import module
    except Exception as exc:
        warn_once(("wandb-current", type(exc)), f"tracked: the W&B run could not be made wandb's current run ({exc!r})")
        return None

    def wandb_log(data: Mapping[str, Any], step: Any = None, commit: Any = None, *args: Any, **kwargs: Any) -> None:
        log(data)

    def wandb_save(glob_str: Any = None, base_path: Any = None, policy: Any = "live", *args: Any, **kw: Any) -> None:
        # As wandb's: a glob of files (none matching is not an error), each kept with the run.
        for name in sorted(glob.glob(str(glob_str))) if glob_str is not None else ():
            if os.path.isfile(name):
                exp.save(name)

    module.set_global(run=run, config=run.config, summary=run.summary, log=wandb_log, save=wandb_save)  # type: ignore[no-untyped-call]

    def undo() -> None:
        import wandb

        if getattr(wandb, "run", None) is run:
            module.unset_globals()  # type: ignore[no-untyped-call]

    return undo


_tracker: ExperimentTracker | None = None


def get_tracker(use_wandb: bool | None = None, *, instrument: bool = False) -> ExperimentTracker:
    """The process's tracker. `use_wandb=None` reads `WANDB_ENABLED` (default false).

    `instrument=True` also instruments every installed provider library (`tracked.instrument()`):
    the LLM calls a strategy makes become the children of the result logged after them, so each
    row's tokens, cost and `llm_calls` are measured, not taken from the result.
    """
    global _tracker
    wanted = wandb_enabled() if use_wandb is None else bool(use_wandb)
    if _tracker is None:
        _tracker = ExperimentTracker(use_wandb=wanted, instrument=instrument)
    else:
        if not isinstance(instrument, bool):
            raise TypeError(f"instrument must be True or False, got {instrument!r}")
        if instrument:
            _instrument()
        _tracker.use_wandb = wanted
    return _tracker
