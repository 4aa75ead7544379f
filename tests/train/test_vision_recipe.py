"""The mllm-vision recipe: patch labels from masks, a few steps on a tiny tower, resume, graft."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.train import build_config, load_recipe
from agentkit.mllm.train import vision as V
from agentkit.tools._vision import mask_to_rle

#: swin: 48 px in 3 px patches, 16 x 16 merged once to 8 x 8 = 64 tokens of 16-d
TINY = ["tower=swin", "image_size=48", "patch=3", "vision_dim=8", "depths=[1, 1]", "stage_heads=[1, 2]",
        "window=8", "threads=1", "log_every=1000", "warmup=2", "batch=2", "fp16=false"]  # fmt: skip
#: clip: 64 px in 16 px patches (+ a CLS token the LLaVA drops)
TINY_CLIP = ["tower=clip", "image_size=64", "patch=16", "vision_dim=32", "vision_layers=1",
             "vision_heads=2", "threads=1", "log_every=1000", "warmup=2", "batch=2",
             "fp16=false"]  # fmt: skip


def _object(color: str, shape: str, box: tuple[int, int, int, int], hw=(80, 120)) -> dict:
    m = np.zeros(hw, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return {"color": color, "shape": shape, "material": "metal", "size": "large",
            "mask": mask_to_rle(m).model_dump()}  # fmt: skip


def test_a_patch_takes_the_object_covering_most_of_it():
    import torch

    # 120 x 80 image -> 40 x 40 id map, 4 x 4 cells of 30 x 20 image pixels: the cube fills cell
    # (0, 0), the sphere covers a quarter of cell (3, 3)
    scene = {"width": 120, "height": 80, "objects": [
        _object("red", "cube", (0, 0, 30, 20)),
        _object("blue", "sphere", (105, 70, 120, 80)),
        _object("green", "cylinder", (27, 0, 30, 20)),  # 10% of cell (0, 0), drawn over the cube
    ]}  # fmt: skip
    ids = torch.from_numpy(V.id_map(scene, 40))[None]
    table = torch.from_numpy(V.attribute_table(scene, slots=5))[None]
    cells, present = V.targets(ids, table, grid=4, cover=0.2, min_pixels=4)
    cells, present = cells[0], present[0]
    color, shape = cells[0], cells[1]
    assert color[0, 0] == 1 + V.ATTRIBUTES["color"].index("red")
    assert shape[0, 0] == 1 + V.ATTRIBUTES["shape"].index("cube")
    assert color[3, 3] == 1 + V.ATTRIBUTES["color"].index("blue")
    assert shape[3, 3] == 1 + V.ATTRIBUTES["shape"].index("sphere")
    assert (color > 0).sum() == 2  # nothing else covers a fifth of a cell
    assert V.targets(ids, table, grid=4, cover=0.3)[0][0, 0, 3, 3] == 0  # a quarter < 0.3
    assert present.sum() == 3 and present[V.PAIRS.index(("blue", "sphere"))] == 1
    # the cylinder strip (10 map pixels) is under a larger minimum; the sphere (25) is not
    assert V.targets(ids, table, grid=4, cover=0.2, min_pixels=20)[1][0].sum() == 2


def test_augmentation_moves_the_labels_with_the_pixels():
    import torch

    scene = {"width": 120, "height": 80, "objects": [_object("red", "cube", (0, 0, 30, 20))]}
    ids = torch.from_numpy(V.id_map(scene, 40))[None].repeat(8, 1, 1)
    # the image is its id map, so a pixel and its label can be compared after the warp
    pixels = ids[:, None].float().repeat(1, 3, 1, 1)
    _, cfg = build_config(load_recipe("mllm-vision"), ["zoom=1.5", "exposure_jitter=0"])
    warped, wids = V.augment(np.random.default_rng(0), pixels, ids, cfg)
    assert warped.shape == pixels.shape and wids.shape == ids.shape
    # bilinear pixels and nearest labels agree but on the object's rim
    assert ((warped[:, 0] > 0.5) == (wids == 1)).float().mean() > 0.97
    area = (wids == 1).flatten(1).sum(1)
    assert area.max() > (ids[0] == 1).sum()  # zoomed in: the object grows
    right = (wids[:, :, 20:] == 1).flatten(1).any(1)
    assert right.any()  # flipped: the top-left object shows on the right


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from agentkit.mllm.model import build_tiny_llava

    return build_tiny_llava(
        tmp_path_factory.mktemp("vision-base") / "core",
        texts=["Is there a red cube in the image?", "Yes.", "No."] * 20,
        image_size=32, patch=8, vision_dim=32, vision_layers=1, vision_heads=2,
        text_dim=64, text_layers=1, text_heads=2, vocab_size=400,
    )  # fmt: skip


def test_recipe_fills_the_config_and_checks_sizes():
    module, cfg = build_config(load_recipe("mllm-vision"), ["steps=7"])
    assert module is V and cfg.steps == 7
    assert V.grid_of(cfg) ** 2 == 64  # the core's 64 image tokens
    _, swin = build_config(load_recipe("mllm-vision"), ["tower=swin", "patch=3", "vision_dim=24"])
    assert V.grid_of(swin) ** 2 == 64  # 64 x 64 patches merged three times
    assert V.tower_config(swin).hidden_size == 24 * 2 ** (len(swin.depths) - 1)
    with pytest.raises(ConfigError, match="multiple of patch"):
        V._check(build_config(load_recipe("mllm-vision"), ["patch=25"])[1])
    with pytest.raises(ConfigError, match="divisible by window"):
        V._check(build_config(load_recipe("mllm-vision"), ["tower=swin", "patch=3", "window=7"])[1])
    with pytest.raises(ConfigError, match="swin or clip"):
        V._check(build_config(load_recipe("mllm-vision"), ["tower=resnet"])[1])


def test_presence_tokens_asks_every_token_for_the_pairs(example_scenes, tmp_path):
    """With presence_tokens each token's own reading is scored, so a token that does not carry
    the image's pairs costs loss even when the mean of the tokens does (BCE is convex in the
    logits: the mean token's loss is at most the tokens' mean loss, equal only if they agree)."""
    import torch

    _, cfg = build_config(load_recipe("mllm-vision"), TINY_CLIP)
    assert cfg.presence_tokens  # the recipe's
    data = V.load_data([str(example_scenes(tmp_path / "s", [0, 1]))], V._processor(cfg))
    cells, present = V.targets(data.ids, data.table, V.grid_of(cfg), cfg.cover)
    net = V.build(cfg)
    with torch.no_grad():
        per_token = float(V.losses(net, data.pixels, cells, present, cfg)["presence"])
        cfg.presence_tokens = False
        pooled = float(V.losses(net, data.pixels, cells, present, cfg)["presence"])
    assert per_token > pooled + 1e-4, (per_token, pooled)


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [TINY, TINY_CLIP], ids=["swin", "clip"])
def test_trains_resumes_and_grafts_the_tower_into_the_core(tmp_path, base, sizes, example_scenes):
    import torch
    from safetensors.torch import load_file

    from agentkit.mllm.backends.base import Message
    from agentkit.mllm.backends.hf import HFBackend

    train = example_scenes(tmp_path / "train", [0, 1, 2])
    held = example_scenes(tmp_path / "held", [3])
    args = [
        *sizes,
        f"scenes_dirs={json.dumps([str(train)])}",
        f"heldout_dir={held}",
        f"base={base}",
    ]
    _, cfg = build_config(load_recipe("mllm-vision"), [*args, "steps=40", "lr=3e-3"])
    grid = V.grid_of(cfg)
    data = V.load_data([str(train)], V._processor(cfg))
    cells, present = V.targets(data.ids, data.table, grid, cfg.cover)
    net = V.build(cfg)
    with torch.no_grad():
        before = float(V.losses(net, data.pixels, cells, present, cfg)["loss"])
    folder = V.train(cfg, tmp_path / "out")
    ck = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert ck["step"] == 40
    net.load_state_dict(ck["model"])
    with torch.no_grad():
        after = float(V.losses(net, data.pixels, cells, present, cfg)["loss"])
    assert after < 0.7 * before, (before, after)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 40 and 0 <= metrics["heldout"]["color_acc"] <= 1

    # the graft: the trained tower, the base's LM, a processor and config that agree
    config = json.loads((folder / "config.json").read_text())
    assert config["vision_config"]["image_size"] == cfg.image_size
    assert config["vision_feature_layer"] == -1
    assert config["vision_feature_select_strategy"] == (
        "default" if cfg.tower == "clip" else "full"
    )
    w, b = load_file(str(folder / "model.safetensors")), load_file(str(base / "model.safetensors"))
    tower = {k.removeprefix("tower."): v for k, v in ck["model"].items() if k.startswith("tower.")}
    assert all(torch.equal(w[f"vision_tower.{k}"], v) for k, v in tower.items())
    assert all(torch.equal(w[k].float(), b[k].float()) for k in b if "language_model" in k)
    proj = "multi_modal_projector.linear_1.weight"
    assert w[proj].shape[1] == V.tower_config(cfg).hidden_size  # rebuilt when the width changed
    backend = HFBackend(folder, device="cpu")
    msgs = [
        Message(role="user", content="Is there a red cube?", images=[train / "scene_000000.png"])
    ]
    ids = backend.prepare(msgs)["input_ids"][0]
    assert int((ids == config["image_token_index"]).sum()) == grid**2
    assert backend.generate(msgs, max_new_tokens=2).tokens_out >= 1  # features fit the tokens

    # a rerun resumes at the end and trains no more; another tower size refuses the checkpoint
    V.train(cfg, tmp_path / "out")
    assert torch.load(tmp_path / "out" / "last.pt", weights_only=True)["step"] == 40
    _, other = build_config(load_recipe("mllm-vision"), [*args, "vision_dim=64"])
    with pytest.raises(ConfigError, match="another --out"):
        V.train(other, tmp_path / "out")
