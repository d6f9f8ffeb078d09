"""The package namespace is the API."""

import subprocess
import sys
from pathlib import Path

import pytest

import tracked

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete():
    """`tracked.__all__` is sorted, and every name in it exists."""
    assert tracked.__all__ == sorted(tracked.__all__)
    for name in tracked.__all__:
        assert hasattr(tracked, name), name


def test_public_names_are_exported():
    """Every public, non-module attribute of the package is listed in `__all__`."""
    import types

    public = {n for n, v in vars(tracked).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    public -= {"load_ipython_extension"}  # IPython's hook, not API
    assert public == set(tracked.__all__)


def test_ruff_is_clean():
    """The source and the tests pass `ruff check`."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean():
    """`src/` passes `mypy --strict` (configured in pyproject.toml)."""
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_leaves_cold_path_modules_unimported():
    """Beyond wrapt's imports, `import tracked` leaves cold-path modules (orjson too) unimported; `__version__`
    is read lazily."""
    cold = {"email.parser", "platform", "hashlib", "netrc", "secrets", "orjson", "tracked.sinks", "tracked._store"}
    code = (
        "import sys, wrapt; before = set(sys.modules); import tracked; "
        f"print(sorted({cold!r} & (set(sys.modules) - before))); "
        "from importlib import metadata; assert tracked.__version__ == metadata.version('tracked')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
