"""Video input: frames sampled at a fixed rate with ffmpeg become frame_0..N of the run's media,
described with their times; clear errors for a missing ffmpeg or an unreadable file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from agentkit.errors import MediaError
from agentkit.graph import Agent
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import ToolRegistry
from agentkit.video import sample_frames

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def make_clip(tmp: Path, seconds: int = 5, rate: int = 4) -> Path:
    """A ``seconds``-long 48x32 clip at ``rate`` fps whose colour changes every second."""
    src = tmp / "src"
    src.mkdir()
    for i in range(seconds * rate):
        Image.new("RGB", (48, 32), COLORS[(i // rate) % len(COLORS)]).save(src / f"{i:04d}.png")
    out = tmp / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-framerate", str(rate), "-i", str(src / "%04d.png"),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", str(rate), str(out)],
        check=True,
    )  # fmt: skip
    return out


@needs_ffmpeg
def test_frames_at_fixed_rate_with_times(tmp_path):
    clip = make_clip(tmp_path)
    frames = sample_frames(clip, tmp_path / "f", fps=1.0, max_frames=16)
    assert [f.t for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    for k, f in enumerate(frames):  # frame k shows second k's colour (lossy codec: roughly)
        px = Image.open(f.path).convert("RGB").getpixel((24, 16))
        assert max(abs(a - b) for a, b in zip(px, COLORS[k], strict=True)) < 40, (k, px)
    assert len(sample_frames(clip, tmp_path / "g", fps=2.0, max_frames=3)) == 3


@needs_ffmpeg
def test_agent_stores_frames_and_the_controller_sees_their_times(tmp_path):
    clip = make_clip(tmp_path)
    img = tmp_path / "still.png"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(img)
    backend = ScriptedBackend(["Thought: the colour changes\nFinal Answer: red then green"])
    agent = Agent(backend, tools=ToolRegistry(), runs_dir=tmp_path / "runs")
    res = agent.ask("What changes?", images=[img], video=clip, fps=1.0, max_frames=3)
    assert res.answer == "red then green"
    prompt = backend.calls[0][-1]
    assert "image_0 (20x10 image)" in prompt.content
    for k in range(3):
        assert f"frame_{k} (t={k}.0 s, 48x32)" in prompt.content
    assert "frame_3" not in prompt.content  # max_frames holds
    assert len(prompt.images) == 4  # the image and three frames reach the model
    media = tmp_path / "runs" / str(res.thread) / "media"
    assert (media / "frame_2.png").exists()


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MediaError, match="ffmpeg is needed"):
        sample_frames(clip, tmp_path / "f")


@needs_ffmpeg
def test_unreadable_or_missing_video_fails_before_any_model_call(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    backend = ScriptedBackend([])
    agent = Agent(backend, tools=ToolRegistry(), runs_dir=tmp_path / "runs")
    with pytest.raises(MediaError, match="cannot read video"):
        agent.ask("What happens?", video=bad)
    with pytest.raises(MediaError, match="video not found"):
        agent.ask("What happens?", video=tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="fps=0"):
        sample_frames(bad, tmp_path / "f", fps=0)
    assert backend.calls == []
