"""CLEVR v1.0's own files, read as this project's worlds: real renders to measure transfer on.

The embedded default learns only from the project's renders; the way to know whether it transfers
is CLEVR itself (Johnson et al. 2017, CC BY 4.0; download it yourself, nothing here fetches it).
Its files already speak this project's formats:

- ``CLEVR_v1.0/questions/CLEVR_val_questions.json``: ``{"info", "questions": [...]}``, each with
  ``question``, ``answer``, ``image_filename``, ``question_index`` and a functional ``program`` in
  the same node form as :mod:`programs` (``function``, ``inputs``, ``value_inputs``).
  :func:`read_clevr_questions` turns them into question records (``id``, ``family``, ``length`` read
  off the program by :func:`family` and :func:`program_length`, exactly as the question worlds
  assign them), so ``agentkit eval vqa --questions CLEVR_val_questions.json --scenes
  CLEVR_v1.0/images/val`` runs unchanged.
- ``CLEVR_v1.0/scenes/CLEVR_val_scenes.json``: ``{"info", "scenes": [...]}``, each with
  ``image_filename`` and ``objects`` (``shape``, ``color``, ``material``, ``size`` and
  ``pixel_coords``, the projected 3D centre ``[x, y, depth]``), which is what a hand-made
  inventory of any image needs too. :func:`read_scenes` reads that file, one scene JSON, a list
  of scenes, or a folder of this project's ``scene_*.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

#: CLEVR's comparisons of two counts (its ``compare_integer`` templates).
COUNT_COMPARISONS = frozenset({"greater_than", "less_than", "equal_integer"})


def _functions(program: Sequence[dict[str, Any]]) -> list[str]:
    # CLEVR's question files spell the node's function "function"; its older program files "type"
    return [str(n.get("function", n.get("type", ""))) for n in program]


def program_length(program: Sequence[dict[str, Any]]) -> int:
    """Reasoning length as the question worlds count it: one per referring phrase (a ``scene``
    node starts one), one per relation, same-attribute hop or superlative (``most``)."""
    return sum(
        f in ("scene", "relate", "most") or f.startswith("same_") for f in _functions(program)
    )


def family(program: Sequence[dict[str, Any]]) -> str:
    """The question family of a CLEVR program, in the question worlds' names (``count``,
    ``relate_exist``, ``compare_attribute``, ...). A same-attribute hop whose objects are
    filtered or queried ("How many other cubes are the same size as ...?", "What color is the
    other cube that is the same size as ...?") is ``same_other_count`` / ``_exist`` /
    ``_query``; with neither, ``same_count`` / ``same_exist`` ("How many other things ...").
    The families CLEVR never asks: a set without another (``difference``) is ``not_count`` /
    ``not_exist``, and a set's count against its own part's (``every``: "Are all the cubes
    red?", the part an ``intersect`` with the set, or any set when the first is the scene) is
    ``every``; a superlative's object (``most``, "the leftmost cube") queried, or the objects in
    a relation to it counted or found, is ``most_query`` / ``most_count`` / ``most_exist``, and
    ``nth_query`` / ``nth_count`` / ``nth_exist`` when it is ranked (an ordinal)."""
    fns = _functions(program)
    if not fns:
        raise ConfigError("a CLEVR program with no nodes")
    last = fns[-1]
    if last == "equal_integer" and universal_parts(program) is not None:
        return "every"
    if last in COUNT_COMPARISONS:
        return "compare_count"
    if "difference" in fns:
        return f"not_{last}"
    if last.startswith("equal_"):
        return "compare_attribute"
    if "most" in fns:  # "the leftmost cube", "the second cube from the left": not CLEVR's
        ranked = any(n.get("function", n.get("type")) == "most" and len(n.get("value_inputs") or [])
                     > 1 for n in program)  # fmt: skip
        kind = "nth" if ranked else "most"
        return f"{kind}_query" if last.startswith("query_") else f"{kind}_{last}"
    if any(f in ("union", "intersect") for f in fns):
        hop = "logic"
    elif any(f.startswith("same_") for f in fns):
        hop = "same"
    elif "relate" in fns:
        hop = "relate"
    else:
        hop = ""
    if hop == "same":
        first = next(i for i, f in enumerate(fns) if f.startswith("same_"))
        narrowed = any(f.startswith("filter_") for f in fns[first:])
        if narrowed or last.startswith("query_"):
            return "same_other_query" if last.startswith("query_") else f"same_other_{last}"
    if last.startswith("query_"):
        return f"{hop}_query" if hop else last
    return f"{hop}_{last}" if hop else last


def universal_parts(program: Sequence[dict[str, Any]]) -> tuple[int, int] | None:
    """For a comparison of two counts that compares a set with a part of it ("Are all the A
    V?": ``count(A)`` against ``count(intersect(A, V))``, or the whole scene's count against
    ``count(V)``), the nodes of A and of V; else None."""
    fns = _functions(program)
    whole, part = (program[i]["inputs"][0] for i in program[-1]["inputs"])
    if fns[whole] == "scene":
        return whole, part
    if fns[part] == "intersect" and whole in program[part]["inputs"]:
        return whole, next(i for i in program[part]["inputs"] if i != whole)
    return None


def _load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} {path} is not JSON: {e}") from e


def read_clevr_questions(path: str | Path) -> list[dict[str, Any]]:
    """Question records from CLEVR's question file (a ``.json`` holding ``"questions"``)."""
    p = Path(path)
    data = _load(p, "--questions")
    qs = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(qs, list):
        raise ConfigError(f"--questions {p} is JSON but not CLEVR's question file (no 'questions')")
    out = []
    for i, q in enumerate(qs):
        if "answer" not in q:
            raise ConfigError(
                f"question {q.get('question_index', i)} of {p} has no answer (CLEVR's test split "
                "has none): use the val or train questions"
            )
        program = q.get("program") or []
        rec = {
            "id": f"clevr-{q.get('split', 'q')}-{q.get('question_index', i)}",
            "question": q["question"],
            "answer": str(q["answer"]),
            "image_filename": q["image_filename"],
            "family": family(program) if program else "unknown",
            "length": program_length(program) if program else 0,
            "program": program,
            "source": "clevr",
        }
        out.append(rec)
    return out


def read_scenes(path: str | Path) -> list[dict[str, Any]]:
    """Scene graphs with ``image_filename`` and ``objects``: CLEVR's scenes file (``"scenes"``),
    one scene JSON, a JSON list of scenes, or a folder of ``scene_*.json``."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("scene_*.json"))
        if not files:
            raise ConfigError(f"no scene_*.json in {p}")
        scenes = [_load(f, "scene") for f in files]
    else:
        data = _load(p, "--scenes")
        if isinstance(data, dict) and "scenes" in data:
            scenes = data["scenes"]
        elif isinstance(data, dict) and "objects" in data:
            scenes = [data]
        elif isinstance(data, list):
            scenes = data
        else:
            raise ConfigError(
                f"{p} holds neither CLEVR's scenes file ('scenes'), a scene ('objects') nor a list"
            )
    for s in scenes:
        if not isinstance(s, dict) or "image_filename" not in s or "objects" not in s:
            raise ConfigError(f"a scene of {p} lacks 'image_filename' or 'objects'")
        for o in s["objects"]:
            missing = [
                k for k in ("shape", "color", "material", "size", "pixel_coords") if k not in o
            ]
            if missing:
                raise ConfigError(f"an object of {s['image_filename']} in {p} lacks {missing}")
    return scenes
