"""Secrets never reach the record: captured inputs, config (local and W&B), the git remote, WANDB_API_KEY.

Every test also searches the bytes of every file written under tmp_path (the local store, the W&B run
directory with its `.wandb` log, wandb's own logs and settings), so a secret written anywhere fails it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import tracked
from tracked.testing import read_experiment, read_wandb_run

R = "[REDACTED]"

# Values that look like provider keys (each at least as long as real ones).
OPENAI_KEY = "sk-proj-" + "Abc123XyZ" * 5
ANTHROPIC_KEY = "sk-ant-api03-" + "q7R-x_9" * 8
HF_KEY = "hf_" + "QwErTyUiOp" * 3
KEY_LIKE = (OPENAI_KEY, ANTHROPIC_KEY, HF_KEY)

# Values with nothing key-like about them: only their argument or config name makes them secret.
PLAIN = {
    "api_key": "plain-api-key-value-1",
    "token": "plain-token-value-2",
    "password": "plain-password-value-3",
    "secret": "plain-secret-value-4",
    "authorization": "Basic plain-auth-value-5",
}


def files_containing(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """For each needle found, the files under `root` (outside `.git/`) whose bytes contain it."""
    found: dict[str, list[str]] = {}
    files = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts]
    assert files, f"nothing written under {root}"
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            if needle.encode() in data:
                found.setdefault(needle, []).append(str(path.relative_to(root)))
    return found


@tracked.tracked(capture_io=True)
def ask(prompt: str, api_key: str, token: str, password: str, secret: str, authorization: str, **options: Any) -> str:
    """An LLM call that takes credentials: its inputs are captured."""
    return f"answer to {prompt[:5]}"


def test_captured_inputs_redact_secret_argument_names(tmp_path):
    """Arguments named api_key, token, password, secret, authorization (and *_token, Authorization) are redacted."""
    with tracked.experiment("secret-args", dir=tmp_path, wandb=False) as exp:
        ask(
            "hello",
            PLAIN["api_key"],
            token=PLAIN["token"],
            password=PLAIN["password"],
            secret=PLAIN["secret"],
            authorization=PLAIN["authorization"],
            access_token="plain-access-token-6",
            Authorization="Bearer plain-bearer-7",
            OPENAI_API_KEY="plain-env-key-8",
        )
    (call,) = read_experiment(exp.path).calls
    assert call["inputs"] == {
        "prompt": "hello",
        "api_key": R,
        "token": R,
        "password": R,
        "secret": R,
        "authorization": R,
        "access_token": R,
        "Authorization": R,
        "OPENAI_API_KEY": R,
    }
    assert call["output"] == "answer to hello"
    secrets = [*PLAIN.values(), "plain-access-token-6", "plain-bearer-7", "plain-env-key-8"]
    assert files_containing(tmp_path, secrets) == {}


def test_captured_inputs_and_output_redact_values_that_look_like_provider_keys(tmp_path):
    """sk-..., sk-ant-... and hf_... values are redacted wherever they appear in captured inputs and the output."""

    @tracked.tracked(capture_io=True)
    def call_model(prompt: str, headers: dict, keys: list, note: str) -> dict:
        return {"echo": f"used {OPENAI_KEY}", "keys": [HF_KEY]}

    with tracked.experiment("key-values", dir=tmp_path, wandb=False) as exp:
        call_model(
            f"my key is {OPENAI_KEY}, thanks",
            headers={"x-api": ANTHROPIC_KEY, "accept": "json"},
            keys=[HF_KEY, (OPENAI_KEY,)],
            note=f"Bearer {ANTHROPIC_KEY}",
        )
    (call,) = read_experiment(exp.path).calls
    assert call["inputs"] == {
        "prompt": f"my key is {R}, thanks",
        "headers": {"x-api": R, "accept": "json"},
        "keys": [R, [R]],
        "note": f"Bearer {R}",
    }
    assert call["output"] == {"echo": f"used {R}", "keys": [R]}
    assert files_containing(tmp_path, list(KEY_LIKE)) == {}


@pytest.mark.parametrize("name", ["max_tokens", "tokens_in", "tokens_out", "tokenizer", "max_new_tokens", "num_tokens"])
def test_names_that_merely_contain_token_are_not_redacted(tmp_path, name):
    """max_tokens, tokens_in, tokenizer and the like are kept as they are, in captured inputs and in config."""

    @tracked.tracked(capture_io=True)
    def generate(prompt: str, **options: Any) -> str:
        return "ok"

    with tracked.experiment("not-secret", dir=tmp_path, config={name: "cl100k-512"}, wandb=False) as exp:
        generate("p", **{name: "cl100k-512"})
    stored = read_experiment(exp.path)
    assert stored.calls[0]["inputs"] == {"prompt": "p", name: "cl100k-512"}
    assert stored.config["config"] == {name: "cl100k-512"}
    assert exp.config == {name: "cl100k-512"}


CONFIG = {
    "api_key": "plain-config-api-key-1",
    "OPENAI_API_KEY": "plain-config-api-key-2",
    "token": "plain-config-token-3",
    "hf_token": "plain-config-token-4",
    "Authorization": "plain-config-auth-5",
    "client": {"password": "plain-config-password-6", "secret": "plain-config-secret-7", "timeout": 30},
    "providers": [
        {"name": "openai", "key": OPENAI_KEY},
        {"name": "anthropic", "header": f"x-api-key: {ANTHROPIC_KEY}"},
    ],
    "hub": HF_KEY,
    "max_tokens": 512,
    "tokens_in": 3,
    "tokenizer": "cl100k_base",
    "temperature": 0.2,
}
REDACTED_CONFIG = {
    "api_key": R,
    "OPENAI_API_KEY": R,
    "token": R,
    "hf_token": R,
    "Authorization": R,
    "client": {"password": R, "secret": R, "timeout": 30},
    "providers": [{"name": "openai", "key": R}, {"name": "anthropic", "header": f"x-api-key: {R}"}],
    "hub": R,
    "max_tokens": 512,
    "tokens_in": 3,
    "tokenizer": "cl100k_base",
    "temperature": 0.2,
}
CONFIG_SECRETS = [
    *(
        f"plain-config-{what}"
        for what in ("api-key-1", "api-key-2", "token-3", "token-4", "auth-5", "password-6", "secret-7")
    ),
    *KEY_LIKE,
]


def test_config_secrets_are_redacted_in_config_json_and_the_wandb_run(tmp_path):
    """Config values under secret-like keys and key-like values are redacted in exp.config, config.json and W&B."""
    with tracked.experiment("secret-config", dir=tmp_path, config=CONFIG) as exp:
        pass
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert exp.config == REDACTED_CONFIG
    assert read_experiment(exp.path).config["config"] == REDACTED_CONFIG
    assert Path(exp.final_summary["wandb"]["dir"]).is_relative_to(tmp_path)
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert {k: v for k, v in run.config.items() if k != "_tracked"} == REDACTED_CONFIG
    assert files_containing(tmp_path, CONFIG_SECRETS) == {}


def test_child_experiment_config_stays_redacted(tmp_path):
    """A child experiment inherits its parent's config redacted, and redacts its own secrets too."""
    with tracked.experiment("parent", dir=tmp_path, config={"api_key": "plain-parent-key-1"}) as parent:
        with tracked.experiment("child", config={"password": "plain-child-password-2", "hub": HF_KEY}) as child:
            pass
    assert child.config == {"api_key": R, "password": R, "hub": R}
    assert read_experiment(child.path).config["config"] == child.config
    assert parent.final_summary["sinks"]["wandb"] == child.final_summary["sinks"]["wandb"] == "ok"
    run = read_wandb_run(child.final_summary["wandb"]["dir"])
    assert {k: v for k, v in run.config.items() if k != "_tracked"} == child.config
    assert files_containing(tmp_path, ["plain-parent-key-1", "plain-child-password-2", HF_KEY]) == {}


GIT_TOKEN = "ghp_" + "X" * 36


def make_repo(path: Path, remote: str) -> None:
    """A git repository with one commit and `origin` at `remote`."""
    path.mkdir()

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
            cwd=path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "init")
    git("remote", "add", "origin", remote)


@pytest.mark.parametrize(
    ("remote", "redacted"),
    [
        (f"https://user:{GIT_TOKEN}@github.com/x/y.git", f"https://{R}@github.com/x/y.git"),
        (f"https://{GIT_TOKEN}@github.com/x/y.git", f"https://{R}@github.com/x/y.git"),
        ("git@github.com:x/y.git", "git@github.com:x/y.git"),
    ],
)
def test_git_remote_credentials_are_redacted(tmp_path, monkeypatch, remote, redacted):
    """A git remote URL with a user and token is recorded without them, in config.json and the W&B run config."""
    repo = tmp_path / "repo"
    make_repo(repo, remote)
    monkeypatch.chdir(repo)
    with tracked.experiment("git-remote", dir=tmp_path) as exp:
        pass
    git = read_experiment(exp.path).config["system"]["git"]
    assert git["remote"] == redacted
    assert len(git["commit"]) == 40
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert "remote" not in str(run.config["_tracked"])  # W&B records the repository itself
    assert files_containing(tmp_path, [GIT_TOKEN, f"user:{GIT_TOKEN[:8]}"]) == {}


def test_wandb_api_key_in_the_environment_is_never_written(tmp_path, monkeypatch):
    """With WANDB_API_KEY set (and WANDB_MODE=offline), no file written under tmp_path holds the key."""
    key = "a" * 40
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")

    @tracked.tracked(capture_io=True)
    def work(prompt: str) -> str:
        tracked.current_call().add_usage(tokens_in=3, tokens_out=1, model="gpt-4o")
        return prompt

    with tracked.experiment("env-key", dir=tmp_path, config={"lr": 0.1}) as exp:
        work("hello")
        exp.log({"score": 1.0})
        exp.summary["note"] = "done"
        (tmp_path / "notes.txt").write_text("saved file")
        exp.save(tmp_path / "notes.txt")
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert exp.final_summary["wandb"]["mode"] == "offline"
    run_dir = Path(exp.final_summary["wandb"]["dir"])
    assert run_dir.is_relative_to(tmp_path)
    assert list(run_dir.glob("*.wandb")), "no W&B run was written"
    assert list(run_dir.glob("logs/*.log")), "no W&B logs were written"
    run = read_wandb_run(run_dir)
    assert run.history and run.exit_code == 0
    assert files_containing(tmp_path, [key]) == {}


# --- regressions: bugs found while writing these tests (fixed in the working tree since) --------


def test_secret_names_nested_deep_in_captured_inputs_are_redacted(tmp_path):
    """A password under a secret-like key four levels deep in a captured argument is redacted too."""

    @tracked.tracked(capture_io=True)
    def connect(settings: dict) -> None:
        return None

    with tracked.experiment("deep-secret", dir=tmp_path, wandb=False):
        connect({"db": {"primary": {"auth": {"password": "plain-deep-password-1"}}}})
    assert files_containing(tmp_path, ["plain-deep-password-1"]) == {}


def test_provider_keys_in_error_messages_are_redacted(tmp_path):
    """A provider key in the message of an exception raised by a tracked call is redacted in calls.jsonl."""

    @tracked.tracked(capture_io=True)
    def call_api(prompt: str) -> None:
        raise PermissionError(f"Incorrect API key provided: {OPENAI_KEY}")

    with tracked.experiment("error-key", dir=tmp_path, wandb=False):
        with pytest.raises(PermissionError):
            call_api("hi")
    assert files_containing(tmp_path, [OPENAI_KEY]) == {}
