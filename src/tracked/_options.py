"""An experiment's options: checked at the call that gives them, and what a child inherits.

Everything here runs on the caller's thread when an experiment is made or started; bad input is
refused with a clear error at that call.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import warn_once
from ._values import clean, sha256_hex8

if TYPE_CHECKING:
    from ._experiment import Experiment

__all__ = ["Summary", "check_str", "check_tags", "inherit", "join_sweep", "status_for"]


class Summary(dict[str, Any]):
    """`exp.summary`: the user's own summary values, checked when set."""

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"summary keys must be non-empty strings, got {key!r}")
        super().__setitem__(key, clean(value, "summary"))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> Summary:  # type: ignore[override,misc]
        self.update(other)
        return self


def check_tags(tags: Any) -> list[str]:
    """Tags as a list of distinct non-empty strings of at most 64 characters (W&B's limit)."""
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, got {tags!r}")
    out = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r}")
        if len(tag) > 64:
            raise ValueError(f"tag {tag[:20]!r}... is {len(tag)} characters; W&B allows at most 64")
        if tag not in out:
            out.append(tag)
    return out


#: The longest value W&B's server takes for each run field (it refuses longer ones when an
#: offline run is synced, wandb#6402): a given value over it is refused at the call, a derived
#: one (a child's group or job type from its ancestors' names) is shortened with `shorten`.
LIMITS = {"name": 128, "project": 128, "entity": 128, "group": 128, "job_type": 64}
_PROJECT_CHARS = "/\\#?%:"  # W&B refuses project names with any of these


def check_str(label: str, value: Any) -> str | None:
    """A string option of `experiment(...)`, within W&B's limit for it (`LIMITS`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"experiment({label}=...) must be a string, got {type(value).__name__}")
    limit = LIMITS.get(label)
    if limit is not None and len(value) > limit:
        raise ValueError(
            f"experiment({label}=...) is {len(value)} characters; W&B allows at most {limit}: {value[:40]!r}..."
        )
    if label == "project" and any(c in value for c in _PROJECT_CHARS):
        raise ValueError(f"experiment(project=...) cannot contain any of {_PROJECT_CHARS!r}: {value!r}")
    return value


def shorten(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, ending with 8 hex digits of its hash so that two long
    values stay apart; deterministic (the same value always gives the same result)."""
    if len(value) <= limit:
        return value
    return f"{value[: limit - 9]}-{sha256_hex8(value)}"


def status_for(exc: BaseException | None) -> str:
    """The status an experiment ends with when its block exits with `exc`."""
    if exc is None:
        return "finished"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "finished"  # sys.exit(0) is a normal end
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted"
    return "failed"


def inherit(exp: Experiment, parent: Experiment) -> None:
    """What a child experiment takes from its parent: config and tags (the child wins on a key),
    notes (the parent's, then its own), project, entity, dir, the sinks the parent turned off; the
    root's group."""
    exp.config = {**parent.config, **exp.config}
    exp._tags = check_tags([*parent._tags, *exp._tags])
    if parent._notes:  # the ancestors' notes (the research question), then its own
        exp._notes = f"{parent._notes}\n\n{exp._notes}" if exp._notes else parent._notes
    if exp.project is None:
        exp.project = parent.project
    if exp.entity is None:
        exp.entity = parent.entity
    if exp._dir is None:
        exp._dir = parent._dir
    # A parent that turned a sink off turns it off for its children, unless they ask.
    if exp._wandb_requested is None and parent._wandb_requested is False:
        exp._wandb_requested = False
    if exp._local_requested is None:
        exp._local_requested = parent._local_requested
    root = parent
    while root.parent is not None:
        root = root.parent
    # W&B has one level of groups: every descendant is in the root's group; deeper levels are
    # told apart by job_type (the parent's name) and the `parents` chain of the system info.
    if exp.group is None:
        exp.group = shorten(root.group or root.name, LIMITS["group"])
    if exp.job_type is None and parent is not root:
        exp.job_type = shorten(parent.name, LIMITS["job_type"])


def join_sweep(exp: Experiment) -> None:
    """Under `tracked sweep`, the trial's parameters win over the config in the code, and the
    experiment is in the sweep's group (its id, `<name>-<digest of the file>`)."""
    params = os.environ.get("TRACKED_SWEEP_PARAMS")
    if not params:
        return
    try:
        values = json.loads(params)
        sweep = json.loads(os.environ.get("TRACKED_SWEEP") or "{}")
    except ValueError:
        warn_once("bad-sweep-env", "tracked: TRACKED_SWEEP_PARAMS is not JSON; ignored")
        return
    if isinstance(values, dict):
        exp.config.update(clean(values, "config"))
        # Trials are told apart by their parameters: the run is named by them, as W&B names a
        # sweep's runs by nothing more telling.
        if values:
            exp.name = shorten(",".join(f"{k}={v}" for k, v in values.items()), LIMITS["name"])
    if isinstance(sweep, dict):
        exp.sweep = {**sweep, "params": values}
        if isinstance(sweep.get("name"), str):
            exp.config["sweep_name"] = sweep["name"]
            sweep_id = str(sweep.get("id") if isinstance(sweep.get("id"), str) else sweep["name"])
            exp.config["sweep_id"] = sweep_id
            if exp.group is None:
                exp.group = shorten(sweep_id, LIMITS["group"])
        if isinstance(sweep.get("trial"), str):
            exp.config["sweep_trial"] = sweep["trial"]


def parents_of(exp: Experiment) -> list[str]:
    """The names of the experiment's ancestors, outermost first."""
    chain = []
    p = exp.parent
    while p is not None:
        chain.append(p.name)
        p = p.parent
    return chain[::-1]


def as_path(value: Any) -> Path | None:
    return Path(value) if value is not None else None
