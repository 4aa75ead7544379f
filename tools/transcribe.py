"""transcribe: speech to text with openai-whisper.

Checkpoints are whisper's own layout, ``{"dims": ModelDimensions fields, "model_state_dict": ...}``,
loaded by ``whisper.load_model(path)``: the shipped ``speech-whisper`` and official ``tiny.pt`` /
``base.pt`` files alike. A checkpoint may also carry ``"transcribe_options"`` (a dict) naming how
it must be decoded, e.g. ``{"without_timestamps": True}`` for a model trained without timestamp
tokens; only the keys in :data:`CHECKPOINT_OPTIONS` are honoured.

Train the way this tool calls: ``model.transcribe`` pads the log-mel of each 30 s window with
*zeros*, whereas ``log_mel_spectrogram(pad_or_trim(audio))`` pads the audio and so the mel with
the log-mel of silence (about -0.7). A small model trained on the second scored 4/4 through
``decode()`` and 1/4 through ``transcribe()`` (FACTS.md). The ``asr`` recipe must build its
inputs as ``transcribe`` does, and decode with temperature 0 as below.

Window: ``whisper.transcribe`` feeds the encoder 30 s windows (3000 mel frames), the only shape an
official model takes. A checkpoint whose ``n_audio_ctx`` is smaller (the shipped speech-whisper
listens to 10 s windows: a third of the compute) is decoded here window by window with
``whisper.decode``, from the same log-mel ``transcribe`` computes, zero-padded to its window.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentkit.errors import MediaError, ToolError
from agentkit.tools._vision import resolve_weights, weights_spec

if TYPE_CHECKING:
    import numpy as np

    from agentkit.tools.base import ToolContext

NAME = "transcribe"
DESCRIPTION = """Transcribe speech in an audio clip (wav, mp3, ...) to text with whisper. Returns the
text, the language and timed segments (start and end in seconds)."""
TIMEOUT = 120.0
PURE = True  # reads its inputs only: may run ahead and be reused
DEFAULT_WEIGHTS = "speech-whisper"
SAMPLE_RATE = 16_000
#: Keys a checkpoint's "transcribe_options" may set (others are ignored: a checkpoint is data).
CHECKPOINT_OPTIONS = frozenset(
    {
        "without_timestamps",
        "condition_on_previous_text",
        "no_speech_threshold",
        "sample_len",
        "beam_size",
    }
)


class Args(BaseModel):
    audio: str = Field(description="Media id (audio_0) or path of the audio file.")
    language: str | None = Field(
        None, description='Language code such as "en"; detected when omitted.'
    )
    weights: str | None = Field(
        None, description="Checkpoint name or path (default speech-whisper)."
    )


class Segment(BaseModel):
    start: float = Field(description="Start time in seconds.")
    end: float = Field(description="End time in seconds.")
    text: str


class Result(BaseModel):
    text: str
    language: str | None
    segments: list[Segment]
    duration: float = Field(description="Length of the audio in seconds.")


class Transcriber:
    """A whisper model and the decoding options its checkpoint asks for."""

    def __init__(self, model: Any, options: dict[str, Any]):
        self.model = model
        self.options = options


def load_transcriber(path: Path, device: str) -> Transcriber:
    import torch
    import whisper

    try:
        # An absolute path: load_model would take a bare "tiny" as a name to download.
        model = whisper.load_model(str(path.absolute()), device=device)
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # torch/pickle raise many kinds for a bad file
        raise ToolError(
            f"cannot load whisper checkpoint {path}: {type(e).__name__}: {e}; expected whisper's layout "
            '{"dims": ..., "model_state_dict": ...} (e.g. tiny.pt)'
        ) from e
    extra = ckpt.get("transcribe_options") or {}
    return Transcriber(model, {k: v for k, v in extra.items() if k in CHECKPOINT_OPTIONS})


def audio_path(ref: str, ctx: ToolContext) -> Path:
    if ctx.media is not None and ref in ctx.media:
        return ctx.media.path(ref)
    p = Path(ref)
    if p.is_file():
        return p
    known = ", ".join(ctx.media.ids()) if ctx.media is not None else "none"
    raise MediaError(f"audio {ref!r} is neither a media id of this run (known: {known}) nor a file")


def read_wav_16k(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit PCM wav as float32 in [-1, 1], without ffmpeg."""
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise MediaError(
                f"{path} is {w.getframerate()} Hz, {w.getnchannels()} channel(s), {8 * w.getsampwidth()}-bit; "
                "without ffmpeg only 16 kHz mono 16-bit wav can be read. Install ffmpeg (`apt-get install ffmpeg`)."
            )
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def load_audio(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 (whisper's ffmpeg reader; plain wav without it)."""
    import whisper

    if shutil.which("ffmpeg") is None:
        try:
            return read_wav_16k(path)
        except (wave.Error, EOFError) as e:
            raise MediaError(
                f"cannot read {path} without ffmpeg ({e}); install it: `apt-get install ffmpeg`"
            ) from e
    try:
        return whisper.load_audio(str(path))
    except RuntimeError as e:  # ffmpeg's stderr, e.g. "Invalid data found when processing input"
        raise MediaError(f"cannot read audio {path}: {str(e).strip().splitlines()[-1]}") from e


def run(args: Args, ctx: ToolContext) -> Result:
    path = audio_path(args.audio, ctx)
    audio = load_audio(path)
    spec = weights_spec(NAME, args.weights, ctx, DEFAULT_WEIGHTS)
    wpath = resolve_weights(spec)
    tr = ctx.models.get(
        "whisper", str(wpath), ctx.device, lambda: load_transcriber(wpath, ctx.device)
    )
    opts: dict[str, Any] = {
        # Temperature 0 only: deterministic, and a bounded time (fallback re-decodes up to 5 times).
        "temperature": 0.0,
        "fp16": ctx.device != "cpu",
        "language": args.language,
        "verbose": None,
        **tr.options,
    }
    if tr.model.dims.n_audio_ctx == 1500:
        out = tr.model.transcribe(audio, **opts)
    else:
        out = decode_windows(tr.model, audio, opts)
    segments = [
        Segment(start=round(s["start"], 2), end=round(s["end"], 2), text=s["text"].strip())
        for s in out["segments"]
    ]
    return Result(
        text=out["text"].strip(),
        language=out.get("language"),
        segments=segments,
        duration=round(len(audio) / SAMPLE_RATE, 3),
    )


def decode_windows(model: Any, audio: np.ndarray, opts: dict[str, Any]) -> dict[str, Any]:
    """``transcribe``'s result for a model with a window shorter than 30 s: the clip's log-mel
    (computed as ``transcribe`` computes it) cut into windows of ``2 * n_audio_ctx`` frames, each
    zero-padded and decoded greedily without timestamps; one segment per window."""
    import torch
    import whisper

    n = 2 * model.dims.n_audio_ctx
    mel = whisper.log_mel_spectrogram(
        torch.from_numpy(audio), model.dims.n_mels, padding=whisper.audio.N_SAMPLES
    )
    frames = mel.shape[-1] - whisper.audio.N_FRAMES  # the clip's own frames (10 ms each)
    options = whisper.DecodingOptions(
        language=opts.get("language"),
        without_timestamps=True,
        temperature=0.0,
        fp16=bool(opts.get("fp16")),
        sample_len=opts.get("sample_len"),
        beam_size=opts.get("beam_size"),
    )
    segments, language = [], opts.get("language")
    for start in range(0, max(frames, 1), n):
        window = whisper.pad_or_trim(mel[:, start : min(frames, start + n)], n)
        res = whisper.decode(model, window.to(model.device), options)
        language = language or res.language
        text = res.text.strip()
        quiet = opts.get("no_speech_threshold")
        if text and (quiet is None or res.no_speech_prob <= quiet):
            end = min(frames, start + n)
            segments.append({"start": start / 100, "end": end / 100, "text": text})
    return {
        "text": " ".join(s["text"] for s in segments),
        "segments": segments,
        "language": language,
    }


def summary(result: Result) -> str:
    lang = f" ({result.language})" if result.language else ""
    return f'Transcript{lang}, {result.duration:.1f} s: "{result.text}"'
