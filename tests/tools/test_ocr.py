"""ocr: rendered UI text read exactly, boxes where the text was drawn, engines and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from agentkit.state import ToolCall
from agentkit.tools import ocr
from agentkit.tools.base import ModelCache, Tool, ToolContext, ToolRegistry, call_tool, execute

LABELS = {"Settings": (24, 20), "Battery 87%": (24, 80), "Wi-Fi": (220, 20)}


@pytest.fixture
def screen(tmp_path) -> tuple[Path, dict[str, list[float]]]:
    """A phone-settings-like screen and the box PIL drew each label in."""
    im = Image.new("RGB", (360, 140), (245, 245, 245))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(
        size=22
    )  # DejaVu Sans where installed, Pillow's own font otherwise
    boxes = {}
    for text, xy in LABELS.items():
        draw.text(xy, text, fill=(20, 20, 20), font=font)
        boxes[text] = list(draw.textbbox(xy, text, font=font))
    p = tmp_path / "screen.png"
    im.save(p)
    return p, boxes


def center_inside(box, outer, slack=4):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


@pytest.mark.skipif(not ocr.has_rapidocr(), reason="rapidocr not installed")
def test_rapidocr_reads_ui_labels_exactly(screen):
    path, boxes = screen
    ctx = ToolContext(models=ModelCache())
    res = call_tool(Tool.from_module(ocr), {"image": str(path)}, ctx)
    assert res.engine == "rapidocr"
    assert sorted(ln.text for ln in res.lines) == sorted(LABELS)
    for ln in res.lines:
        assert center_inside(ln.box, boxes[ln.text]) and ln.score > 0.9
    assert [ln.text for ln in res.lines][0] in ("Settings", "Wi-Fi")  # top row first
    assert '"Battery 87%"' in Tool.from_module(ocr).observe(res)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")
def test_tesseract_fallback(screen):
    path, boxes = screen
    res = ocr.run(
        ocr.Args(image=str(path), engine="tesseract", min_score=0.0),
        ToolContext(models=ModelCache()),
    )
    assert res.engine == "tesseract"
    read = {ln.text: ln for ln in res.lines}
    assert set(read) == set(LABELS)
    for text, ln in read.items():
        assert center_inside(ln.box, boxes[text])


def test_no_engine_is_a_clear_recorded_error(screen, monkeypatch):
    monkeypatch.setattr(ocr, "has_rapidocr", lambda: False)
    monkeypatch.setattr(ocr.shutil, "which", lambda _: None)
    reg = ToolRegistry([Tool.from_module(ocr)])
    step = execute(
        ToolCall(tool="ocr", args={"image": str(screen[0])}), reg, ToolContext(models=ModelCache())
    )
    assert (
        step.error
        and "pip install rapidocr" in step.error
        and "apt-get install tesseract-ocr" in step.error
    )


def test_blank_image_has_no_text(tmp_path):
    if not ocr.has_rapidocr():
        pytest.skip("rapidocr not installed")
    p = tmp_path / "blank.png"
    Image.new("RGB", (200, 100), "white").save(p)
    res = ocr.run(ocr.Args(image=str(p)), ToolContext(models=ModelCache()))
    assert res.lines == [] and ocr.summary(res) == "No text found."
