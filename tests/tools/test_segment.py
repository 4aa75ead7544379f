"""segment: compact and official SAM checkpoints loaded by path, prompts, RLE masks, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agentkit import weights
from agentkit.media import MediaStore
from agentkit.state import ToolCall
from agentkit.tools import segment
from agentkit.tools._vision import mask_box, mask_from_image, rle_to_mask
from agentkit.tools.base import ModelCache, Tool, ToolContext, ToolRegistry, call_tool, execute


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = segment.CompactSamConfig()
    return segment.save_compact_sam(
        segment.build_compact_sam(cfg), cfg, tmp_path_factory.mktemp("sam") / "scenes-sam.pt"
    )


@pytest.fixture
def image(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "scene.png"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p)
    return p


def test_compact_config_is_saved_with_the_weights(compact):
    import torch

    ckpt = torch.load(compact, weights_only=True)
    assert ckpt["config"]["img_size"] == 256 and ckpt["config"]["prompt_dim"] == 128
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    with pytest.raises(ValueError, match="window_size"):
        segment.build_compact_sam(window_size=5)


def test_box_and_point_prompts(compact, image, tmp_path):
    media = MediaStore(tmp_path / "media")
    ref = media.add_image(image)
    ctx = ToolContext(media=media, models=ModelCache(), weights={"segment": str(compact)})
    tool = Tool.from_module(segment)
    res = call_tool(tool, {"image": ref, "boxes": [[10, 10, 80, 60], [90, 20, 150, 110]]}, ctx)
    assert (res.width, res.height) == (160, 120) and len(res.masks) == 2
    for m in res.masks:
        mask = rle_to_mask(m.rle)
        assert mask.shape == (120, 160) and mask.dtype == bool and int(mask.sum()) == m.area
        assert isinstance(m.score, float)
        stored = mask_from_image(media.image(m.id))  # the PNG a trace draws is the same mask
        assert m.id.startswith("mask_") and (stored == mask).all()
        if m.area:
            assert m.box[0] < m.box[2] <= 160 and m.box[1] < m.box[3] <= 120
    pts = call_tool(
        tool, {"image": ref, "points": [[40, 30], [120, 90]], "point_labels": [1, 0]}, ctx
    )
    assert len(pts.masks) == 1 and rle_to_mask(pts.masks[0].rle).shape == (120, 160)
    one = call_tool(tool, {"image": ref, "points": [[40, 30]]}, ctx)  # best of SAM's three
    assert len(one.masks) == 1
    assert "masks:" in tool.observe(res) and "counts" not in tool.observe(res)


def test_one_encoder_pass_per_image(compact, image):
    ctx = ToolContext(models=ModelCache())
    seg = segment.get_segmenter(str(compact), ctx)
    calls = []
    handle = seg.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        for box in ([0, 0, 50, 50], [50, 50, 100, 100], [10, 20, 30, 40]):
            segment.run(segment.Args(image=str(image), boxes=[box], weights=str(compact)), ctx)
        assert len(calls) == 1
        flipped = image.parent / "flipped.png"
        Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
        segment.run(
            segment.Args(image=str(flipped), boxes=[[0, 0, 50, 50]], weights=str(compact)), ctx
        )
        assert len(calls) == 2
        # the same file by another spelling of its path: no new pass; the file rewritten: one
        other = image.parent / "sub" / ".." / image.name
        (image.parent / "sub").mkdir()
        segment.run(segment.Args(image=str(other), boxes=[[0, 0, 9, 9]], weights=str(compact)), ctx)
        assert len(calls) == 2
        Image.open(flipped).crop((0, 0, 60, 40)).save(image)
        segment.run(segment.Args(image=str(image), boxes=[[0, 0, 9, 9]], weights=str(compact)), ctx)
        assert len(calls) == 3
    finally:
        handle.remove()


def test_everything_mode(compact, image, monkeypatch):
    # Random weights predict low IoUs; open the generator's filters so masks come out at all.
    monkeypatch.setattr(
        segment, "EVERYTHING_DEFAULTS", {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    )
    res = segment.run(
        segment.Args(image=str(image), mode="everything", points_per_side=4, weights=str(compact)),
        ToolContext(models=ModelCache()),
    )
    assert res.masks and all(
        rle_to_mask(m.rle).shape == (120, 160) and m.id is None for m in res.masks
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "needs boxes, points"),
        ({"boxes": [[50, 50, 40, 60]]}, "is empty"),
        ({"points": [[10, 10]], "point_labels": [1, 0]}, "point_labels"),
        ({"points": [[500, 10]]}, "outside"),
        ({"boxes": [[0, 0, 9, 9], [1, 1, 9, 9]], "points": [[5, 5]]}, "only one box"),
        ({"mode": "everything", "boxes": [[0, 0, 9, 9]]}, "takes no boxes"),
    ],
)
def test_bad_prompts_are_recorded_errors(compact, image, args, message):
    reg = ToolRegistry([Tool.from_module(segment)])
    step = execute(
        ToolCall(tool="segment", args={"image": str(image), "weights": str(compact), **args}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and message in step.error


def test_missing_default_and_bad_file(monkeypatch, tmp_path, image):
    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS", tmp_path)
    monkeypatch.delenv("AGENTKIT_WEIGHTS", raising=False)
    reg = ToolRegistry([Tool.from_module(segment)])
    step = execute(
        ToolCall(tool="segment", args={"image": str(image), "boxes": [[0, 0, 9, 9]]}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "scenes-sam" in step.error and "agentkit train segmenter" in step.error
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    step = execute(
        ToolCall(
            tool="segment", args={"image": str(image), "boxes": [[0, 0, 9, 9]], "weights": str(bad)}
        ),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "cannot load SAM checkpoint" in step.error


@pytest.mark.slow
def test_official_vit_b_layout_loads_by_path(tmp_path, image):
    """sam_model_registry["vit_b"] at random init, saved as the official plain state dict under a
    name that does not say its size: the loader reads the size from the weights. One 1024-px
    encoder pass of ~90 M parameters: ~30 s on 2 CPU cores."""
    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import Sam

    sd = sam_model_registry["vit_b"]().state_dict()
    torch.save(sd, tmp_path / "my-sam.pth")
    ctx = ToolContext(models=ModelCache())
    res = segment.run(
        segment.Args(
            image=str(image), boxes=[[10, 10, 80, 60]], weights=str(tmp_path / "my-sam.pth")
        ),
        ctx,
    )
    seg = segment.get_segmenter(str(tmp_path / "my-sam.pth"), ctx)
    assert isinstance(seg.sam, Sam) and seg.sam.image_encoder.img_size == 1024
    assert seg.sam.image_encoder.patch_embed.proj.out_channels == 768  # vit_b
    assert len(res.masks) == 1 and rle_to_mask(res.masks[0].rle).shape == (120, 160)
    # The official file name (sam_vit_b_01ec64.pth) goes straight to the library's own loader.
    (tmp_path / "sam_vit_b_01ec64.pth").symlink_to(tmp_path / "my-sam.pth")
    official = segment.load_sam(tmp_path / "sam_vit_b_01ec64.pth", "cpu")
    assert torch.equal(official.mask_decoder.iou_token.weight, sd["mask_decoder.iou_token.weight"])


def test_a_masks_box_is_tight_in_pixel_edges():
    """XYXY of the mask's pixels, edges included: one pixel is 1x1; an empty mask has none;
    random masks get the box their pixel coordinates span."""
    m = np.zeros((6, 9), bool)
    assert mask_box(m) is None
    m[2, 7] = True
    assert mask_box(m) == [7.0, 2.0, 8.0, 3.0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.random() * 0.05
        ys, xs = np.nonzero(m)
        want = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else None
        assert mask_box(m) == want


def test_rle_is_cocos_own_for_small_large_empty_and_edge_masks():
    """The RLE read off a mask's bounding box (small objects) and the one pycocotools encodes
    from the whole mask (large ones) are the very string COCO's encoder writes, and decode back."""
    from pycocotools import mask as mask_utils

    from agentkit.tools._vision import mask_to_rle, rle_and_box

    rng = np.random.default_rng(0)
    masks = [np.zeros((6, 9), bool), np.ones((6, 9), bool)]
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        m = np.zeros((h, w), bool)
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        m[y : y + bh, x : x + bw] = rng.random((min(bh, h - y), min(bw, w - x))) < 0.8
        masks.append(m)
    m = np.zeros((64, 64), bool)
    m[60:, 0] = m[:3, 1] = True  # one run from the bottom of a column into the top of the next
    masks.append(m)
    small = 0
    for m in masks:
        cocos = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        rle, box = rle_and_box(m)
        assert rle.counts == cocos and rle.size == list(m.shape) and rle == mask_to_rle(m)
        assert (rle_to_mask(rle) == m).all()
        assert box == mask_box(m)  # from the same pass
        small += box is not None and (box[2] - box[0]) * (box[3] - box[1]) * 16 <= m.size
    assert small > 100  # both ways of encoding were checked
