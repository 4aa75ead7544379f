"""The ``asr`` recipe: a small whisper trained on spoken questions, fed exactly as ``transcribe`` is.

Data: questions drawn on synthetic scene graphs (``worlds/synthetic.py`` + ``worlds/questions.py``:
no rendering), spoken by espeak-ng / flite / festival with echo and noise (``worlds/speech.py``).
Voices and noise levels are split: the held-out test set uses voice variants, a flite voice and a
band of SNRs that training never hears (see :data:`HELD_OUT`), and scenes from another seed range.

Inputs are built the way ``agentkit.tools.transcribe`` builds them: the log-mel of the clip *plus
30 s of zero samples* (so the normalisation clamp matches ``whisper.transcribe``), cut to the
clip's content frames, then zero-padded **in mel space** to the model's window. Only the content
frames are cached (``data/asr/train/mels.pt``, fp16); the zero padding is added per batch, which
is the same tensor the tool feeds.

Window: whisper's encoder takes exactly ``2 * n_audio_ctx`` mel frames. Official models have 30 s
windows (1500); the spoken questions last 1.4-9 s, so the recipe's model has a 10 s window
(``window_s``, n_audio_ctx 500): a third of the encoder compute per step, and the tool decodes such
a model window by window with ``whisper.decode`` (``transcribe`` hard-codes 30 s).

Alignment: a model this small, trained from scratch, learns the questions' language long before it
learns to listen (the decoder alone reaches ~0.8 nats/token). A CTC head on the encoder output
(characters, training only, ``ctc_weight``) forces the encoder to spell what it hears from the
first steps: the hybrid CTC/attention training of ESPnet. The head is not part of the release.

Augmentation, in mel space so the cache stays valid: tempo (time stretch), vocal-tract length
(a warp of the mel axis), SpecAugment masks: the held-out voices are other variants and speeds.

Compute (2 CPU cores): most of a 10 s window is padding and the 51865-way output projection was a
third of a step. Until ``full_window_after`` each batch is padded only to its longest clip (the
encoder runs on that many frames, with whisper's positional embedding cut to match), and the
softmax covers the transcripts' tokens plus ``vocab_negatives`` random others (each step pushes
a fresh sample of unused tokens down, so none wins at inference). The last part of the run pads
to the full window, as the tool does. Curriculum: the first ``easy_until`` of the run draws only
clean clips (:data:`EASY`), where the alignment between sound and text is learned fastest.

Targets: ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|> text<|endoftext|>`` with
teacher forcing (the loss includes the ``<|en|>`` step, so language detection picks English). The
checkpoint carries ``transcribe_options = {"without_timestamps": True}``, which the tool honours.

Model: whisper's own ``ModelDimensions``/``Whisper`` with the multilingual vocabulary (51865; the
tokenizer is chosen by ``n_vocab``, so it cannot shrink). The token embedding is most of the file
(51865 x d_model). Saved fp16 as ``{"dims", "model_state_dict", "transcribe_options"}``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.train._fields import f, require_init
from agentkit.mllm.train._schedule import lr_at, progress, scheduled

# whisper's encoder on any even number of frames (the tool decodes crop_window models with it),
# and the mel warp the tool decodes vtln_warps with
from agentkit.tools.transcribe import encode_frames as encode
from agentkit.tools.transcribe import warp_mel

N_MELS = 80
N_FRAMES = 3000  # whisper's 30 s window in mel frames
FRAMES_PER_S = 100
#: Clean enough for the curriculum's first phase: dry or a short room, little noise.
EASY: dict[str, float] = {"min_snr_db": 20.0, "max_rt60": 0.3}
#: CTC alphabet (index 0 is the blank): what :func:`ctc_text` keeps of a transcript.
CTC_CHARS = " abcdefghijklmnopqrstuvwxyz'0123456789"

#: First synthetic scene seed of each split's questions: the splits share only a few short generic
#: sentences ("How many things are there?").
SCENE_BASE = {"train": 0, "test": 1_000_000, "dev": 2_000_000, "worded": 3_000_000}
#: Never heard in training: espeak-ng voice variants, one flite voice, and an SNR band (dB).
HELD_OUT: dict[str, Any] = {
    "espeak_variants": ("m3", "f4", "klatt2", "steph"),
    "flite_voices": ("rms",),
    "snr_band": (12.0, 17.0),
}


@dataclass
class Config:
    description: str = f(
        "small whisper on spoken scene questions (held-out voices/SNR)", "one line"
    )
    data_dir: str = f("data/asr", "where clips and the mel cache go (regenerated from seeds)")
    train_clips: int = f(3000, "training clips to synthesise")
    test_clips: int = f(120, "held-out clips (unseen voices, SNR band and scenes)")
    dev_clips: int = f(
        0, "clips like the test's (held-out voices, other scenes) to choose decoding settings on"
    )
    seed: int = f(0, "seed of scenes, questions, voices and effects")
    worded_share: float = f(
        0.0,
        "share of training clips that speak a question in a user's wording (worlds/wordings.py, "
        "its held-out forms excepted) about the same scene instead of the template's; drawn per "
        "clip from the seed, so 0 leaves every clip as it was",
    )
    composed_share: float = f(
        0.0,
        "share of the worded training clips whose question is composed (worlds/wordings.py "
        "COMPOSED_WORDINGS: 60 carriers around descriptions drawn per question) rather than one "
        "of the listed forms; 0 leaves every clip as it was",
    )
    spliced_share: float = f(
        0.0,
        "share of training clips that speak a spliced sentence instead (worlds/wordings.py "
        "splice: runs of words from the stream's earlier questions, in an order no carrier has, "
        "never a held-out form), so the decoder must listen rather than finish a sentence it "
        "knows; drawn per clip from the seed, so 0 leaves every clip as it was",
    )
    negated_share: float = f(
        0.0,
        "share of the training clips that speak a template question (neither worded nor "
        "spliced) whose question is replaced by a negation or 'all' question about the same scene "
        '(questions.py not_count, not_exist, every: "How many cubes aren\'t red?", "Is every '
        'ball metal?"); drawn per clip from the seed, and splices still draw from the template '
        "questions, so 0 leaves every clip as it was",
    )
    worded_clips: int = f(
        0,
        "held-out clips of questions in users' wordings, every form (held-out voices, SNR band "
        "and scenes): the 'worded' split, for measuring only",
    )
    wide_voices_from: int = f(
        -1,
        "training clips from this index on draw their voices from the wide pool (56 more espeak-ng "
        "variants, two more festival voices; speech.VOICE_POOLS); -1 = none: earlier clips keep "
        "their voices",
    )
    engines: list[str] = f(["espeak-ng", "flite", "festival"], "speech synthesizers")
    workers: int = f(2, "processes synthesising clips")
    window_s: float = f(10.0, "encoder window in seconds (whisper's is 30; questions last < 10)")
    n_audio_state: int = f(128, "width of encoder and decoder (whisper ties them)")
    n_audio_layer: int = f(3, "encoder blocks")
    n_text_layer: int = f(2, "decoder blocks")
    n_head: int = f(4, "attention heads")
    n_text_ctx: int = f(128, "decoder context in tokens (questions are < 40)")
    batch_size: int = f(8, "clips per step")
    steps: int = f(3000, "optimizer steps")
    lr: float = f(1.5e-3, "peak AdamW learning rate")
    warmup: int = f(150, "linear warm-up steps before the cosine decay")
    min_lr_ratio: float = f(0.05, "the cosine ends at lr * min_lr_ratio")
    weight_decay: float = f(0.01, "AdamW weight decay")
    spec_augment: bool = f(True, "mask random mel bands and time spans while training")
    tempo: float = f(0.15, "time-stretch clips by up to this fraction either way (0 = off)")
    vtlp: float = f(0.08, "warp the mel axis by up to this fraction either way (0 = off)")
    vtln_warps: list[float] = f(
        [],
        "the release says to decode each window with its mel axis warped by each of these factors "
        "and keep the likeliest reading (maximum-likelihood vocal-tract length normalisation; "
        "tools/transcribe.py); [] = one reading, unwarped",
    )
    ctc_weight: float = f(0.3, "weight of the encoder's auxiliary CTC loss (0 = attention only)")
    release_mix: float = f(
        0.0,
        "the release's weights are (1 - mix) x the leg's + mix x init's, in fp16 (a weight-space "
        "mean of a fine-tuned model and the one it started from, as WiSE-FT does: what the leg "
        "gained on new sentences with what init heard before); 0 releases the leg as trained",
    )
    slot_weight: float = f(
        1.0,
        "weight of the attention loss on the words that name an attribute value (colour, "
        "material, size, shape, synonyms and plurals too) or a relation, against 1 for the "
        "others; the loss stays a weighted mean per token",
    )
    init: str = f(
        "",
        "start from this whisper checkpoint ({dims, model_state_dict}, e.g. the shipped "
        "speech-whisper.pt) instead of random weights, with a fresh optimizer and CTC head; a "
        "run that has its own last.pt resumes from that instead",
    )
    easy_until: float = f(
        0.1, "curriculum: until this fraction of the run, draw only clean clips (see EASY)"
    )
    full_window_after: float = f(
        0.75,
        "before this fraction of the run, pad each batch to its longest clip (the encoder costs "
        "what the speech needs); after it, to the full window the tool feeds",
    )
    length_bucket: int = f(
        0,
        "draw each batch from this many clips of neighbouring lengths (0 = from all): padded to "
        "its longest clip, a batch of like lengths wastes little compute on padding",
    )
    bf16: bool = f(
        False,
        "bfloat16 autocast for the forward pass where the CPU computes it natively (AVX512-BF16 "
        "or AMX); elsewhere it is emulated, ~13x slower, and the run stays in float32",
    )
    vocab_negatives: int = f(
        2048,
        "softmax over the transcripts' tokens plus this many random others per step, not all "
        "51865 (the output projection was a third of a step); 0 = the full vocabulary",
    )
    threads: int = f(2, "torch CPU threads")
    save_every: int = f(100, "steps between resumable checkpoints (last.pt)")
    max_minutes: float = f(
        0.0,
        "CPU-minute budget (0 = none): the run and its lr schedule end at whichever of steps and "
        "max_minutes comes first",
    )
    restart_minutes: list[float] = f(
        [],
        "warm restarts (none by default): until the first this many CPU minutes the schedule "
        "runs as if the budget ended there, then as if it ended at the next, and after the last "
        "it follows max_minutes' own (a run resumed with a larger budget trains so)",
    )
    progress: bool = f(True, "show a rich progress bar")

    def clips(self, split: str) -> int:
        """How many clips ``split`` ("train", "dev", "test" or "worded") has."""
        return {"train": self.train_clips, "dev": self.dev_clips, "test": self.test_clips,
                "worded": self.worded_clips}[split]  # fmt: skip


# -- data -------------------------------------------------------------------------------------


def _in_band(snr: float | None) -> bool:
    lo, hi = HELD_OUT["snr_band"]
    return snr is not None and lo <= snr < hi


def split_voice(rng: random.Random, engines: list[str], split: str, pool: str = "base") -> Any:
    """A voice for ``split`` ("train", "dev" or "test") from ``pool`` (``speech.VOICE_POOLS``): dev
    and test voices come only from :data:`HELD_OUT` variants and the held-out SNR band; train
    voices and SNRs never do."""
    from agentkit.mllm.worlds import speech

    for _ in range(1000):
        v = speech.sample_voice(rng, engines, pool)
        if v.engine == "espeak-ng":
            variant = v.voice.partition("+")[2]
            held = variant in HELD_OUT["espeak_variants"]
        elif v.engine == "flite":
            held = v.voice in HELD_OUT["flite_voices"]
        else:
            held = None  # festival's voices are heard in every split
        if split != "train":
            if held is False:
                # keep engines in proportion: swap in a held-out voice of the same engine
                pool = (
                    HELD_OUT["espeak_variants"]
                    if v.engine == "espeak-ng"
                    else HELD_OUT["flite_voices"]
                )
                variant = rng.choice(pool)
                voice = (
                    f"{v.voice.partition('+')[0]}+{variant}" if v.engine == "espeak-ng" else variant
                )
                v = v.model_copy(update={"voice": voice})
            lo, hi = HELD_OUT["snr_band"]
            return v.model_copy(update={"snr_db": round(rng.uniform(lo, hi), 2)})
        if held or _in_band(v.snr_db):
            continue
        return v
    raise ConfigError(f"could not draw a {split} voice from engines {engines}")


def voice_pool(cfg: Config, split: str, index: int) -> str:
    """The voice pool of ``split``'s clip number ``index``: training clips from
    ``cfg.wide_voices_from`` on draw from the wide pool, every other clip from the base pool."""
    wide = split == "train" and 0 <= cfg.wide_voices_from <= index
    return "wide" if wide else "base"


def _questions(
    n: int,
    seed: int,
    scene_base: int,
    worded_share: float = 0.0,
    held_out_forms: bool = False,
    composed_share: float = 0.0,
    spliced_share: float = 0.0,
    negated_share: float = 0.0,
) -> list[dict[str, Any]]:
    """``n`` template questions about synthetic scenes from seed ``scene_base`` on; a seeded
    ``worded_share`` of them is replaced by a question in a user's wording about the same scene
    (training's forms, or with ``held_out_forms`` every listed form; ``composed_share`` of the
    replaced ones composed instead), which records its ``wording``. A seeded ``spliced_share``
    of the questions is then replaced by a spliced sentence (:func:`wordings.splice`) of the
    last 500 questions not spliced, family ``spliced``. Last, a seeded ``negated_share`` of the
    template questions left is replaced by a negation or "all" question about the same scene
    (:data:`NEGATED_FAMILIES`; id suffix ``n``); splices drew from the template question it
    replaced. Every other question stays as it was."""
    from agentkit.mllm.worlds import wordings
    from agentkit.mllm.worlds.questions import generate_questions
    from agentkit.mllm.worlds.synthetic import synthetic_scene

    forms = (
        wordings.WORDINGS + wordings.MORE_WORDINGS
        if held_out_forms
        else wordings.training_wordings()
    )
    out: list[dict[str, Any]] = []
    plain: list[str] = []  # the texts a splice draws from
    s = scene_base
    while len(out) < n:
        scenes = {sc["image_filename"]: sc for sc in (synthetic_scene(s + i) for i in range(50))}
        for q in generate_questions(list(scenes.values()), per_scene=4, seed=seed + s):
            rng = random.Random(f"worded:{seed}:{q['id']}") if worded_share > 0 else None
            if rng is not None and rng.random() < worded_share:
                composed = composed_share > 0 and rng.random() < composed_share
                pool = wordings.COMPOSED_WORDINGS if composed else forms
                asked = wordings.ask(scenes[q["image_filename"]], rng, pool)
                if asked is not None:
                    q = {**q, "id": f"{q['id']}w", "question": asked[1], "answer": asked[2],
                         "family": "worded", "wording": asked[0]}  # fmt: skip
            spliced = None
            if spliced_share > 0:
                rng = random.Random(f"spliced:{seed}:{q['id']}")
                if rng.random() < spliced_share:
                    spliced = wordings.splice(plain[-500:], rng)
            if spliced is None:
                plain.append(q["question"])
                out.append(_negated(q, scenes, seed, negated_share))
            else:
                out.append({"id": f"{q['id']}s", "question": spliced, "family": "spliced"})
        s += 50
    return out[:n]


#: The families of :func:`_questions`' ``negated_share``.
NEGATED_FAMILIES = ("not_count", "not_exist", "every")


def _negated(
    q: dict[str, Any], scenes: dict[str, dict[str, Any]], seed: int, share: float
) -> dict[str, Any]:
    """``q``, or with seeded probability ``share`` (template questions only) a negation or
    "all" question about its scene instead."""
    from agentkit.mllm.worlds.questions import generate_questions

    if share <= 0 or q["family"] == "worded":
        return q
    rng = random.Random(f"negated:{seed}:{q['id']}")
    if rng.random() >= share:
        return q
    family = rng.choice(NEGATED_FAMILIES)
    scene = scenes[q["image_filename"]]
    asked = generate_questions([scene], per_scene=1, seed=rng.randrange(2**31), families=[family])
    if not asked:
        return q
    return {**q, **{k: asked[0][k] for k in ("question", "answer", "family")}, "id": f"{q['id']}n"}


def _clip_job(job: dict[str, Any]) -> dict[str, Any]:
    """Speak one question into ``dir`` (wav + json); skips a clip already written."""
    from agentkit.mllm.worlds import speech

    d = Path(job["dir"])
    q = job["question"]
    meta = d / f"{q['id']}.json"
    if meta.exists():
        return json.loads(meta.read_text())
    s = speech.item_seed(job["seed"], f"{job['split']}:{q['id']}")
    voice = split_voice(random.Random(s), job["engines"], job["split"], job["pool"])
    audio = speech.apply_effects(speech.synthesize(q["question"], voice), voice, s)
    speech.write_wav(d / f"{q['id']}.wav", audio)
    rec = {"id": q["id"], "audio": f"{q['id']}.wav", "transcript": q["question"], "seed": s,
           "duration_s": round(len(audio) / speech.SAMPLE_RATE, 3), **voice.model_dump(),
           **({"wording": q["wording"]} if "wording" in q else {})}  # fmt: skip
    tmp = d / f".{q['id']}.json.tmp"
    tmp.write_text(json.dumps(rec) + "\n")
    tmp.replace(meta)  # the json last: its presence means the clip is complete
    return rec


def split_questions(cfg: Config, split: str) -> list[dict[str, Any]]:
    """The questions ``split``'s clips speak. dev and test scenes come from far seed ranges, so
    their sentences are new too; only training speaks composed, spliced and negated questions, and the
    ``worded`` split speaks every listed form (the held-out ones too) and nothing else."""
    share = {"train": cfg.worded_share, "worded": 1.0}.get(split, 0.0)
    composed = cfg.composed_share if split == "train" else 0.0
    n = cfg.clips(split)
    spliced = cfg.spliced_share if split == "train" else 0.0
    negated = cfg.negated_share if split == "train" else 0.0
    return _questions(
        n, cfg.seed, SCENE_BASE[split], share, split == "worded", composed, spliced, negated
    )


def make_clips(cfg: Config, split: str) -> Path:
    """Synthesise ``split``'s clips into ``data_dir/split`` (resumable); returns the folder."""
    from multiprocessing import get_context

    from agentkit.mllm.worlds.speech import require_engines

    require_engines(cfg.engines)
    qs = split_questions(cfg, split)
    d = Path(cfg.data_dir) / split
    d.mkdir(parents=True, exist_ok=True)
    jobs: list[dict[str, Any]] = [{"dir": str(d), "question": q, "seed": cfg.seed, "split": split,
             "engines": list(cfg.engines), "pool": voice_pool(cfg, split, i)}
            for i, q in enumerate(qs)]  # fmt: skip
    todo = [j for j in jobs if not (d / f"{j['question']['id']}.json").exists()]
    if todo:
        with get_context("spawn").Pool(max(1, cfg.workers)) as pool:
            for i, _ in enumerate(pool.imap_unordered(_clip_job, todo, chunksize=4)):
                if cfg.progress and (i + 1) % 100 == 0:
                    print(f"{split}: {i + 1}/{len(todo)} clips", flush=True)
    recs = [json.loads((d / f"{j['question']['id']}.json").read_text()) for j in jobs]
    text = "".join(json.dumps(r) + "\n" for r in recs)
    manifest = d / "manifest.jsonl"
    if not manifest.exists() or manifest.read_text() != text:
        # written only when it changes: a re-run leaves the data folder as it was
        manifest.write_text(text)
    return d


def transcribe_mel(audio: Any) -> Any:
    """The log-mel ``whisper.transcribe`` computes for a short clip, content frames only:
    ``(80, frames)`` float32. Padding it with zeros to 3000 frames gives the window it decodes."""
    import whisper

    mel = whisper.log_mel_spectrogram(audio, N_MELS, padding=whisper.audio.N_SAMPLES)
    return mel[:, : mel.shape[-1] - N_FRAMES]


def build_cache(clips_dir: Path) -> Path:
    """Mels (fp16, content frames only, concatenated) and texts of a clip folder, computed once.

    The cache keeps the manifest lines it was built from: when a leg adds clips after those (the
    same seed draws the same first clips), only the new clips' mels are computed and appended;
    any other change to the manifest rebuilds it."""
    import torch

    from agentkit.tools.transcribe import read_wav_16k

    cache = clips_dir / "mels.pt"
    lines = [line for line in (clips_dir / "manifest.jsonl").read_text().splitlines() if line]
    old: dict[str, Any] = {}
    if cache.exists():
        old = torch.load(cache, weights_only=True, mmap=True)
        done = old.get("lines")
        if done == lines:
            return cache
        if done is None or lines[: len(done)] != done:
            old = {}  # an earlier format, or other clips: rebuild
    start = len(old.get("lines", []))
    mels = [old["mels"]] if old else []
    texts, lengths, easy = (list(old.get(k, [])) for k in ("texts", "lengths", "easy"))
    for line in lines[start:]:
        r = json.loads(line)
        # read back the written 16-bit wav: the exact samples the tool will read
        audio = torch.from_numpy(read_wav_16k(clips_dir / r["audio"]))
        m = transcribe_mel(audio)
        if m.shape[-1] > N_FRAMES:
            continue  # longer than one window: not a training example for one-window decoding
        mels.append(m.half())
        lengths.append(m.shape[-1])
        texts.append(r["transcript"])
        snr, rt60 = r.get("snr_db"), r.get("reverb_rt60")
        easy.append(
            (snr is None or snr >= EASY["min_snr_db"])
            and (rt60 is None or rt60 <= EASY["max_rt60"])
        )
    tmp = cache.with_suffix(".tmp")  # the old cache may be mapped while the new one is written
    torch.save({"mels": torch.cat(mels, dim=1), "lengths": lengths, "texts": texts,
                "easy": easy, "lines": lines}, tmp)  # fmt: skip
    tmp.replace(cache)
    return cache


# -- model ------------------------------------------------------------------------------------


def slot_token_ids(texts: list[str]) -> list[int]:
    """whisper token ids of the words in ``texts`` that name an attribute value or a relation
    (:func:`agentkit.mllm.eval.asr.word_kind`), as a question spells them (after a space)."""
    from agentkit.mllm.eval.asr import normalise, word_kind

    tok = tokenizer()
    words = {w for t in texts for w in normalise(t) if word_kind(w) != "other"}
    return sorted({i for w in words for i in tok.encode(" " + w)})


def tokenizer() -> Any:
    from whisper.tokenizer import get_tokenizer

    return get_tokenizer(multilingual=True, num_languages=99, language="en", task="transcribe")


def window_frames(cfg: Config) -> int:
    """Mel frames of the encoder window (even: whisper's conv stem halves it)."""
    n = int(round(cfg.window_s * FRAMES_PER_S / 2)) * 2
    if not 0 < n <= N_FRAMES:
        raise ConfigError(f"window_s must be in (0, 30] seconds, got {cfg.window_s}")
    return n


def build_model(cfg: Config) -> Any:
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=N_MELS, n_audio_ctx=window_frames(cfg) // 2, n_audio_state=cfg.n_audio_state,
        n_audio_head=cfg.n_head, n_audio_layer=cfg.n_audio_layer, n_vocab=51865,
        n_text_ctx=cfg.n_text_ctx, n_text_state=cfg.n_audio_state, n_text_head=cfg.n_head,
        n_text_layer=cfg.n_text_layer,
    )  # fmt: skip
    import torch

    model = Whisper(dims)
    # Whisper leaves the decoder's positional embedding uninitialised (torch.empty: it expects
    # loaded weights) and the token embedding at N(0, 1), whose tied logits start near 100 nats.
    with torch.no_grad():
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.01)
        torch.nn.init.normal_(model.decoder.token_embedding.weight, std=0.02)
    return model


def ctc_text(text: str) -> list[int]:
    """A transcript as CTC targets: lower case, other characters as spaces, spaces collapsed."""
    keep = "".join(c if c in CTC_CHARS else " " for c in text.lower())
    return [CTC_CHARS.index(c) + 1 for c in " ".join(keep.split())]


def encode_texts(texts: list[str], n_ctx: int) -> list[list[int]]:
    """``sot en transcribe notimestamps " text" eot`` for each text (fits ``n_ctx``)."""
    tok = tokenizer()
    prefix = list(tok.sot_sequence_including_notimestamps)
    out = []
    for t in texts:
        ids = prefix + tok.encode(" " + t.strip()) + [tok.eot]
        if len(ids) > n_ctx:
            raise ConfigError(f"transcript of {len(ids)} tokens exceeds n_text_ctx {n_ctx}: {t!r}")
        out.append(ids)
    return out


class Batches:
    """Random batches of zero-padded window mels, teacher-forcing tokens and CTC targets."""

    def __init__(self, cache: Path, n_ctx: int, seed: int, n_frames: int = N_FRAMES):
        import torch

        data = torch.load(cache, weights_only=True)
        starts = [0]
        for n in list(data["lengths"])[:-1]:
            starts.append(starts[-1] + n)
        # clips longer than the window are not one-window examples
        keep = [i for i, n in enumerate(data["lengths"]) if n <= n_frames]
        self.mels = data["mels"]
        self.n_frames = n_frames
        self.lengths = [data["lengths"][i] for i in keep]
        self.starts = [starts[i] for i in keep]
        self.texts = [data["texts"][i] for i in keep]
        easy = list(data.get("easy") or [True] * len(data["lengths"]))
        self.easy = [j for j, i in enumerate(keep) if easy[i]]
        self.dropped = len(data["lengths"]) - len(keep)
        self.tokens = encode_texts(self.texts, n_ctx)
        self.chars = [ctc_text(t) for t in self.texts]
        self.rng = random.Random(seed)
        self._ranked: dict[bool, list[int]] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def mel(self, i: int) -> Any:
        return self.mels[:, self.starts[i] : self.starts[i] + self.lengths[i]].float()

    def batch(
        self,
        size: int,
        augment: bool,
        tempo: float = 0.0,
        vtlp: float = 0.0,
        *,
        easy: bool = False,
        full_window: bool = True,
        bucket: int = 0,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """``(mels, decoder input, decoder target, ctc targets, content frames)``; ``easy``
        draws from the clean clips only; without ``full_window`` the mels are padded to the
        batch's longest clip (an even frame count) instead of the window; with ``bucket`` the
        batch is drawn from that many clips of neighbouring lengths (a random run of them)."""
        import torch

        pool = self.easy if easy and self.easy else range(len(self))
        if bucket > 0 and len(pool) > bucket:
            # clips of about one length: padding to the longest then costs little
            ranked = self._ranked.get(easy)
            if ranked is None:
                ranked = self._ranked[easy] = sorted(pool, key=self.lengths.__getitem__)
            lo = self.rng.randrange(len(ranked) - bucket + 1)
            idx = [ranked[lo + self.rng.randrange(bucket)] for _ in range(size)]
        else:
            idx = [pool[self.rng.randrange(len(pool))] for _ in range(size)]
        mels = []
        for i in idx:
            m = self.mel(i)
            if tempo or vtlp:
                m = stretch(m, self.rng, tempo, vtlp, self.n_frames)
            if augment:
                m = spec_augment(m, self.rng)
            mels.append(m)
        frames = [m.shape[-1] for m in mels]
        width = self.n_frames if full_window else min(self.n_frames, max(frames) + max(frames) % 2)
        x = torch.zeros(size, N_MELS, width)
        for b, m in enumerate(mels):
            x[b, :, : m.shape[-1]] = m  # zeros beyond: what the tool's padding feeds
        n = max(len(self.tokens[i]) for i in idx) - 1
        inp = torch.full((size, n), self.tokens[idx[0]][-1], dtype=torch.long)  # eot pads
        tgt = torch.full((size, n), -100, dtype=torch.long)
        for b, i in enumerate(idx):
            t = self.tokens[i]
            inp[b, : len(t) - 1] = torch.tensor(t[:-1])
            tgt[b, : len(t) - 1] = torch.tensor(t[1:])
        chars = [torch.tensor(self.chars[i], dtype=torch.long) for i in idx]
        return x, inp, tgt, chars, torch.tensor(frames)


def decode_hidden(decoder: Any, tokens: Any, audio: Any) -> Any:
    """whisper's ``TextDecoder.forward`` up to the final layer norm (before the output
    projection onto the token embedding)."""
    h = decoder.token_embedding(tokens) + decoder.positional_embedding[: tokens.shape[-1]]
    for block in decoder.blocks:
        h = block(h, audio, mask=decoder.mask)
    return decoder.ln(h)


def stretch(m: Any, rng: random.Random, tempo: float, vtlp: float, max_frames: int) -> Any:
    """Tempo (resample the time axis by 1 +- ``tempo``) and vocal-tract length (resample the mel
    axis by 1 +- ``vtlp``, edges held): a faster or slower, higher or lower voice, in mel space."""
    import torch.nn.functional as F

    if tempo:
        n = min(max_frames, max(4, round(m.shape[-1] * rng.uniform(1 - tempo, 1 + tempo))))
        m = F.interpolate(m[None], size=n, mode="linear", align_corners=True)[0]
    if vtlp:
        m = warp_mel(m, rng.uniform(1 - vtlp, 1 + vtlp))
    return m


def spec_augment(m: Any, rng: random.Random) -> Any:
    """Two mel-band masks (<= 10 bands) and two time masks (<= 8% of the clip), filled with the
    clip's mean, so unseen voices and rooms look less like memorised ones."""
    m = m.clone()
    fill = float(m.mean())
    for _ in range(2):
        w = rng.randint(0, 10)
        f0 = rng.randint(0, N_MELS - w)
        m[f0 : f0 + w, :] = fill
    t_len = m.shape[-1]
    for _ in range(2):
        w = rng.randint(0, max(1, int(0.08 * t_len)))
        t0 = rng.randint(0, max(0, t_len - w))
        m[:, t0 : t0 + w] = fill
    return m


# -- training ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _init_weights(path: str) -> dict[str, Any]:
    """The ``model_state_dict`` of the whisper .pt at ``path``, read once per run (every
    periodic release mixes with it)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]


def save_release(model: Any, path: Path, cfg: Config | None = None) -> Path:
    """fp16 ``{"dims", "model_state_dict", "transcribe_options"}`` that ``whisper.load_model``
    and the transcribe tool read; a model ``cfg`` never trained on padded windows says
    ``crop_window`` (the tool then feeds it the clip's own frames), and ``cfg.vtln_warps``
    become ``vtln_warps``."""
    import torch

    sd = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    if cfg is not None and cfg.release_mix > 0:
        w = cfg.release_mix
        if not cfg.init or not 0 < w < 1:
            raise ConfigError(f"release_mix {w} mixes the leg with its init: set init, and 0-1")
        base = _init_weights(
            str(require_init(Path(cfg.init), "the whisper .pt this leg started from"))
        )
        sd = {k: ((1 - w) * v.float() + w * base[k].float()).half() if v.is_floating_point() else v
              for k, v in sd.items()}  # fmt: skip
    options: dict[str, Any] = {"without_timestamps": True}
    if cfg is not None and cfg.full_window_after >= 1:
        options["crop_window"] = True
    if cfg is not None and cfg.vtln_warps:
        options["vtln_warps"] = [float(a) for a in cfg.vtln_warps]
    tmp = path.with_suffix(".tmp")
    torch.save({"dims": dataclasses.asdict(model.dims), "model_state_dict": sd,
                "transcribe_options": options}, tmp)  # fmt: skip
    tmp.replace(path)
    return path


def token_loss(per_token: Any, tgt: Any, slot_ids: Any, slot_weight: float) -> Any:
    """Mean of the per-token losses over the target positions (``tgt >= 0``), the tokens in
    ``slot_ids`` weighted ``slot_weight`` and the others 1."""
    import torch

    tgt = tgt.reshape(-1)
    w = (tgt >= 0).float()
    if slot_weight != 1.0:
        w = w * torch.where(torch.isin(tgt, slot_ids), slot_weight, 1.0)
    return (per_token.reshape(-1) * w).sum() / w.sum()


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles): elsewhere torch
    emulates it, and a bf16 step took 13x as long as a float32 one (AMD EPYC with AVX2 only)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probes: trust the recipe
        return True


def start_from(model: Any, path: Path) -> None:
    """Load a whisper checkpoint's weights into ``model`` (the recipe's dims)."""
    import torch

    require_init(path, "a whisper .pt {dims, model_state_dict}")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "model_state_dict" not in ck or "dims" not in ck:
        raise ConfigError(f"{path} is not a whisper checkpoint ({{dims, model_state_dict}})")
    if ck["dims"] != dataclasses.asdict(model.dims):
        raise ConfigError(
            f"{path} has dims {ck['dims']}, the recipe builds {dataclasses.asdict(model.dims)}: "
            "set the recipe's sizes to match"
        )
    model.load_state_dict({k: v.float() for k, v in ck["model_state_dict"].items()})


def _save_last(
    path: Path, model: Any, ctc: Any, opt: Any, step: int, seconds: float, losses: list[float]
) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "ctc": ctc.state_dict(), "opt": opt.state_dict(),
                "step": step, "seconds": seconds, "losses": losses,
                "dims": dataclasses.asdict(model.dims)}, tmp)  # fmt: skip
    tmp.replace(path)


def train(cfg: Config, out: Path) -> Path:
    """Synthesise and cache the data, train (resuming from ``out/last.pt``) and write
    ``out/speech-whisper.pt``; the loss curve goes to ``out/log.jsonl``. The run ends after
    ``steps`` or ``max_minutes`` of CPU time (:mod:`._schedule`); a rerun after the end trains
    no more."""
    import torch
    import torch.nn.functional as F
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    for split in ("train", "dev", "test", "worded"):
        if cfg.clips(split) > 0:
            clips = make_clips(cfg, split)
            if split == "train":  # the held-out splits are read as wavs, through the tool
                build_cache(clips)
    n_frames = window_frames(cfg)
    data = Batches(Path(cfg.data_dir) / "train" / "mels.pt", cfg.n_text_ctx, cfg.seed, n_frames)
    if not len(data):
        raise ConfigError(f"no training clip fits the {cfg.window_s} s window; raise window_s")

    # every token a transcript uses (and the prompt's specials): always in the sampled softmax
    vocab = torch.tensor(sorted({t for ids in data.tokens for t in ids}))
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg)
    ctc = torch.nn.Linear(cfg.n_audio_state, len(CTC_CHARS) + 1)  # training only (index 0: blank)
    params = list(model.parameters()) + list(ctc.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, seconds, losses = 0, 0.0, []
    last = out / "last.pt"
    if cfg.init and not last.exists():
        start_from(model, Path(cfg.init))
    slot_ids = torch.tensor(slot_token_ids(data.texts))
    if last.exists():
        ck = torch.load(last, weights_only=True)
        if ck["dims"] != dataclasses.asdict(model.dims) or "ctc" not in ck:
            raise ConfigError(
                f"{last} holds another recipe's run (dims {ck['dims']}); use another --out"
            )
        model.load_state_dict(ck["model"])
        ctc.load_state_dict(ck["ctc"])
        opt.load_state_dict(ck["opt"])
        step, seconds, losses = ck["step"], float(ck["seconds"]), list(ck["losses"])
        data.rng.seed(cfg.seed * 1_000_003 + step)  # a fresh, reproducible batch order
        gen.manual_seed(cfg.seed * 1_000_003 + step)
    bf16 = cfg.bf16 and native_bf16()
    if cfg.bf16 and not bf16:
        print(
            "asr: this CPU has no native bfloat16 (AVX512-BF16 / AMX); training in float32",
            flush=True,
        )
    model.train()
    log = (out / "log.jsonl").open("a")
    cpu0, prior, t_start = time.process_time(), seconds, time.monotonic()
    cols = [TextColumn("asr"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]  # fmt: skip
    with Progress(*cols, disable=not cfg.progress or not os.isatty(2)) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, loss=float("nan"))
        while progress(step, seconds, cfg) < 1:
            done = scheduled(step, seconds, cfg)
            x, inp, tgt, chars, frames = data.batch(
                cfg.batch_size, cfg.spec_augment, cfg.tempo, cfg.vtlp,
                easy=done < cfg.easy_until, full_window=done >= cfg.full_window_after,
                bucket=cfg.length_bucket,
            )  # fmt: skip
            lr = lr_at(step, done, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                feats = encode(model.encoder, x)
                hidden = decode_hidden(model.decoder, inp, feats)
                table = model.decoder.token_embedding.weight
                if cfg.vocab_negatives > 0:
                    neg = torch.randint(0, table.shape[0], (cfg.vocab_negatives,), generator=gen)
                    cand = torch.unique(torch.cat([vocab, neg]))  # sorted: targets map by search
                    logits = hidden @ table[cand].T
                    target = torch.where(tgt >= 0, torch.searchsorted(cand, tgt.clamp(min=0)), tgt)
                else:
                    logits, target = hidden @ table.T, tgt
                ctc_logits = ctc(feats) if cfg.ctc_weight > 0 else None
            # the losses in fp32
            per_token = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
            )  # 0 where ignored
            ce = token_loss(per_token, tgt, slot_ids, 1.0)  # logged: the plain mean per token
            loss = token_loss(per_token, tgt, slot_ids, cfg.slot_weight)
            ctc_loss = torch.zeros(())
            if ctc_logits is not None:
                lp = ctc_logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C)
                ctc_loss = F.ctc_loss(
                    lp, torch.cat(chars), (frames + 1) // 2, torch.tensor([len(c) for c in chars]),
                    zero_infinity=True,
                )  # fmt: skip
                loss = (1 - cfg.ctc_weight) * loss + cfg.ctc_weight * ctc_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            seconds = prior + time.process_time() - cpu0
            losses.append(round(ce.item(), 4))
            bar.update(task, completed=step, loss=losses[-1])
            log.write(json.dumps({"step": step, "loss": losses[-1], "ctc": round(ctc_loss.item(), 4),
                                  "lr": round(lr, 7), "cpu_s": round(seconds, 1),
                                  "wall_s": round(time.monotonic() - t_start, 1)}) + "\n")  # fmt: skip
            log.flush()
            if step % cfg.save_every == 0 or progress(step, seconds, cfg) >= 1:
                _save_last(last, model, ctc, opt, step, seconds, losses)
                save_release(model, out / "speech-whisper.pt", cfg)
    log.close()
    return save_release(model, out / "speech-whisper.pt", cfg)
