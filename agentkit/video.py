"""Frames of a short video, sampled at a fixed rate with ffmpeg, for a question about a clip.

A video is turned into still images before the run starts: ``ffmpeg -vf fps=F`` writes one frame
every ``1/F`` seconds (frame ``k`` shows time ``k / F`` seconds from the start), at most
``max_frames`` of them. The agent then stores them in the run's media store as ``frame_0 ..
frame_N`` and describes each to the controller with its time, e.g. ``frame_3 (t=3.0 s,
480x320)``, so one question can refer to several frames as it would to several images.

ffmpeg runs as a subprocess (no Python video library); a missing ffmpeg or an unreadable file is
a :class:`~agentkit.errors.MediaError` that says what to do.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentkit.errors import MediaError

#: Seconds ffmpeg may take to decode a clip before it is given up.
FFMPEG_TIMEOUT = 120.0


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its PNG file and its time from the start of the clip, in seconds."""

    path: Path
    t: float


def ffmpeg_binary() -> str:
    """The ffmpeg executable, or a MediaError saying how to install it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError(
            "ffmpeg is needed to read a video but is not on PATH; install it "
            "(`apt-get install ffmpeg`, `brew install ffmpeg`) or pass frames as images instead"
        )
    return exe


def sample_frames(
    video: str | Path, out_dir: str | Path, *, fps: float = 1.0, max_frames: int = 16
) -> list[Frame]:
    """Write up to ``max_frames`` frames of ``video``, one every ``1 / fps`` seconds, as PNGs in
    ``out_dir``; return them in time order.

    Frame ``k`` is the picture at ``t = k / fps`` seconds (ffmpeg's ``fps`` filter, which starts at
    the first frame). Raises :class:`MediaError` for a missing or unreadable file, a clip with no
    frames, a missing ffmpeg, or an invalid ``fps`` / ``max_frames``.
    """
    p = Path(video)
    if not p.is_file():
        raise MediaError(f"video not found: {p}")
    if not fps > 0:
        raise MediaError(f"fps={fps} is invalid: expected frames per second > 0 (e.g. 1.0)")
    if max_frames < 1:
        raise MediaError(f"max_frames={max_frames} is invalid: expected an int >= 1")
    exe = ffmpeg_binary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe, "-nostdin", "-v", "error", "-i", str(p),
        "-vf", f"fps={fps}", "-frames:v", str(max_frames), "-an",
        str(out / "frame_%05d.png"),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise MediaError(
            f"ffmpeg took over {FFMPEG_TIMEOUT:.0f} s to read {p}; cut the clip"
        ) from e
    files = sorted(out.glob("frame_*.png"))
    if proc.returncode != 0 or not files:
        why = (proc.stderr or "").strip().splitlines()
        raise MediaError(
            f"cannot read video {p}: {why[-1] if why else 'ffmpeg wrote no frames'}; expected a "
            "video file ffmpeg can decode (mp4, webm, avi, mkv ...)"
        )
    return [Frame(path=f, t=round(k / fps, 3)) for k, f in enumerate(files)]


@contextmanager
def sampled_frames(
    video: str | Path, *, fps: float = 1.0, max_frames: int = 16
) -> Iterator[list[Frame]]:
    """:func:`sample_frames` into a temporary folder that is removed afterwards (the media store
    keeps its own copies)."""
    with tempfile.TemporaryDirectory(prefix="agentkit-frames-") as tmp:
        yield sample_frames(video, tmp, fps=fps, max_frames=max_frames)


def describe_frame(frame: Frame, width: int, height: int) -> str:
    """How the controller sees a frame in the media list: ``t=3.0 s, 480x320``."""
    t = f"{frame.t:.1f}" if float(frame.t).is_integer() else f"{frame.t:g}"
    return f"t={t} s, {width}x{height}"
