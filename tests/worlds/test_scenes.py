"""The CLEVR-style scene world: sampling (fast, no bpy) and rendering ground truth (slow, bpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from agentkit.errors import ConfigError
from agentkit.mllm.worlds.scenes import (
    COLORS,
    MARGIN,
    MIN_DIST,
    SIZES,
    Camera,
    compute_relationships,
    sample_scene,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"
W, H = 96, 64


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


# ----------------------------------------------------------------------------------- sampling
def test_sampling_is_deterministic_and_follows_clevr_rules():
    a, b = sample_scene(42), sample_scene(42)
    assert a.model_dump_json() == b.model_dump_json()
    assert sample_scene(43).model_dump_json() != a.model_dump_json()
    for seed in range(30):
        spec = sample_scene(seed)
        assert 3 <= len(spec.objects) <= 10
        axes = [np.asarray(spec.camera.directions()[d])[:2] for d in ("left", "behind")]
        for i, o in enumerate(spec.objects):
            assert o.color in COLORS and -3 <= o.x <= 3 and -3 <= o.y <= 3
            for p in spec.objects[i + 1 :]:
                d = np.array([o.x - p.x, o.y - p.y])
                assert np.linalg.norm(d) - SIZES[o.size] - SIZES[p.size] >= MIN_DIST - 1e-3
                assert all(abs(d @ ax) >= MARGIN - 1e-3 for ax in axes)


def test_surface_look_is_drawn_apart_from_the_other_draws():
    """Metal roughness and sharpening came to the world later, from their own stream: a seed's
    other draws are those its scenes were rendered with before (held-out seed 900001's exposure
    and blur as data/scenes-heldout recorded them), so earlier renders stay valid."""
    look = sample_scene(900001, split="val").look
    assert look.exposure == pytest.approx(-0.3409942926418413, abs=1e-12) and look.blur == 0.7
    looks = [sample_scene(s).look for s in range(200)]
    assert all(0.02 <= lk.metal_roughness <= 0.15 for lk in looks)
    assert all(lk.sharpen == 0.0 for lk in looks if lk.blur > 0)  # never both
    sharp = [lk.sharpen for lk in looks if lk.sharpen > 0]
    assert all(0.4 <= a <= 1.5 for a in sharp) and 0.15 < len(sharp) / len(looks) < 0.4
    assert len({lk.metal_roughness for lk in looks}) > 150
    assert sample_scene(5, randomize_look=False).look.sharpen == 0.0


def test_sharpening_steepens_edges():
    from agentkit.mllm.worlds.render import _apply_look

    spec = sample_scene(1, randomize_look=False)
    ramp = np.clip(64 + (np.arange(32) - 12) * 16.0, 64, 192)  # a soft edge from x=12 to 20
    rgb = np.repeat(np.tile(ramp, (16, 1))[..., None], 3, axis=2).astype(np.uint8)
    plain = _apply_look(spec, rgb).astype(float)
    crisp = spec.model_copy(update={"look": spec.look.model_copy(update={"sharpen": 1.0})})
    out = _apply_look(crisp, rgb).astype(float)
    assert np.array_equal(plain, rgb)  # the plain look leaves the pixels alone
    # an unsharp mask overshoots at both ends of the edge and keeps flat areas flat
    assert (out[8, 12] < plain[8, 12]).all() and (out[8, 20] > plain[8, 20]).all()
    assert np.array_equal(out[:, :8], plain[:, :8]) and np.array_equal(out[:, 25:], plain[:, 25:])


def test_relations_follow_clevr_convention():
    """rel['left'][i] lists the objects LEFT of object i, as seen by the camera."""
    spec = sample_scene(7, min_objects=4)
    rel = spec.relationships()
    w, h = 480, 320
    uv = spec.camera.project(np.asarray([o.coords for o in spec.objects]), w, h)
    for i in range(len(spec.objects)):
        for j in rel["left"][i]:
            assert uv[j, 0] < uv[i, 0]  # further left in the image
            assert i in rel["right"][j]
        for j in rel["behind"][i]:
            assert uv[j, 2] > uv[i, 2] - 0.5  # farther from the camera, roughly
            assert i in rel["front"][j]
    # with CLEVR's margin every pair is ordered both ways
    n = len(spec.objects)
    for i in range(n):
        assert len(rel["left"][i]) + len(rel["right"][i]) == n - 1
    assert compute_relationships(spec.objects, spec.camera.directions()) == rel


def test_camera_projects_origin_to_image_centre():
    cam = Camera(location=(7.48, -6.51, 5.34))
    u, v, d = cam.project(np.zeros((1, 3)), 480, 320)[0]
    assert abs(u - 240) < 1e-6 and abs(v - 160) < 1e-6
    assert d == pytest.approx(np.linalg.norm([7.48, -6.51, 5.34]))
    # the camera's right axis moves points right in the image
    right = np.asarray(cam.directions()["right"])
    assert cam.project(right[None], 480, 320)[0, 0] > 240


def test_caption_names_every_object():
    spec = sample_scene(3)
    cap = spec.caption()
    for o in spec.objects:
        assert f"{o.size} {o.color} {o.material} {o.shape}" in cap
    assert cap[0].isupper() and cap.endswith(".")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1, "min_objects": 0},
        {"seed": 1, "min_objects": 5, "max_objects": 4},
        {"seed": 1, "max_objects": 11},
        {"seed": 1, "width": 96},
        {"seed": 1, "width": 8, "height": 8},
    ],
)
def test_bad_sampling_arguments_raise_clear_errors(kwargs):
    seed = kwargs.pop("seed")
    with pytest.raises(ConfigError, match="invalid|give both"):
        sample_scene(seed, **kwargs)


# ----------------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from agentkit.mllm.worlds.render import make_scene

    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    kw = {"samples": 4, "width": W, "height": H, "max_objects": 6, "threads": 2}
    make_scene(11, a, **kw)
    make_scene(11, b, **kw)
    make_scene(12, a, **kw)
    return a, b


@pytest.mark.slow
def test_same_seed_gives_identical_ground_truth(rendered):
    a, b = rendered
    ja, jb = (d / "scene_000011.json" for d in (a, b))
    assert ja.read_bytes() == jb.read_bytes()
    assert (a / "scene_000011.png").is_file()
    assert (a / "scene_000012.json").read_bytes() != ja.read_bytes()


def _check_scene(data: dict, tol: float) -> None:
    w, h = data["width"], data["height"]
    cam = Camera(**{k: data["camera"][k] for k in ("location", "look_at", "lens_mm", "sensor_mm")})
    union = np.zeros((h, w), dtype=int)
    for o in data["objects"]:
        mask = _decode(o["mask"])
        assert mask.shape == (h, w)
        assert mask.sum() == o["area"] > 0
        union += mask
        x0, y0, x1, y1 = o["bbox"]
        ys, xs = np.nonzero(mask)
        # the box is the tight box of the mask (exclusive right/bottom edges)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        # the visible box lies inside the projection of the object's 3D bounding box
        from agentkit.mllm.worlds.scenes import ObjectSpec

        spec = ObjectSpec(
            shape=o["shape"],
            color=o["color"],
            material=o["material"],
            size=o["size"],
            x=o["3d_coords"][0],
            y=o["3d_coords"][1],
            rotation=o["rotation"],
        )
        uv = cam.project(spec.corners(), w, h)
        px0, py0 = uv[:, 0].min(), uv[:, 1].min()
        px1, py1 = uv[:, 0].max(), uv[:, 1].max()
        assert x0 >= px0 - tol and y0 >= py0 - tol and x1 <= px1 + tol and y1 <= py1 + tol
        # the projected centre is where the scene JSON says
        u, v, _ = cam.project(np.asarray([spec.coords]), w, h)[0]
        assert (
            abs(u - o["pixel_coords"][0]) <= 0.5 + 1e-6
            and abs(v - o["pixel_coords"][1]) <= 0.5 + 1e-6
        )
    assert union.max() <= 1  # instance masks never overlap


@pytest.mark.slow
def test_masks_boxes_and_projection_agree(rendered):
    a, _ = rendered
    for path in sorted(a.glob("scene_*.json")):
        _check_scene(json.loads(path.read_text()), tol=1.5)


def test_committed_examples_are_consistent():
    paths = sorted(EXAMPLES.glob("scene_*.json"))
    assert len(paths) >= 12
    for path in paths:
        data = json.loads(path.read_text())
        assert (EXAMPLES / data["image_filename"]).is_file()
        for key in (
            "seed",
            "split",
            "image_filename",
            "width",
            "height",
            "objects",
            "relationships",
            "camera",
            "lights",
            "render",
            "caption",
        ):
            assert key in data
        _check_scene(data, tol=2.0)


def test_bad_render_arguments_raise_clear_errors(tmp_path):
    from agentkit.mllm.worlds.render import make_scene, render_scene

    spec = sample_scene(1)
    with pytest.raises(ConfigError, match="samples=0"):
        render_scene(spec, tmp_path, samples=0)
    with pytest.raises(ConfigError, match="threads=0"):
        render_scene(spec, tmp_path, threads=0)
    with pytest.raises(ConfigError, match="give both"):
        render_scene(spec, tmp_path, width=96)
    with pytest.raises(ConfigError, match="unknown options"):
        make_scene(1, tmp_path, sampels=4)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_hidden_objects_are_rejected(tmp_path):
    from agentkit.mllm.worlds.render import HiddenObjectError, render_scene

    spec = sample_scene(5, width=W, height=H)
    with pytest.raises(HiddenObjectError, match="min_pixels"):
        render_scene(spec, tmp_path, samples=1, min_pixels=10**6)
    assert not list(tmp_path.glob("*.json"))
