"""agentkit eval perception: matching, COCO AP, and the CLI on the committed example scenes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agentkit.mllm.eval import perception

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenes"


def _obj(box, shape="cube", score=0.9, **attrs):
    base = {"shape": shape, "color": "red", "material": "metal", "size": "large"}
    return {"box": box, "bbox": box, "score": score, **base, **attrs}


def test_match_is_greedy_by_score_and_respects_iou_and_shape():
    gt = [_obj([0, 0, 10, 10]), _obj([20, 0, 30, 10], shape="sphere")]
    pred = [
        _obj([0, 0, 10, 9], score=0.5),
        _obj([1, 0, 10, 10], score=0.8),  # best score takes the cube
        _obj([20, 0, 30, 10], shape="cube", score=0.7),  # right place, wrong shape
        _obj([50, 50, 60, 60], score=0.9),  # nowhere
    ]
    assert perception.match(pred, gt, same_shape=True) == [(1, 0)]
    assert sorted(perception.match(pred, gt, same_shape=False)) == [(1, 0), (2, 1)]


def test_perfect_predictions_score_one():
    scenes = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("scene_*.json"))[:3]]
    preds = [[{**o, "box": o["bbox"], "score": 1.0} for o in sc["objects"]] for sc in scenes]
    ap50, ap = perception._coco_ap(
        scenes, preds, lambda o: o["shape"], ["cube", "sphere", "cylinder"]
    )
    assert ap50 == pytest.approx(1.0) and ap == pytest.approx(1.0)
    at = perception._at_conf(scenes, preds, 0.5)
    assert at["precision"] == at["recall"] == at["all_four_accuracy"] == 1.0
    wrong = [
        [{**p, "color": "gray" if p["color"] != "gray" else "red"} for p in ps] for ps in preds
    ]
    assert perception._at_conf(scenes, wrong, 0.5)["attribute_accuracy"]["color"] == 0.0


def test_cli_names_a_missing_scene_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", "eval", "perception", "--scenes",
         str(tmp_path / "nope"), "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode != 0
    assert "agentkit data gen scenes" in json.loads(out.stdout)["error"]


@pytest.mark.slow
def test_cli_scores_the_shipped_detector_on_example_scenes():
    from agentkit import weights

    if not (weights.PACKAGE_WEIGHTS / "scenes-yolo.pt").is_file():
        pytest.skip("scenes-yolo.pt is not installed (agentkit train detector)")
    env = {**os.environ, "YOLO_CONFIG_DIR": tempfile.mkdtemp(prefix="yolo-cfg-")}
    out = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", "eval", "perception", "--scenes", str(EXAMPLES),
         "--limit", "4", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # ultralytics may print a settings notice first (fresh YOLO_CONFIG_DIR): the JSON follows it
    d = json.loads(out.stdout[out.stdout.index("{\n") :])["detect"]
    assert d["scenes"] == 4 and d["gt_objects"] > 0
    assert 0.0 <= d["mAP50"] <= 1.0 and 0.0 <= d["all_four_accuracy"] <= 1.0
    assert set(d["attribute_accuracy"]) == {"shape", "color", "material", "size"}
