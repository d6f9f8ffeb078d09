"""Shared fixtures: a clean SDK state per test, W&B offline in a temporary directory."""

from __future__ import annotations

import os

import pytest

import tracked
from tracked import _config, pricing
from tracked import usage as usage_mod

# No test may reach a W&B server or read the developer's credentials.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)
os.environ.pop("TRACKED_DISABLED", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The benchmark smoke tests are slow: they run the benchmark script in child processes.

    They are marked here rather than in their file, which belongs with the benchmarks."""
    for item in items:
        if item.path.name == "test_bench_smoke.py":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def clean_state(tmp_path, monkeypatch):
    """Each test starts with default settings, no warnings remembered, and its own directories."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / ".wandb-data"))
    monkeypatch.setenv("TRACKED_DIR", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc-none"))
    monkeypatch.chdir(tmp_path)
    saved = {name: getattr(_config.config, name) for name in _config._Config.__slots__}
    _config.config.raise_internal_errors = True
    _config._warned.clear()
    pricing._clear_cache()
    yield
    for name, value in saved.items():
        setattr(_config.config, name, value)
    _config._warned.clear()
    pricing._clear_cache()
    usage_mod._unregister_all()
    from tracked import _context

    for exp in list(_context._open):
        exp.finish()
    assert tracked.current_experiment() is None


@pytest.fixture(scope="module")
def server():
    """A loopback server speaking the providers' wire formats to the real clients, with a ledger of
    what it sent (`tests/loopback.py`): one per test module."""
    from loopback import Loopback

    lb = Loopback()
    yield lb
    lb.close()


@pytest.fixture
def wandb_in_thread():
    """W&B runs written by a thread of the test's process (`configure(wandb_writer="thread")`), for
    tests that change `wandb` in this process to make it fail; the setting is restored after."""
    tracked.configure(wandb_writer="thread")
