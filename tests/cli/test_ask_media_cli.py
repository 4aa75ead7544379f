"""`agentkit ask` with a spoken question (--audio, --tool-weights) and with a video (--video)."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from agentkit.cli import app

runner = CliRunner()

# A whisper small enough to build in a test (random weights: it babbles, which is all the
# test needs: the transcript is recorded and becomes the question).
DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=128, n_audio_head=2, n_audio_layer=2,
            n_vocab=51865, n_text_ctx=448, n_text_state=128, n_text_head=2, n_text_layer=2)  # fmt: skip


def tiny_whisper(path: Path) -> Path:
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**DIMS))
    opts = {"sample_len": 6, "without_timestamps": True}
    torch.save(
        {"dims": DIMS, "model_state_dict": model.state_dict(), "transcribe_options": opts}, path
    )
    return path


def wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def script(path: Path, replies: list) -> Path:
    path.write_text(json.dumps({"replies": replies, "index_by": "call"}))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(p)
    return p


@pytest.mark.slow
def test_spoken_question_is_transcribed_first_with_the_named_weights(tmp_path, image):
    ckpt = tiny_whisper(tmp_path / "whisper.pt")
    s = script(tmp_path / "s.json", ["Thought: heard it\nFinal Answer: no"])
    r = runner.invoke(
        app,
        ["ask", str(image), "--audio", str(wav(tmp_path / "q.wav")), "--model", f"scripted:{s}",
         "--tool-weights", f"transcribe={ckpt}", "--runs-dir", str(tmp_path / "runs"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    first = out["steps"][0]
    assert first["role"] == "executor" and first["tool"] == "transcribe", first
    assert first["error"] is None and first["args"] == {"audio": "audio_0"}
    assert out["answer"] == "no"
    assert [s["role"] for s in out["steps"]] == ["executor", "controller"]


def test_tool_weights_reach_the_tool_and_bad_values_are_refused(tmp_path, image):
    s = script(tmp_path / "s.json", ["Final Answer: x"])
    missing = tmp_path / "nowhere.pt"
    r = runner.invoke(
        app,
        ["ask", str(image), "--audio", str(wav(tmp_path / "q.wav")), "--model", f"scripted:{s}",
         "--tool-weights", f"transcribe={missing}", "--runs-dir", str(tmp_path / "runs"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    step = json.loads(r.stdout)["steps"][0]
    assert step["tool"] == "transcribe" and str(missing) in step["error"]  # the override was used
    r = runner.invoke(
        app, ["ask", str(image), "Q?", "--model", f"scripted:{s}", "--tool-weights", "transcribe"]
    )
    assert r.exit_code == 2 and "TOOL=WEIGHTS" in r.output


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ask_video_json(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(src / f"{i:03d}.png")
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-framerate", "2", "-i", str(src / "%03d.png"),
         "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )  # fmt: skip
    s = script(tmp_path / "s.json", ["Thought: three frames\nFinal Answer: dark to red"])
    r = runner.invoke(
        app,
        ["ask", "What changes?", "--video", str(clip), "--fps", "1", "--model", f"scripted:{s}",
         "--runs-dir", str(tmp_path / "runs"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    media = json.loads((tmp_path / "runs" / out["thread"] / "media" / "index.json").read_text())
    assert list(media) == ["frame_0", "frame_1", "frame_2"]
    events = [json.loads(line) for line in Path(out["trace"]).read_text().splitlines()]
    assert next(e for e in events if e["event"] == "run_start")["media"] == list(media)
