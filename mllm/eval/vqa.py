"""Visual question answering on generated scene questions: accuracy, steps, latency, failures.

    agentkit eval vqa --questions data/questions/questions.jsonl --scenes data/scenes \\
        --planner all --workers 2 --out runs/eval-vqa --json

Each question record (``mllm/worlds/questions.py``: ``id``, ``question``, ``answer``, ``family``,
``length``, ``image_filename``; or CLEVR's own question file, read by ``worlds/clevr.py``) runs
through ``Agent(planner=...)`` on its scene image. With
``audio_dir`` (a ``agentkit data gen speech`` folder with ``manifest.jsonl``), the questions that
have a clip also run spoken (``ask(audio=...)``), so spoken and typed accuracy compare on the
same questions.

Sharded and resumable: every (question, planner, model, typed|spoken) item is one job, run in
this process (``workers=1``) or as a Ray task (local Ray with ``num_cpus=workers``, or the
cluster at ``ray_address``). Each finished item is appended to ``<out>/results.jsonl`` at once,
keyed by question id, planner, model spec and modality, so a re-run skips what is there; an item
killed mid-run also resumes its own agent run from its checkpoint (``<out>/runs/<thread>``).

A model spec may contain ``{id}``, filled with the question id per item (``scripted:dir/{id}.json``
replays one script per question, which is how the tests drive the harness with a test double).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.runtime import BRANCHES, CODE_CONTEXTS, REHEAR
from agentkit.tools.base import PROMPT_STYLES

RESULTS = "results.jsonl"
PLANNERS = ("react", "plan", "program", "tree")

# -- answers -----------------------------------------------------------------------------------

_NUMBERS = {
    "zero": 0, "none": 0, "no": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_YES = {"yes", "true", "yeah", "yep", "correct"}
_NO = {"no", "false", "nope"}
_ARTICLES = {"a", "an", "the"}


def _tokens(text: str) -> list[str]:
    from agentkit.tools.detect import normalize_word

    words = re.findall(r"[a-z]+|\d+(?:\.\d+)?", str(text).lower())
    return [normalize_word(w) for w in words if w not in _ARTICLES]


def normalize_answer(text: Any) -> str:
    """A canonical short answer: lower case, no articles or punctuation, yes/no for their
    variants, digits for number words, the scene vocabulary's canonical words ("grey ball" ->
    "gray sphere", "metallic" -> "metal", "Three." -> "3")."""
    toks = _tokens(str(text))
    if len(toks) == 1:
        t = toks[0]
        if t in _YES:
            return "yes"
        if t in _NO:
            return "no"
        if t in _NUMBERS:
            return str(_NUMBERS[t])
        if re.fullmatch(r"\d+\.0+", t):
            return t.split(".")[0]
    return " ".join(toks)


def is_correct(predicted: str | None, expected: Any) -> bool:
    """Whether ``predicted`` says ``expected``, after :func:`normalize_answer`. A sentence counts
    when it leads with the yes/no, holds exactly one number, or names the expected word and no
    other value of the same attribute ("It is a red cube." for "red")."""
    from agentkit.tools.detect import ATTRIBUTES

    if predicted is None:
        return False
    p, e = normalize_answer(predicted), normalize_answer(expected)
    if p == e:
        return True
    toks = p.split()
    if not toks:
        return False
    if e in ("yes", "no"):
        return normalize_answer(toks[0]) == e
    if e.isdigit():
        nums = [t for t in toks if t.isdigit()] or [str(_NUMBERS[t]) for t in toks if t in _NUMBERS]
        return len(nums) == 1 and nums[0] == e
    for values in ATTRIBUTES.values():
        if e in values:
            named = {t for t in toks if t in values}
            return named == {e}
    return False


# -- items -------------------------------------------------------------------------------------


#: Tool calls allowed per question unless ``max_steps`` says otherwise.
MAX_STEPS = 8


def settings(
    *,
    verify: bool = True,
    prompt_style: str = "auto",
    constrain: bool = True,
    run_ahead: bool = True,
    relax: bool = True,
    reword: bool = True,
    rehear: int = REHEAR,
    code_context: str = "auto",
    constrain_words: bool = True,
    branches: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """The run's :class:`~agentkit.runtime.Options` that differ from their defaults (``auto``
    prompt style: what the model declares), as the items carry and key them (torch's threads
    too: they change no answer, but the items' latencies)."""
    out: dict[str, Any] = {}
    if not verify:
        out["verify"] = False
    if prompt_style != "auto":
        out["prompt_style"] = prompt_style
    if not constrain:
        out["constrain"] = False
    if not run_ahead:
        out["run_ahead"] = False
    if not relax:
        out["relax"] = False
    if not reword:
        out["reword"] = False
    if rehear != REHEAR:
        out["rehear"] = rehear
    if code_context != "auto":
        out["code_context"] = code_context
    if not constrain_words:
        out["constrain_words"] = False
    if branches != "auto":
        out["branches"] = branches
    if threads is not None:
        out["threads"] = threads
    return out


def item_key(
    qid: str,
    planner: str,
    model: str,
    modality: str = "typed",
    options: dict[str, Any] | None = None,
    tool_weights: dict[str, str] | None = None,
    max_steps: int = MAX_STEPS,
) -> str:
    """The cache key of one item: question id, planner, model spec, typed|spoken, a mark per
    option off its default (:func:`settings`), one per tool weights given and one for a step budget
    other than :data:`MAX_STEPS`, so runs with and without verification, prompted in another
    style, decoded without constraints, with another detector or speech model or another budget
    never mix."""
    marks = []
    for k, v in sorted((options or {}).items()):
        if v is False:
            marks.append(f"no-{k}")
        else:
            marks.append(f"prompt={v}" if k == "prompt_style" else f"{k}={v}")
    marks += [f"weights:{tool}={w}" for tool, w in sorted((tool_weights or {}).items())]
    if max_steps != MAX_STEPS:
        marks.append(f"max_steps={max_steps}")
    return json.dumps([str(qid), planner, model, modality, *marks])


def _thread(key: str, qid: str, planner: str, modality: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(qid))
    return f"vqa-{planner}-{modality}-{safe}-{digest}"


#: One agent per (model, planner, runs dir, tool weights and options) per worker process.
_AGENTS: dict[tuple[str, str, str, str], Any] = {}


def _agent(
    spec: str,
    planner: str,
    runs_dir: str,
    *,
    cache: bool,
    weights: dict[str, str],
    options: dict[str, Any],
) -> Any:
    """An agent for ``spec``; loaded once per worker process unless ``cache`` is off (a
    per-question spec, whose backend holds that question's script)."""
    from agentkit.graph import Agent
    from agentkit.mllm.backends.base import load_backend
    from agentkit.runtime import Options

    def build() -> Any:
        return Agent(
            load_backend(spec),
            planner=planner,
            runs_dir=runs_dir,
            options=Options(tool_weights=dict(weights), **options),
        )

    key = (spec, planner, runs_dir, json.dumps([weights, options], sort_keys=True))
    if not cache:
        return build()
    if key not in _AGENTS:
        _AGENTS[key] = build()
    return _AGENTS[key]


def run_item(
    question: dict[str, Any],
    *,
    image: str,
    planner: str,
    model: str,
    runs_dir: str,
    modality: str = "typed",
    audio: str | None = None,
    max_steps: int = MAX_STEPS,
    tool_weights: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ask one question and score it; never raises for a failed run (the error is recorded).
    ``options``: :class:`~agentkit.runtime.Options` off their defaults (:func:`settings`)."""
    qid = str(question["id"])
    options = options or {}
    key = item_key(qid, planner, model, modality, options, tool_weights, max_steps)
    thread = _thread(key, qid, planner, modality)
    spec = model.replace("{id}", qid)
    record: dict[str, Any] = {
        "key": key, "id": qid, "planner": planner, "model": model, "modality": modality,
        "family": question.get("family"), "length": question.get("length"),
        "question": question["question"], "expected": str(question["answer"]), "thread": thread,
    }  # fmt: skip
    t0 = time.perf_counter()
    try:
        agent = _agent(
            spec,
            planner,
            runs_dir,
            cache=spec == model,
            weights=tool_weights or {},
            options=options,
        )
        resumed = (Path(runs_dir) / thread / "run.json").exists()
        if resumed:  # killed mid-run earlier: continue from its last finished step
            res = agent.resume(thread)
        elif modality == "spoken":
            res = agent.ask(None, images=[image], audio=audio, max_steps=max_steps, thread=thread)
        else:
            res = agent.ask(
                question["question"], images=[image], max_steps=max_steps, thread=thread
            )
    except Exception as e:  # noqa: BLE001  one item's failure is a result, not the end of the run
        record.update(
            answer=None, correct=False, stop_reason="error", error=type(e).__name__,
            message=str(e)[:500], steps=0, tool_calls=0, tool_errors=0,
            seconds=time.perf_counter() - t0, resumed=False,
        )  # fmt: skip
        return record
    tools = [s for s in res.steps if s.role == "executor"]
    if modality == "spoken":  # what the speech model heard, to tell its errors from the agent's
        heard = [s.result for s in tools if s.tool == "transcribe" and s.result]
        record["heard"] = str(heard[0].get("text", "")) if heard else None
        # the other reading answered after the transcript's run failed (Options.rehear)
        record["reheard"] = res.question if heard and res.question != record["heard"] else None
    record.update(
        answer=res.answer,
        correct=is_correct(res.answer, question["answer"]),
        stop_reason=res.stop_reason,
        error=None,
        steps=len(res.steps),
        tool_calls=len(tools),
        tool_errors=sum(1 for s in tools if s.error),
        seconds=time.perf_counter() - t0,
        resumed=resumed,
    )
    return record


# -- metrics -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks; None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def failure_cause(r: dict[str, Any]) -> str | None:
    """Why an item is wrong: the error's kind, the stop reason when the run did not answer, or
    ``wrong_answer``; None when it is right."""
    if r.get("correct"):
        return None
    if r.get("error"):
        return f"error:{r['error']}"
    if r.get("answer") is None:
        return f"no_answer:{r.get('stop_reason') or 'unknown'}"
    if r.get("stop_reason") not in (None, "answered", "decider"):
        return f"stopped:{r['stop_reason']}"
    return "wrong_answer"


def _acc(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rs)
    right = sum(1 for r in rs if r.get("correct"))
    return {"n": n, "correct": right, "accuracy": round(right / n, 4) if n else None}


def heard_split(spoken: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Spoken items split by whether the transcript is what was said (the question's words,
    :func:`agentkit.mllm.eval.asr.normalise`d): accuracy on each part, so the speech model's
    share of a spoken-vs-typed gap reads apart from the agent's. Items without a recorded
    transcript (cached before it was kept) are counted as ``unknown``. ``reheard``: the items
    answered on another reading after the transcript's run failed, and how many of those are
    right."""
    from agentkit.mllm.eval.asr import normalise

    parts: dict[str, list[dict[str, Any]]] = {"exact": [], "misheard": [], "unknown": []}
    for r in spoken:
        if r.get("heard") is None:
            parts["unknown"].append(r)
        else:
            same = normalise(r["heard"]) == normalise(r["question"])
            parts["exact" if same else "misheard"].append(r)
    return {"exact": _acc(parts["exact"]), "misheard": _acc(parts["misheard"]),
            "unknown": len(parts["unknown"]),
            "reheard": _acc([r for r in spoken if r.get("reheard")])}  # fmt: skip


def metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall / per family / per program length, mean steps and tool calls, latency
    per question (median, p90, seconds) and failures by cause, for one planner's records."""
    by_family: dict[str, list] = defaultdict(list)
    by_length: dict[str, list] = defaultdict(list)
    for r in records:
        by_family[str(r.get("family"))].append(r)
        by_length[str(r.get("length"))].append(r)
    secs = [float(r["seconds"]) for r in records if not r.get("resumed")]
    n = len(records)
    med, p90 = percentile(secs, 50), percentile(secs, 90)
    return {
        **_acc(records),
        "per_family": {k: _acc(v) for k, v in sorted(by_family.items())},
        "per_length": {k: _acc(v) for k, v in sorted(by_length.items())},
        "mean_steps": round(sum(r["steps"] for r in records) / n, 3) if n else None,
        "mean_tool_calls": round(sum(r["tool_calls"] for r in records) / n, 3) if n else None,
        "latency_s": {
            "median": None if med is None else round(med, 4),
            "p90": None if p90 is None else round(p90, 4),
            "mean": round(statistics.fmean(secs), 4) if secs else None,
        },
        "failures": dict(Counter(c for r in records if (c := failure_cause(r))).most_common()),
    }


# -- the evaluation ----------------------------------------------------------------------------


def read_results(out: Path) -> dict[str, dict[str, Any]]:
    """Finished items by key. A torn last line (a kill while appending) is ignored."""
    path = Path(out) / RESULTS
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and "key" in r:
            done[r["key"]] = r
    return done


def _append(out: Path, record: dict[str, Any]) -> None:
    with (out / RESULTS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} {path} is not JSON lines: {e}") from e


def read_questions(path: Path) -> list[dict[str, Any]]:
    """The project's question records (JSON lines), or CLEVR's own question file (``.json``)."""
    if path.suffix == ".json":
        from agentkit.mllm.worlds.clevr import read_clevr_questions

        return read_clevr_questions(path)
    return _read_jsonl(path, "--questions")


def _jobs(
    questions: Sequence[dict[str, Any]],
    scenes_dir: Path,
    planners: Sequence[str],
    model: str,
    runs_dir: Path,
    clips: dict[str, Path],
    max_steps: int,
    tool_weights: dict[str, str],
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    jobs = []
    for planner in planners:
        for q in questions:
            for modality in ("typed", "spoken") if str(q["id"]) in clips else ("typed",):
                jobs.append({
                    "question": q, "image": str(scenes_dir / q["image_filename"]),
                    "planner": planner, "model": model, "runs_dir": str(runs_dir),
                    "modality": modality, "max_steps": max_steps, "tool_weights": tool_weights,
                    "options": options,
                    "audio": str(clips[str(q["id"])]) if modality == "spoken" else None,
                })  # fmt: skip
    return jobs


def evaluate(
    questions_file: Path,
    scenes_dir: Path,
    *,
    planner: str = "react",
    model: str,
    out: Path,
    workers: int = 1,
    ray_address: str | None = None,
    limit: int | None = None,
    audio_dir: Path | None = None,
    max_steps: int = MAX_STEPS,
    verify: bool = True,
    tool_weights: dict[str, str] | None = None,
    prompt_style: str = "auto",
    constrain: bool = True,
    run_ahead: bool = True,
    relax: bool = True,
    reword: bool = True,
    rehear: int = REHEAR,
    code_context: str = "auto",
    constrain_words: bool = True,
    branches: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or finish) the evaluation and return the report: per planner, :func:`metrics` of the
    typed items, and with ``audio_dir`` the spoken-vs-typed accuracy on the same questions.

    ``planner`` is one of react/plan/program/tree, or ``all`` for the four."""
    planners = list(PLANNERS) if planner == "all" else [planner]
    if any(p not in PLANNERS for p in planners):
        raise ConfigError(f"unknown planner {planner!r}; expected one of {', '.join(PLANNERS)} or all")  # fmt: skip
    for flag, value, allowed in (("--prompt-style", prompt_style, PROMPT_STYLES),
                                 ("--code-context", code_context, CODE_CONTEXTS),
                                 ("--branches", branches, BRANCHES)):  # fmt: skip
        if value not in ("auto", *allowed):
            raise ConfigError(f"{flag} {value!r} is invalid: expected auto, {', '.join(allowed)}")
    if workers < 1:
        raise ConfigError(f"--workers {workers} is invalid: expected an int >= 1")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} is invalid: expected an int >= 1")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} is invalid: expected an int >= 1")
    scenes_dir = Path(scenes_dir)
    if not scenes_dir.is_dir():
        raise ConfigError(f"--scenes {scenes_dir} is not a directory of scene images")
    questions = read_questions(Path(questions_file))[:limit]
    if not questions:
        raise ConfigError(f"--questions {questions_file} holds no questions")
    for q in questions:
        missing = [k for k in ("id", "question", "answer", "image_filename") if k not in q]
        if missing:
            raise ConfigError(f"question record lacks {missing}: {json.dumps(q)[:200]}")
        if not (scenes_dir / q["image_filename"]).is_file():
            raise ConfigError(f"scene image {scenes_dir / q['image_filename']} not found")
    clips: dict[str, Path] = {}
    if audio_dir is not None:
        audio_dir = Path(audio_dir)
        for r in _read_jsonl(audio_dir / "manifest.jsonl", "speech manifest"):
            clips[str(r["id"])] = audio_dir / r["audio"]
    options = settings(verify=verify, prompt_style=prompt_style, constrain=constrain,
                       run_ahead=run_ahead, relax=relax, reword=reword, rehear=rehear,
                       code_context=code_context, constrain_words=constrain_words, branches=branches,
                       threads=threads)  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = read_results(out)
    jobs = _jobs(
        questions,
        scenes_dir,
        planners,
        model,
        out / "runs",
        clips,
        max_steps,
        tool_weights or {},
        options,
    )

    def key(qid: Any, planner: str, modality: str) -> str:
        return item_key(str(qid), planner, model, modality, options, tool_weights, max_steps)

    todo = [j for j in jobs if key(j["question"]["id"], j["planner"], j["modality"]) not in done]

    def finished(record: dict[str, Any]) -> None:
        _append(out, record)
        done[record["key"]] = record

    from agentkit.parallel import run_jobs

    # each item is saved as it finishes: an interrupted evaluation resumes from there
    run_jobs(run_item, todo, workers=workers, ray_address=ray_address, desc="vqa",
             progress=progress, on_result=finished)  # fmt: skip
    report: dict[str, Any] = {
        "questions": len(questions), "model": model, "out": str(out), "verify": verify,
        "prompt_style": prompt_style, "constrain": constrain, "run_ahead": run_ahead,
        "relax": relax, "reword": reword, "rehear": rehear, "code_context": code_context, "constrain_words": constrain_words,
        "branches": branches, "threads": threads,
        "ran": len(todo), "cached": len(jobs) - len(todo), "planners": {},
    }  # fmt: skip
    for p in planners:
        report["planners"][p] = metrics([done[key(q["id"], p, "typed")] for q in questions])
        if clips:
            ids = [str(q["id"]) for q in questions if str(q["id"]) in clips]
            t = [done[key(i, p, "typed")] for i in ids]
            s = [done[key(i, p, "spoken")] for i in ids]
            ta, sa = _acc(t)["accuracy"], _acc(s)["accuracy"]
            report["planners"][p]["spoken_vs_typed"] = {
                "n": len(ids), "typed": ta, "spoken": sa,
                "gap_points": None if ta is None or sa is None else round(100 * (ta - sa), 2),
                "spoken_failures": metrics(s)["failures"],
                "heard": heard_split(s),
            }  # fmt: skip
    _write_summary(out, report)
    return report


def _write_summary(out: Path, report: dict[str, Any]) -> None:
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "report.json")
