"""Every Python block of the README runs, as written, against the loopback server standing in for the providers.

The blocks run in order in one fresh interpreter, as one session (the README says so), with W&B
offline and the real OpenAI, Anthropic and Ollama clients pointed at the loopback server through
their environment variables. What the README leaves to the reader (`tasks`, `score`, a model's
`mlx_generate`, ...) is defined first, in `STAND_INS`. Blocks with IPython magics (the notebook
section) run in an IPython shell over the same namespace. An HTML comment just before a block may
leave it out (`<!-- not run: reason -->`) or run it in a fresh process after the first block only
(`<!-- run alone: reason -->`). A test function a block defines is called.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import child_env

README = Path(__file__).resolve().parent.parent / "README.md"

FENCE = re.compile(r"(?:<!-- (?P<mark>not run|run alone): (?P<reason>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)

STAND_INS = textwrap.dedent(
    """
    import pathlib, types

    tasks = [
        "Sally puts her marble in the basket and leaves. Anne moves it to the box. Where will Sally look?",
        "Max leaves his chocolate in the blue cupboard. His mother moves it to the green one. Where will Max look?",
    ]
    task = tasks[0]
    problems = tasks

    def score(result):
        return float("sally" in str(result).lower())

    def grade(answer, gold):
        return float(gold in str(answer))

    def mlx_generate(prompt):
        return types.SimpleNamespace(text="In the basket.", prompt_tokens=12, generation_tokens=4)

    def my_shape(response):
        return None

    def run_introspection_experiment(concept):
        return {"concept": concept, "tokens_in": 10, "tokens_out": 2}

    pathlib.Path("concepts").mkdir(exist_ok=True)
    for name in ("emotions", "happiness"):
        pathlib.Path(f"concepts/{name}.pkl").write_bytes(b"pickled")
    """
)

RUNNER = textwrap.dedent(
    """
    import inspect, json, sys, tempfile
    from pathlib import Path

    blocks = json.loads(Path(sys.argv[1]).read_text())
    exec(compile(Path(sys.argv[2]).read_text(), "stand-ins", "exec"), globals())
    shell = None
    for line, code in blocks:
        if any(row.startswith("%") for row in code.splitlines()):
            if shell is None:
                from IPython.core.interactiveshell import InteractiveShell

                shell = InteractiveShell.instance(user_module=sys.modules["__main__"])
            shell.run_cell(code).raise_error()
        else:
            # Padded so that a traceback names the README's own line.
            exec(compile("\\n" * line + code, "README.md", "exec"), globals())
        print(f"ran README.md:{line}", flush=True)
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn(**({"tmp_path": Path(tempfile.mkdtemp())} if "tmp_path" in inspect.signature(fn).parameters else {}))
            print(f"passed {name}", flush=True)
    """
)


def python_blocks() -> list[tuple[int, str, str | None, str | None]]:
    """(line of the code, code, mark, reason) for each ```python block of the README; mark is "not run",
    "run alone" or None."""
    text = README.read_text()
    return [(text[: m.start("code")].count("\n"), m["code"], m["mark"], m["reason"]) for m in FENCE.finditer(text)]


def run_session(tmp_path: Path, server, name: str, blocks: list[tuple[int, str]], timeout: float = 120):
    """Run `blocks` in order in a fresh interpreter in `tmp_path/name`, after the stand-ins: each must run
    without a warning from tracked."""
    where = tmp_path / name
    where.mkdir()
    (where / "blocks.json").write_text(json.dumps(blocks))
    (where / "stand_ins.py").write_text(STAND_INS)
    env = child_env(
        where, True,
        OPENAI_BASE_URL=f"{server.url}/v1", OPENAI_API_KEY="sk-loopback",
        ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="sk-ant-loopback",
        OLLAMA_HOST=server.url, TRACKED_QUIET="1",
        # A local Ray instance (the Ray block) on 127.0.0.1 only, without usage reports.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(where / "blocks.json"), str(where / "stand_ins.py")],
        cwd=where, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    ran = [line for line in done.stdout.splitlines() if line.startswith("ran ")]
    assert done.returncode == 0, f"{ran[-1:] or 'no block'} ran; then:\n{done.stderr[-4000:]}"
    assert ran == [f"ran README.md:{line}" for line, _ in blocks]
    assert "TrackedWarning" not in done.stderr, done.stderr[-4000:]
    return done


def test_every_python_block_of_the_readme_runs(tmp_path, server):
    """The README's Python blocks run in order, unchanged, with the real clients reaching the loopback server."""
    blocks = python_blocks()
    marked = [(line, mark, reason) for line, _, mark, reason in blocks if mark is not None]
    assert len(marked) <= 3 and all(reason.strip() for *_, reason in marked), marked
    session = [(line, code) for line, code, mark, _ in blocks if mark is None]
    assert len(session) >= 12
    server.ledger.clear()
    done = run_session(tmp_path, server, "session", session)
    assert "passed test_debate_makes_seven_llm_calls" in done.stdout
    assert {s.provider for s in server.ledger.sent} == {"openai", "ollama"}  # the clients reached the server


def test_the_first_example_alone_measures_each_llm_call_of_a_debate(tmp_path, server):
    """The README's first block, run on its own, counts the 7 LLM calls of a debate and their tokens, as the ledger."""
    first = next((ln, c) for ln, c, mark, _ in python_blocks() if mark is None)
    check = textwrap.dedent(
        """
        with experiment("first", wandb=False) as exp:
            run_strategy("debate", task)
        print("measured", exp.final_summary["total/llm_calls"], exp.final_summary["total/tokens_in"])
        """
    )
    server.ledger.clear()
    done = run_session(tmp_path, server, "first", [first, (10_000, check)])
    ledger = server.ledger.totals()
    assert ledger["llm_calls"] == 7
    assert f"measured 7 {ledger['tokens_in']}" in done.stdout


ALONE = [(line, code) for line, code, mark, _ in python_blocks() if mark == "run alone"]


@pytest.mark.slow
@pytest.mark.parametrize(("line", "code"), ALONE, ids=[f"README.md:{line}" for line, _ in ALONE])
def test_readme_blocks_that_run_alone(tmp_path, server, line, code):
    """A block marked to run alone runs in a fresh process after the README's first block, without a warning."""
    first = next((ln, c) for ln, c, mark, _ in python_blocks() if mark is None)
    run_session(tmp_path, server, "alone", [first, (line, code)], timeout=120)
