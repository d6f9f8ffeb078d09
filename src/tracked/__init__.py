"""tracked: every LLM call of an experiment measured (latency, tokens, cost), sent to W&B and disk.

Example:
    >>> from tracked import tracked, experiment
    >>> @tracked
    ... def run_strategy(strategy, task): ...
    >>> with experiment("tombench_debate", config={"strategy": "debate"}) as exp:
    ...     result = run_strategy("debate", task)
    ...     exp.log({"accuracy": 1.0})
"""

from importlib import metadata as _metadata

from ._call import Call
from ._config import TrackedWarning, configure
from ._context import ThreadPoolExecutor, bind, current_call, current_experiment
from ._experiment import Experiment, experiment
from ._instrument import instrument, uninstrument
from ._tracked import tracked
from .usage import Usage, register_extractor

try:
    __version__ = _metadata.version("tracked")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Call",
    "Experiment",
    "ThreadPoolExecutor",
    "TrackedWarning",
    "Usage",
    "bind",
    "configure",
    "current_call",
    "current_experiment",
    "experiment",
    "instrument",
    "register_extractor",
    "tracked",
    "uninstrument",
]


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """`%load_ext tracked`: registers the `%%tracked` cell magic."""
    from .notebook import load_ipython_extension as load

    load(ipython)
