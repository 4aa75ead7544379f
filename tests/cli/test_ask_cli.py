"""`agentkit ask`, `tool`, `trace` as a user runs them, including a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.graph import CHECKPOINT_FILE, load_steps
from agentkit.trace import read_events

runner = CliRunner()
AGENTKIT = [sys.executable, "-m", "agentkit.cli"]


def script(path: Path, replies: list, index_by: str = "observations") -> Path:
    path.write_text(json.dumps({"replies": replies, "index_by": index_by}))
    return path


def calc(expr: str, sleep: float = 0.0) -> dict:
    text = f"Thought: compute\nAction: calculate\nAction Input: {json.dumps({'expression': expr})}"
    return {"text": text, "sleep": sleep}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(p)
    return p


def test_ask_json_prints_only_json(tmp_path, image):
    s = script(tmp_path / "s.json", [calc("6*7"), "Thought: done\nFinal Answer: 42"])
    r = runner.invoke(
        app,
        [
            "ask",
            str(image),
            "What",
            "is",
            "6*7?",
            "--model",
            f"scripted:{s}",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["answer"] == "42"
    assert out["steps"][1]["result"]["value"] == 42
    assert Path(out["trace"]).exists() and out["thread"]


def test_ask_threads_sets_torchs_cpu_threads(tmp_path, image):
    import torch

    before = torch.get_num_threads()
    s = script(tmp_path / "s.json", ["Thought: done\nFinal Answer: 0"])
    try:
        torch.set_num_threads(2)
        args = ["ask", str(image), "How many?", "--model", f"scripted:{s}", "--json"]
        r = runner.invoke(app, [*args, "--runs-dir", str(tmp_path / "runs"), "--threads", "1"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["answer"] == "0" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_ask_without_question_or_model_is_a_clear_error(tmp_path, image, monkeypatch):
    r = runner.invoke(app, ["ask", str(image), "--runs-dir", str(tmp_path)])
    assert r.exit_code == 2 and "give a question" in r.output
    monkeypatch.delenv("AGENTKIT_MODEL", raising=False)
    monkeypatch.delenv("AGENTKIT_OPENAI_URL", raising=False)
    monkeypatch.setenv("AGENTKIT_WEIGHTS", str(tmp_path / "nowhere"))
    import agentkit.weights

    monkeypatch.setattr(agentkit.weights, "PACKAGE_WEIGHTS", tmp_path / "no-package-weights")
    r = runner.invoke(app, ["ask", str(image), "How many?", "--runs-dir", str(tmp_path), "--json"])
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert (
        "agentkit-mllm" in err and "agentkit train" in err
    )  # says what is missing and how to get it


def test_a_blank_question_or_a_step_budget_out_of_range_is_a_clear_error(tmp_path, image):
    """What ``Task`` refuses comes back as the CLI's one-line error (the library's
    ``ConfigError``), not a pydantic traceback."""
    s = script(tmp_path / "s.json", ["Final Answer: x"])
    base = ["ask", str(image), "--model", f"scripted:{s}", "--runs-dir", str(tmp_path), "--json"]
    r = runner.invoke(app, [*base[:2], "   ", *base[2:]])
    assert r.exit_code == 2 and "a task needs a question" in json.loads(r.stdout)["error"]
    r = runner.invoke(app, [*base[:2], "How many?", *base[2:], "--max-steps", "0"])
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 2 and err.startswith("bad task: max_steps: ") and "1" in err


def test_a_run_with_no_answer_says_why(tmp_path, image, monkeypatch):
    """With no answer the CLI prints the summarizer's reason, else how the run stopped."""
    from agentkit.graph import Agent
    from agentkit.state import RunResult, Step

    s = script(tmp_path / "s.json", ["Final Answer: x"])
    why = "no result holds a color and a search found nothing: no answer, not a guess"
    results = [
        RunResult(answer=None, steps=[Step(role="summarizer", thought=why)], stop_reason="x"),
        RunResult(answer=None, steps=[], stop_reason="budget"),
    ]
    monkeypatch.setattr(Agent, "ask", lambda self, *a, **k: results.pop(0))
    args = [
        "ask",
        str(image),
        "What color?",
        "--model",
        f"scripted:{s}",
        "--runs-dir",
        str(tmp_path),
    ]
    for expected in (why, "budget"):
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and f"Answer: (no answer: {expected})" in " ".join(r.output.split())


def test_ask_missing_image_is_a_clear_error(tmp_path):
    s = script(tmp_path / "s.json", ["Final Answer: x"])
    r = runner.invoke(
        app,
        [
            "ask",
            str(tmp_path / "nope.png"),
            "q?",
            "--model",
            f"scripted:{s}",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
    )
    assert r.exit_code == 2 and "image not found" in json.loads(r.stdout)["error"]


def test_tool_list_and_run(tmp_path, image):
    r = runner.invoke(app, ["tool", "list", "--json"])
    assert r.exit_code == 0
    names = {t["name"] for t in json.loads(r.stdout)}
    assert {"crop", "image_info", "calculate", "count"} <= names
    r = runner.invoke(app, ["tool", "run", "image_info", "--image", str(image), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["result"]["width"] == 40
    r = runner.invoke(
        app, ["tool", "run", "calculate", "--args", '{"expression": "2**10"}', "--json"]
    )
    assert json.loads(r.stdout)["result"]["value"] == 1024
    r = runner.invoke(
        app, ["tool", "run", "calculate", "--args", '{"expression": "__import__(1)"}', "--json"]
    )
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]
    r = runner.invoke(app, ["tool", "run", "nonexistent", "--json"])
    assert r.exit_code == 2 and "unknown tool" in json.loads(r.stdout)["error"]


def test_trace_view_writes_html(tmp_path, image):
    s = script(tmp_path / "s.json", [calc("1+1"), "Final Answer: 2"])
    runs = tmp_path / "runs"
    r = runner.invoke(
        app,
        [
            "ask",
            str(image),
            "1+1?",
            "--model",
            f"scripted:{s}",
            "--runs-dir",
            str(runs),
            "--thread",
            "v1",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["trace", "view", "v1", "--runs-dir", str(runs)])
    assert r.exit_code == 0
    page = Path(r.stdout.strip()).read_text()
    assert "1+1?" in page and "calculate" in page and "Answer: 2" in page


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_loses_no_finished_step(tmp_path):
    """A real process is killed while it works; `--thread` resumes it from the checkpoint."""
    n = 5
    s = script(
        tmp_path / "s.json", [calc(f"{i}+1", sleep=0.5) for i in range(n)] + ["Final Answer: done"]
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        *AGENTKIT,
        "ask",
        "count up",
        "--model",
        f"scripted:{s}",
        "--runs-dir",
        str(runs),
        "--thread",
        "k1",
        "--max-steps",
        "10",
        "--json",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    trace = runs / "k1" / "trace.jsonl"
    deadline = time.time() + 60

    def finished_tool_steps() -> int:
        # the trace line of a step is written just before its checkpoint; read the checkpoint
        if not (runs / "k1" / CHECKPOINT_FILE).exists():
            return 0
        try:
            return sum(s.role == "executor" for s in load_steps(runs / "k1"))
        except Exception:  # a record half written at that moment
            return 0

    while time.time() < deadline and finished_tool_steps() < 2:
        time.sleep(0.05)
    if finished_tool_steps() < 2:
        proc.kill()
        pytest.fail("the run never got to two tool calls")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    before = load_steps(runs / "k1")
    assert sum(s.role == "executor" for s in before) >= 2

    done = subprocess.run(
        [*AGENTKIT, "ask", "--thread", "k1", "--runs-dir", str(runs), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] == "done"
    after = out["steps"]
    # every step finished before the kill is still there, unchanged, in order
    assert [(s["role"], s["started"]) for s in after[: len(before)]] == [
        (s.role, s.started) for s in before
    ]
    values = [s["result"]["value"] for s in after if s["role"] == "executor"]
    assert values == [i + 1 for i in range(n)]  # none lost, none run twice
    assert any(e["event"] == "run_resume" for e in read_events(trace))


def test_tool_list_prints_descriptions_with_their_brackets():
    """Rich read "[x1, y1, x2, y2]" in a description as a markup tag and printed nothing there."""
    r = runner.invoke(app, ["tool", "list"], env={"COLUMNS": "400"})
    assert r.exit_code == 0
    assert "[x1, y1, x2, y2]" in r.output


def test_tool_run_leaves_no_scratch_folder_unless_it_made_images(tmp_path, image, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    r = runner.invoke(app, ["tool", "run", "image_info", "--image", str(image), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tool", "run", "calculate", "--args", '{"expression": "1/0"}'])
    assert r.exit_code == 1 and "division" in r.output.lower()
    assert list((tmp_path / "tmp").iterdir()) == []
    r = runner.invoke(
        app,
        [
            "tool",
            "run",
            "crop",
            "--image",
            str(image),
            "--args",
            '{"box": [0, 0, 10, 10]}',
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    (made,) = json.loads(r.stdout)["media"]
    assert Path(made).is_file() and Path(made).is_relative_to(tmp_path / "tmp")
