"""transcribe: whisper checkpoints in the official layout, loaded by path; audio reading; errors."""

from __future__ import annotations

import math
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from agentkit import weights
from agentkit.errors import MediaError, ToolError
from agentkit.media import MediaStore
from agentkit.state import ToolCall
from agentkit.tools import transcribe
from agentkit.tools.base import ModelCache, Tool, ToolContext, ToolRegistry, call_tool, execute

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
            n_vocab=51865, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4)  # fmt: skip
SMALL_128 = {
    **TINY,
    "n_audio_state": 128,
    "n_audio_head": 2,
    "n_audio_layer": 2,
    "n_text_state": 128,
    "n_text_head": 2,
    "n_text_layer": 2,
}


def save_whisper(path: Path, dims: dict, **extra) -> Path:
    """Random-init whisper saved as whisper's own checkpoints are: {"dims", "model_state_dict"}."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    model = Whisper(ModelDimensions(**dims))
    torch.save({"dims": dims, "model_state_dict": model.state_dict(), **extra}, path)
    return path


def write_wav(path: Path, seconds: float = 2.0, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    # sample_len bounds what random weights babble; without_timestamps gives one window segment.
    opts = {"sample_len": 8, "without_timestamps": True, "not_honoured": 1}
    return save_whisper(
        tmp_path_factory.mktemp("whisper") / "small.pt", SMALL_128, transcribe_options=opts
    )


@pytest.mark.slow
def test_published_tiny_dims_load_by_path(tmp_path):
    """whisper's tiny architecture (39 M parameters), random weights: loads and returns a Result."""
    ckpt = save_whisper(tmp_path / "tiny.pt", TINY)
    ctx = ToolContext(models=ModelCache())
    res = call_tool(
        Tool.from_module(transcribe),
        {"audio": str(write_wav(tmp_path / "a.wav")), "language": "en", "weights": str(ckpt)},
        ctx,
    )
    assert isinstance(res, transcribe.Result) and res.language == "en" and res.duration == 2.0
    assert res.segments and all(0.0 <= s.start <= s.end for s in res.segments)
    (model,) = [m.model for m in ctx.models._models.values()]
    assert model.dims.n_audio_state == 384 and next(model.parameters()).dtype.is_floating_point


def test_checkpoint_options_and_media_ids(small, tmp_path):
    media = MediaStore(tmp_path / "media")
    ref = media.add_file(write_wav(tmp_path / "a.wav", seconds=2.5))
    ctx = ToolContext(media=media, models=ModelCache(), weights={"transcribe": str(small)})
    res = transcribe.run(transcribe.Args(audio=ref, language="en"), ctx)
    (tr,) = ctx.models._models.values()
    assert tr.options == {"sample_len": 8, "without_timestamps": True}
    assert len(res.segments) == 1 and res.segments[0].start == 0.0 and res.duration == 2.5
    assert res.text == res.segments[0].text and "Transcript (en), 2.5 s" in transcribe.summary(res)


def test_short_window_model_decodes_window_by_window(tmp_path):
    """A checkpoint with a window under 30 s (n_audio_ctx 50: 1 s) cannot go through
    whisper.transcribe; the tool feeds it consecutive zero-padded windows of the clip's log-mel."""
    import torch
    import whisper

    ckpt = save_whisper(
        tmp_path / "short.pt",
        {**SMALL_128, "n_audio_ctx": 50},
        transcribe_options={"sample_len": 4, "without_timestamps": True},
    )
    wav = write_wav(tmp_path / "a.wav", seconds=2.5)
    tr = transcribe.load_transcriber(ckpt, "cpu")
    seen: list[torch.Tensor] = []
    forward = tr.model.encoder.forward
    tr.model.encoder.forward = lambda x: (seen.append(x.detach().clone()), forward(x))[1]
    cache = ModelCache()
    cache.get("whisper", str(ckpt), "cpu", lambda: tr)
    res = transcribe.run(
        transcribe.Args(audio=str(wav), language="en", weights=str(ckpt)),
        ToolContext(models=cache),
    )
    assert [tuple(x.shape) for x in seen] == [(1, 80, 100)] * 3  # 0-1 s, 1-2 s, 2-2.5 s
    mel = whisper.log_mel_spectrogram(
        torch.from_numpy(transcribe.load_audio(wav)), 80, padding=whisper.audio.N_SAMPLES
    )
    assert torch.allclose(seen[1][0], mel[:, 100:200], atol=1e-5)
    assert torch.equal(seen[2][0][:, 50:], torch.zeros(80, 50))  # the last half-window is padded
    assert res.language == "en" and res.duration == 2.5
    assert all(s.start in (0.0, 1.0, 2.0) and s.end <= 2.5 for s in res.segments)
    assert res.text == " ".join(s.text for s in res.segments)
    # every window's segment keeps whisper's mean token log-probability of its decoding
    out = transcribe.decode_windows(tr.model, transcribe.load_audio(wav), {"language": "en"})
    assert out["segments"] and all(isinstance(s["avg_logprob"], float) for s in out["segments"])


@pytest.mark.parametrize(
    ("logprobs", "confidence", "flagged"),
    [
        ([-0.01, -0.5], round(math.exp(-0.5), 3), True),  # the least sure segment counts
        ([-0.01, -0.02], round(math.exp(-0.02), 3), False),
        ([float("nan"), -0.03], round(math.exp(-0.03), 3), False),  # a NaN is no evidence
        ([float("nan")], None, False),
    ],
)
def test_the_result_says_how_sure_the_reading_is(
    small, tmp_path, monkeypatch, logprobs, confidence, flagged
):
    """The tool's result and summary from the segments' mean token log-probabilities."""
    segs = [{"start": float(i), "end": i + 1.0, "text": f"w{i}", "avg_logprob": lp}
            for i, lp in enumerate(logprobs)]  # fmt: skip
    out = {"text": " ".join(s["text"] for s in segs), "segments": segs, "language": "en"}
    monkeypatch.setattr(transcribe, "decode_windows", lambda *a, **k: out)
    monkeypatch.setattr(transcribe, "load_transcriber", lambda *a: transcribe.Transcriber(
        type("M", (), {"dims": type("D", (), {"n_audio_ctx": 50})})(), {}))  # fmt: skip
    wav = write_wav(tmp_path / "a.wav", seconds=2.0)
    res = transcribe.run(
        transcribe.Args(audio=str(wav), weights=str(small)), ToolContext(models=ModelCache())
    )
    assert res.confidence == confidence
    assert [s.avg_logprob for s in res.segments] == [None if math.isnan(x) else x for x in logprobs]
    assert ("likely misheard" in transcribe.summary(res)) is flagged


def test_wav_without_ffmpeg(small, tmp_path, monkeypatch):
    import whisper

    wav = write_wav(tmp_path / "a.wav")
    if transcribe.shutil.which("ffmpeg"):
        assert np.allclose(transcribe.load_audio(wav), whisper.load_audio(str(wav)), atol=1e-4)
    monkeypatch.setattr(transcribe.shutil, "which", lambda _: None)
    assert transcribe.load_audio(wav).shape == (32_000,)
    with pytest.raises(MediaError, match="apt-get install ffmpeg"):
        transcribe.load_audio(write_wav(tmp_path / "b.wav", rate=22_050))


def test_unreadable_audio_and_missing_weights_are_recorded_errors(small, tmp_path, monkeypatch):
    reg = ToolRegistry([Tool.from_module(transcribe)])
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav")
    step = execute(
        ToolCall(tool="transcribe", args={"audio": str(junk), "weights": str(small)}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "junk.wav" in step.error
    step = execute(
        ToolCall(tool="transcribe", args={"audio": "audio_3"}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "neither a media id" in step.error
    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS", tmp_path)
    monkeypatch.delenv("AGENTKIT_WEIGHTS", raising=False)
    wav = write_wav(tmp_path / "a.wav")
    step = execute(
        ToolCall(tool="transcribe", args={"audio": str(wav)}), reg, ToolContext(models=ModelCache())
    )
    assert step.error and "speech-whisper" in step.error and "agentkit train asr" in step.error
    step = execute(
        ToolCall(tool="transcribe", args={"audio": str(wav), "weights": str(junk)}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "cannot load whisper checkpoint" in step.error


def test_crop_window_checkpoint_hears_only_the_clip(tmp_path, monkeypatch):
    """A short-window checkpoint that says crop_window (trained on unpadded clips): each window's
    encoder input is the clip's own frames, never zero padding, and with no language given it is
    read from those frames (whisper's own detection would encode them again at full length)."""
    import torch

    ckpt = save_whisper(
        tmp_path / "crop.pt",
        {**SMALL_128, "n_audio_ctx": 50},
        transcribe_options={"sample_len": 4, "without_timestamps": True, "crop_window": True},
    )
    heard: list[tuple[int, ...]] = []
    encode_frames = transcribe.encode_frames

    def spy(encoder, x):
        heard.append(tuple(x.shape))
        return encode_frames(encoder, x)

    monkeypatch.setattr(transcribe, "encode_frames", spy)
    wav = write_wav(tmp_path / "a.wav", seconds=2.25)
    res = transcribe.run(
        transcribe.Args(audio=str(wav), weights=str(ckpt)), ToolContext(models=ModelCache())
    )
    assert heard == [(1, 80, 100), (1, 80, 100), (1, 80, 26)]  # 1 s, 1 s, 0.25 s made even
    assert isinstance(res.language, str) and res.language and res.duration == 2.25
    x = torch.randn(1, 80, 100)
    tr = transcribe.load_transcriber(ckpt, "cpu")
    with torch.no_grad():  # on a full window, the same function as whisper's encoder
        assert torch.allclose(encode_frames(tr.model.encoder, x), tr.model.encoder(x), atol=1e-5)


def test_wer_eval_with_decoding_options_replacing_the_checkpoints(small, tmp_path):
    """`agentkit eval perception --asr-option KEY=VALUE`: the setting reaches the tool's decoding
    (one token per window here, where the checkpoint says 8), and an unknown key is refused."""
    import json

    from agentkit.errors import ConfigError
    from agentkit.mllm.eval.asr import evaluate_asr, normalise
    from agentkit.mllm.train import key_values

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        write_wav(clips / f"c{i}.wav", seconds=1.0 + i)
        (clips / f"c{i}.json").write_text(json.dumps({"transcript": "how many red cubes"}))
    opts = key_values(["sample_len=1", "language=en"], "--asr-option")
    assert opts == {"sample_len": 1, "language": "en"}
    with pytest.raises(ConfigError, match="language"):
        evaluate_asr(small, clips, options=opts)
    res = evaluate_asr(small, clips, options={"sample_len": 1})
    assert res["clips"] == 2 and res["options"] == {"sample_len": 1} and res["wer"] >= 0.75
    assert all(len(normalise(r["hyp"])) <= 1 for r in res["worst"])
    # the shared model cache still decodes as the checkpoint says (the next evaluation, or an
    # agent in the same process, is not handed the setting)
    from agentkit.tools.base import MODELS

    shared = MODELS.get(
        "whisper", str(small.absolute()), "cpu", lambda: transcribe.load_transcriber(small, "cpu")
    )
    assert shared.options["sample_len"] == 8

    # the same through the CLI, the detector left out
    from typer.testing import CliRunner

    from agentkit.cli import app

    out = CliRunner().invoke(
        app,
        ["eval", "perception", "--no-detect", "--scenes", str(tmp_path / "none"), "--asr-clips",
         str(clips), "--asr-weights", str(small), "--asr-option", "sample_len=1", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output)
    assert list(figures) == ["transcribe"] and figures["transcribe"]["options"] == {"sample_len": 1}
    said = sum(
        len(normalise(json.loads(p.read_text())["transcript"])) for p in clips.glob("*.json")
    )
    kinds = figures["transcribe"]["words_wrong"]  # every word said, in one kind or another
    assert sum(k["said"] for k in kinds.values()) == said and all(
        0 <= k["wrong"] <= 1 for k in kinds.values()
    )
    text = CliRunner().invoke(
        app,
        ["eval", "perception", "--no-detect", "--scenes", str(tmp_path / "none"), "--asr-clips",
         str(clips), "--asr-weights", str(small), "--asr-option", "sample_len=1"],
    )  # fmt: skip
    line = " ".join(text.output.split())  # rich wraps the line to the terminal
    assert text.exit_code == 0 and re.search(r"words not heard: color [01]\.\d\d of 2,", line), line


def test_other_readings_come_from_a_beam_and_leave_the_transcript_as_it_was(small, tmp_path):
    """``alternatives=k``: the transcript is the one decoded without them; the others are a beam
    of k + 1 readings, likeliest first as whisper ranks them (the first is what a beam search
    of that size answers), without the transcript and without repeats. A clip longer than one
    window has none."""
    ctx = ToolContext(models=ModelCache(), weights={"transcribe": str(small)})
    wav = write_wav(tmp_path / "a.wav", seconds=2.0)
    plain = transcribe.run(transcribe.Args(audio=str(wav)), ctx)
    more = transcribe.run(transcribe.Args(audio=str(wav), alternatives=3), ctx)
    assert more.text == plain.text and plain.alternatives == []
    assert len(more.alternatives) <= 3 and len(set(more.alternatives)) == len(more.alternatives)
    assert plain.text not in more.alternatives

    model = transcribe.load_transcriber(small, "cpu").model
    audio = transcribe.load_audio(wav)
    opts = {"language": "en", "sample_len": 8}
    beam = transcribe.decode_windows(model, audio, opts, alternatives=4)
    assert (
        beam["alternatives"][0]
        == transcribe.decode_windows(model, audio, {**opts, "beam_size": 4})["text"]
    )
    short = save_whisper(tmp_path / "short.pt", {**SMALL_128, "n_audio_ctx": 50})  # 1 s windows
    model = transcribe.load_transcriber(short, "cpu").model
    assert transcribe.decode_windows(model, audio, opts, alternatives=4)["alternatives"] == []
    with pytest.raises(ValueError):
        transcribe.Args(audio="a", alternatives=transcribe.MAX_ALTERNATIVES + 1)


def test_a_beam_over_warps_reads_every_window_of_a_long_clip(tmp_path):
    """A beam over the warps' batch (whisper alone fails on it) decodes each window of a clip
    longer than the model's window over the same span as a greedy reading of one warp does."""
    short = save_whisper(tmp_path / "short.pt", {**SMALL_128, "n_audio_ctx": 50})  # 1 s windows
    model = transcribe.load_transcriber(short, "cpu").model
    audio = transcribe.load_audio(write_wav(tmp_path / "a.wav", seconds=2.5))
    opts = {"language": "en", "sample_len": 4, "crop_window": True}
    spans = []
    for more in ({}, {"beam_size": 2, "vtln_warps": [0.9, 1.1]}):
        out = transcribe.decode_windows(model, audio, {**opts, **more})
        spans.append([(s["start"], s["end"]) for s in out["segments"]])
    assert spans[0] == spans[1] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    assert len(out["warps"]) == 3


def test_mel_warp_moves_the_spectrum_and_holds_its_top():
    import torch

    mel = torch.zeros(2, 80, 5)
    mel[:, 20] = 1.0  # energy in band 20 only
    assert transcribe.warp_mel(mel, 1.0) is mel
    up = transcribe.warp_mel(mel, 0.5)  # band i hears band i/2: the energy moves up to band 40
    assert up.shape == mel.shape and up[:, 40].eq(1).all() and up[:, 20].eq(0).all()
    assert torch.allclose(up[:, 39], torch.full((2, 5), 0.5))  # in between, interpolated
    ramp = torch.arange(80.0)[:, None].expand(80, 3)
    down = transcribe.warp_mel(ramp, 1.25)  # band i hears band 1.25 i, the top band beyond 63
    assert torch.allclose(down[:64, 0], torch.arange(64.0) * 1.25)
    assert down[64:].eq(79).all()
    assert transcribe.vtln_warps({"vtln_warps": [0.9, 1]}) == [0.9, 1.0]
    assert transcribe.vtln_warps({}) == transcribe.vtln_warps({"vtln_warps": None}) == []
    for bad in ("0.9", [0.9, "x"], [3.0], [True]):
        with pytest.raises(ToolError, match="vtln_warps"):
            transcribe.vtln_warps({"vtln_warps": bad})


@pytest.mark.slow
def test_vtln_decodes_every_warp_in_one_batch_and_keeps_the_likeliest(monkeypatch):
    """``vtln_warps``: each window is encoded once per warp, in one batch, and the reading kept
    is the warp whose own decoding is likeliest, whatever the order the warps come in; other
    readings are asked of the clip at that warp. (The shipped model on an example clip: random
    weights read every warp alike.)"""
    import torch

    from agentkit.tools._vision import resolve_weights

    ckpt = resolve_weights("speech-whisper")
    tr = transcribe.load_transcriber(ckpt, "cpu")
    assert tr.options["vtln_warps"] == [0.88, 0.96, 1.04]  # the release decodes so
    audio = transcribe.load_audio(EXAMPLES / "speech" / "000003-00.wav")
    opts = {**tr.options, "language": "en", "vtln_warps": None}
    alone = {
        a: transcribe.decode_windows(tr.model, audio, {**opts, "vtln_warps": [a]})
        for a in (0.8, 1.0, 1.25)
    }
    lp = {a: r["segments"][0]["avg_logprob"] for a, r in alone.items()}
    assert len(set(lp.values())) == 3, lp  # the warps are heard differently
    best = max(lp, key=lp.__getitem__)
    heard: list[torch.Tensor] = []
    encode_frames = transcribe.encode_frames
    monkeypatch.setattr(
        transcribe, "encode_frames", lambda enc, x: (heard.append(x), encode_frames(enc, x))[1]
    )
    for warps in ([0.8, 1.0, 1.25], [1.25, 1.0, 0.8]):
        out = transcribe.decode_windows(tr.model, audio, {**opts, "vtln_warps": warps})
        assert out["warps"] == [best] and out["text"] == alone[best]["text"]
        assert math.isclose(out["segments"][0]["avg_logprob"], lp[best], rel_tol=1e-3)
    x = heard[0]
    assert x.shape[0] == 3 and torch.equal(x[0], transcribe.warp_mel(x[1], 0.8))
    assert torch.equal(x[2], transcribe.warp_mel(x[1], 1.25))
    assert transcribe.decode_windows(tr.model, audio, opts)["warps"] == []  # none asked
    # a beam over the warps' batch (whisper alone fails on a batch of clips with a beam) keeps
    # the reading each warp's own beam gives, the language read once, off the plainest warp
    beam = {**opts, "beam_size": 3, "language": None}
    beamed = {
        a: transcribe.decode_windows(tr.model, audio, {**beam, "vtln_warps": [a]})
        for a in (0.8, 1.0, 1.25)
    }
    best = max(beamed, key=lambda a: beamed[a]["segments"][0]["avg_logprob"])
    out = transcribe.decode_windows(tr.model, audio, {**beam, "vtln_warps": [0.8, 1.0, 1.25]})
    assert out["warps"] == [best] and out["text"] == beamed[best]["text"]
    assert out["language"] == beamed[1.0]["language"] == "en"

    seen: list[dict] = []
    decode = transcribe.decode_windows
    monkeypatch.setattr(
        transcribe, "decode_windows", lambda m, a, o, **k: (seen.append(o), decode(m, a, o, **k))[1]
    )
    tr.options = {**tr.options, "vtln_warps": [1.25, 1.0, 0.8]}
    cache = ModelCache()
    cache.get("whisper", str(ckpt), "cpu", lambda: tr)
    res = transcribe.run(
        transcribe.Args(audio=str(EXAMPLES / "speech" / "000003-00.wav"), language="en",
                        alternatives=2),
        ToolContext(models=cache),
    )  # fmt: skip
    assert res.text == alone[best]["text"].strip()
    assert [o["vtln_warps"] for o in seen] == [[1.25, 1.0, 0.8], [best]]


def test_the_likeliest_reading_counts_a_sure_zero_and_skips_nan():
    read = [type("R", (), {"avg_logprob": lp}) for lp in (float("nan"), -0.2, 0.0, -0.1)]
    assert transcribe._likeliest(read) == 2  # log-probability 0 is the surest, not missing
    assert transcribe._likeliest(read[:1]) == 0  # none has one: the first
    assert transcribe._likeliest([read[0], read[3], read[1]]) == 1


def test_wer_eval_splits_clips_in_users_wordings_by_form(small, tmp_path):
    """Clips that say which user wording they speak are pooled by form, and over the forms
    training spoke against the held-out ones; template clips stay out of the split."""
    import json

    from agentkit.mllm.eval.asr import evaluate_asr, wer
    from agentkit.mllm.worlds.wordings import HELD_OUT_WORDINGS

    held = sorted(HELD_OUT_WORDINGS)[0]
    said = {
        "a": ("Count the spheres.", "count the <shape>s."),
        "a2": ("Count the cubes.", "count the <shape>s."),
        "b": ("Is the red cube large?", held),
        "c": ("How many red cubes are there?", None),  # a template question
    }
    for stem, (text, form) in said.items():
        write_wav(tmp_path / f"{stem}.wav", seconds=1.0)
        meta = {"transcript": text, **({"wording": form} if form else {})}
        (tmp_path / f"{stem}.json").write_text(json.dumps(meta))
    res = evaluate_asr(small, tmp_path, options={"sample_len": 1})
    split = res["by_wording"]
    assert set(split["forms"]) == {"count the <shape>s.", held}
    assert split["held-out forms"]["clips"] == 1 and split["trained forms"]["clips"] == 2
    heard = {r["ref"]: r["hyp"] for r in res["worst"]}
    assert split["held-out forms"]["wer"] == round(wer(said["b"][0], heard[said["b"][0]]), 4)
    assert split["forms"][held] == split["held-out forms"]
