"""Spoken questions: text to 16 kHz mono wav through Debian's speech synthesizers, plus room echo
and background noise, with the transcript kept as ground truth.

Engines (Debian packages; install with ``apt-get install -y espeak-ng flite festival`` and the
festival voices of :data:`FESTIVAL_PACKAGES`, or run ``scripts/system-packages.sh``):

* ``espeak-ng`` — formant synthesis; many accents (en-us, en-gb, scotland, RP, caribbean...) and
  voice variants (``+m1``..``+m7``, ``+f1``..``+f5``, klatt); speed in words/min, pitch 0-99;
* ``flite`` — CMU Flite's built-in voices ``kal`` (8 kHz), ``kal16``, ``awb``, ``rms``, ``slt``;
  speed through ``duration_stretch``, pitch through ``int_f0_target_mean``;
* ``festival`` — ``text2wave`` with ``kal_diphone``; speed through ``Duration_Stretch``, pitch
  through the target of its linear-regression F0 model. The ``wide`` voice pool adds
  ``ked_diphone`` (package ``festvox-kdlpc16k``) and the HTS voice ``cmu_us_slt_arctic_hts``
  (``festvox-us-slt-hts``; speed and pitch through hts_engine's ``-r`` and ``-fm``).

Voice pools (``sample_voice(..., pool=)``): ``base`` is what every clip drew until 2026-12-05 and
stays fixed so old seeds give the same voices; ``wide`` adds 56 more espeak-ng variants and the two
festival voices above, drawn with the same engine shares.

Every clip is resampled to 16 kHz (an FFT resampler in numpy: the engines write 8, 16 or
22.05 kHz), padded with a little silence, convolved with a synthetic room impulse response
(exponentially decaying noise with a drawn RT60), mixed with white/pink/brown noise at a drawn SNR
and scaled to a drawn peak level. Effects come from ``numpy.random.default_rng(seed)``, so one seed
gives one clip. The engines themselves are deterministic (checked for all three).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from agentkit.errors import ConfigError, MediaError

SAMPLE_RATE = 16_000
ENGINES: tuple[str, ...] = ("espeak-ng", "flite", "festival")
_BINARY = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
_FESTIVAL_VOICE_ROOT = "/usr/share/festival/voices"
_ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip
_ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Alex", "Andy", "annie", "david", "edward", "linda", "steph",
)  # fmt: skip
# Flite voices and their natural mean F0 in Hz, so a pitch factor keeps a voice's register.
_FLITE_VOICES = {"kal": 100.0, "kal16": 100.0, "awb": 110.0, "rms": 95.0, "slt": 165.0}
_FESTIVAL_VOICES = ("kal_diphone",)
# The wide pool's extra espeak-ng variants: the human-sounding ones of `espeak-ng --voices=variant`
# (no robots, whispers or effects), and none derived from a variant an ASR split holds out.
_ESPEAK_MORE = (
    "adam", "Alicia", "Andrea", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "Denis",
    "Diogo", "ed", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2",
    "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "marcelo", "Marco", "Mario", "max",
    "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "Storm", "Tweaky", "anika", "AnxiousAndy", "m8", "grandpa", "grandma", "klatt4",
    "klatt5", "norbert", "sandro", "shelby", "travis", "victor", "zac",
)  # fmt: skip
#: Festival voices and the Debian package each comes in.
FESTIVAL_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
VOICE_POOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "base": {"espeak-ng": _ESPEAK_VARIANTS, "festival": _FESTIVAL_VOICES},
    "wide": {
        "espeak-ng": _ESPEAK_VARIANTS + _ESPEAK_MORE,
        "festival": tuple(FESTIVAL_PACKAGES),  # kal, then ked and the HTS slt
    },
}


class VoiceSpec(BaseModel):
    """How one clip is spoken and degraded. Factors are relative to the engine's default."""

    engine: Literal["espeak-ng", "flite", "festival"]
    voice: str = Field(description="engine voice, e.g. 'en-us+f2', 'slt', 'kal_diphone'")
    speed: float = Field(1.0, gt=0.3, lt=3.0, description="speaking-rate factor (1 = default)")
    pitch: float = Field(1.0, gt=0.3, lt=3.0, description="pitch factor (1 = default)")
    reverb_rt60: float | None = Field(None, description="room RT60 in seconds; None = dry")
    snr_db: float | None = Field(None, description="speech-to-noise ratio in dB; None = clean")
    noise: Literal["white", "pink", "brown"] = "white"
    level: float = Field(0.7, gt=0.0, le=1.0, description="peak amplitude of the final clip")
    lead_s: float = Field(0.2, ge=0.0, description="silence before the speech, seconds")
    trail_s: float = Field(0.2, ge=0.0, description="silence after the speech, seconds")


def missing_engines(engines: Sequence[str]) -> list[str]:
    """Which of ``engines`` are not installed (their binary is not on PATH)."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ConfigError(f"unknown speech engine(s) {unknown}; expected some of {list(ENGINES)}")
    return [e for e in engines if shutil.which(_BINARY[e]) is None]


def require_engines(engines: Sequence[str]) -> None:
    """Raise a :class:`ConfigError` naming the Debian packages to install for missing engines."""
    missing = missing_engines(engines)
    if missing:
        raise ConfigError(
            f"speech synthesizer(s) not installed: {', '.join(missing)} (binaries "
            f"{', '.join(_BINARY[e] for e in missing)} not on PATH). Install the Debian "
            f"package(s): apt-get update && apt-get install -y {' '.join(missing)}; "
            "or choose installed engines with --engines."
        )


def sample_voice(
    rng: random.Random, engines: Sequence[str] = ENGINES, pool: str = "base"
) -> VoiceSpec:
    """Draw an engine, voice, speed, pitch, room and noise (deterministic in ``rng``) from one of
    :data:`VOICE_POOLS`."""
    if not engines:
        raise ConfigError("no speech engines given; expected some of " + ", ".join(ENGINES))
    if pool not in VOICE_POOLS:
        raise ConfigError(f"unknown voice pool {pool!r}; expected one of {sorted(VOICE_POOLS)}")
    voices = VOICE_POOLS[pool]
    engine = rng.choice(list(engines))
    if engine == "espeak-ng":
        variant = rng.choice(voices["espeak-ng"])
        voice = rng.choice(_ESPEAK_ACCENTS) + (f"+{variant}" if variant else "")
    elif engine == "flite":
        voice = rng.choice(sorted(_FLITE_VOICES))
    else:
        voice = rng.choice(voices["festival"])
    return VoiceSpec(
        engine=engine,
        voice=voice,
        speed=round(rng.uniform(0.8, 1.3), 3),
        pitch=round(rng.uniform(0.8, 1.25), 3),
        reverb_rt60=round(rng.uniform(0.15, 0.8), 3) if rng.random() < 0.5 else None,
        snr_db=round(rng.uniform(5.0, 30.0), 2) if rng.random() < 0.8 else None,
        noise=rng.choice(["white", "pink", "brown"]),
        level=round(rng.uniform(0.3, 0.95), 3),
        lead_s=round(rng.uniform(0.05, 0.5), 3),
        trail_s=round(rng.uniform(0.05, 0.5), 3),
    )


# -- synthesis ---------------------------------------------------------------------------------


def _engine_command(text_file: Path, out: Path, v: VoiceSpec) -> list[str]:
    if v.engine == "espeak-ng":
        wpm = round(175 * v.speed)
        pitch = min(99, max(0, round(50 * v.pitch)))
        return [
            "espeak-ng",
            "-v",
            v.voice,
            "-s",
            str(wpm),
            "-p",
            str(pitch),
            "-f",
            str(text_file),
            "-w",
            str(out),
        ]
    if v.engine == "flite":
        if v.voice not in _FLITE_VOICES:
            raise ConfigError(
                f"unknown flite voice {v.voice!r}; expected one of {sorted(_FLITE_VOICES)}"
            )
        f0 = _FLITE_VOICES[v.voice] * v.pitch
        return ["flite", "-voice", v.voice, "-f", str(text_file), "-o", str(out),
                "--setf", f"duration_stretch={1 / v.speed:.4f}", "--setf", f"int_f0_target_mean={f0:.1f}"]  # fmt: skip
    if v.voice not in FESTIVAL_PACKAGES:
        raise ConfigError(
            f"unknown festival voice {v.voice!r}; expected one of {sorted(FESTIVAL_PACKAGES)}"
        )
    root = Path(_FESTIVAL_VOICE_ROOT)  # Debian's layout; elsewhere festival says what it lacks
    if root.is_dir() and not list(root.glob(f"*/{v.voice}")):
        raise ConfigError(
            f"festival voice {v.voice!r} is not installed (no {_FESTIVAL_VOICE_ROOT}/*/{v.voice}); "
            f"install it with: apt-get install -y {FESTIVAL_PACKAGES[v.voice]}"
        )
    if v.voice.endswith("_hts"):
        # HTS voices ignore Duration_Stretch and the LR F0 model: hts_engine's own rate and shift
        semitones = 12 * np.log2(v.pitch)
        hts = f'(list (list "-r" {v.speed:.4f}) (list "-fm" {semitones:.3f}))'
        return ["text2wave", "-eval", f"(voice_{v.voice})",
                "-eval", f"(set! hts_engine_params (append hts_engine_params {hts}))",
                "-o", str(out), str(text_file)]  # fmt: skip
    params = f"'((target_f0_mean {105 * v.pitch:.1f}) (target_f0_std {14 * v.pitch:.1f}) (model_f0_mean 170) (model_f0_std 34))"
    return ["text2wave", "-eval", f"(voice_{v.voice})",
            "-eval", f"(Parameter.set 'Duration_Stretch {1 / v.speed:.4f})",
            "-eval", f"(set! int_lr_params {params})", "-o", str(out), str(text_file)]  # fmt: skip


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM wav as float32 in [-1, 1] (channels averaged) and its sample rate in Hz."""
    try:
        with wave.open(str(path), "rb") as w:
            sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (OSError, wave.Error, EOFError) as e:
        raise MediaError(f"cannot read wav {path}: {e}") from e
    if width != 2:
        raise MediaError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, ch).mean(axis=1), sr


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling by zero-padding or truncating the spectrum (numpy only)."""
    if sr_in == sr_out or len(audio) == 0:
        return audio.astype(np.float32)
    n_out = round(len(audio) * sr_out / sr_in)
    spec = np.fft.rfft(audio.astype(np.float64))
    out = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    m = min(len(spec), len(out))
    out[:m] = spec[:m]
    return (np.fft.irfft(out, n_out) * (n_out / len(audio))).astype(np.float32)


def synthesize(text: str, voice: VoiceSpec, *, timeout_s: float = 60.0) -> np.ndarray:
    """Clean speech for ``text``: float32 mono at 16 kHz, peak-normalised to 0.9."""
    if not text.strip():
        raise ConfigError("cannot speak an empty text")
    require_engines([voice.engine])
    with tempfile.TemporaryDirectory(prefix="agentkit-tts-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text.strip() + "\n", encoding="utf-8")
        cmd = _engine_command(text_file, out, voice)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0 or not out.exists():
            raise MediaError(
                f"{voice.engine} failed (exit {proc.returncode}) for voice {voice.voice!r}: "
                f"{proc.stderr.strip()[:300]}"
            )
        audio, sr = read_wav(out)
    audio = resample(audio, sr)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak < 1e-4:
        raise MediaError(f"{voice.engine} voice {voice.voice!r} produced silence for {text!r}")
    return audio * (0.9 / peak)


# -- effects -----------------------------------------------------------------------------------


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: a direct path then exponentially decaying noise (-60 dB at ``rt60`` s)."""
    n = max(2, int(min(rt60, 1.0) * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = (
        0.0  # first reflections arrive a little after the direct sound
    )
    ir = tail * (rng.uniform(0.2, 0.5) / np.sqrt(np.sum(tail**2) + 1e-12))
    ir[0] = 1.0
    return ir


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise with a 1/f^alpha power spectrum (white 0, pink 1, brown 2)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec / f ** (alpha / 2.0), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def apply_effects(clean: np.ndarray, voice: VoiceSpec, seed: int) -> np.ndarray:
    """Pad with silence, add room echo and noise as ``voice`` says; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            np.zeros(int(voice.lead_s * SAMPLE_RATE)),
            clean.astype(np.float64),
            np.zeros(int(voice.trail_s * SAMPLE_RATE)),
        ]
    )
    if voice.reverb_rt60:
        ir = room_impulse_response(voice.reverb_rt60, rng)
        n = len(x) + len(ir) - 1
        size = 1 << (n - 1).bit_length()
        x = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    if voice.snr_db is not None:
        speech = clean.astype(np.float64)
        power = (
            float(np.mean(speech[np.abs(speech) > 0.02] ** 2))
            if np.any(np.abs(speech) > 0.02)
            else 1e-4
        )
        x = x + coloured_noise(len(x), voice.noise, rng) * np.sqrt(
            power / 10 ** (voice.snr_db / 10)
        )
    return (x * (voice.level / (np.max(np.abs(x)) + 1e-12))).astype(np.float32)


# -- questions to clips ------------------------------------------------------------------------


def item_seed(seed: int, key: str) -> int:
    """A stable per-item seed (independent of process, worker and order)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


def speak_question(
    question: dict[str, Any], out_dir: Path, *, seed: int, engines: Sequence[str] = ENGINES
) -> dict[str, Any]:
    """Write ``{id}.wav`` (16 kHz mono) and ``{id}.json`` (transcript + voice) into ``out_dir``.

    ``question`` is a record from ``questions.py`` (needs ``id`` and ``question``). Returns the
    ground-truth record that the JSON holds. The voice and effects depend only on ``seed`` and the
    question id.
    """
    for key in ("id", "question"):
        if key not in question:
            raise ConfigError(f"question record lacks {key!r}: {str(question)[:200]}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(question["id"])):
        raise ConfigError(
            f"question id {question['id']!r} cannot name a file: use letters, digits, _ . -"
        )
    s = item_seed(seed, str(question["id"]))
    voice = sample_voice(random.Random(s), engines)
    audio = apply_effects(synthesize(question["question"], voice), voice, s)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = str(question["id"])
    record: dict[str, Any] = {
        "id": stem,
        "audio": f"{stem}.wav",
        "transcript": question["question"],
        "sample_rate": SAMPLE_RATE,
        "duration_s": round(len(audio) / SAMPLE_RATE, 3),
        "seed": s,
        **voice.model_dump(),
        **{
            k: question[k]
            for k in ("answer", "family", "image_filename", "wording")
            if k in question
        },
    }
    # wav first, json last: a json on disk means the item is complete (resume relies on it)
    tmp_wav = out_dir / f".{stem}.wav.tmp"
    write_wav(tmp_wav, audio)
    tmp_wav.replace(out_dir / f"{stem}.wav")
    tmp_json = out_dir / f".{stem}.json.tmp"
    tmp_json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp_json.replace(out_dir / f"{stem}.json")
    return record
