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
``whisper.decode``, from the same log-mel ``transcribe`` computes, zero-padded to its window, or,
when the checkpoint says ``crop_window`` (it was trained on unpadded clips), cut to the clip.

Speakers: a checkpoint may say ``vtln_warps`` (a list of factors): each window is then decoded
once per factor, its mel axis warped by it (:func:`warp_mel`, the vocal-tract-length
perturbation the ``asr`` recipe trains with), in one batch, and the likeliest reading (highest
mean token log-probability) is kept: maximum-likelihood vocal-tract length normalisation, which
meets a voice unlike the training voices part way (docs/asr.md).
"""

from __future__ import annotations

import math
import shutil
import wave
from dataclasses import replace
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
text, the language, timed segments (start and end in seconds) and a confidence (0-1; low means
likely misheard)."""
TIMEOUT = 120.0
PURE = True  # reads its inputs only: may run ahead and be reused
DEFAULT_WEIGHTS = "speech-whisper"
SAMPLE_RATE = 16_000
MAX_ALTERNATIVES = 8
#: Below this confidence a transcript is flagged as likely misheard. On the 100 dev clips of
#: docs/asr.md (held-out voices), chosen with the asr-voices model: the tenth of clips under it
#: had WER 0.50, the rest 0.05; with the asr-64k model and its warps, 4 clips (WER 0.27) against
#: 0.032; with asr-80k, 3 clips (0.235) against 0.026 (test: 5, 0.39 against 0.042); with the
#: shipped asr-96k, 2 clips (0.276) against 0.026 (test: 4, 0.371 against 0.024).
LOW_CONFIDENCE = 0.86
#: Keys a checkpoint's "transcribe_options" may set (others are ignored: a checkpoint is data).
CHECKPOINT_OPTIONS = frozenset(
    {
        "without_timestamps",
        "condition_on_previous_text",
        "no_speech_threshold",
        "sample_len",
        "beam_size",
        "crop_window",
        "vtln_warps",
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
    alternatives: int = Field(
        0,
        ge=0,
        le=MAX_ALTERNATIVES,
        description="Also return up to this many other readings of the speech (a beam search), "
        "likeliest first; clips of one window only.",
    )


class Segment(BaseModel):
    start: float = Field(description="Start time in seconds.")
    end: float = Field(description="End time in seconds.")
    text: str
    avg_logprob: float | None = Field(None, description="Mean log-probability of its tokens.")


class Result(BaseModel):
    text: str
    language: str | None
    segments: list[Segment]
    duration: float = Field(description="Length of the audio in seconds.")
    alternatives: list[str] = Field(
        default_factory=list,
        description="Other readings of the speech, likeliest first (when asked for).",
    )
    confidence: float | None = Field(
        None,
        description="Geometric-mean probability of the tokens of the least sure segment (0-1); "
        f"under {LOW_CONFIDENCE} the speech was likely misheard.",
    )


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
    if tr.model.dims.n_audio_ctx == 1500 and not opts.get("vtln_warps"):
        out = tr.model.transcribe(audio, **opts)
    else:
        out = decode_windows(tr.model, audio, opts)
    segments = [
        Segment(start=round(s["start"], 2), end=round(s["end"], 2), text=s["text"].strip(),
                avg_logprob=_finite(s.get("avg_logprob")))
        for s in out["segments"]
    ]  # fmt: skip
    text = out["text"].strip()
    others: list[str] = []
    if args.alternatives:
        # The transcript stays the decoding above (asking for alternatives changes nothing
        # else); a beam of one more than asked reads the clip again for the others, warped
        # as the reading kept.
        opts = {**opts, "language": opts["language"] or out.get("language")}
        if out.get("warps"):
            opts["vtln_warps"] = out["warps"][:1]
        beam = decode_windows(tr.model, audio, opts, alternatives=args.alternatives + 1)
        others = [t for t in beam["alternatives"] if _plain(t) != _plain(text)]
    return Result(
        text=text,
        language=out.get("language"),
        segments=segments,
        duration=round(len(audio) / SAMPLE_RATE, 3),
        alternatives=others[: args.alternatives],
        confidence=confidence(segments),
    )


def _plain(text: str) -> str:
    """A reading as compared with another: lower case, words only."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


class _Ranked:
    """A decoding task's own sequence ranker (whisper's ``MaximumLikelihoodRanker``) that also
    keeps every candidate of the beam in the order it ranks them: its pick, then its pick among
    the rest, and so on. It picks what the wrapped ranker picks; the scoring stays whisper's."""

    def __init__(self, ranker: Any):
        self.ranker = ranker
        self.ranked: list[list[list[int]]] = []  # per audio: candidates' tokens, best first

    def rank(self, tokens: list[list[Any]], sum_logprobs: list[list[float]]) -> list[int]:
        self.ranked, best = [], []
        for cands, lps in zip(tokens, sum_logprobs, strict=True):
            left, order = list(range(len(cands))), []
            while left:
                (pick,) = self.ranker.rank([[cands[i] for i in left]], [[lps[i] for i in left]])
                order.append(left.pop(int(pick)))
            self.ranked.append([cands[i].tolist() for i in order])
            best.append(order[0])
        return best


def encode_frames(encoder: Any, x: Any) -> Any:
    """whisper's ``AudioEncoder.forward`` for any even number of mel frames up to its window
    (the positional embedding cut to length); on a full window, the same function as
    ``encoder(x)``."""
    import torch.nn.functional as F

    h = F.gelu(encoder.conv2(F.gelu(encoder.conv1(x)))).permute(0, 2, 1)
    h = h + encoder.positional_embedding[: h.shape[1]].to(h.dtype)
    for block in encoder.blocks:
        h = block(h)
    return encoder.ln_post(h)


def warp_mel(mel: Any, alpha: float) -> Any:
    """``mel`` (``(..., n_mels, frames)``) with its mel axis resampled at ``alpha`` times each
    band's index, linearly, the top band held: below 1 the spectrum moves up (a shorter vocal
    tract, a higher voice), above 1 down. ``alpha`` 1 returns ``mel`` as it is."""
    import torch

    if alpha == 1:
        return mel
    n = mel.shape[-2]
    src = (torch.arange(n, dtype=torch.float32, device=mel.device) * alpha).clamp(0, n - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (src - lo)[:, None].to(mel.dtype)
    return mel[..., lo, :] * (1 - w) + mel[..., hi, :] * w


def vtln_warps(opts: dict[str, Any]) -> list[float]:
    """The decoding options' ``vtln_warps`` (none: ``[]``); anything but a list of factors
    between 0.5 and 2 is a :class:`ToolError` naming it (a checkpoint's options are data)."""
    warps = opts.get("vtln_warps") or []
    ok = isinstance(warps, list) and all(
        isinstance(a, int | float) and not isinstance(a, bool) and 0.5 <= a <= 2 for a in warps
    )
    if not ok:
        raise ToolError(
            f"vtln_warps must be a list of warp factors between 0.5 and 2, got {warps!r}"
        )
    return [float(a) for a in warps]


def _likeliest(results: list[Any]) -> int:
    """The index of the decoding with the highest finite mean token log-probability (the first
    when none has one)."""
    scores = [_finite(r.avg_logprob) for r in results]
    worst = -math.inf
    return max(range(len(results)), key=lambda i: (worst if scores[i] is None else scores[i], -i))


def spoken_language(model: Any, features: Any, tokenizer: Any) -> str:
    """The language code whose token whisper's decoder finds likeliest after
    ``<|startoftranscript|>`` (``whisper.detect_language`` for features of any length)."""
    import torch

    sot = torch.tensor([[tokenizer.sot]], device=features.device)
    logits = model.logits(sot, features)[0, 0]
    ids = list(tokenizer.all_language_tokens)
    best = ids[int(logits[ids].argmax())]
    return str(tokenizer.decode([best]).strip("<|>"))


def decode_windows(
    model: Any, audio: np.ndarray, opts: dict[str, Any], alternatives: int = 0
) -> dict[str, Any]:
    """``transcribe``'s result for a model with a window shorter than 30 s: the clip's log-mel
    (computed as ``transcribe`` computes it) cut into windows of ``2 * n_audio_ctx`` frames, each
    zero-padded and decoded without timestamps (greedy, or a beam when the options ask for
    one); one segment per window. With ``alternatives`` (a beam of that many) and a clip of one
    window, ``"alternatives"`` holds every reading of the beam, likeliest first. With
    ``vtln_warps`` each window is decoded at every warp in one batch and the likeliest reading
    kept; ``"warps"`` then lists the warp each window's reading was heard at.

    A checkpoint trained on unpadded clips says ``crop_window``: its encoder then hears only
    the window's own frames (:func:`encode_frames`), as it did in training, and the language is
    read from them (:func:`spoken_language`)."""
    import torch
    import whisper
    from whisper.decoding import DecodingTask

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
        beam_size=alternatives or opts.get("beam_size"),
    )
    crop = bool(opts.get("crop_window"))
    warps = vtln_warps(opts)
    # language detection hears the window as warped nearest to not at all
    plain = min(range(len(warps)), key=lambda i: abs(warps[i] - 1)) if warps else 0
    segments, language, readings, kept = [], opts.get("language"), [], []
    for start in range(0, max(frames, 1), n):
        end = min(frames, start + n)
        own = max(2, end - start + (end - start) % 2)  # the window's own frames, made even
        x = whisper.pad_or_trim(mel[:, start:end], own if crop else n)
        x = torch.stack([warp_mel(x, a) for a in warps]) if warps else x[None]
        x = x.to(model.device)
        task = DecodingTask(model, options)
        with torch.no_grad():
            x = x.half() if options.fp16 else x
            feats = encode_frames(model.encoder, x) if crop else model.encoder(x)
            if options.language is None:  # read off the plain warp, once for the batch
                code = spoken_language(model, feats[plain : plain + 1], task.tokenizer)
                task = DecodingTask(model, replace(options, language=code))
        if len(feats) > 1 and task.n_group > 1:
            # whisper repeats the tokens per beam but not the features since openai/whisper
            # #1483 (broadcast covers one clip only; #2197, #2389 are open): one row per beam,
            # and the language read once per clip, as whisper slices the features back after
            group = task.n_group
            feats = feats.repeat_interleave(group, dim=0)
            task._detect_language = (  # type: ignore[method-assign]
                lambda f, t, d=task._detect_language, g=group: d(f[::g], t)
            )
        # whisper takes features in place of a mel only at the full window's length
        task._get_audio_features = lambda _mel, f=feats: f  # type: ignore[method-assign]
        if alternatives:  # whisper's own ranker otherwise
            ranker = task.sequence_ranker = _Ranked(task.sequence_ranker)
        with torch.no_grad():
            results = task.run(x)
        best = _likeliest(results) if warps else 0
        res = results[best]
        if warps:
            kept.append(warps[best])
        if alternatives and frames <= n:
            readings = [task.tokenizer.decode(t).strip() for t in ranker.ranked[best]]
        language = language or res.language
        text = res.text.strip()
        quiet = opts.get("no_speech_threshold")
        if text and (quiet is None or res.no_speech_prob <= quiet):
            segments.append({"start": start / 100, "end": end / 100, "text": text,
                             "avg_logprob": res.avg_logprob})  # fmt: skip
    return {
        "text": " ".join(s["text"] for s in segments),
        "segments": segments,
        "language": language,
        "alternatives": [r for r in dict.fromkeys(readings) if r],
        "warps": kept,
    }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def confidence(segments: list[Segment]) -> float | None:
    """The geometric-mean token probability of the least sure segment; None when no segment
    has a (finite) mean log-probability."""
    sure = [s.avg_logprob for s in segments if s.avg_logprob is not None]
    return round(math.exp(min(sure)), 3) if sure else None


def summary(result: Result) -> str:
    lang = f" ({result.language})" if result.language else ""
    unsure = ""
    if result.confidence is not None and result.confidence < LOW_CONFIDENCE:
        unsure = f" (confidence {result.confidence:.2f}: likely misheard)"
    return f'Transcript{lang}, {result.duration:.1f} s: "{result.text}"{unsure}'
