"""`agentkit data gen` as a user runs it: help without heavy imports, end to end, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.mllm.worlds.speech import ENGINES, missing_engines
from agentkit.mllm.worlds.synthetic import synthetic_scene

runner = CliRunner()


def write_scenes(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n):
        (folder / f"scene_{s:06d}.json").write_text(json.dumps(synthetic_scene(s)))
    return folder


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from typer.testing import CliRunner; from agentkit.cli import app; "
        "r = CliRunner().invoke(app, ['data', 'gen', '--help']); "
        "print(r.exit_code, [m for m in ('torch', 'bpy', 'ray') if m in sys.modules]); "
        "print(r.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, _, help_text = out.stdout.partition("\n")
    assert first == "0 []"
    for word in ("scenes", "questions", "speech", "--out", "--n", "--seed", "--workers", "--ray"):
        assert word in help_text


def test_questions_then_speech_end_to_end(tmp_path):
    scenes = write_scenes(tmp_path / "scenes", 4)
    args = ["data", "gen", "questions", "--scenes", str(scenes), "--out", str(tmp_path / "q"),
            "--per-scene", "3", "--seed", "9", "--workers", "1", "--json"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["questions"] == 12 and summary["scenes"] == 4
    lines = (tmp_path / "q" / "questions.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(x)["answer"] for x in lines)
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["skipped_parts"] == 1 and again["generated_parts"] == 0

    engines = [e for e in ENGINES if e not in missing_engines(ENGINES)]
    if not engines:
        pytest.skip("no speech engine installed")
    r = runner.invoke(app, ["data", "gen", "speech", "--questions", str(tmp_path / "q" / "questions.jsonl"),
                            "--out", str(tmp_path / "s"), "--n", "2", "--engines", engines[0],
                            "--workers", "1", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["clips"] == 2
    assert len(list((tmp_path / "s").glob("*.wav"))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scenes", "--n", "0"], "--n 0 is invalid"),
        (["scenes"], "scenes need --n"),
        (["questions"], "questions need --scenes"),
        (["questions", "--scenes", "/nonexistent/dir"], "is not a directory"),
        (["speech"], "speech needs --questions"),
        (
            ["speech", "--questions", "/nonexistent.jsonl", "--engines", "espeak-ng"],
            "is not a file",
        ),
        (["speech", "--questions", "x.jsonl", "--engines", "sam"], "unknown speech engine"),
        (["questions", "--scenes", ".", "--workers", "0"], "--workers 0 is invalid"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path, args, message):
    r = runner.invoke(app, ["data", "gen", *args, "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 2
    assert message in json.loads(r.stdout)["error"]


@pytest.mark.slow
def test_scenes_end_to_end_two_tiny_renders(tmp_path):
    pytest.importorskip("bpy")
    args = ["data", "gen", "scenes", "--out", str(tmp_path / "sc"), "--n", "2", "--seed", "3",
            "--width", "96", "--height", "64", "--samples", "4", "--workers", "1", "--json"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)  # stdout holds only the JSON: Blender's log went to stderr
    assert (summary["generated"], summary["first_seed"], summary["last_seed"]) == (2, 3, 4)
    for s in (3, 4):
        assert (tmp_path / "sc" / f"scene_{s:06d}.png").stat().st_size > 0
        scene = json.loads((tmp_path / "sc" / f"scene_{s:06d}.json").read_text())
        assert (scene["width"], scene["height"]) == (96, 64)
    assert json.loads(runner.invoke(app, args).stdout)["skipped"] == 2
    r = runner.invoke(app, ["data", "gen", "questions", "--scenes", str(tmp_path / "sc"),
                            "--out", str(tmp_path / "q"), "--per-scene", "4", "--workers", "1", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["questions"] >= 6
