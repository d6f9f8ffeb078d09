"""`tracked sweep sweep.yaml`: a W&B sweep run on this machine, without a W&B server.

The next parameters come from the `sweeps` package (W&B's own sweep engine: grid, random, bayes).
Each trial runs the file's `program` as `wandb agent` would (`${env} ${interpreter} ${program}
${args}`, or the file's `command:`), with the parameters also in `TRACKED_SWEEP_PARAMS`, which
`experiment()` reads into `exp.config`; its group is the sweep's id, `<name>-<digest of the file>`
(an edited file is a new sweep, as a new `wandb sweep` would be). The state of the sweep is kept in
`<dir>/sweeps/<id>/state.json`: running the same command again resumes it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._config import warn_once
from ._store import EXPERIMENTS, experiment_dirs, load_experiment

__all__ = ["SweepError", "SweepSpec", "load_sweep", "run_sweep", "trial_env"]

ENV_PARAMS = "TRACKED_SWEEP_PARAMS"
ENV_SWEEP = "TRACKED_SWEEP"  # JSON: name, trial, metric, goal

_METHODS = ("grid", "random", "bayes")
_PARAM_KEYS = {"value", "values", "min", "max", "distribution", "mu", "sigma", "q", "probabilities", "parameters"}


class SweepError(Exception):
    """A sweep file that cannot be run: names the file, the key and what was expected."""


@dataclass
class SweepSpec:
    path: Path
    name: str
    method: str
    parameters: dict[str, Any]
    program: str | None
    command: list[str] | None
    metric: str | None
    goal: str
    raw: dict[str, Any]

    @property
    def digest(self) -> str:
        """8 hex digits of the file's content as read (key order aside): its state's key."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        """The sweep's id, `<name>-<digest>`: its state's directory, its trials' W&B group, the
        prefix of its trial ids."""
        return f"{self.name}-{self.digest}"


def _fail(path: Path, key: str, expected: str, got: Any = None) -> SweepError:
    found = "" if got is None else f", got {got!r}"
    return SweepError(f"{path}: {key}: expected {expected}{found}")


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a W&B sweep file."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping with program, method and parameters")
    method = raw.get("method")
    if method not in _METHODS:
        raise _fail(path, "method", "one of grid, random, bayes", method)
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise _fail(path, "parameters", "a mapping of at least one parameter", params)
    for name, spec in params.items():
        key = f"parameters.{name}"
        if not isinstance(spec, dict) or not (_PARAM_KEYS & set(spec)):
            raise _fail(path, key, "`values`, `value`, or `min` and `max` (or a `distribution`)", spec)
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise _fail(path, f"{key}.values", "a non-empty list", spec["values"])
        if method == "grid" and not {"values", "value", "parameters"} & set(spec):
            raise _fail(path, key, "`values` or `value` (a grid sweep needs a finite set)", spec)
        if ("min" in spec) != ("max" in spec):
            raise _fail(path, key, "both `min` and `max`", spec)
    command = raw.get("command")
    if command is not None and (not isinstance(command, list) or not all(isinstance(c, str) for c in command)):
        raise _fail(path, "command", "a list of strings", command)
    program = raw.get("program")
    uses_program = command is None or any("${program}" in part for part in command)
    if uses_program:
        if not isinstance(program, str) or not program:
            raise _fail(path, "program", "the script each trial runs (a path)", program)
        if not _resolve_program(path, program).exists():
            raise _fail(path, "program", f"an existing file (looked in {Path.cwd()} and {path.parent})", program)
    metric = raw.get("metric")
    name = goal = None
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise _fail(path, "metric", "a mapping with `name` (and `goal`)", metric)
        name = metric["name"]
        goal = metric.get("goal", "minimize")
        if goal not in ("minimize", "maximize"):
            raise _fail(path, "metric.goal", "minimize or maximize", goal)
    if method == "bayes" and name is None:
        raise _fail(path, "metric", "a metric with `name` and `goal` for a bayes sweep")
    sweep_name = raw.get("name") or path.stem
    if not isinstance(sweep_name, str):
        raise _fail(path, "name", "a string", sweep_name)
    _validate_with_sweeps(path, raw)
    return SweepSpec(path, sweep_name, method, params, program, command, name, goal or "minimize", raw)


def _import_sweeps() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sweeps' pydantic config warns on import
            import sweeps
    except ImportError:
        raise SweepError("tracked sweep needs the `sweeps` package: pip install 'tracked[sweep]'") from None
    return sweeps


def _validate_with_sweeps(path: Path, raw: dict[str, Any]) -> None:
    sweeps = _import_sweeps()
    config = {k: v for k, v in raw.items() if k in ("method", "parameters", "metric", "early_terminate")}
    try:
        problems = sweeps.schema_violations_from_proposed_config(config)
    except Exception as exc:
        problems = [str(exc)]
    if problems:
        raise SweepError(f"{path}: " + "; ".join(str(p) for p in problems))


def _resolve_program(path: Path, program: str) -> Path:
    here = Path(program)
    if here.is_absolute() or here.exists():
        return here
    return path.parent / program


def _args(params: dict[str, Any], form: str = "${args}") -> list[str]:
    """The parameters as arguments, in the forms of `wandb agent`'s macros."""
    if form == "${args_no_hyphens}":
        return [f"{k}={v}" for k, v in params.items()]
    if form == "${args_no_equals}":
        return [part for k, v in params.items() for part in (f"--{k}", str(v))]
    if form == "${args_append_hydra}":
        return [f"+{k}={v}" for k, v in params.items()]
    if form == "${args_override_hydra}":
        return [f"++{k}={v}" for k, v in params.items()]
    if form == "${args_no_boolean_flags}":  # True: a bare flag, False: left out
        return [f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items() if v is not False]
    return [f"--{k}={v}" for k, v in params.items()]


_ARG_MACROS = {
    "${args}",
    "${args_no_hyphens}",
    "${args_no_equals}",
    "${args_append_hydra}",
    "${args_override_hydra}",
    "${args_no_boolean_flags}",
}


def trial_command(spec: SweepSpec, params: dict[str, Any], workdir: Path) -> list[str]:
    """The trial's command line, as `wandb agent` builds it (macros it does not know are dropped)."""
    program = str(_resolve_program(spec.path, spec.program)) if spec.program else ""
    parts = spec.command or ["${env}", "${interpreter}", "${program}", "${args}"]
    out: list[str] = []
    for part in parts:
        if part == "${env}":
            if os.path.exists("/usr/bin/env"):
                out.append("/usr/bin/env")
        elif part == "${interpreter}":
            out.append(sys.executable)
        elif part == "${program}":
            out.append(program)
        elif part in _ARG_MACROS:
            out.extend(_args(params, part))
        elif part == "${args_json}":
            out.append(json.dumps(params))
        elif part == "${args_json_file}":
            json_file = workdir / "params.json"
            json_file.write_text(json.dumps(params))
            out.append(str(json_file))
        elif part.startswith("${") and part.endswith("}"):
            continue  # a macro wandb agent does not know either
        else:
            out.append(part.replace("${program}", program).replace("${interpreter}", sys.executable))
    return out


def trial_env(spec: SweepSpec, trial: str, params: dict[str, Any], store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_PARAMS] = json.dumps(params)
    env[ENV_SWEEP] = json.dumps(
        {"name": spec.name, "id": spec.id, "trial": trial, "metric": spec.metric, "goal": spec.goal}
    )
    env["TRACKED_DIR"] = str(store)
    env.setdefault("WANDB_DIR", str(store))  # the trials' W&B runs beside their local store, as the demo's
    return env


@dataclass
class Trial:
    id: str
    params: dict[str, Any]
    status: str = "pending"  # pending, running, finished, failed, interrupted
    metric: float | None = None
    experiment: str | None = None
    exit_code: int | None = None
    seconds: float | None = None


@dataclass
class SweepState:
    name: str
    method: str
    trials: list[Trial] = field(default_factory=list)
    id: str = ""  # `<name>-<digest>`: the trials' W&B group

    @classmethod
    def load(cls, path: Path, spec: SweepSpec) -> SweepState:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(spec.name, spec.method, id=spec.id)
        trials = [Trial(**t) for t in data.get("trials", []) if isinstance(t, dict)]
        # A trial cut short (Ctrl-C, a crash) is run again.
        return cls(spec.name, spec.method, [t for t in trials if t.status in ("finished", "failed")], spec.id)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {"name": self.name, "id": self.id, "method": self.method, "trials": [asdict(t) for t in self.trials]},
                indent=2,
            )
        )
        os.replace(tmp, path)


def _trial_metric(spec: SweepSpec, store: Path, trial: Trial) -> tuple[float | None, str | None]:
    """The metric of a trial, read from its experiment's summary (`<metric>` or `<metric>/mean`)."""
    best: tuple[float | None, str | None] = (None, None)
    for path in experiment_dirs(store):
        exp = load_experiment(path, with_rows=False)
        sweep = exp.meta.get("sweep")
        if not isinstance(sweep, dict) or sweep.get("trial") != trial.id or sweep.get("name") != spec.name:
            continue
        value = None
        if spec.metric is not None:
            for key in (spec.metric, f"{spec.metric}/mean"):
                candidate = exp.summary.get(key)
                if isinstance(candidate, (int, float)) and not isinstance(candidate, bool) and math.isfinite(candidate):
                    value = float(candidate)
                    break
        best = (value, path.name)
    return best


def _check_objective(spec: SweepSpec, path: Path) -> None:
    """Warn once when the sweep's metric is logged per row: W&B's sweep engine (under `wandb
    agent`) scores a run by the best value in its history, not by its mean."""
    if spec.metric is None or spec.metric.endswith(("/mean", "/n", "/stderr")):
        return
    exp = load_experiment(path)
    if any(spec.metric in row for row in exp.rows):
        warn_once(
            ("sweep-objective", spec.metric),
            f"tracked sweep: the metric {spec.metric!r} is logged per row; under `wandb agent`, W&B scores a "
            f"run by its best row (a single correct task scores 1.0): name `{spec.metric}/mean` in the sweep file",
        )


def _sweep_runs(spec: SweepSpec, trials: list[Trial]) -> list[Any]:
    from sweeps import RunState, SweepRun

    runs = []
    for t in trials:
        state = {"finished": RunState.finished, "failed": RunState.failed, "running": RunState.running}.get(
            t.status, RunState.pending
        )
        summary = {spec.metric: t.metric} if spec.metric and t.metric is not None else {}
        runs.append(
            SweepRun(
                name=t.id, state=state, config={k: {"value": v} for k, v in t.params.items()}, summary_metrics=summary
            )
        )
    return runs


def _grid_size(spec: SweepSpec) -> int:
    def size(params: dict[str, Any]) -> int:
        return math.prod(
            len(p["values"]) if "values" in p else size(p["parameters"]) if isinstance(p.get("parameters"), dict) else 1
            for p in params.values()
        )

    return size(spec.parameters)


def _next_params(spec: SweepSpec, trials: list[Trial]) -> dict[str, Any] | None:
    sweeps = _import_sweeps()
    config = {k: v for k, v in spec.raw.items() if k in ("method", "parameters", "metric")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suggestion = sweeps.next_run(config, _sweep_runs(spec, trials), validate=False)
    if suggestion is None:
        return None
    values = {k: v.get("value") for k, v in suggestion.config.items()}
    # In the file's order, as the arguments of `wandb agent` are.
    return {**{k: values[k] for k in spec.parameters if k in values}, **values}


def run_sweep(
    path: Path,
    *,
    count: int | None,
    parallel: int,
    store: Path,
    on_progress: Callable[[int, int | None, Trial | None], None] | None = None,
    stdout: Any = None,
    on_notice: Callable[[str], None] | None = None,
) -> SweepState:
    """Run (or resume) a sweep until `count` trials have finished (grid: until the grid is done)."""
    spec = load_sweep(path)
    if parallel < 1:
        raise SweepError(f"--parallel must be at least 1, got {parallel}")
    if count is not None and count < 1:
        raise SweepError(f"--count must be at least 1, got {count}")
    if spec.method != "grid" and count is None:
        raise SweepError(f"{path}: a {spec.method} sweep never ends by itself: give --count N")
    store.mkdir(parents=True, exist_ok=True)
    # The state is the file's, as it is: an edited file is a new sweep (same name, a group of its own).
    state_path = store / "sweeps" / spec.id / "state.json"
    earlier = [p.name for p in (store / "sweeps").glob(f"{spec.name}-*") if p.name != state_path.parent.name]
    if earlier and not state_path.exists():
        notice = (
            f"tracked sweep: {path} differs from the file of the earlier sweep(s) {', '.join(sorted(earlier))}: "
            f"starting a new sweep, {spec.id} (its runs' W&B group)"
        )
        (on_notice or (lambda text: print(text, file=stdout or sys.stdout)))(notice)
    logs = state_path.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state = SweepState.load(state_path, spec)
    total = count if count is not None else _grid_size(spec)
    if spec.method == "grid":
        total = min(total, _grid_size(spec))
    running: dict[str, tuple[subprocess.Popen[bytes], Trial, float, Any]] = {}
    # Trial ids are never reused, not even a trial's cut short (its log and experiment stay).
    numbers = [int(n) for p in logs.glob(f"{spec.id}-*.log") if (n := p.stem.rpartition("-")[2]).isdigit()]
    counter = itertools.count(max([len(state.trials), *numbers]) + 1)
    exhausted = False

    def done() -> int:
        return sum(1 for t in state.trials if t.status in ("finished", "failed"))

    if on_progress:
        on_progress(done(), total, None)
    try:
        while True:
            while not exhausted and len(running) < parallel and done() + len(running) < total:
                params = _next_params(spec, state.trials)
                if params is None:
                    exhausted = True
                    break
                trial = Trial(id=f"{spec.id}-{next(counter):04d}", params=params, status="running")
                state.trials.append(trial)
                state.save(state_path)
                log = open(logs / f"{trial.id}.log", "wb")
                workdir = logs / trial.id
                workdir.mkdir(parents=True, exist_ok=True)
                proc = subprocess.Popen(
                    trial_command(spec, params, workdir),
                    env=trial_env(spec, trial.id, params, store),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches us; we stop the trials ourselves
                )
                running[trial.id] = (proc, trial, time.monotonic(), log)
            if not running:
                break
            time.sleep(0.05)
            for trial_id, (proc, trial, started, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del running[trial_id]
                trial.exit_code = code
                trial.seconds = round(time.monotonic() - started, 3)
                trial.status = "finished" if code == 0 else "failed"
                trial.metric, trial.experiment = _trial_metric(spec, store, trial)
                if trial.experiment is not None:
                    _check_objective(spec, store / EXPERIMENTS / trial.experiment)
                state.save(state_path)
                if on_progress:
                    on_progress(done(), total, trial)
    except KeyboardInterrupt:
        for proc, *_ in running.values():
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except OSError:
                pass
        for proc, trial, _, log in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            trial.status = "interrupted"
        state.save(state_path)
        raise
    return state


def describe(trial: Trial) -> str:
    params = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in trial.params.items())
    metric = "" if trial.metric is None else f" metric={trial.metric:.4g}"
    return f"{trial.id} {trial.status}{metric} {params}"
