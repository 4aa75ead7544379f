"""The ``mllm-dpo`` recipe: trl's DPO on grounded vs hallucinated answers about scene images.

Preference pairs come from the scene JSONs' ground truth (:func:`preference_pairs`), one prompt
(the image and a question, as the hf backend sends it) with a *chosen* answer that the scene
supports and a *rejected* one that hallucinates:

* ``absent``  — "Is there a {colour} {shape} in the image?" about an object the scene lacks:
  chosen "No.", rejected "Yes." (POPE's probe; colour-shape pairs drawn from the scene's own
  colours and shapes first, the hardest "adversarial" kind);
* ``present`` — the same question about an object it has: chosen "Yes.", rejected "No.";
* ``count``   — "How many {shape}s are there?": chosen the true count, rejected a wrong one;
* ``describe`` — "Describe the image.": chosen the scene's caption, rejected the caption with
  one object replaced by one that is not in the scene.

On-policy pairs (``mine_data``): the base model writes the last turn of tool-use samples
(``agentkit data gen tooluse``), greedy and by beam search; each reply that ``eval tooluse``
scores wrong against the reference turn (a program that counts one set where the question
compares two, a relation chained the wrong way) is a *rejected* turn, the reference the *chosen*
one (:func:`mined_pairs`). These are the mistakes this model makes, not ones made up for it, and
the reference model DPO holds the policy to is the very model that made them. Mined once per
output folder (``out/mined.jsonl``; a resumed run reuses it).

Training: LoRA on the language model (as ``mllm-tooluse``) with trl's ``DPOTrainer``; the
reference model is the same base with the adapters disabled, so no second copy is held. Runs
under accelerate, resumes from ``out/checkpoints``, writes this config into every checkpoint,
then merges the adapters and saves ``out/model`` (fp16 by default). ``out/pairs.jsonl`` keeps
the pairs it trained on.

Example::

    agentkit train mllm-dpo --set base=runs/train/mllm-tooluse/model --set scenes_dir=data/scenes-train
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.train import _vlm
from agentkit.mllm.train._fields import f

KINDS = ("absent", "present", "count", "describe")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
DESCRIBE = "Describe the image."


@dataclass
class Config(_vlm.TrainLoop, _vlm.LoraOptions):
    description: str = f("DPO: grounded over hallucinated answers (LoRA, merged)", "one line")
    base: str = f(
        "runs/train/mllm-tooluse/model", "model folder to tune (any HF vision-language model)"
    )
    scenes_dir: str = f("data/scenes-train", "scene JSONs and images the pairs are made from")
    max_scenes: int = f(0, "use at most this many scenes (0 = all)")
    kinds: list[str] = f(list(KINDS), "pair kinds to make (absent, present, count, describe)")
    pairs_per_kind: int = f(1, "pairs of each kind per scene")
    system: str = f("", "system message before the question (empty = none)")
    mine_data: list[str] = f(
        [], "tool-use sample files to mine on-policy pairs from: the base's own wrong turns"
    )
    mine_kind_max: dict[str, int] = f(
        {"program": 2000}, "kinds to mine, each at most N samples per file (seeded; 0 = all)"
    )
    mine_beams: int = f(
        4, "beam-search replies per sample besides the greedy one (< 2: greedy only)"
    )
    mine_per_sample: int = f(2, "wrong replies kept per sample (greedy first, then by beam rank)")
    mine_reachable_only: bool = f(
        False, "pairs only from samples where one of the base's own replies is right"
    )
    beta: float = f(0.1, "DPO beta (strength of the pull toward the reference)")
    loss_type: str = f("sigmoid", "trl DPO loss type")
    sft_weight: float = f(
        0.0,
        "weight of trl's 'sft' loss (NLL of the chosen answer) added to the DPO loss (0 = none)",
    )
    max_length: int = f(1024, "tokens per prompt + answer, image tokens included")
    lora_dropout: float = f(0.0, "LoRA dropout")
    lr: float = f(2e-4, "peak learning rate (AdamW)")
    warmup_steps: int = f(10, "linear warm-up steps")
    batch: int = f(4, "pairs per device per step")
    epochs: float = f(1.0, "passes over the pairs (max_steps > 0 overrides)")
    log_steps: int = f(10, "log every N steps (loss, rewards/margins)")
    fp16: bool = f(True, "save the merged model in fp16")
    seed: int = f(0, "seed of the pairs, the LoRA init and the data order")


# --------------------------------------------------------------------------------------------
# pairs


def _describe(o: dict[str, Any]) -> str:
    return f"{o['size']} {o['color']} {o['material']} {o['shape']}"


def _plural(shape: str) -> str:
    return shape + "s"


def _absent_object(objects: list[dict[str, Any]], rng: random.Random) -> tuple[str, str] | None:
    """A (colour, shape) not in the scene, preferring the scene's own colours and shapes (the
    probes a model that guesses from co-occurrence gets wrong)."""
    present = {(o["color"], o["shape"]) for o in objects}
    colors = sorted({o["color"] for o in objects})
    shapes = sorted({o["shape"] for o in objects})
    near = [(c, s) for c in colors for s in shapes if (c, s) not in present]
    anywhere = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    pool = near or anywhere
    return rng.choice(pool) if pool else None


def scene_pairs(
    scene: dict[str, Any], image: str, rng: random.Random, kinds: Sequence[str], per_kind: int = 1
) -> list[dict[str, Any]]:
    """Preference pairs about one scene (see the module docstring for the kinds)."""
    objects = scene.get("objects") or []
    out: list[dict[str, Any]] = []

    def add(kind: str, question: str, chosen: str, rejected: str) -> None:
        out.append(
            {
                "kind": kind,
                "question": question,
                "chosen": chosen,
                "rejected": rejected,
                "images": [image],
                "scene": scene.get("image_filename", ""),
            }
        )

    for _ in range(per_kind):
        if "absent" in kinds:
            miss = _absent_object(objects, rng)
            if miss:
                add("absent", f"Is there a {miss[0]} {miss[1]} in the image?", "No.", "Yes.")
        if "present" in kinds and objects:
            o = rng.choice(objects)
            add("present", f"Is there a {o['color']} {o['shape']} in the image?", "Yes.", "No.")
        if "count" in kinds:
            shape = rng.choice(SHAPES)
            n = sum(o["shape"] == shape for o in objects)
            wrong = rng.choice([m for m in (n - 2, n - 1, n + 1, n + 2) if m >= 0])
            add("count", f"How many {_plural(shape)} are there?", str(n), str(wrong))
        if "describe" in kinds and objects and scene.get("caption"):
            caption = str(scene["caption"])
            o = rng.choice(objects)
            miss = _absent_object(objects, rng)
            if miss and _describe(o) in caption:
                fake = f"{o['size']} {miss[0]} {o['material']} {miss[1]}"
                add("describe", DESCRIBE, caption, caption.replace(_describe(o), fake, 1))
    return out


def preference_pairs(
    scenes_dir: str | Path,
    *,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    per_kind: int = 1,
    limit: int = 0,
) -> list[dict[str, Any]]:
    """Pairs for every scene JSON (with its image) in ``scenes_dir``; the same inputs and seed
    give the same pairs. Each: ``question``, ``chosen``, ``rejected``, ``images``, ``kind``."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown pair kinds {bad}; expected some of {list(KINDS)}")
    d = Path(scenes_dir)
    if not d.is_dir():
        raise ConfigError(
            f"no scenes at {d}; render some with `agentkit data gen scenes --out {d}`"
        )
    rng = random.Random(seed)
    pairs: list[dict[str, Any]] = []
    n = 0
    for p in sorted(d.glob("*.json")):
        try:
            scene = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(scene, dict) or "objects" not in scene:
            continue
        image = d / str(scene.get("image_filename", p.with_suffix(".png").name))
        if not image.is_file():
            continue
        pairs.extend(scene_pairs(scene, str(image), rng, kinds, per_kind))
        n += 1
        if limit and n >= limit:
            break
    if not pairs:
        raise ConfigError(f"{d} yields no preference pairs (no scene JSON with objects and image)")
    return pairs


def mined_pairs(
    model: Any,
    data: str | Path | Sequence[str | Path],
    *,
    kind_max: Mapping[str, int] | None = None,
    seed: int = 0,
    beams: int = 4,
    per_sample: int = 2,
    reachable_only: bool = False,
    max_new_tokens: int = 256,
    on_item: Any = None,
) -> list[dict[str, Any]]:
    """On-policy pairs from the tool-use samples in ``data`` (one file or several; of each kind
    in ``kind_max``, at most that many per file, seeded; 0 = all; default: every program): the
    model (a backend or an ``hf:``/path spec) writes each sample's last turn, greedy and with
    ``beams`` beam-search replies; the distinct replies that score wrong (``eval tooluse``'s SR),
    greedy first, at most ``per_sample``, are each paired (rejected) with the reference (chosen).
    With ``reachable_only``, a sample gives pairs only when one of the model's own replies is
    right: where it cannot write the right turn at all, pushing its wrong ones down teaches it
    nothing to put in their place (it writes garbage instead).
    Each pair: ``messages`` (the prompt), ``chosen``, ``rejected``, ``images``, ``kind``
    (``mined-`` and the sample's kind), ``family``, ``source`` (``greedy`` or ``beam N``),
    ``reachable`` (one of the model's replies was right)."""
    from agentkit.mllm.backends.base import load_backend
    from agentkit.mllm.backends.hf import cut_at_stop
    from agentkit.mllm.eval import tooluse as ev
    from agentkit.tools.base import MODELS

    owned = isinstance(model, str | Path)
    backend = load_backend(str(model)) if owned else model
    try:
        kind_max = {"program": 0} if kind_max is None else kind_max
        limits = {k: n for k, n in kind_max.items() if n > 0}
        files = [data] if isinstance(data, str | Path) else list(data)
        rows = [r for p in files for r in _vlm.read_jsonl(p, list(kind_max), 0, seed, limits)]
        tools = ev.all_tools()
        beam_search = getattr(backend, "candidates", None) if beams > 1 else None
        pairs: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            replies = [("greedy", ev.predict(backend, row, max_new_tokens))]
            if beam_search is not None:
                cands = beam_search(ev.prompt_of(row), beams, max_new_tokens=max_new_tokens)
                stops = ev.stops_of(row)
                replies += [(f"beam {r}", cut_at_stop(c.text, stops)) for r, c in enumerate(cands)]
            reference = str(row["messages"][-1]["content"])
            distinct: dict[str, str] = {}  # text -> where it came from, first source kept
            for source, text in replies:
                distinct.setdefault(text.strip(), source)
            right = {
                t for t in distinct if t == reference.strip() or ev.score_row(row, t, tools)["SR"]
            }
            wrong = [(s, t) for t, s in distinct.items() if t and t not in right][:per_sample]
            if reachable_only and not right:
                wrong = []  # nothing of its own to prefer: pushing these down leaves no right turn
            pairs.extend(
                {
                    "kind": f"mined-{row.get('kind')}",
                    "family": row.get("family"),
                    "source": source,
                    "reachable": bool(right),
                    "messages": row["messages"][:-1],
                    "chosen": reference,
                    "rejected": text,
                    "images": list(row.get("images") or []),
                }
                for source, text in wrong
            )
            if on_item:
                on_item(i + 1, len(rows))
        return pairs
    finally:
        if owned and hasattr(backend, "path"):
            # loaded here, for mining only: the process-wide cache would hold this second copy
            # of the base through the whole DPO run that follows
            MODELS.forget(str(backend.path))


def _progress(done: int, total: int) -> None:
    if done % 200 == 0 or done == total:
        print(f"[mllm-dpo] mining: {done}/{total} samples answered", flush=True)


def _counts(pairs: list[dict[str, Any]]) -> str:
    kinds = Counter(str(p["kind"]) for p in pairs)
    return ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))


def _mined(cfg: Config, out: Path) -> list[dict[str, Any]]:
    """:func:`mined_pairs` for ``cfg``, mined by rank 0 into ``out/mined.jsonl`` once (a resumed
    run or another rank reads that file)."""
    path = out / "mined.jsonl"
    if not path.is_file():
        if _vlm.rank() == 0:
            t0 = time.perf_counter()
            pairs = mined_pairs(
                f"hf:{cfg.base}", cfg.mine_data, kind_max=cfg.mine_kind_max, seed=cfg.seed,
                beams=cfg.mine_beams, per_sample=cfg.mine_per_sample,
                reachable_only=cfg.mine_reachable_only, on_item=_progress,
            )  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
            tmp.replace(path)
            print(
                f"[mllm-dpo] mined {len(pairs)} pairs ({_counts(pairs)}) from "
                f"{', '.join(cfg.mine_data)} in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        else:
            _vlm.wait_for(path, path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prompt_messages(pair: dict[str, Any], system: str = "") -> list[dict[str, Any]]:
    """The prompt of a pair as messages (the image on the user turn); a mined pair's own."""
    if "messages" in pair:
        return list(pair["messages"])
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": pair["question"], "images": list(pair["images"])})
    return msgs


def pair_rows(pairs: list[dict[str, Any]], system: str = "") -> list[dict[str, Any]]:
    """Rows for the trainer: ``prompt`` (messages), ``chosen``, ``rejected``, ``images``."""
    return [
        {
            "prompt": prompt_messages(p, system),
            "chosen": p["chosen"],
            "rejected": p["rejected"],
            "images": p["images"],
        }
        for p in pairs
    ]


# --------------------------------------------------------------------------------------------
# training


def _fitting(pairs: list[dict[str, Any]], processor: Any, max_length: int) -> list[dict[str, Any]]:
    """``pairs`` less the mined ones whose prompt and longer answer exceed ``max_length`` tokens
    (a long ReAct transcript: cut, it would lose the turn it is about)."""
    mined = [i for i, p in enumerate(pairs) if "messages" in p]
    if not mined:
        return pairs
    rows = [
        {
            "messages": [
                *pairs[i]["messages"],
                {
                    "role": "assistant",
                    "content": max(pairs[i]["chosen"], pairs[i]["rejected"], key=len),
                },
            ],
            "images": pairs[i]["images"],
            "at": i,
        }
        for i in mined
    ]
    keep = {r["at"] for r in _vlm.fit(rows, processor, max_length)[0]}
    if len(keep) < len(mined):
        print(
            f"[mllm-dpo] left out {len(mined) - len(keep)} of {len(mined)} mined pairs longer "
            f"than max_length={max_length} tokens",
            flush=True,
        )
    return [p for i, p in enumerate(pairs) if "messages" not in p or i in keep]


def make_trainer(cfg: Config, out: Path) -> Any:
    """The DPOTrainer for ``cfg``; LoRA is applied by the trainer (reference = adapters off)."""
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    if not cfg.base:
        raise ConfigError("mllm-dpo needs base=<model folder> (the mllm-tooluse output or any VLM)")
    cfg.check_lora()
    pairs = []
    if cfg.kinds:
        pairs = preference_pairs(
            cfg.scenes_dir,
            seed=cfg.seed,
            kinds=cfg.kinds,
            per_kind=cfg.pairs_per_kind,
            limit=cfg.max_scenes,
        )
    if cfg.mine_data:
        pairs += _mined(cfg, out)
    if not pairs:
        raise ConfigError(
            "mllm-dpo has no pairs: name pair kinds (kinds=[...]) or tool-use samples to mine "
            "(mine_data=[PATH, ...]), and check the base gets some of them wrong"
        )
    out.mkdir(parents=True, exist_ok=True)
    if _vlm.rank() == 0:
        with (out / "pairs.jsonl").open("w") as fh:
            for p in pairs:
                fh.write(json.dumps(p) + "\n")
    model, processor = _vlm.load_base(cfg.base)
    pairs = _fitting(pairs, processor, cfg.max_length)
    _vlm.check_lora_targets(model, cfg.lora_target)
    args = _vlm.training_args(
        DPOConfig,
        cfg,
        out,
        beta=cfg.beta,
        loss_type=[cfg.loss_type] + (["sft"] if cfg.sft_weight > 0 else []),
        loss_weights=[1.0] + ([cfg.sft_weight] if cfg.sft_weight > 0 else []),
        precompute_ref_log_probs=False,
    )
    set_seed(cfg.seed)  # DPOTrainer adds the LoRA before it seeds (see mllm-tooluse)
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=_vlm.dataset(
            pair_rows(pairs, cfg.system), ("prompt", "chosen", "rejected", "images")
        ),
        data_collator=_vlm.PreferenceCollator(processor, cfg.max_length),
        processing_class=processor,
        peft_config=_vlm.lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target),
        callbacks=[_vlm.save_config_callback(cfg, "dpo")],
    )


def finish(trainer: Any, cfg: Config, out: Path, t0: float | None = None) -> Path:
    """Save ``out/model`` (:func:`._vlm.finish`); returns that folder."""
    return _vlm.finish(trainer, cfg, out, "mllm-dpo", t0)


def train(cfg: Config, out: Path) -> Path:
    """Train, merge and save ``out/model``; returns that folder."""
    t0 = time.perf_counter()
    trainer = make_trainer(cfg, out)
    _vlm.run(trainer, out, cfg.threads)
    return finish(trainer, cfg, out, t0)
