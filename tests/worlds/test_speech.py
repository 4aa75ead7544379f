"""Spoken questions: every installed engine, 16 kHz mono, plausible length, transcript kept."""

from __future__ import annotations

import json
import random
import shutil
import wave

import numpy as np
import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.worlds import speech
from agentkit.mllm.worlds.speech import (
    ENGINES,
    SAMPLE_RATE,
    VoiceSpec,
    apply_effects,
    missing_engines,
    read_wav,
    resample,
    speak_question,
)

QUESTIONS = [
    "How many red cubes are there?",
    "What color is the cylinder left of the small sphere?",
    "Are there more metal things than rubber balls?",
]
INSTALLED = [e for e in ENGINES if e not in missing_engines(ENGINES)]


def test_some_engine_is_installed():
    # the speech world is pointless without one; install with apt-get (see speech.py)
    assert INSTALLED, "install espeak-ng, flite or festival"


@pytest.mark.parametrize("engine", ENGINES)
def test_three_questions_per_engine(engine, tmp_path):
    if engine not in INSTALLED:
        pytest.skip(f"{engine} is not installed")
    for k, text in enumerate(QUESTIONS):
        q = {"id": f"{engine}-{k}", "question": text, "answer": "2", "family": "count"}
        rec = speak_question(q, tmp_path, seed=5, engines=[engine])
        with wave.open(str(tmp_path / f"{q['id']}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
            seconds = w.getnframes() / SAMPLE_RATE
        words = len(text.split())
        # 80-330 words per minute covers every drawn speed, plus at most 1 s of padding
        assert words / 330 * 60 < seconds < words / 80 * 60 + 1.0, (engine, seconds)
        assert rec["duration_s"] == pytest.approx(seconds, abs=1e-3)
        side = json.loads((tmp_path / f"{q['id']}.json").read_text())
        assert side["transcript"] == text and side["engine"] == engine
        assert {"voice", "speed", "pitch", "snr_db", "reverb_rt60", "sample_rate"} <= set(side)
        audio, _ = read_wav(tmp_path / f"{q['id']}.wav")
        frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)  # 20 ms frames
        rms = np.sqrt(np.mean(frames**2, axis=1))
        loud = rms > 0.1 * rms.max()
        assert 0.2 < loud.mean() < 0.99, loud.mean()  # speech with pauses: not silence, not a hum


def test_same_seed_same_clip_other_seed_other_clip(tmp_path):
    engine = INSTALLED[0]
    q = {"id": "q1", "question": QUESTIONS[1]}
    a = speak_question(q, tmp_path / "a", seed=1, engines=[engine])
    b = speak_question(q, tmp_path / "b", seed=1, engines=[engine])
    c = speak_question(q, tmp_path / "c", seed=2, engines=[engine])
    wav = [(tmp_path / d / "q1.wav").read_bytes() for d in "abc"]
    assert a == b and wav[0] == wav[1]
    assert a != c and wav[0] != wav[2]


def test_effects_are_deterministic_and_do_what_they_say():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clean = (0.5 * np.sin(2 * np.pi * 220 * t) * (t < 0.5)).astype(np.float32)
    dry = VoiceSpec(engine="espeak-ng", voice="en-us", lead_s=0.1, trail_s=0.1, level=0.5)
    out = apply_effects(clean, dry, seed=3)
    assert len(out) == len(clean) + int(0.2 * SAMPLE_RATE)
    assert np.max(np.abs(out)) == pytest.approx(0.5, abs=1e-3)
    assert np.all(out[: int(0.1 * SAMPLE_RATE)] == 0)  # no noise, no echo: silence stays silent
    wet = dry.model_copy(update={"reverb_rt60": 0.5})
    tail = apply_effects(clean, wet, seed=3)[int(0.62 * SAMPLE_RATE) : int(0.7 * SAMPLE_RATE)]
    assert np.sqrt(np.mean(tail**2)) > 1e-3  # echo rings on after the tone stops at 0.6 s
    noisy = dry.model_copy(update={"snr_db": 10.0})
    x1, x2 = apply_effects(clean, noisy, seed=3), apply_effects(clean, noisy, seed=3)
    assert np.array_equal(x1, x2)
    assert not np.array_equal(x1, apply_effects(clean, noisy, seed=4))
    # the SNR is as asked: noise power measured in the silent lead-in vs the tone's power
    lead = x1[: int(0.1 * SAMPLE_RATE)]
    tone = x1[int(0.1 * SAMPLE_RATE) : int(0.6 * SAMPLE_RATE)]
    noise_power = np.mean(lead**2)
    snr = 10 * np.log10((np.mean(tone**2) - noise_power) / noise_power)
    assert 8 < snr < 12, snr


def test_resample_keeps_a_tone():
    sr = 22050
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, sr)
    assert len(y) == SAMPLE_RATE
    peak = np.argmax(np.abs(np.fft.rfft(y)))
    assert abs(peak - 440) <= 1  # 1 s of audio: bin k is k Hz


def test_voices_vary(tmp_path):
    rng = random.Random(0)
    voices = {speech.sample_voice(rng).voice for _ in range(60)}
    assert len(voices) >= 20


def test_missing_engine_names_the_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"apt-get install -y flite"):
        speech.require_engines(["flite"])
    with pytest.raises(ConfigError, match="unknown speech engine"):
        speech.require_engines(["sam"])


def test_bad_question_records(tmp_path):
    with pytest.raises(ConfigError, match="lacks 'question'"):
        speak_question({"id": "x"}, tmp_path, seed=0)
    with pytest.raises(ConfigError, match="cannot name a file"):
        speak_question({"id": "../x", "question": "Hi?"}, tmp_path, seed=0)


#: What ``sample_voice(random.Random(seed))`` drew for seeds 0-5 before the wide pool was added.
PINNED_BASE_VOICES = [
    "rms",
    "en-029+annie",
    "en-us+m2",
    "en-gb-x-gbclan+annie",
    "en-us+f2",
    "kal_diphone",
]


def test_the_base_pool_keeps_every_seeds_voice():
    # clips already synthesised (and the recipes that made them) keep their voices: the default
    # pool is "base", whose draws are pinned here
    a = [speech.sample_voice(random.Random(s)).voice for s in range(6)]
    b = [speech.sample_voice(random.Random(s), pool="base").voice for s in range(6)]
    assert a == b == PINNED_BASE_VOICES
    wide = {speech.sample_voice(random.Random(s), pool="wide").voice for s in range(400)}
    assert len(wide) > len({speech.sample_voice(random.Random(s)).voice for s in range(400)})
    with pytest.raises(ConfigError, match="unknown voice pool"):
        speech.sample_voice(random.Random(0), pool="huge")


def test_festival_voices_name_their_package_and_hts_takes_rate_and_shift(tmp_path, monkeypatch):
    hts = speech.VoiceSpec(engine="festival", voice="cmu_us_slt_arctic_hts", speed=1.25, pitch=2.0)
    monkeypatch.setattr(speech, "_FESTIVAL_VOICE_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="apt-get install -y festvox-us-slt-hts"):
        speech._engine_command(tmp_path / "t.txt", tmp_path / "o.wav", hts)
    (tmp_path / "us" / "cmu_us_slt_arctic_hts").mkdir(parents=True)
    cmd = " ".join(speech._engine_command(tmp_path / "t.txt", tmp_path / "o.wav", hts))
    assert '"-r" 1.2500' in cmd and '"-fm" 12.000' in cmd  # twice the pitch is an octave
    assert "Duration_Stretch" not in cmd  # which HTS voices ignore
