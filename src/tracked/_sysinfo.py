"""System information recorded with every experiment (under the `_tracked` config key)."""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
from typing import Any

from ._forksafe import loading_unless_imported
from ._values import redact

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_url(url: str) -> str:
    """A URL without the user and password it may carry (`https://user:token@host/...`)."""
    return _URL_CREDENTIALS.sub("[REDACTED]@", url)


def _version(dist: str) -> str | None:
    from importlib import metadata  # imported by `system_info` (not by `import tracked`)

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def _git_info(cwd: str) -> dict[str, Any]:
    commit = _git("-C", cwd, "rev-parse", "HEAD")
    if commit is None:
        return {}
    info: dict[str, Any] = {
        "commit": commit,
        "dirty": bool(_git("-C", cwd, "status", "--porcelain", "--untracked-files=no")),
    }
    remote = _git("-C", cwd, "remote", "get-url", "origin")
    if remote:
        info["remote"] = redact_url(remote)
    return info


def system_info() -> dict[str, Any]:
    """Git commit and dirty flag, host, Python, platform, and package versions."""
    # imported when an experiment starts, not by `import tracked`: no fork meanwhile
    with loading_unless_imported("importlib.metadata", "platform"):
        import importlib.metadata  # noqa: F401
        import platform

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pid": os.getpid(),
        "argv": [redact(redact_url(a)) for a in sys.argv[:20]],
        "versions": {
            "tracked": _version("tracked"),
            "wandb": _version("wandb"),
            "genai-prices": _version("genai-prices"),
        },
    }
    git = _git_info(os.getcwd())
    if git:
        info["git"] = git
    notebook = os.environ.get("WANDB_NOTEBOOK_NAME")
    if notebook:
        info["notebook"] = notebook
    return info
