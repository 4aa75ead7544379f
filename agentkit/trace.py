"""Run traces: one JSONL event per line under the run directory, and a self-contained HTML view.

Events (each a JSON object with ``event`` and ``time``, Unix seconds):
``run_start`` (task, model, planner, thread), ``run_resume``, ``step`` (a :class:`Step` dumped),
``answer``, ``run_end`` (stop reason, seconds), ``error`` (an unrecoverable error's message).
"""

from __future__ import annotations

import base64
import html
import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from agentkit.state import Step

TRACE_FILE = "trace.jsonl"


class TraceWriter:
    """Appends events to ``<run_dir>/trace.jsonl``; each line is handed to the OS as it is
    written (line buffering), so a killed run keeps them. The file stays open between events
    (opening it per event was a tenth of the framework's time per question); :meth:`close`
    when the run ends, and a later event opens it again."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / TRACE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def event(self, event: str, **data: Any) -> None:
        record = {"event": event, "time": time.time(), **data}
        line = json.dumps(record, default=str, ensure_ascii=False)
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def step(self, step: Step) -> None:
        self.event("step", **step.model_dump(mode="json"))


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace; a line cut off by a killed process is skipped, not fatal."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


# ---------------------------------------------------------------------------------------------
# HTML view


def _data_url(path: Path) -> str:
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _boxes(result: dict[str, Any] | None) -> list[tuple[list[float], str]]:
    """Boxes a tool result carries: any list of dicts with a 4-number ``box``."""
    out: list[tuple[list[float], str]] = []
    if not result:
        return out
    for value in result.values():
        if isinstance(value, list):
            for item in value:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("box"), list)
                    and len(item["box"]) == 4
                ):
                    out.append((item["box"], str(item.get("label", ""))))
    return out


def _figure(path: Path, boxes: list[tuple[list[float], str]], masks: list[Path]) -> str:
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    layers = [f'<image href="{_data_url(path)}" width="{w}" height="{h}"/>']
    for m in masks:
        layers.append(f'<image href="{_data_url(m)}" width="{w}" height="{h}" opacity="0.45"/>')
    for (x0, y0, x1, y1), label in boxes:
        layers.append(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
            'fill="none" stroke="#ff3b30" stroke-width="2"/>'
            f'<text x="{x0 + 2:.1f}" y="{max(y0 - 3, 10):.1f}" fill="#ff3b30" font-size="11">{html.escape(label)}</text>'
        )
    return f'<svg viewBox="0 0 {w} {h}" width="{min(w, 480)}">{"".join(layers)}</svg>'


def render_html(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``trace.html`` for a run: the task, every step (thought, call, observation, error,
    timing) and its images with detected boxes and masks drawn. Images are embedded, so the file
    stands alone."""
    run_dir = Path(run_dir)
    events = read_events(run_dir / TRACE_FILE)
    media_index_path = run_dir / "media" / "index.json"
    media = json.loads(media_index_path.read_text()) if media_index_path.exists() else {}

    def media_path(mid: str) -> Path | None:
        return run_dir / "media" / media[mid] if mid in media else None

    parts = [
        "<!doctype html><meta charset='utf-8'><title>agentkit trace</title><style>",
        "body{font:14px system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}",
        ".step{border-left:4px solid #ccc;padding:.4em .8em;margin:.8em 0}",
        ".controller{border-color:#0a84ff}.executor{border-color:#34c759}.decider{border-color:#ff9f0a}",
        ".summarizer{border-color:#af52de}.err{color:#c00}pre{white-space:pre-wrap;margin:.2em 0}",
        ".meta{color:#888;font-size:12px}</style>",
    ]
    last_image: str | None = None
    for ev in events:
        kind = ev.get("event")
        if kind == "run_start":
            task = ev.get("task", {})
            parts.append(
                f"<h1>{html.escape(str(task.get('question') or '(spoken question)'))}</h1>"
            )
            parts.append(
                f"<p class=meta>thread {html.escape(str(ev.get('thread')))} · model "
                f"{html.escape(str(ev.get('model')))} · planner {html.escape(str(ev.get('planner')))}</p>"
            )
            for mid in ev.get("media", []):
                p = media_path(mid)
                if p is not None and p.suffix == ".png":
                    last_image = mid
                    parts.append(f"<p><b>{html.escape(mid)}</b><br>{_figure(p, [], [])}</p>")
        elif kind == "run_resume":
            parts.append("<p class=meta>— resumed —</p>")
        elif kind == "step":
            role = html.escape(str(ev.get("role")))
            parts.append(f"<div class='step {role}'><b>{role}</b>")
            if ev.get("thought"):
                parts.append(f"<pre>Thought: {html.escape(ev['thought'])}</pre>")
            if ev.get("tool"):
                parts.append(
                    f"<pre>Action: {html.escape(ev['tool'])}\nAction Input: "
                    f"{html.escape(json.dumps(ev.get('args'), ensure_ascii=False))}</pre>"
                )
            if ev.get("observation") and not ev.get("error"):
                parts.append(f"<pre>Observation: {html.escape(ev['observation'])}</pre>")
            if ev.get("error"):
                parts.append(f"<pre class=err>Error: {html.escape(ev['error'])}</pre>")
            args = ev.get("args") or {}
            ref = args.get("image") if isinstance(args.get("image"), str) else last_image
            boxes = _boxes(ev.get("result"))
            produced = [media_path(m) for m in ev.get("media", [])]
            masks = [p for p in produced if p is not None and p.name.startswith("mask")]
            base = media_path(ref) if ref else None
            if role == "executor" and base is not None and (boxes or masks):
                parts.append(_figure(base, boxes, masks))
            for p in produced:
                if p is not None and p.suffix == ".png" and not p.name.startswith("mask"):
                    parts.append(_figure(p, [], []))
            parts.append(
                f"<div class=meta>{float(ev.get('seconds') or 0):.3f} s"
                + (
                    f" · {ev['model']} · {ev.get('tokens_in')}→{ev.get('tokens_out')} tokens"
                    if ev.get("model")
                    else ""
                )
                + "</div></div>"
            )
        elif kind == "answer":
            parts.append(f"<h2>Answer: {html.escape(str(ev.get('answer')))}</h2>")
        elif kind == "error":
            parts.append(f"<p class=err>Run stopped: {html.escape(str(ev.get('message')))}</p>")
    out_path = Path(out) if out else run_dir / "trace.html"
    out_path.write_text("\n".join(parts), encoding="utf-8")
    return out_path
