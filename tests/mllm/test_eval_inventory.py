"""agentkit eval inventory: detections matched to an inventory's points, and the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.eval.inventory import evaluate_inventory, match_points, score_image, summarize

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenes"


def test_points_match_the_box_that_holds_them_nearest_centre_first():
    boxes = [[0, 0, 100, 100], [60, 60, 80, 80], [200, 0, 220, 20]]
    points = [[70, 70], [30, 30], [500, 500], [221, 10]]
    # (70, 70) is in both the big box and the small one: the small one's centre is nearer, so the
    # big box stays for (30, 30); (500, 500) is in no box; (221, 10) is just outside the third box,
    # inside its 10 % margin
    assert sorted(match_points(boxes, points)) == [(0, 1), (1, 0), (2, 3)]
    assert match_points(boxes, points, margin=0.0) == [(1, 0), (0, 1)]
    assert match_points([], points) == [] and match_points(boxes, []) == []


def _o(shape, color, point, box=None, material="metal", size="large"):
    d = {"shape": shape, "color": color, "material": material, "size": size}
    return {**d, "box": box} if box else {**d, "pixel_coords": point}


def test_an_image_scored_object_by_object():
    objects = [_o("cube", "purple", [50, 50]), _o("sphere", "blue", [150, 50]),
               _o("cylinder", "gray", [250, 50])]  # fmt: skip
    dets = [_o("cylinder", "purple", None, [20, 20, 80, 80]),  # a cube read as a cylinder
            _o("sphere", "blue", None, [120, 20, 180, 80]),
            _o("cube", "red", None, [400, 0, 450, 50])]  # nothing there  # fmt: skip
    r = score_image(dets, objects)
    assert (r["matched"], r["all_right"]) == (2, 1)
    assert r["confusions"] == ["shape: cube -> cylinder"]
    assert r["missed"] == ["large gray metal cylinder"] and r["extra"] == ["large red metal cube"]
    s = summarize(
        [{"image": "a.png", **r}, {"image": "b.png", **score_image(dets[1:2], objects[1:2])}]
    )
    assert (s["objects"], s["detections"]) == (4, 4)
    assert s["recall"] == 0.75 and s["precision"] == 0.75
    assert s["attribute_accuracy"]["shape"] == round(2 / 3, 4)
    assert s["objects_all_right"] == 0.5 and s["images_exact"] == 0.5
    assert s["images_count_right"] == 1.0  # three found for three, right or not: both images
    assert s["confusions"] == {"shape: cube -> cylinder": 1}
    assert [e["image"] for e in s["errors"]] == ["a.png"]


def test_the_shipped_detector_on_the_example_scenes_clevr_file_and_folder_alike(tmp_path):
    scenes = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("scene_*.json"))]
    clevr = tmp_path / "CLEVR_val_scenes.json"
    # as CLEVR ships them: no boxes or masks, a point per object
    slim = [{"image_filename": s["image_filename"],
             "objects": [{k: o[k] for k in ("shape", "color", "material", "size", "pixel_coords")}
                         for o in s["objects"]]} for s in scenes]  # fmt: skip
    clevr.write_text(json.dumps({"info": {}, "scenes": slim}))
    out = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", "eval", "inventory", "--scenes", str(clevr),
         "--images", str(EXAMPLES), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["images"] == len(scenes) and r["objects"] == sum(len(s["objects"]) for s in scenes)
    assert r["recall"] >= 0.9 and r["precision"] >= 0.9
    assert min(r["attribute_accuracy"].values()) >= 0.9
    assert evaluate_inventory(EXAMPLES)["objects_all_right"] == r["objects_all_right"]


def test_missing_images_name_the_folder_to_pass(tmp_path):
    one = tmp_path / "inv.json"
    one.write_text(json.dumps({"image_filename": "CLEVR_val_000013.png",
                               "objects": [_o("cube", "red", [1, 1])]}))  # fmt: skip
    with pytest.raises(ConfigError, match="--images"):
        evaluate_inventory(one)
    with pytest.raises(ConfigError, match="images="):
        evaluate_inventory([json.loads(one.read_text())])
