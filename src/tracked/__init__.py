"""tracked: every LLM call of an experiment measured (latency, tokens, cost), sent to W&B and disk.

Example:
    >>> from tracked import tracked, experiment
    >>> @tracked
    ... def run_strategy(strategy, task): ...
    >>> with experiment("tombench_debate", config={"strategy": "debate"}) as exp:
    ...     result = run_strategy("debate", task)
    ...     exp.log({"accuracy": 1.0})
"""

import typing as _typing

from ._call import Call
from ._config import TrackedWarning, configure
from ._context import ThreadPoolExecutor, bind, current_call, current_experiment
from ._experiment import Experiment, experiment
from ._forksafe import loading as _loading
from ._instrument import instrument, uninstrument
from ._tracked import tracked
from .usage import Usage, register_extractor

__version__: str  # set on first use by `__getattr__` below


if not _typing.TYPE_CHECKING:  # else type checkers would accept any name as an attribute of the package

    def __getattr__(name: str) -> _typing.Any:
        """`tracked.__version__`, read from the installed package's metadata on first use (PEP 562):
        `importlib.metadata` (and `email`, `zipfile`, ... through it) is not imported by `import tracked`."""
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        with _loading():  # no fork meanwhile, as for every lazy import of the SDK (`_forksafe`)
            from importlib import metadata

        try:
            version = metadata.version("tracked")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            version = "0.0.0"
        globals()["__version__"] = version
        return version


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
