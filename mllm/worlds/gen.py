"""Generate the worlds at scale: scenes, questions and spoken questions, resumable and parallel.

Each world writes into its own folder, one item at a time, and an item counts as done when its
last file is on disk, so re-running the same command skips what exists and finishes the rest:

* ``gen_scenes``: ``scene_{seed:06d}.png`` + ``.json`` for seeds ``seed .. seed+n-1``;
* ``gen_questions``: ``parts/part_{k:05d}_{digest}.jsonl`` per chunk of scenes (answers are
  balanced within a chunk; the digest covers the chunk's scene files and the options), then
  ``questions.jsonl`` (all parts, in scene order) and ``summary.json``;
* ``gen_speech``: ``{id}.wav`` + ``{id}.json`` per question, then ``manifest.jsonl`` and
  ``summary.json``.

Work runs in-process when ``workers == 1`` and no Ray address is given, otherwise as Ray tasks:
a local Ray started with ``num_cpus=workers``, or the cluster at ``ray_address``. Every item's
randomness comes from the seed and the item's key, never from the worker or the order, so the
ground truth is the same bytes whichever way it ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.parallel import run_jobs

SCENE_CHUNK = 25  # scenes per question batch: the unit of answer balancing and of resuming


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON at ``path``, or None when it is missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _check_n(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"--n {n!r} is invalid: expected a whole number >= 1")


# -- scenes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to fd 2 for a while: Blender logs to the C-level stdout, which must stay clean
    for ``--json`` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _scene_job(seed: int, out_dir: str, options: dict[str, Any]) -> int:
    from agentkit.mllm.worlds.render import make_scene

    with _stdout_to_stderr():
        return len(make_scene(seed, Path(out_dir), **options)["objects"])


def gen_scenes(
    out: Path,
    *,
    n: int,
    seed: int = 0,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    **render_options: Any,
) -> dict[str, Any]:
    """Render scenes for seeds ``seed .. seed+n-1`` into ``out`` (skipping finished ones).

    ``render_options`` go to ``render.make_scene`` (``width``, ``height``, ``samples``, ``split``,
    ...). Returns and writes ``summary.json``: counts of scenes, objects and attribute values.
    """
    _check_n(n)
    try:
        from agentkit.mllm.worlds import render  # noqa: F401  (bpy is imported lazily inside)
    except ImportError as e:
        raise ConfigError(
            f"the scene renderer (agentkit.mllm.worlds.render) is not available: {e}"
        ) from e
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if workers > 1 and "threads" not in render_options:
        # share the cores among the workers instead of every Cycles grabbing all of them
        render_options["threads"] = max(1, (os.cpu_count() or 1) // workers)
    seeds = [seed + i for i in range(n)]
    todo = [s for s in seeds if _read_json(out / f"scene_{s:06d}.json") is None]
    jobs = [{"seed": s, "out_dir": str(out), "options": render_options} for s in todo]
    t0 = time.perf_counter()
    run_jobs(_scene_job, jobs, workers=workers, ray_address=ray_address, desc="scenes",
             progress=progress)  # fmt: skip
    seconds = time.perf_counter() - t0
    counts: dict[str, Counter[str]] = {
        k: Counter() for k in ("objects", "shape", "color", "material", "size")
    }
    for s in seeds:
        scene = _read_json(out / f"scene_{s:06d}.json")
        if scene is None:
            raise ConfigError(f"scene {s} was not written to {out}; re-run to retry it")
        counts["objects"][str(len(scene["objects"]))] += 1
        for o in scene["objects"]:
            for k in ("shape", "color", "material", "size"):
                counts[k][o[k]] += 1
    summary = {"world": "scenes", "n": n, "seed": seed, "first_seed": seed, "last_seed": seed + n - 1,
               **{k: dict(sorted(v.items())) for k, v in counts.items()}}  # fmt: skip
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return {
        **summary,
        "generated": len(todo),
        "skipped": n - len(todo),
        "seconds": round(seconds, 2),
    }


# -- questions ---------------------------------------------------------------------------------


def _question_job(
    paths: list[str],
    seed: int,
    per_scene: int,
    families: list[str],
    out_file: str,
    phrasings: str = "templates",
) -> int:
    from agentkit.mllm.worlds.questions import generate_questions

    scenes = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    qs = generate_questions(
        scenes, per_scene=per_scene, seed=seed, families=families, phrasings=phrasings
    )
    _write_atomic(Path(out_file), "".join(json.dumps(q) + "\n" for q in qs))
    return len(qs)


def gen_questions(
    out: Path,
    *,
    scenes_dir: Path,
    n: int | None = None,
    seed: int = 0,
    per_scene: int = 10,
    families: Sequence[str] | None = None,
    phrasings: str = "templates",
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Questions about the first ``n`` scenes (all when None) of ``scenes_dir``, ``per_scene`` each,
    drawn in ``phrasings`` (the templates', CLEVR's others, or mixed).

    Writes ``questions.jsonl`` and ``summary.json`` (per-family answer balance, lengths) to ``out``.
    """
    from agentkit.mllm.worlds.questions import (
        FAMILIES,
        answer_balance,
        check_families,
        check_phrasings,
        trim_to_balance,
    )

    _check_n(n)
    if per_scene < 1:
        raise ConfigError(f"--per-scene {per_scene} is invalid: expected >= 1")
    fams = check_families(families or FAMILIES)
    check_phrasings(phrasings)
    scenes_dir = Path(scenes_dir)
    if not scenes_dir.is_dir():
        raise ConfigError(f"--scenes {scenes_dir} is not a directory; render scenes first with "
                          "`agentkit data gen scenes --out DIR --n N`")  # fmt: skip
    paths = sorted(scenes_dir.glob("scene_*.json"))
    if not paths:
        raise ConfigError(f"no scene_*.json files in {scenes_dir}")
    if n is not None and n > len(paths):
        raise ConfigError(f"--n {n} asks for more scenes than {scenes_dir} holds ({len(paths)})")
    paths = paths[: n or len(paths)]
    out = Path(out)
    (out / "parts").mkdir(parents=True, exist_ok=True)

    jobs, part_files = [], []
    for k in range(0, len(paths), SCENE_CHUNK):
        chunk = paths[k : k + SCENE_CHUNK]
        # the templates' phrasings hash as they did before there were others: same parts
        key = [seed, per_scene, fams] + ([phrasings] if phrasings != "templates" else [])
        h = hashlib.sha256(json.dumps(key).encode())
        for p in chunk:
            h.update(p.name.encode())
            h.update(p.read_bytes())
        part = out / "parts" / f"part_{k // SCENE_CHUNK:05d}_{h.hexdigest()[:12]}.jsonl"
        part_files.append(part)
        if not part.exists():
            chunk_seed = int.from_bytes(h.digest()[:8], "little")
            jobs.append({"paths": [str(p) for p in chunk], "seed": chunk_seed,
                         "per_scene": per_scene, "families": fams, "out_file": str(part),
                         "phrasings": phrasings})  # fmt: skip
    run_jobs(_question_job, jobs, workers=workers, ray_address=ray_address, desc="questions",
             progress=progress)  # fmt: skip
    for stale in set((out / "parts").glob("part_*.jsonl")) - set(part_files):
        stale.unlink()  # from an earlier run with other scenes or options
    generated = [
        json.loads(line) for p in part_files for line in p.read_text(encoding="utf-8").splitlines()
    ]
    qs = trim_to_balance(generated)  # chunks balance alone; make the union exact
    _write_atomic(out / "questions.jsonl", "".join(json.dumps(q) + "\n" for q in qs))
    summary = {
        "world": "questions", "scenes": len(paths), "questions": len(qs), "seed": seed,
        "dropped_for_balance": len(generated) - len(qs),
        "per_scene": per_scene, "phrasings": phrasings, "lengths": dict(sorted(Counter(str(q["length"]) for q in qs).items())),
        "families": answer_balance(qs),
    }  # fmt: skip
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return {**summary, "generated_parts": len(jobs), "skipped_parts": len(part_files) - len(jobs)}


# -- speech ------------------------------------------------------------------------------------


def _speech_job(
    question: dict[str, Any], out_dir: str, seed: int, engines: list[str]
) -> dict[str, Any]:
    from agentkit.mllm.worlds.speech import speak_question

    return speak_question(question, Path(out_dir), seed=seed, engines=engines)


def gen_speech(
    out: Path,
    *,
    questions_file: Path,
    n: int | None = None,
    seed: int = 0,
    engines: Sequence[str] | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Speak the first ``n`` questions (all when None) of a questions JSONL into ``out``.

    Writes ``{id}.wav`` (16 kHz mono) + ``{id}.json`` per question, ``manifest.jsonl`` and
    ``summary.json``. ``engines`` defaults to all three; a missing one is a clear error.
    """
    from agentkit.mllm.worlds.speech import ENGINES, require_engines

    _check_n(n)
    engines = list(engines or ENGINES)
    require_engines(engines)
    questions_file = Path(questions_file)
    if not questions_file.is_file():
        raise ConfigError(f"--questions {questions_file} is not a file; generate one with "
                          "`agentkit data gen questions --scenes DIR --out DIR`")  # fmt: skip
    try:
        qs = [
            json.loads(line)
            for line in questions_file.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except json.JSONDecodeError as e:
        raise ConfigError(f"{questions_file} is not JSON lines: {e}") from e
    if not qs:
        raise ConfigError(f"{questions_file} holds no questions")
    if n is not None and n > len(qs):
        raise ConfigError(
            f"--n {n} asks for more questions than {questions_file} holds ({len(qs)})"
        )
    qs = qs[: n or len(qs)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [q for q in qs if _read_json(out / f"{q.get('id')}.json") is None]
    jobs = [{"question": q, "out_dir": str(out), "seed": seed, "engines": engines} for q in todo]
    run_jobs(_speech_job, jobs, workers=workers, ray_address=ray_address, desc="speech",
             progress=progress)  # fmt: skip
    found = [_read_json(out / f"{q['id']}.json") for q in qs]
    records = [r for r in found if r is not None]
    if len(records) != len(found):
        raise ConfigError(f"some clips were not written to {out}; re-run to retry them")
    _write_atomic(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "world": "speech", "clips": len(records), "seed": seed, "engines": engines,
        "per_engine": dict(sorted(Counter(r["engine"] for r in records).items())),
        "voices": len({(r["engine"], r["voice"]) for r in records}),
        "hours": round(sum(r["duration_s"] for r in records) / 3600, 4),
    }  # fmt: skip
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return {**summary, "generated": len(todo), "skipped": len(qs) - len(todo)}
