"""The three MLLM stages (mllm-align, mllm-tooluse, mllm-dpo) on a tiny core, a few steps each.

One chain, built once per module: align builds the core from scratch on two scenes, tooluse
tunes the aligned model, DPO tunes the tooluse model. A tiny Qwen2-VL built here checks that the
same tooluse recipe trains a second architecture.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.train import _vlm, build_config, load_recipe
from agentkit.tools.base import MODELS, ModelCache

TINY = dict(
    image_size=32,
    patch=8,
    vision_dim=32,
    vision_layers=1,
    vision_heads=2,
    text_dim=64,
    text_layers=2,
    text_heads=2,
    vocab_size=400,
)
FAST = dict(log_steps=1, warmup_steps=0, scheduler="constant", workers=0)
SCENES = [
    [("small", "red", "rubber", "cube"), ("large", "blue", "metal", "sphere")],
    [
        ("small", "green", "rubber", "cylinder"),
        ("large", "red", "metal", "cube"),
        ("small", "gray", "rubber", "cube"),
    ],
]


def _scene_dir(root: Path) -> Path:
    from PIL import Image

    d = root / "scenes"
    d.mkdir()
    for i, objs in enumerate(SCENES):
        img = Image.new("RGB", (48, 32), (40, 40, 40))
        for j, (_, color, _, _) in enumerate(objs):  # a coloured block per object
            rgb = {
                "red": (200, 30, 30),
                "blue": (30, 30, 200),
                "green": (30, 200, 30),
                "gray": (128, 128, 128),
            }[color]
            img.paste(rgb, (4 + 14 * j, 8, 14 + 14 * j, 24))
        img.save(d / f"scene_{i:06d}.png")
        objects = [{"size": s, "color": c, "material": m, "shape": sh} for s, c, m, sh in objs]
        caption = "A " + " and a ".join(f"{s} {c} {m} {sh}" for s, c, m, sh in objs) + "."
        (d / f"scene_{i:06d}.json").write_text(
            json.dumps(
                {"image_filename": f"scene_{i:06d}.png", "objects": objects, "caption": caption}
            )
        )
    return d


def _tooluse_samples(root: Path, scenes: Path) -> Path:
    """Samples of the generator's shape: a multi-turn history whose earlier assistant turn must
    not be learned, and the target last."""
    rows = []
    for i, answer in enumerate(["Final Answer: 1 cube", "Final Answer: 2 cubes"]):
        img = str(scenes / f"scene_{i:06d}.png")
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Tools: detect, count.", "images": []},
                    {"role": "user", "content": "How many cubes?", "images": [img]},
                    {
                        "role": "assistant",
                        "content": "Thought: count them. Action: count",
                        "images": [],
                    },
                    {"role": "user", "content": f"Observation: {i + 1}", "images": []},
                    {"role": "assistant", "content": answer, "images": []},
                ],
                "images": [img],
                "kind": "final",
            }
        )
    p = root / "tooluse.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _state(folder: Path) -> dict[str, Any]:
    ckpt = _vlm.last_checkpoint(folder / "checkpoints")
    assert ckpt is not None
    return json.loads((Path(ckpt) / "trainer_state.json").read_text())


def _losses(state: dict[str, Any]) -> list[float]:
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}


def _generates(folder: Path, image: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from agentkit.mllm.backends.base import Message
    from agentkit.mllm.backends.hf import HFBackend

    AutoModelForImageTextToText.from_pretrained(folder)
    AutoProcessor.from_pretrained(folder)
    gen = HFBackend(folder, device="cpu").generate(
        [Message(role="user", content="How many cubes?", images=[image])], max_new_tokens=4
    )
    assert gen.tokens_out >= 1 and gen.tokens_in > 16  # the image tokens are in the prompt


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared, busy 2-core machine a second spinning thread makes these
    tiny matmuls ~8x slower (measured: 1.9 ms vs 0.25 ms per 720x64 linear at load 12)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mllm-stages")


@pytest.fixture(scope="module")
def scenes(root) -> Path:
    return _scene_dir(root)


@pytest.fixture(scope="module")
def aligned(root, scenes) -> Path:
    from agentkit.mllm.train import align

    cfg = align.Config(
        scenes_dir=str(scenes), max_steps=10, batch=2, lr=3e-3, save_steps=10, **TINY, **FAST
    )
    return align.train(cfg, root / "align")


def _tooluse_config(aligned: Path, data: Path, **over: Any) -> Any:
    from agentkit.mllm.train import tooluse

    opts = dict(max_steps=10, batch=2, lr=5e-3, save_steps=10, fp16=True) | over
    return tooluse.Config(
        base=str(aligned), data=str(data), planner="program", prompt_style="compact", **FAST, **opts
    )


@pytest.fixture(scope="module")
def tooluse_out(root, scenes, aligned) -> tuple[Path, dict[str, Any]]:
    """(merged folder, facts measured on the trainer before the merge)."""
    import torch

    from agentkit.mllm.train import tooluse

    cfg = _tooluse_config(aligned, _tooluse_samples(root, scenes))
    out = root / "tooluse"
    trainer = tooluse.make_trainer(cfg, out)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    _vlm.run(trainer, out)
    after = dict(trainer.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    facts = {
        "lora_names": lora,
        "lora_moved": [n for n in lora if not torch.equal(before[n], after[n])],
        "base_moved": [
            n for n in before if "lora_" not in n and not torch.equal(before[n], after[n])
        ],
        "batch": trainer.data_collator([trainer.train_dataset[0]]),
        "tokenizer": trainer.processing_class.tokenizer,
    }
    return tooluse.finish(trainer, cfg, out), facts


# --------------------------------------------------------------------------------------------
# fast


def test_recipes_fill_their_configs():
    stages = {"mllm-align": "align", "mllm-tooluse": "tooluse", "mllm-dpo": "dpo",
              "mllm-dpo-programs": "dpo", "mllm-tooluse-compare": "tooluse",
              "mllm-tooluse-react": "tooluse", "mllm-tooluse-attr": "tooluse",
              "mllm-tooluse-tree": "tooluse", "mllm-tooluse-clevr": "tooluse",
              "mllm-tooluse-negation": "tooluse"}  # fmt: skip
    for name, stage in stages.items():
        module, cfg = build_config(load_recipe(name), ["max_steps=3"])
        assert module.__name__.endswith(f"train.{stage}") and cfg.max_steps == 3
    _, cfg = build_config(load_recipe("mllm-align"))
    assert cfg.base == "" and cfg.train_projector and cfg.train_lm
    _, cfg = build_config(load_recipe("mllm-dpo-programs"))  # each stage trains on the one before
    assert (cfg.base, cfg.kinds) == ("runs/train/mllm-dpo/model", [])
    assert cfg.mine_kind_max["program"] > 0 and len(cfg.mine_data) == 2
    _, cfg = build_config(load_recipe("mllm-tooluse-react"))  # over stage 2b, code turns first
    assert cfg.base == "runs/train/mllm-tooluse-compare/model"
    assert cfg.extra_kind_max["tool_call"] > cfg.max_samples
    _, cfg = build_config(load_recipe("mllm-tooluse-attr"))  # over 2b, the new family repeated
    assert cfg.base == "runs/train/mllm-tooluse-compare/model"
    assert cfg.family_repeat == {"compare_attribute": 3} and cfg.data.endswith("all15/train.jsonl")
    _, cfg = build_config(load_recipe("mllm-tooluse-tree"))  # over 2b, the decompositions first
    assert cfg.base == "runs/train/mllm-tooluse-compare/model"
    assert cfg.kinds == ["decompose", "merge"] and "program" in cfg.extra_kinds
    _, cfg = build_config(load_recipe("mllm-tooluse-clevr"))  # over 2b, CLEVR's forms mixed in
    assert cfg.base == "runs/train/mllm-tooluse-compare/model" and cfg.agent_threads == "1"
    assert set(cfg.family_repeat) == {"same_other_count", "same_other_exist", "same_other_query"}
    _, cfg = build_config(load_recipe("mllm-tooluse-negation"))  # over 2f, negation and "all"
    assert cfg.base == "runs/train/mllm-tooluse-clevr/model"
    # the new families four times, the comparisons of two counts it would lose replayed
    assert cfg.family_repeat == {
        "not_count": 4, "not_exist": 4, "every": 4, "compare_count": 3, "relate_count": 2
    }  # fmt: skip
    # the folder's "threads" hint is not the training loop's threads (an int the run reads)
    _, cfg = build_config(load_recipe("mllm-tooluse-compare"), ["agent_threads=2"])
    assert cfg.threads == 0 and _vlm.runtime_hints_of(cfg)["threads"] == "2"
    with pytest.raises(ConfigError, match="threads = '1' is str; threads takes int"):
        build_config(load_recipe("mllm-tooluse-compare"), ['threads="1"'])
    with pytest.raises(ConfigError, match="lr = 'fast' is str; lr takes float"):
        build_config(load_recipe("mllm-tooluse"), ["lr=fast"])
    assert build_config(load_recipe("mllm-tooluse"), ["lr=1"])[1].lr == 1.0


def test_conversation_matches_the_backend_layout():
    msgs = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "look <image> here", "images": ["a.png", "b.png"]},
        {"role": "assistant", "content": "ok"},
    ]
    conv, paths = _vlm.conversation(msgs)
    assert paths == ["a.png", "b.png"]
    assert conv[1]["content"] == [
        {"type": "image"},
        {"type": "image"},
        {"type": "text", "text": "look <img> here"},
    ]
    # images only at the top level go to the first user message, in place of its placeholders
    conv, paths = _vlm.conversation(
        [{"role": "user", "content": "<image>\nWhat?"}, msgs[2]], ["c.png"]
    )
    assert paths == ["c.png"] and conv[0]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "What?"},
    ]


def test_preference_pairs_are_grounded(tmp_path):
    from agentkit.mllm.train import dpo

    d = _scene_dir(tmp_path)
    pairs = dpo.preference_pairs(d, seed=3, per_kind=3)
    assert pairs == dpo.preference_pairs(d, seed=3, per_kind=3)  # deterministic
    assert {p["kind"] for p in pairs} == set(dpo.KINDS)
    for p in pairs:
        scene = json.loads(Path(p["images"][0]).with_suffix(".json").read_text())
        have = {(o["color"], o["shape"]) for o in scene["objects"]}
        assert p["chosen"] != p["rejected"]
        if p["kind"] in ("absent", "present"):
            color, shape = (
                p["question"].removeprefix("Is there a ").removesuffix(" in the image?").split()
            )
            assert (p["chosen"] == "Yes.") == ((color, shape) in have)
        elif p["kind"] == "count":
            shape = p["question"].split()[2][:-1]
            assert int(p["chosen"]) == sum(o["shape"] == shape for o in scene["objects"])
        else:
            assert p["chosen"] == scene["caption"]
    with pytest.raises(ConfigError, match="unknown pair kinds"):
        dpo.preference_pairs(d, kinds=["nope"])


def _program(*lines: str) -> str:
    return "Thought: t\nProgram:\n```\n" + "\n".join(lines) + "\n```"


COUNT_CUBES = _program(
    "objs = detect(image=image_0)",
    'cubes = select(objects=objs, shape="cube")',
    "n = count(objects=cubes)",
    "ANSWER = n",
)
RED_SPHERE = _program(
    "objs = detect(image=image_0)",
    'red_spheres = select(objects=objs, color="red", shape="sphere")',
    "found = exist(objects=red_spheres)",
    "ANSWER = found",
)
#: wrong for both questions: it asks whether there is anything at all
ANYTHING = _program("objs = detect(image=image_0)", "found = exist(objects=objs)", "ANSWER = found")


def _program_samples(root: Path, scenes: Path) -> Path:
    rows = []
    for i, (question, program) in enumerate(
        [("How many cubes?", COUNT_CUBES), ("Is there a red sphere?", RED_SPHERE)]
    ):
        img = str(scenes / f"scene_{i:06d}.png")
        rows.append(
            {
                "messages": [
                    {
                        "role": "system",
                        "content": "Write a program over detect, select, count, exist.",
                        "images": [],
                    },
                    {"role": "user", "content": f"Question: {question}", "images": [img]},
                    {"role": "assistant", "content": program, "images": []},
                ],
                "images": [img],
                "kind": "program",
                "family": "count" if "cubes" in question else "exist",
            }
        )
    p = root / "programs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


class _Scripted:
    """A model that gets "How many cubes?" right and the red sphere wrong when greedy; its beams:
    the right program, the wrong one twice (once with trailing spaces), nothing, then prose."""

    name = "scripted"

    def generate(self, messages, max_new_tokens=256, stop=None, **kw):
        from agentkit.mllm.backends.base import Generation

        right = "cubes" in messages[-1].content
        return Generation(text=COUNT_CUBES if right else ANYTHING, model=self.name)

    def candidates(self, messages, n, max_new_tokens=256, **kw):
        from agentkit.mllm.backends.base import Generation

        right = COUNT_CUBES if "cubes" in messages[-1].content else RED_SPHERE
        texts = [right, ANYTHING, ANYTHING + "  ", "", "I think there is a sphere."]
        return [Generation(text=t, model=self.name) for t in texts[:n]]


def test_a_model_cache_forgets_the_models_of_one_weights_file():
    cache = ModelCache()
    loads = []
    for kind, device in (("a", "cpu"), ("b", "cpu"), ("a", "cuda")):
        cache.get(kind, "w.pt", device, lambda: loads.append(1) or object())
    cache.get("a", "other.pt", "cpu", object)
    assert cache.forget("w.pt") == 3 and cache.forget("w.pt") == 0
    cache.get("a", "w.pt", "cpu", lambda: loads.append(1) or object())
    assert len(loads) == 4  # loaded again once forgotten; other.pt still held
    assert cache.forget("other.pt") == 1


def test_mined_pairs_are_the_models_own_wrong_turns(tmp_path):
    from agentkit.mllm.train import dpo

    data = _program_samples(tmp_path, _scene_dir(tmp_path))
    pairs = dpo.mined_pairs(_Scripted(), data, beams=5, per_sample=2)
    got = [(p["family"], p["source"], p["rejected"]) for p in pairs]
    assert got == [
        ("count", "beam 1", ANYTHING),  # greedy right; the duplicate and the empty beam skipped
        ("count", "beam 4", "I think there is a sphere."),
        ("exist", "greedy", ANYTHING),  # the right beam is not a rejected turn
        ("exist", "beam 4", "I think there is a sphere."),
    ]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for p in pairs:
        row = rows[0] if p["family"] == "count" else rows[1]
        assert p["kind"] == "mined-program" and p["images"] == row["images"]
        assert p["messages"] == row["messages"][:-1]  # the prompt, without the reference turn
        assert p["chosen"] == row["messages"][-1]["content"]
        prompt = dpo.pair_rows([p], system="ignored for mined pairs")[0]["prompt"]
        assert prompt == row["messages"][:-1]
    one = dpo.mined_pairs(_Scripted(), data, beams=0, per_sample=2)
    assert [(p["family"], p["source"]) for p in one] == [("exist", "greedy")]
    # greedy alone, the model never writes the red-sphere program: nothing of its own to prefer
    assert not one[0]["reachable"]
    assert dpo.mined_pairs(_Scripted(), data, beams=0, reachable_only=True) == []
    assert dpo.mined_pairs(_Scripted(), data, beams=5, reachable_only=True) == pairs
    assert all(p["reachable"] for p in pairs)  # its beams hold the right program
    answered: list[tuple[int, int]] = []
    capped = dpo.mined_pairs(
        _Scripted(),
        [data, data],
        kind_max={"program": 1},
        beams=0,
        on_item=lambda *a: answered.append(a),
    )  # one program of each file: the same seeded one
    assert answered == [(1, 2), (2, 2)]
    assert [p["family"] for p in capped] in ([], ["exist", "exist"])  # the same row twice
    assert dpo.mined_pairs(_Scripted(), data, kind_max={"final": 0}) == []  # no such samples
    with pytest.raises(ConfigError, match="no training data"):
        dpo.mined_pairs(_Scripted(), tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------------------------
# the chain


@pytest.mark.slow
def test_align_builds_the_core_and_trains_projector_not_vision(root, aligned, scenes):
    state = _state(root / "align")
    losses = _losses(state)
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0], losses
    start, end = _weights(root / "align" / "base"), _weights(aligned)
    vision = [k for k in start if "vision_tower" in k]
    projector = [k for k in start if "multi_modal_projector" in k]
    assert vision and projector
    assert all((start[k] == end[k]).all() for k in vision)  # frozen
    assert all(not (start[k] == end[k]).all() for k in projector if k.endswith("weight"))
    ckpt = Path(_vlm.last_checkpoint(root / "align" / "checkpoints"))
    assert json.loads((ckpt / "agentkit_train.json").read_text())["stage"] == "align"
    assert (aligned / "agentkit_model.json").is_file()
    _generates(aligned, scenes / "scene_000000.png")


@pytest.mark.slow
def test_align_resumes_from_its_last_checkpoint(root, aligned, scenes):
    from agentkit.mllm.train import align

    cfg = align.Config(
        scenes_dir=str(scenes), max_steps=12, batch=2, lr=3e-3, save_steps=12, **TINY, **FAST
    )
    align.train(cfg, root / "align")
    state = _state(root / "align")
    assert state["global_step"] == 12
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 13))  # 11 and 12 continued the first run's 10 steps
    # ... from the first run's weights, not from the random start at the checkpoint's step (the
    # trainer's own loader misses every key of a LLaVA checkpoint saved under legacy names)
    losses = _losses(state)
    assert losses[10] < 0.8 * losses[0], losses


@pytest.mark.slow
def test_tooluse_labels_only_the_last_assistant_turn(tooluse_out):
    _, facts = tooluse_out
    batch, tok = facts["batch"], facts["tokenizer"]
    labels = batch["labels"][0]
    learned = labels[labels != -100]
    assert tok.decode(learned) == "Final Answer: 1 cube</s>\n"
    # the learned tokens are exactly the tail of the sequence, not the earlier assistant turn
    n = int(batch["attention_mask"][0].sum())
    assert (batch["input_ids"][0, n - len(learned) : n] == learned).all()
    assert (labels[: n - len(learned)] == -100).all()


def test_tooluse_mixes_in_a_seeded_share_of_extra_samples(tmp_path, scenes):
    from agentkit.mllm.train import tooluse

    data = _tooluse_samples(tmp_path, scenes)
    extra = tmp_path / "react.jsonl"
    rows = [dict(json.loads(line), kind=k) for line in data.read_text().splitlines()
            for k in ("tool_call", "final", "decider")]  # fmt: skip
    for i, r in enumerate(rows):
        r["messages"][-1]["content"] += f" #{i}"
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    own = tooluse.training_rows(tooluse.Config(data=str(data)))
    assert len(own) == 2
    cfg = tooluse.Config(data=str(data), extra_data=str(extra),
                         extra_kinds=["tool_call", "final"], extra_max=3)  # fmt: skip
    mixed = tooluse.training_rows(cfg)
    assert mixed[:2] == own and len(mixed) == 5
    assert {r["kind"] for r in mixed[2:]} <= {"tool_call", "final"}
    assert mixed == tooluse.training_rows(cfg)  # the same share for the same seed
    other = tooluse.training_rows(dataclasses.replace(cfg, seed=7, extra_max=2))
    assert len(other) == 4
    # a per-kind cap cuts one kind down and keeps the others whole
    capped = tooluse.training_rows(
        dataclasses.replace(cfg, extra_max=0, extra_kind_max={"final": 1})
    )
    kinds = [r["kind"] for r in capped[2:]]
    assert kinds.count("final") == 1 and kinds.count("tool_call") == 2


def test_tooluse_answers_about_scenes_in_the_words_dpo_and_pope_use(tmp_path, scenes):
    from agentkit.mllm.train import tooluse
    from agentkit.mllm.train.dpo import prompt_messages

    data = _tooluse_samples(tmp_path, scenes)
    cfg = tooluse.Config(data=str(data), scene_dirs=[str(scenes)], scene_per_kind=2,
                         scene_kinds=["absent", "present", "count"])  # fmt: skip
    rows = tooluse.training_rows(cfg)
    grounded = rows[2:]
    assert [r["kind"] for r in grounded].count("scene-present") == 4 and len(grounded) == 12
    for r in grounded:
        user, answer = r["messages"][-2], r["messages"][-1]
        assert user["role"] == "user" and user["images"] == r["images"]
        assert answer["role"] == "assistant"
        assert r["messages"][:-1] == prompt_messages(
            {"question": user["content"], "images": r["images"]}
        )
        scene = json.loads(Path(r["images"][0]).with_suffix(".json").read_text())
        pairs = {(o["color"], o["shape"]) for o in scene["objects"]}
        if r["kind"] in ("scene-present", "scene-absent"):
            color, shape = user["content"].split()[3:5]
            assert answer["content"] == ("Yes." if (color, shape) in pairs else "No.")
            assert (r["kind"] == "scene-present") == ((color, shape) in pairs)
        else:
            shape = user["content"].split()[2].removesuffix("s")
            assert answer["content"] == str(sum(o["shape"] == shape for o in scene["objects"]))
    assert rows == tooluse.training_rows(cfg)  # seeded


@pytest.mark.slow
def test_tooluse_trains_the_projector_when_asked(root, aligned, scenes):
    from agentkit.mllm.train import tooluse

    cfg = tooluse.Config(base=str(aligned), data=str(_tooluse_samples(root, scenes)),
                         scene_dirs=[str(scenes)], train_projector=True, max_steps=4, batch=2,
                         lr=5e-3, save_steps=10, fp16=False, **FAST)  # fmt: skip
    folder = tooluse.train(cfg, root / "tooluse-projector")
    base, merged = _weights(aligned), _weights(folder)
    assert set(base) == set(merged)  # peft's copy of the projector merged back under its name
    moved = {k for k in base if not (base[k] - merged[k]).abs().max() < 1e-6}
    assert any("multi_modal_projector" in k for k in moved)
    assert not any("vision_tower" in k for k in moved)


def test_tooluse_repeats_the_families_it_is_told_to(tmp_path, scenes):
    from agentkit.errors import ConfigError
    from agentkit.mllm.train import tooluse

    data = _tooluse_samples(tmp_path, scenes)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["family"], rows[1]["family"] = "compare_count", "count"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tooluse.Config(data=str(data), family_repeat={"compare_count": 3})
    assert [r["family"] for r in tooluse.training_rows(cfg)] == ["compare_count"] * 3 + ["count"]
    with pytest.raises(ConfigError, match="family_repeat"):
        tooluse.training_rows(dataclasses.replace(cfg, family_repeat={"count": 0}))


@pytest.mark.slow
def test_fit_counts_tokens_as_the_collator_does_and_leaves_out_long_samples(
    tmp_path, aligned, scenes
):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(aligned)
    rows = _vlm.read_jsonl(_tooluse_samples(tmp_path, scenes))
    kept, lengths = _vlm.fit(rows, processor, 10_000)
    assert [{k: v for k, v in r.items() if k != "length"} for r in kept] == rows
    assert [r["length"] for r in kept] == lengths
    assert lengths == [int(_vlm.ChatCollator(processor)([r])["attention_mask"].sum()) for r in rows]
    limit = min(lengths)
    kept, _ = _vlm.fit(rows, processor, limit)
    assert len(kept) == sum(n <= limit for n in lengths) >= 1
    assert _vlm.fit(rows, processor, limit - 1)[0] == []


@pytest.mark.slow
def test_group_by_length_batches_samples_of_similar_length(tmp_path, aligned, scenes):
    from agentkit.mllm.train import tooluse

    rows = []
    for i in range(160):  # answers of 1..32 words: lengths spread widely
        img = str(scenes / f"scene_{i % 2:06d}.png")
        rows.append({"messages": [
            {"role": "user", "content": "How many cubes?", "images": [img]},
            {"role": "assistant", "content": " ".join(["cube"] * (1 + (i * 7) % 32))},
        ], "images": [img], "kind": "final"})  # fmt: skip
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def spread(group: bool) -> float:
        cfg = tooluse.Config(base=str(aligned), data=str(data), batch=4, max_steps=1,
                             group_by_length=group, **FAST)  # fmt: skip
        trainer = tooluse.make_trainer(cfg, tmp_path / f"out-{group}")
        lengths = trainer.train_dataset["length"]
        batches = list(trainer._get_train_sampler())
        groups = [batches[k : k + 4] for k in range(0, len(batches), 4)]
        return sum(max(lengths[i] for i in g) - min(lengths[i] for i in g) for g in groups)

    assert spread(True) < 0.5 * spread(False)


@pytest.mark.slow
def test_tooluse_prompt_is_the_backends_prompt(tooluse_out, scenes):
    from agentkit.mllm.backends.base import Message
    from agentkit.mllm.backends.hf import HFBackend

    folder, facts = tooluse_out
    batch = facts["batch"]
    n_prompt = int(batch["attention_mask"][0].sum()) - int((batch["labels"][0] != -100).sum())
    msgs = [
        Message(role="system", content="Tools: detect, count."),
        Message(role="user", content="How many cubes?", images=[scenes / "scene_000000.png"]),
        Message(role="assistant", content="Thought: count them. Action: count"),
        Message(role="user", content="Observation: 1"),
    ]
    expected = HFBackend(folder, device="cpu").prepare(msgs)["input_ids"][0]
    assert batch["input_ids"][0, :n_prompt].tolist() == expected.tolist()


@pytest.mark.slow
def test_tooluse_moves_lora_only_and_merges(root, aligned, tooluse_out, scenes):
    folder, facts = tooluse_out
    assert facts["lora_names"] and not any("vision_tower" in n for n in facts["lora_names"])
    assert set(facts["lora_moved"]) >= {n for n in facts["lora_names"] if "lora_B" in n}
    assert facts["base_moved"] == []  # base frozen before the merge
    losses = _losses(_state(root / "tooluse"))
    # LoRA alone moves a near-uniform random LM slowly (its tied embeddings are frozen and small)
    assert len(losses) == 10 and losses[-1] < 0.9 * losses[0], losses
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    base, merged = _weights(aligned), _weights(folder)
    assert next(iter(_load_dtypes(folder))) == "F16"
    changed = [
        k for k in base if "language_model" in k and not (base[k] - merged[k]).abs().max() < 1e-3
    ]
    assert changed and all("proj" in k for k in changed)
    assert all((base[k] - merged[k]).abs().max() < 1e-3 for k in base if "vision_tower" in k)
    _generates(folder, scenes / "scene_000001.png")


def test_tooluse_merges_a_share_of_its_update_when_asked(root, aligned, scenes):
    """Re-running a finished stage with merge_scale=0.5 re-merges its last checkpoint halfway
    between base and tuned (WiSE-FT's mix) and trains no step more: at scale 1 the re-merge is
    the first merge, bit for bit. The run stops mid-epoch (1 step of batch 1 over 2 samples),
    where the trainer, left to itself, would take one step past max_steps."""
    import shutil

    import torch

    from agentkit.mllm.train import tooluse

    (root / "merge").mkdir()
    data = _tooluse_samples(root / "merge", scenes)

    def run(out: Path, **over: Any) -> dict[str, Any]:
        if out.name != "first":
            shutil.copytree(root / "merge" / "first" / "checkpoints", out / "checkpoints")
        cfg = _tooluse_config(aligned, data, max_steps=1, batch=1, save_steps=1, lr=2e-2, **over)
        return _weights(tooluse.train(cfg, out))

    full = run(root / "merge" / "first")
    half, again = run(root / "merge" / "half", merge_scale=0.5), run(root / "merge" / "again")
    base = _weights(aligned)
    moved = [k for k in base if (full[k] - base[k]).abs().max() > 1e-2]
    assert moved and all("language_model" in k for k in moved)
    for k in base:
        want = base[k] + 0.5 * (full[k] - base[k])
        assert (half[k] - want).abs().max() < 2e-3, k
    assert again.keys() == full.keys() and all(torch.equal(again[k], full[k]) for k in full)
    with pytest.raises(ConfigError, match="merge_scale"):
        run(root / "merge" / "zero", merge_scale=0)
    with pytest.raises(ConfigError, match="train_projector"):
        run(root / "merge" / "projector", merge_scale=0.5, train_projector=True)


def _load_dtypes(folder: Path) -> set[str]:
    import struct

    raw = (folder / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.slow
def test_dpo_increases_the_chosen_margin(root, scenes, tooluse_out):
    import torch

    from agentkit.mllm.train import dpo

    base, _ = tooluse_out
    cfg = dpo.Config(
        base=str(base),
        scenes_dir=str(scenes),
        kinds=["absent", "present", "count"],  # short answers keep the test fast
        max_steps=16,  # 8 moved the margin by 0.42-0.54 depending on the tests run before
        batch=6,
        lr=2e-3,
        beta=0.5,
        sft_weight=0.5,
        save_steps=16,
        **FAST,
    )
    out = root / "dpo"
    trainer = dpo.make_trainer(cfg, out)
    assert (trainer.loss_types, trainer.loss_weights) == (["sigmoid", "sft"], [1.0, 0.5])
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    n = len(rows)

    def margin() -> float:
        trainer.model.eval()
        with torch.no_grad():
            logps = _vlm.completion_logps(trainer.model, batch)
        return float((logps[:n] - logps[n:]).mean())

    m0 = margin()
    t0 = time.perf_counter()
    _vlm.run(trainer, out)
    print(f"dpo: {(time.perf_counter() - t0) / cfg.max_steps:.2f} s per step of 6 pairs")
    m1 = margin()
    print(f"dpo margin {m0:.3f} -> {m1:.3f}")
    assert m1 > m0 + 0.5, (m0, m1)
    folder = dpo.finish(trainer, cfg, out)
    assert (out / "pairs.jsonl").is_file()
    _generates(folder, scenes / "scene_000000.png")


@pytest.mark.slow
def test_dpo_mines_the_bases_wrong_programs_once_and_trains_on_them(root, scenes, tooluse_out):
    from agentkit.mllm.train import dpo

    base, _ = tooluse_out
    data = _program_samples(root, scenes)
    cfg = dpo.Config(
        base=str(base), kinds=[], mine_data=[str(data)], mine_beams=2, max_steps=2, batch=2,
        save_steps=2, **FAST,
    )  # fmt: skip
    out = root / "dpo-mined"
    trainer = dpo.make_trainer(cfg, out)  # the tiny base gets both programs wrong
    # the copy loaded to mine is not held through training (the trainer has its own)
    assert MODELS.forget(str(Path(base).resolve())) == 0
    mined = [json.loads(line) for line in (out / "mined.jsonl").read_text().splitlines()]
    assert {p["family"] for p in mined} == {"count", "exist"}
    assert len(trainer.train_dataset) == len(mined) <= 4
    # a mined pair too long for max_length is left out, not cut (it would lose its answer)
    assert dpo._fitting(mined, trainer.processing_class, 4096) == mined
    assert dpo._fitting(mined, trainer.processing_class, 8) == []
    batch = trainer.data_collator([trainer.train_dataset[0]])
    chosen = batch["input_ids"][0][batch["completion_mask"][0].bool()]
    assert trainer.processing_class.tokenizer.decode(chosen).startswith("Thought: t")
    _vlm.run(trainer, out)
    dpo.finish(trainer, cfg, out)
    # a re-run reads the mined file instead of asking the model again
    (out / "mined.jsonl").write_text(json.dumps(mined[0]) + "\n")
    assert len(dpo.make_trainer(cfg, out).train_dataset) == 1


# --------------------------------------------------------------------------------------------
# a second architecture


def _tiny_qwen2_vl(folder: Path) -> Path:
    """A random-init Qwen2-VL (~0.15 M parameters) with a BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    special = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
        "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
        "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["How many cubes? Final Answer: 2 cubes. Thought: count them. Action: count"] * 10,
        trainer=trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=template,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    sizes = dict(
        patch_size=8, temporal_patch_size=2, merge_size=2, min_pixels=32 * 32, max_pixels=32 * 32
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tokenizer,
        chat_template=template,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [4, 6, 6],
                "rope_theta": 10000.0,
            },
            max_position_embeddings=512,
            tie_word_embeddings=True,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=1,
            embed_dim=32,
            hidden_size=64,
            num_heads=2,
            mlp_ratio=2,
            patch_size=8,
            temporal_patch_size=2,
            spatial_merge_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_tooluse_trains_a_second_architecture(root, scenes):
    from agentkit.mllm.train import tooluse

    base = _tiny_qwen2_vl(root / "qwen2vl")
    (root / "q").mkdir()
    data = _tooluse_samples(root / "q", scenes)
    cfg = tooluse.Config(
        base=str(base), data=str(data), max_steps=2, batch=2, lr=5e-3, save_steps=2, **FAST
    )
    out = root / "qwen-tooluse"
    trainer = tooluse.make_trainer(cfg, out)
    wrapped = [n for n, _ in trainer.model.named_modules() if n.endswith("lora_A")]
    assert wrapped and all("language_model" in n for n in wrapped)  # the ViT's qkv is not wrapped
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert "image_grid_thw" in batch and "mm_token_type_ids" in batch
    labels = batch["labels"][0]
    assert (
        trainer.processing_class.tokenizer.decode(labels[labels != -100])
        == "Final Answer: 1 cube<|im_end|>\n"
    )
    _vlm.run(trainer, out)
    assert trainer.state.global_step == 2
    folder = tooluse.finish(trainer, cfg, out)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen2_vl"
    _generates(folder, scenes / "scene_000000.png")


@pytest.mark.slow
def test_the_saved_model_declares_how_it_is_prompted(tooluse_out, tmp_path):
    """The merged folder names the planner and prompt style it was trained for; an agent given
    no planner or style follows it, and an explicit choice still wins."""
    from agentkit.graph import Agent
    from agentkit.mllm.backends.hf import HFBackend
    from agentkit.runtime import Options

    folder, _ = tooluse_out
    hints = json.loads((folder / "agentkit_runtime.json").read_text())
    assert hints == {"planner": "program", "prompt_style": "compact"}
    backend = HFBackend(folder, device="cpu")
    agent = Agent(backend, runs_dir=tmp_path)
    assert agent.planner == "program" and agent.options.prompt_style == "compact"
    mine = Agent(backend, planner="react", options=Options(prompt_style="full"), runs_dir=tmp_path)
    assert mine.planner == "react" and mine.options.prompt_style == "full"
    from agentkit.errors import WeightsNotFound

    (folder / "agentkit_runtime.json").write_text("{not json")
    try:
        with pytest.raises(WeightsNotFound, match="agentkit_runtime.json"):
            HFBackend(folder, device="cpu")
    finally:
        (folder / "agentkit_runtime.json").write_text(json.dumps(hints))
