"""The asr recipe end to end on a tiny config: speak, cache mels, train, load through the tool."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.eval.asr import edit_distance, normalise, wer
from agentkit.mllm.train import build_config, load_recipe


def test_shipped_recipe_fills_the_config():
    module, cfg = build_config(load_recipe("asr"), ["steps=5"])
    assert module.__name__.endswith("train.asr")
    assert cfg.steps == 5 and cfg.n_audio_state * 51865 * 2 < 20e6  # the fp16 embedding fits


def test_the_slots_leg_is_the_asr_recipe_from_its_model(tmp_path):
    """``asr-slots`` extends ``asr``: the same data, sizes and batches (its ``init`` must load),
    started from the asr recipe's release, with the question's words weighed."""
    _, base = build_config(load_recipe("asr"))
    _, leg = build_config(load_recipe("asr-slots"))
    same = ("data_dir", "train_clips", "seed", "n_audio_state", "n_audio_layer", "n_text_layer",
            "n_head", "n_text_ctx", "window_s", "batch_size", "ctc_weight")  # fmt: skip
    assert all(getattr(leg, k) == getattr(base, k) for k in same)
    assert leg.init == "runs/train/asr/speech-whisper.pt"
    assert leg.slot_weight > 1 and base.slot_weight == 1
    from agentkit.mllm.train.asr import build_model, start_from

    with pytest.raises(ConfigError, match="`agentkit train asr`"):  # the leg before is missing
        start_from(build_model(leg), tmp_path / "runs" / "train" / "asr" / "speech-whisper.pt")
    with pytest.raises(ConfigError, match="init checkpoint .* not found: set init"):
        start_from(build_model(leg), tmp_path / "elsewhere.pt")
    (tmp_path / "a.toml").write_text('extends = "' + str(tmp_path / "b.toml") + '"\n')
    (tmp_path / "b.toml").write_text(
        'extends = "' + str(tmp_path / "a.toml") + '"\nstage = "asr"\n'
    )
    with pytest.raises(ConfigError, match="extends itself"):
        load_recipe(str(tmp_path / "a.toml"))


def test_the_16k_leg_keeps_the_first_clips_and_adds_new_questions(tmp_path):
    """``asr-16k`` continues ``asr-slots`` on twice the clips: the same seed draws the same
    questions first, so the clips already on disk are reused and only new questions are spoken."""
    from agentkit.mllm.train.asr import _questions

    _, slots = build_config(load_recipe("asr-slots"))
    _, leg = build_config(load_recipe("asr-16k"))
    assert leg.init == "runs/train/asr-slots/speech-whisper.pt"
    from agentkit.mllm.train.asr import build_model, start_from

    with pytest.raises(ConfigError, match="`agentkit train asr-slots`"):
        start_from(build_model(leg), tmp_path / leg.init)
    assert leg.train_clips == 2 * slots.train_clips and leg.data_dir == slots.data_dir
    assert leg.slot_weight == slots.slot_weight and leg.test_clips == slots.test_clips
    few, more = _questions(300, leg.seed, 0), _questions(600, leg.seed, 0)
    assert [q["question"] for q in more[:300]] == [q["question"] for q in few]
    assert len({q["id"] for q in more}) == 600
    new = {q["question"] for q in more[300:]} - {q["question"] for q in few}
    assert len(new) > 200  # mostly sentences the first clips never said
    # the sixth leg (the shipped model) continues this one the same way, on twice its clips
    _, six = build_config(load_recipe("asr-32k"))
    assert six.init == "runs/train/asr-16k/speech-whisper.pt"
    assert six.train_clips == 2 * leg.train_clips and six.data_dir == leg.data_dir
    assert six.slot_weight == leg.slot_weight and six.test_clips == leg.test_clips


def test_held_out_voices_never_reach_training():
    from agentkit.mllm.train.asr import HELD_OUT, split_voice

    lo, hi = HELD_OUT["snr_band"]
    rng = random.Random(0)
    engines = ["espeak-ng", "flite", "festival"]
    for _ in range(300):
        v = split_voice(rng, engines, "train")
        assert v.voice.partition("+")[2] not in HELD_OUT["espeak_variants"]
        assert v.voice not in HELD_OUT["flite_voices"]
        assert v.snr_db is None or not lo <= v.snr_db < hi
        t = split_voice(rng, engines, "test")
        assert lo <= t.snr_db < hi
        held = (
            t.voice.partition("+")[2] in HELD_OUT["espeak_variants"]
            or t.voice in (HELD_OUT["flite_voices"])
        )
        assert held or t.engine == "festival"
        assert lo <= split_voice(rng, engines, "dev").snr_db <= hi  # dev voices are test-like
    from agentkit.mllm.train.asr import SCENE_BASE, _questions

    sentences = {
        k: {q["question"] for q in _questions(200, 0, base)} for k, base in SCENE_BASE.items()
    }
    for split in ("dev", "test"):  # only the shortest generic questions recur
        assert len(sentences[split] & sentences["train"]) <= 0.05 * len(sentences[split])


def test_slot_words_weigh_more_in_the_attention_loss():
    import torch

    from agentkit.mllm.train.asr import slot_token_ids, token_loss, tokenizer

    tok = tokenizer()
    texts = ["Is the red cube left of the object?", "How many tiny metallic blocks are there?"]
    ids = torch.tensor(slot_token_ids(texts))
    assert sorted(tok.decode([i]).strip() for i in ids.tolist()) == [
        "blocks", "cube", "left", "metallic", "red", "tiny"]  # fmt: skip
    said = tok.encode(" Is the red cube left of the object?")
    slot = torch.isin(torch.tensor(said), ids).tolist()
    assert [tok.decode([i]).strip() for i, s in zip(said, slot, strict=True) if s] == [
        "red", "cube", "left"]  # fmt: skip

    tgt = torch.tensor([[said[0], said[2], -100]])  # " Is", " red", ignored
    per = torch.tensor([1.0, 4.0, 0.0])
    assert token_loss(per, tgt, ids, 1.0).item() == pytest.approx(2.5)
    assert token_loss(per, tgt, ids, 3.0).item() == pytest.approx((1 + 3 * 4) / 4)


def test_words_wrong_counts_each_kind_of_word_said():
    from agentkit.mllm.eval.asr import words_wrong

    rows = words_wrong([
        ("Is the small red cube left of the sphere?", "is the large red cube right of sphere"),
        ("How many metallic blocks?", "How many metallic blocks?"),
    ])  # fmt: skip
    assert rows["size"] == {"said": 1, "wrong": 1.0}  # small -> large
    assert rows["relation"] == {"said": 1, "wrong": 1.0}  # left -> right
    assert rows["color"] == {"said": 1, "wrong": 0.0}
    assert rows["shape"] == {"said": 3, "wrong": 0.0}  # cube, sphere, blocks
    assert rows["material"] == {"said": 1, "wrong": 0.0}
    assert rows["other"] == {"said": 6, "wrong": round(1 / 6, 4)}  # the dropped "the"


def test_wer_counts_word_edits_on_normalised_text():
    assert normalise("Is there a RED cube?") == ["is", "there", "a", "red", "cube"]
    assert edit_distance(["a", "b", "c"], ["a", "c", "d"]) == 2
    assert wer("How many cubes?", "how many cubes") == 0.0
    assert wer("how many red cubes", "how many cubes are") == 0.5


@pytest.mark.slow
def test_tiny_recipe_trains_and_the_transcribe_tool_loads_it(tmp_path, monkeypatch):
    import torch
    import whisper

    from agentkit.mllm.train.asr import Batches
    from agentkit.tools import transcribe
    from agentkit.tools.base import ModelCache, ToolContext

    data = tmp_path / "data"
    module, cfg = build_config(
        load_recipe("asr"),
        [f"data_dir={data}", "train_clips=12", "test_clips=2", "dev_clips=2", "workers=1",
         "n_audio_state=32", "n_audio_layer=1", "n_text_layer=1", "n_head=2", "n_text_ctx=64",
         "batch_size=4", "steps=12", "warmup=2", "lr=0.01", "save_every=6", "threads=2",
         "progress=false"],
    )  # fmt: skip
    out = module.train(cfg, tmp_path / "out")
    assert out == tmp_path / "out" / "speech-whisper.pt" and out.is_file()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "out" / "log.jsonl").open()]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.85 * sum(losses[:3]) / 3, losses  # (sampled softmax)

    ckpt = torch.load(out, weights_only=True)
    # never trained on padded windows: the release says so, and the tool feeds it the clip
    assert ckpt["transcribe_options"] == {"without_timestamps": True, "crop_window": True}
    assert all(
        v.dtype == torch.float16 for v in ckpt["model_state_dict"].values() if v.is_floating_point()
    )

    # the tool loads the run's checkpoint by path, and what its encoder hears is the cached
    # training mel, unpadded (train the way the tool calls)
    heard = []
    encode_frames = transcribe.encode_frames

    def spy(encoder, x):
        heard.append(x.detach().clone())
        return encode_frames(encoder, x)

    monkeypatch.setattr(transcribe, "encode_frames", spy)
    wav = sorted((data / "train").glob("*.wav"))[0]
    res = transcribe.run(
        transcribe.Args(audio=str(wav), weights=str(out)), ToolContext(models=ModelCache())
    )
    assert isinstance(res.text, str) and res.duration > 0.5 and res.language
    batches = Batches(data / "train" / "mels.pt", 64, 0)
    i = batches.texts.index(json.loads(wav.with_suffix(".json").read_text())["transcript"])
    n = batches.lengths[i] + batches.lengths[i] % 2
    expected = torch.zeros(80, 1000)
    expected[:, : batches.lengths[i]] = batches.mel(i)
    (x,) = heard
    assert x.shape == (1, 80, n) and torch.allclose(x[0], expected[:, :n], atol=2e-2)
    monkeypatch.undo()

    # a run padded to the full window at the end (full_window_after < 1) is decoded padded:
    # the encoder hears the same mel zero-padded to the model's 10 s window
    model = whisper.load_model(str(out))
    padded = module.save_release(
        model, tmp_path / "padded.pt", dataclasses.replace(cfg, full_window_after=0.75)
    )
    assert torch.load(padded, weights_only=True)["transcribe_options"] == {
        "without_timestamps": True}  # fmt: skip
    seen = []
    tr = transcribe.load_transcriber(padded, "cpu")
    forward = tr.model.encoder.forward
    tr.model.encoder.forward = lambda x: (seen.append(x.detach().clone()), forward(x))[1]
    cache = ModelCache()
    cache.get("whisper", str(padded.absolute()), "cpu", lambda: tr)
    transcribe.run(transcribe.Args(audio=str(wav), weights=str(padded)), ToolContext(models=cache))
    assert model.dims.n_audio_ctx == 500 and seen[-1].shape == (1, 80, 1000)
    assert torch.allclose(seen[-1][0], expected, atol=2e-2), (seen[-1][0] - expected).abs().max()

    # re-running resumes at the last step: nothing is trained again, no mel computed again
    cached = {p: p.stat().st_mtime_ns for p in data.glob("*/*.*") if p.suffix in (".pt", ".jsonl")}
    assert module.train(cfg, tmp_path / "out") == out
    assert len((tmp_path / "out" / "log.jsonl").read_text().splitlines()) == 12
    assert len(cached) == 4 and all(p.stat().st_mtime_ns == t for p, t in cached.items())
    # mels are cached where training reads them; the held-out splits are heard through the tool
    assert [p.parent.name for p in data.glob("*/mels.pt")] == ["train"]

    # a second leg starts from the release (init), not from random weights: its first loss is
    # near where the first run ended, far below where that run started
    leg = dataclasses.replace(cfg, init=str(out), steps=2, slot_weight=3.0)
    module.train(leg, tmp_path / "leg")
    first = json.loads((tmp_path / "leg" / "log.jsonl").open().readline())["loss"]
    assert first < 0.8 * sum(losses[:3]) / 3, (first, losses)
    with pytest.raises(ConfigError, match="dims"):  # another size cannot start from it
        module.train(dataclasses.replace(leg, n_audio_state=64), tmp_path / "other")


def test_ctc_targets_and_mel_space_augmentation():
    import torch

    from agentkit.mllm.train.asr import CTC_CHARS, ctc_text, stretch

    ids = ctc_text("Is there a RED cube?  It's 2")
    assert "".join(CTC_CHARS[i - 1] for i in ids) == "is there a red cube it's 2"
    assert min(ids) >= 1  # 0 is the blank

    m = torch.randn(80, 300)
    assert torch.equal(stretch(m, random.Random(0), 0.0, 0.0, 1000), m)
    lengths = {stretch(m, random.Random(s), 0.2, 0.0, 1000).shape[-1] for s in range(20)}
    assert min(lengths) >= 240 and max(lengths) <= 360 and len(lengths) > 5
    assert stretch(torch.randn(80, 990), random.Random(1), 0.2, 0.0, 1000).shape[-1] <= 1000
    warped = stretch(m, random.Random(3), 0.0, 0.1, 1000)
    assert warped.shape == m.shape and not torch.equal(warped, m)
    assert torch.allclose(warped[0], m[0])  # the lowest band stays put: a warp, not a shift


def test_budget_ends_the_schedule():
    from agentkit.mllm.train._schedule import lr_at, progress

    _, cfg = build_config(load_recipe("asr"), ["steps=100", "max_minutes=1", "warmup=10"])
    assert progress(50, 0.0, cfg) == 0.5 and progress(10, 60.0, cfg) == 1.0
    assert lr_at(0, 0.0, cfg) == cfg.lr / 10
    assert lr_at(20, 1.0, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio)


def test_a_warm_restart_schedules_as_a_run_resumed_with_a_larger_budget():
    """restart_minutes=1, max_minutes=2: the first CPU minute is scheduled as a 1-minute run
    (annealed at its end), then the schedule jumps back to where a 2-minute run stands; the run
    ends at 2 minutes either way."""
    from agentkit.mllm.train._schedule import lr_at, progress, scheduled

    _, two = build_config(load_recipe("asr"), ["steps=10000", "max_minutes=2", "warmup=0"])
    _, legs = build_config(load_recipe("asr"), ["steps=10000", "max_minutes=2", "warmup=0",
                                                "restart_minutes=[1]"])  # fmt: skip
    _, one = build_config(load_recipe("asr"), ["steps=10000", "max_minutes=1", "warmup=0"])
    assert scheduled(5, 30.0, legs) == progress(5, 30.0, one) == 0.5
    assert scheduled(5, 59.0, legs) > 0.98 and scheduled(5, 60.0, legs) == 0.5
    assert scheduled(5, 90.0, legs) == progress(5, 90.0, two) == 0.75
    assert lr_at(5, scheduled(5, 59.9, legs), legs) < lr_at(5, scheduled(5, 60.1, legs), legs)
    assert scheduled(5, 30.0, two) == progress(5, 30.0, two) == 0.25  # no restart: as before
    # two restarts (a run resumed twice): 0-1 min as a 1-minute run, 1-2 as a 2-minute one,
    # then the 4-minute schedule
    _, twice = build_config(load_recipe("asr"), ["steps=10000", "max_minutes=4", "warmup=0",
                                                 "restart_minutes=[2, 1]"])  # fmt: skip
    assert scheduled(5, 30.0, twice) == 0.5 and scheduled(5, 90.0, twice) == 0.75
    assert scheduled(5, 150.0, twice) == 150 / 240


def test_training_forward_is_whispers_forward():
    """The trainer's encoder (any length) and decoder-before-projection are whisper's own
    forward passes: on a full window, the same numbers."""
    import torch

    from agentkit.mllm.train.asr import build_model, decode_hidden, encode

    _, cfg = build_config(
        load_recipe("asr"),
        ["window_s=2", "n_audio_state=32", "n_audio_layer=1", "n_text_layer=1", "n_head=2"],
    )
    model = build_model(cfg).eval()
    x = torch.randn(2, 80, 200)
    tokens = torch.randint(0, 51865, (2, 7))
    with torch.no_grad():
        feats = encode(model.encoder, x)
        assert torch.allclose(feats, model.encoder(x), atol=1e-5)
        logits = (
            decode_hidden(model.decoder, tokens, feats) @ model.decoder.token_embedding.weight.T
        )
        assert torch.allclose(logits, model.decoder(tokens, feats), atol=1e-4)
        # a shorter input: whisper's encoder refuses it, the trainer's runs it
        assert encode(model.encoder, x[:, :, :120]).shape == (2, 60, 32)


def test_length_buckets_draw_clips_of_like_lengths(tmp_path):
    """With ``bucket`` a batch comes from a run of that many clips adjacent in length, so its
    padding to the longest is small; every clip is still drawn over many batches."""
    import torch

    from agentkit.mllm.train.asr import Batches

    lengths = [n * 2 for n in random.Random(0).sample(range(20, 400), 40)]  # all different
    torch.save({"mels": torch.zeros(80, sum(lengths)).half(), "lengths": lengths,
                "texts": [f"clip {i}" for i in range(40)], "easy": [True] * 40},
               tmp_path / "mels.pt")  # fmt: skip
    data = Batches(tmp_path / "mels.pt", 64, 0, n_frames=1000)
    ranked = sorted(lengths)
    drawn = set()
    for _ in range(200):
        x, _inp, _tgt, _chars, frames = data.batch(4, False, full_window=False, bucket=3)
        got = sorted(int(f) for f in frames)
        lo = ranked.index(got[0])
        assert got[-1] <= ranked[min(lo + 2, len(ranked) - 1)]  # three neighbours by length
        assert x.shape[-1] == got[-1]  # padded to the longest of them only
        drawn.update(got)
    assert drawn == set(lengths)
    _x, _i, _t, _c, frames = data.batch(4, False, full_window=False, bucket=0)
    assert len(frames) == 4


def test_bf16_only_where_the_cpu_computes_it(monkeypatch):
    import torch

    from agentkit.mllm.train import asr

    for avx512, amx, native in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert asr.native_bf16() is native


@pytest.mark.parametrize("pool", ["base", "wide"])
def test_held_out_voices_stay_out_of_either_pool(pool):
    from agentkit.mllm.train.asr import HELD_OUT, split_voice
    from agentkit.mllm.worlds.speech import VOICE_POOLS

    # no variant the wide pool adds is a held-out one or derived from one (steph2 from steph)
    more = set(VOICE_POOLS["wide"]["espeak-ng"]) - set(VOICE_POOLS["base"]["espeak-ng"])
    assert len(more) == 56 and not [v for v in more if v.startswith(HELD_OUT["espeak_variants"])]
    rng = random.Random(1)
    voices = {split_voice(rng, ["espeak-ng", "flite", "festival"], "train", pool).voice
              for _ in range(600)}  # fmt: skip
    assert not {v.partition("+")[2] for v in voices} & set(HELD_OUT["espeak_variants"])
    assert not voices & set(HELD_OUT["flite_voices"])
    new = {"ked_diphone", "cmu_us_slt_arctic_hts"} & voices
    assert bool(new) == (pool == "wide")  # only the wide pool speaks with the new festival voices


def test_the_voices_leg_keeps_earlier_clips_voices_and_widens_only_new_ones():
    from agentkit.mllm.train.asr import voice_pool

    _, seven = build_config(load_recipe("asr-voices"))
    _, six = build_config(load_recipe("asr-32k"))
    assert seven.init == "runs/train/asr-32k/speech-whisper.pt"
    assert seven.wide_voices_from == six.train_clips < seven.train_clips
    assert six.wide_voices_from == -1 and voice_pool(six, "train", 10**6) == "base"
    assert [voice_pool(seven, "train", i) for i in (0, 31999, 32000, 47999)] == [
        "base",
        "base",
        "wide",
        "wide",
    ]
    # the held-out splits never change voices
    assert voice_pool(seven, "test", 40000) == voice_pool(seven, "dev", 40000) == "base"


def test_the_64k_leg_adds_wide_pool_questions_and_its_release_decodes_at_three_warps(tmp_path):
    import torch

    from agentkit.mllm.train.asr import build_model, save_release, voice_pool
    from agentkit.tools.transcribe import CHECKPOINT_OPTIONS, load_transcriber

    _, eight = build_config(load_recipe("asr-64k"))
    _, seven = build_config(load_recipe("asr-voices"))
    assert eight.init == "runs/train/asr-voices/speech-whisper.pt"
    assert eight.train_clips == seven.train_clips + 16000
    assert eight.wide_voices_from == seven.wide_voices_from  # the earlier clips keep their voices
    assert voice_pool(eight, "train", eight.train_clips - 1) == "wide"
    assert seven.vtln_warps == [] and eight.vtln_warps == [0.88, 0.96, 1.04]

    small = dataclasses.replace(eight, n_audio_state=32, n_audio_layer=1, n_text_layer=1, n_head=2)
    path = save_release(build_model(small), tmp_path / "w.pt", small)
    options = torch.load(path, weights_only=True)["transcribe_options"]
    assert options["vtln_warps"] == [0.88, 0.96, 1.04] and "vtln_warps" in CHECKPOINT_OPTIONS
    assert load_transcriber(path, "cpu").options["vtln_warps"] == [0.88, 0.96, 1.04]
    plain = save_release(
        build_model(small), tmp_path / "p.pt", dataclasses.replace(small, vtln_warps=[])
    )
    assert "vtln_warps" not in torch.load(plain, weights_only=True)["transcribe_options"]


def test_a_leg_that_adds_clips_computes_only_their_mels(tmp_path, monkeypatch):
    import wave

    import numpy as np
    import torch

    from agentkit.mllm.train import asr

    rng = np.random.default_rng(0)

    def clip(i: int, seconds: float) -> str:
        with wave.open(str(tmp_path / f"{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes((rng.normal(0, 3000, int(16000 * seconds))).astype(np.int16).tobytes())
        return json.dumps({"audio": f"{i}.wav", "transcript": f"clip {i}", "snr_db": 5.0 + i})

    lines = [clip(0, 1.0), clip(1, 31.0), clip(2, 0.5)]  # clip 1: longer than a window, left out
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    heard = []
    mel = asr.transcribe_mel
    monkeypatch.setattr(asr, "transcribe_mel", lambda a: (heard.append(len(a)), mel(a))[1])
    cache = asr.build_cache(tmp_path)
    assert len(heard) == 3
    first = torch.load(cache, weights_only=True)
    assert first["texts"] == ["clip 0", "clip 2"] and len(first["lengths"]) == 2

    # the next leg's manifest: the same first lines and two more clips
    manifest.write_text("\n".join([*lines, clip(3, 0.7), clip(4, 1.2)]) + "\n")
    heard.clear()
    asr.build_cache(tmp_path)
    assert heard == [int(16000 * 0.7), int(16000 * 1.2)]  # only the new clips were read
    grown = torch.load(cache, weights_only=True)
    assert grown["texts"] == ["clip 0", "clip 2", "clip 3", "clip 4"]
    assert torch.equal(grown["mels"][:, : first["mels"].shape[1]], first["mels"])
    (tmp_path / "mels.pt").unlink()
    heard.clear()
    asr.build_cache(tmp_path)  # from nothing: the same cache
    fresh = torch.load(cache, weights_only=True)
    assert len(heard) == 5 and torch.equal(fresh["mels"], grown["mels"])
    assert fresh["lengths"] == grown["lengths"] and fresh["easy"] == grown["easy"]

    # unchanged: nothing is read; an earlier clip changed: everything is read again
    heard.clear()
    asr.build_cache(tmp_path)
    assert heard == []
    manifest.write_text("\n".join([clip(0, 0.9), *lines[1:]]) + "\n")
    asr.build_cache(tmp_path)
    assert len(heard) == 3 and torch.load(cache, weights_only=True)["texts"] == ["clip 0", "clip 2"]


@pytest.mark.parametrize(("leg", "before"), [("asr-80k", "asr-64k"), ("asr-96k", "asr-80k")])
def test_a_leg_goes_on_from_the_last_model_with_its_first_clips_warps_and_budget(leg, before):
    _, this = build_config(load_recipe(leg))
    _, last = build_config(load_recipe(before))
    assert this.init == f"runs/train/{before}/speech-whisper.pt"
    assert this.train_clips == last.train_clips + 16000
    assert this.wide_voices_from == last.wide_voices_from and this.seed == last.seed
    assert this.vtln_warps == last.vtln_warps
    assert this.max_minutes == last.max_minutes == 110  # 40 CPU minutes were not enough


def test_the_worded_leg_speaks_users_wordings_beside_the_templates():
    """Half the worded leg's clips ask about the same scene in a user's words (never a held-out
    form); the rest are the template stream's, so with no share nothing changes."""
    from agentkit.mllm.train.asr import SCENE_BASE, _questions
    from agentkit.mllm.worlds.wordings import HELD_OUT_WORDINGS

    _, leg = build_config(load_recipe("asr-worded"))
    _, last = build_config(load_recipe("asr-96k"))
    assert leg.init == "runs/train/asr-96k/speech-whisper.pt" and leg.seed == last.seed
    assert leg.worded_share == 0.5 and leg.clips("worded") == 200
    assert leg.data_dir != last.data_dir  # a folder of its own: data/asr keeps the earlier clips
    assert last.worded_share == 0.0

    plain = _questions(400, leg.seed, 0)
    mixed = _questions(400, leg.seed, 0, leg.worded_share)
    worded = [q for q in mixed if "wording" in q]
    assert 150 <= len(worded) <= 250
    assert not {q["wording"] for q in worded} & HELD_OUT_WORDINGS
    for a, b in zip(plain, mixed, strict=True):
        assert b["image_filename"] == a["image_filename"]  # the same scene
        assert b == a if "wording" not in b else b["id"] == a["id"] + "w"
    assert len({q["id"] for q in mixed}) == 400

    test = _questions(200, leg.seed, SCENE_BASE["worded"], 1.0, held_out_forms=True)
    assert all("wording" in q for q in test)
    assert {q["wording"] for q in test} & HELD_OUT_WORDINGS


def test_the_composed_leg_speaks_composed_questions_in_training_only():
    """The composed leg replaces a share of its worded clips by composed questions (never a
    held-out form); with no composed share the worded stream is the one asr-worded spoke, and
    the measuring splits stay the listed forms'."""
    from dataclasses import replace

    from agentkit.mllm.train.asr import _questions, split_questions
    from agentkit.mllm.worlds.wordings import HELD_OUT_WORDINGS

    _, leg = build_config(load_recipe("asr-composed"))
    _, last = build_config(load_recipe("asr-worded"))
    assert leg.init == "runs/train/asr-worded/speech-whisper.pt" and leg.seed == last.seed
    assert leg.clips("worded") == last.clips("worded") and leg.clips("test") == last.clips("test")
    assert leg.data_dir != last.data_dir and last.composed_share == 0.0

    # with no composed share, the stream asr-worded spoke (its data/asr-worded clips say these)
    plain = {q["id"]: q["question"] for q in _questions(8, 0, 0, 0.5)}
    assert {k: plain[k] for k in ("000000-00w", "000000-03w", "000001-01w")} == {
        "000000-00w": "Please count the metal objects.",
        "000000-03w": "Do you see a large sphere?",
        "000001-01w": "What is the yellow cube made of?",
    }
    mixed = _questions(600, leg.seed, 0, leg.worded_share, composed_share=leg.composed_share)
    forms = [q["wording"] for q in mixed if "wording" in q]
    composed = [f for f in forms if f.startswith("composed: ")]
    assert 0.45 <= len(composed) / len(forms) <= 0.75
    assert len(set(composed)) >= 30  # many carriers, not a few
    assert not set(forms) & HELD_OUT_WORDINGS

    small = replace(leg, train_clips=300, worded_clips=60, test_clips=60)
    said = {split: split_questions(small, split) for split in ("train", "worded", "test")}
    assert any(q.get("wording", "").startswith("composed: ") for q in said["train"])
    assert all(not q["wording"].startswith("composed") for q in said["worded"])
    assert {q["wording"] for q in said["worded"]} & HELD_OUT_WORDINGS
    assert not any("wording" in q for q in said["test"])  # templates: the WER target's clips


@pytest.mark.parametrize(
    ("recipe", "over", "share"),
    [("asr-spliced", "asr-composed", 0.25), ("asr-spliced-half", "asr-spliced", 0.5)],
)
def test_the_spliced_legs_replace_a_share_of_the_composed_legs_clips_and_keep_the_rest(
    recipe, over, share
):
    """A share of a spliced leg's training clips (a quarter, then half) say a spliced sentence
    (never a held-out form); every other clip is the composed leg's, so its synthesised audio
    is reused; each leg starts from the one before, and the measuring splits stay as they were."""
    from dataclasses import replace

    from agentkit.mllm.train.asr import split_questions
    from agentkit.mllm.worlds.wordings import says_held_out

    _, leg = build_config(load_recipe(recipe))
    _, last = build_config(load_recipe("asr-composed"))
    assert leg.init == f"runs/train/{over}/speech-whisper.pt" and leg.seed == last.seed
    assert leg.data_dir != last.data_dir and last.spliced_share == 0.0
    assert leg.spliced_share == share

    small, before = (
        replace(c, train_clips=600, worded_clips=40, test_clips=40) for c in (leg, last)
    )
    now, then = split_questions(small, "train"), split_questions(before, "train")
    spliced = [q for q in now if q["family"] == "spliced"]
    assert share - 0.07 <= len(spliced) / len(now) <= share + 0.07
    assert not any(says_held_out(q["question"]) for q in spliced)
    assert len({q["question"] for q in spliced}) == len(spliced)
    for a, b in zip(then, now, strict=True):
        assert b == a if b["family"] != "spliced" else b["id"] == a["id"] + "s"
    for split in ("worded", "test"):
        assert split_questions(small, split) == split_questions(before, split)


def test_a_release_mixed_with_its_init_is_the_fp16_mean_of_the_two(tmp_path):
    """``release_mix`` w: the release is (1 - w) x the leg's weights + w x init's, each in fp16
    as released; 0 releases the leg as trained; a mix needs an init to mix with, and one in
    (0, 1)."""
    import torch

    from agentkit.errors import ConfigError
    from agentkit.mllm.train.asr import build_model, save_release

    _, leg = build_config(load_recipe("asr-spliced"))
    small = dataclasses.replace(leg, n_audio_state=32, n_audio_layer=1, n_text_layer=1, n_head=2)
    torch.manual_seed(0)
    init = save_release(build_model(small), tmp_path / "init.pt", small)
    trained = build_model(small)  # other random weights: the leg's
    mixed = dataclasses.replace(small, init=str(init), release_mix=0.25)
    out = torch.load(save_release(trained, tmp_path / "m.pt", mixed), weights_only=True)
    plain = torch.load(save_release(trained, tmp_path / "p.pt", small), weights_only=True)
    base = torch.load(init, weights_only=True)["model_state_dict"]
    name = "decoder.token_embedding.weight"
    want = (0.75 * plain["model_state_dict"][name].float() + 0.25 * base[name].float()).half()
    assert torch.equal(out["model_state_dict"][name], want)
    assert not torch.equal(want, plain["model_state_dict"][name])
    assert out["transcribe_options"] == plain["transcribe_options"]
    for bad in (dataclasses.replace(mixed, init=""), dataclasses.replace(mixed, release_mix=1.5)):
        with pytest.raises(ConfigError, match="release_mix"):
            save_release(trained, tmp_path / "x.pt", bad)


def test_the_negation_leg_says_negation_and_all_in_place_of_some_template_questions():
    """``negated_share``: about half of the template questions of asr-negation's training clips
    become a negation or "all" question about the same scene (a family the generator answers
    for it); worded and spliced clips, and every other clip, are asr-spliced-half's own, so
    their audio is reused; the measuring splits stay as they were."""
    from dataclasses import replace

    from agentkit.mllm.train.asr import NEGATED_FAMILIES, split_questions

    _, leg = build_config(load_recipe("asr-negation"))
    _, last = build_config(load_recipe("asr-spliced-half"))
    assert leg.init == "runs/train/asr-spliced-half/speech-whisper.pt" and leg.seed == last.seed
    assert leg.data_dir != last.data_dir and last.negated_share == 0.0 < leg.negated_share
    small, before = (
        replace(c, train_clips=800, worded_clips=40, test_clips=40) for c in (leg, last)
    )
    now, then = split_questions(small, "train"), split_questions(before, "train")
    templates = [a for a in then if a["family"] not in ("worded", "spliced")]
    negated = [b for b in now if b["family"] in NEGATED_FAMILIES]
    assert 0.35 <= len(negated) / len(templates) <= 0.65
    assert {q["family"] for q in negated} == set(NEGATED_FAMILIES)
    assert all(re.search(r"\b(not|all|every)\b|n't\b", q["question"]) for q in negated)
    for a, b in zip(then, now, strict=True):
        assert b == a if b["family"] not in NEGATED_FAMILIES else b["id"] == a["id"] + "n"
    for split in ("worded", "test", "dev"):
        assert split_questions(small, split) == split_questions(before, split)
