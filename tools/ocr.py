"""ocr: read text lines in an image, with their boxes.

Backed by rapidocr 3.x (PP-OCR detection + recognition ONNX models shipped in its wheel, run with
onnxruntime, offline), set up as measured for rendered UI text: the detector's input is capped
at 960 px on the long side instead of upscaling small images (which was slow and split words),
and the angle classifier is off (screens and signs are upright). Tesseract (Debian's
``tesseract-ocr``, run as a subprocess) is the fallback when rapidocr is not installed.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agentkit.errors import ToolError
from agentkit.tools._vision import BoxXYXY, round_box

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from agentkit.tools.base import ToolContext

NAME = "ocr"
DESCRIPTION = """Read the text in an image (screenshots, signs, labels). Returns each text line with
its box [x1, y1, x2, y2] in pixels and a confidence score."""
TIMEOUT = 60.0
PURE = True  # reads its inputs only: may run ahead and be reused
#: rapidocr settings (its params dict): see the module docstring for why.
RAPIDOCR_PARAMS: dict[str, Any] = {
    "Det.limit_type": "max",
    "Det.limit_side_len": 960,
    "Global.use_cls": False,
    "Global.log_level": "error",
}
Engine = Literal["auto", "rapidocr", "tesseract"]


class Args(BaseModel):
    image: str = Field(description="Media id (image_0) or path of the image.")
    min_score: float = Field(
        0.5, ge=0.0, le=1.0, description="Drop lines read with less confidence, 0-1."
    )
    engine: Engine = Field(
        "auto", description="rapidocr, tesseract, or auto (rapidocr if installed)."
    )


class TextLine(BaseModel):
    text: str
    box: BoxXYXY = Field(description="[x1, y1, x2, y2] in original-image pixels.")
    score: float = Field(description="Recognition confidence, 0-1.")


class Result(BaseModel):
    lines: list[TextLine] = Field(description="Text lines, by top edge, then left edge.")
    engine: str = Field(description="Which OCR engine read them.")


def has_rapidocr() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("rapidocr") is not None
        and importlib.util.find_spec("onnxruntime") is not None
    )


def pick_engine(wanted: Engine) -> str:
    if wanted in ("auto", "rapidocr") and has_rapidocr():
        return "rapidocr"
    if wanted in ("auto", "tesseract") and shutil.which("tesseract"):
        return "tesseract"
    missing = {
        "auto": "neither rapidocr nor tesseract",
        "rapidocr": "rapidocr",
        "tesseract": "tesseract",
    }[wanted]
    raise ToolError(
        f"ocr needs {missing}: `pip install rapidocr onnxruntime` (preferred, offline models in the wheel) "
        "or `apt-get install tesseract-ocr`"
    )


def load_rapidocr() -> Any:
    from rapidocr import RapidOCR

    return RapidOCR(params=dict(RAPIDOCR_PARAMS))


def read_rapidocr(engine: Any, image: PILImage.Image) -> list[TextLine]:
    # A PIL image: rapidocr converts it RGB -> BGR itself (a bare ndarray is taken as BGR).
    out = engine(image)
    if out.boxes is None or out.txts is None:
        return []
    lines = []
    for quad, text, score in zip(out.boxes, out.txts, out.scores, strict=True):
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]  # the quad's corners -> its XYXY hull
        lines.append(
            TextLine(
                text=text,
                box=round_box([min(xs), min(ys), max(xs), max(ys)]),
                score=round(float(score), 4),
            )
        )
    return lines


def read_tesseract(image: PILImage.Image) -> list[TextLine]:
    """Tesseract's TSV words grouped into lines (block, paragraph, line); score = mean word conf."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "in.png"
        image.save(p)
        proc = subprocess.run(
            ["tesseract", str(p), "stdout", "tsv"], capture_output=True, text=True, timeout=60
        )
    if proc.returncode != 0:
        raise ToolError(f"tesseract failed: {proc.stderr.strip()[-300:]}")
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(proc.stdout), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") == "5" and (row.get("text") or "").strip() and float(row["conf"]) >= 0:
            groups.setdefault((row["block_num"], row["par_num"], row["line_num"]), []).append(row)
    lines = []
    for words in groups.values():
        lines.extend(_split_on_gaps(sorted(words, key=lambda w: int(w["left"]))))
    return lines


def _split_on_gaps(words: list[dict[str, str]]) -> list[TextLine]:
    """One tesseract line -> text lines, cut where words are further apart than the text is tall:
    on a screen, "Settings      Wi-Fi" are two labels (rapidocr reports them apart too)."""
    height = max(int(w["height"]) for w in words)
    runs: list[list[dict[str, str]]] = [[words[0]]]
    for prev, w in zip(words, words[1:], strict=False):
        gap = int(w["left"]) - (int(prev["left"]) + int(prev["width"]))
        if gap > height:
            runs.append([])
        runs[-1].append(w)
    out = []
    for run_ in runs:
        x1 = min(int(w["left"]) for w in run_)
        y1 = min(int(w["top"]) for w in run_)
        x2 = max(int(w["left"]) + int(w["width"]) for w in run_)
        y2 = max(int(w["top"]) + int(w["height"]) for w in run_)
        score = sum(float(w["conf"]) for w in run_) / len(run_) / 100
        out.append(
            TextLine(
                text=" ".join(w["text"] for w in run_), box=[x1, y1, x2, y2], score=round(score, 4)
            )
        )
    return out


def run(args: Args, ctx: ToolContext) -> Result:
    image = ctx.image(args.image)
    engine = pick_engine(args.engine)
    if engine == "rapidocr":
        lines = read_rapidocr(ctx.models.get("ocr", "rapidocr", "cpu", load_rapidocr), image)
    else:
        lines = read_tesseract(image)
    lines = [ln for ln in lines if ln.score >= args.min_score]
    lines.sort(key=lambda ln: (ln.box[1], ln.box[0]))
    return Result(lines=lines, engine=engine)


def summary(result: Result) -> str:
    if not result.lines:
        return "No text found."
    return f"{len(result.lines)} lines: " + "; ".join(
        f'"{ln.text}" {[round(v) for v in ln.box]}' for ln in result.lines
    )
