"""The layers of the package, checked by import-linter with the contract in pyproject.toml."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` on the package under `root/src` with `root/pyproject.toml`'s contract."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def copy(tmp_path):
    """A copy of the package and its contract, to break on purpose."""
    shutil.copytree(
        ROOT / "src" / "tracked", tmp_path / "src" / "tracked", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_are_kept():
    """No runtime import of the package goes from a lower layer to a higher one."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("_call.py", "from . import _experiment"),  # the call reaching up to the experiment
        ("sinks/wandb.py", "from .. import _experiment"),  # a sink reaching up to the experiment
        ("_sync.py", "from . import cli"),  # a command reaching up to the command line
        ("_context.py", "from . import _tracked"),  # the base reaching up to the call
    ],
)
def test_an_upward_import_breaks_the_contract(copy, module, upward):
    """A runtime import from a lower layer to a higher one makes `lint-imports` fail and name it."""
    path = copy / "src" / "tracked" / module
    path.write_text(path.read_text() + f"\n{upward}  # noqa: E402\n")
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout


def test_an_upward_import_for_typing_only_is_allowed(copy):
    """An import made only for type checking (`if TYPE_CHECKING:`) may go up."""
    path = copy / "src" / "tracked" / "_values.py"
    path.write_text(path.read_text() + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import cli\n")
    done = lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_module_outside_the_layers_breaks_the_contract(copy):
    """A new module must be given its layer: one the contract does not list makes `lint-imports` fail."""
    (copy / "src" / "tracked" / "_stray.py").write_text('"""A module nobody placed."""\n')
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "_stray" in done.stdout
