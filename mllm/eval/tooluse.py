"""``agentkit eval tooluse``: GPT4Tools' success rates of a model on held-out tool-use samples.

Each held-out sample (``agentkit data gen tooluse``: ``test.jsonl`` for tools seen in training,
``test_unseen.jsonl`` for tools described only in the prompt) is cut before its last assistant
turn; the model writes that turn and it is compared with the reference, as GPT4Tools scores its
fine-tuned Vicuna:

* ``SR_thought`` — the model decided right whether a tool is needed (a call or a program where
  the reference has one; a final answer where it has none);
* ``SR_action`` — the right tool (a ReAct turn) or the right tools in the right order (a program);
* ``SR_args`` — the right arguments as well (values compared as data: key order, quotes and case
  of text do not matter; a program's variable names do not matter, what they refer to does);
* ``SR`` — the whole turn right: for a final answer or a decider/summarizer turn, the answer
  itself (normalised as in ``eval vqa``).

ReAct turns written as code actions (``agentkit data gen tooluse --actions code``) are scored
the same way: the line's tool and arguments against the reference line (names of earlier
results compared as written, the new line's own name not at all), or its ANSWER.

Figures come per split (seen / unseen), per sample kind and overall. Nothing the model writes is
executed: programs are parsed by :mod:`agentkit.planners.dsl`, ReAct turns by
:mod:`agentkit.mllm.toolcall`.
"""

from __future__ import annotations

import functools
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.backends.base import Backend, Message, generate, load_backend
from agentkit.mllm.eval.vqa import is_correct, normalize_answer
from agentkit.mllm.toolcall import FinalAnswer, parse
from agentkit.planners import dsl
from agentkit.planners.grammar import Line, ProgramGrammar
from agentkit.state import ToolCall

#: The files of a tooluse folder scored, and the split name each gets in the report.
SPLITS = {"seen": "test.jsonl", "unseen": "test_unseen.jsonl"}
METRICS = ("SR_thought", "SR_action", "SR_args", "SR")
#: Kinds whose turn is not a ReAct step (no "Observation:" stop).
_NOT_REACT = {"program", "decider", "summarizer", "decompose", "merge"}


# ---------------------------------------------------------------------------------- comparing


def _norm(value: Any, rename: dict[str, str] | None = None) -> Any:
    """A value as comparable data: text lower-cased and trimmed (variables renamed), numbers as
    floats, dicts with sorted keys."""
    if isinstance(value, str):
        if rename and value in rename:
            return rename[value]
        text = value.strip().lower()
        try:
            return float(text)
        except ValueError:
            return text
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_norm(v, rename) for v in value]
    if isinstance(value, dict):
        return {str(k).lower(): _norm(v, rename) for k, v in sorted(value.items())}
    return value


def same_args(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two argument dicts carry the same values (see :func:`_norm`)."""
    return bool(_norm(a) == _norm(b))


def canonical_program(program: dsl.Program) -> tuple[list[str], list[Any], Any]:
    """(tool names in order, normalised calls with variables numbered by line, the answer)."""
    rename = {c.name: f"${i}" for i, c in enumerate(program.calls) if c.name}
    calls = [_norm(c.args, rename) for c in program.calls]
    ans = program.answer
    answer = rename.get(ans["ref"], ans["ref"]) if "ref" in ans else _norm(ans.get("value"))
    return [c.tool for c in program.calls], calls, answer


def _final(text: str) -> str:
    """The answer of a final turn: the line after the last ``Final Answer:``, else the first."""
    i = text.lower().rfind("final answer:")
    rest = text[i + len("final answer:") :] if i >= 0 else text
    lines = rest.strip().splitlines()
    return lines[0].strip() if lines else ""


_CODE_LINE_RE = re.compile(r"\s*[A-Za-z_]\w* = ")
_EARLIER_LINE_RE = re.compile(r"^([A-Za-z_]\w*) = \w+\(", re.MULTILINE)


def earlier_names(prompt: str) -> list[str]:
    """The names the lines in a ``code`` actions prompt set (``objs = detect(...)``)."""
    return _EARLIER_LINE_RE.findall(prompt)


def score_turn(
    kind: str,
    predicted: str,
    reference: str,
    tools: Sequence[str],
    names: Sequence[str] = (),
) -> dict[str, bool]:
    """The four success flags of one predicted turn against the reference turn; a code-action
    turn (``name = tool(...)`` / ``ANSWER = name``) is read with the earlier lines' ``names``."""
    if kind == "program":
        return _score_program(predicted, reference, tools)
    if kind in ("tool_call", "final") and _CODE_LINE_RE.match(reference):
        return _score_code_line(predicted, reference, tools, names)
    if kind in ("decider", "summarizer", "merge"):
        ok = is_correct(_final(predicted), _final(reference))
        return dict.fromkeys(METRICS, ok)
    if kind == "decompose":
        return _score_decomposition(predicted, reference)
    ref = parse(reference, tools)
    got = parse(predicted, tools)
    if isinstance(ref, ToolCall):
        return _call_flags(got, ref)
    if isinstance(ref, FinalAnswer):
        thought = isinstance(got, FinalAnswer)
        ok = thought and is_correct(got.answer, ref.answer)  # type: ignore[union-attr]
        return {"SR_thought": thought, "SR_action": thought, "SR_args": thought, "SR": ok}
    raise ConfigError(f"the reference turn of a {kind!r} sample does not parse: {ref.message}")


def _call_flags(got: object, ref: ToolCall) -> dict[str, bool]:
    """A predicted turn against a reference call: a call, of the same tool, with the same
    arguments (SR is the last)."""
    thought = isinstance(got, ToolCall)
    action = thought and got.tool == ref.tool  # type: ignore[attr-defined]
    args = action and same_args(got.args, ref.args)  # type: ignore[attr-defined]
    return {"SR_thought": thought, "SR_action": action, "SR_args": args, "SR": args}


def _score_code_line(
    predicted: str, reference: str, tools: Sequence[str], names: Sequence[str]
) -> dict[str, bool]:
    """A code action against the reference line: the same tool with the same arguments (the new
    line's own name does not matter; the earlier names it passes do), or the same ANSWER."""
    ref = dsl.parse_line(reference, tools, names)
    try:
        got = dsl.parse_line(predicted, tools, names)
    except dsl.DSLError:
        return dict.fromkeys(METRICS, False)
    if isinstance(ref, ToolCall):
        return _call_flags(got, ref)
    thought = not isinstance(got, ToolCall)
    return {"SR_thought": thought, "SR_action": thought, "SR_args": thought,
            "SR": thought and _norm(got) == _norm(ref)}  # fmt: skip


def _score_decomposition(predicted: str, reference: str) -> dict[str, bool]:
    """A ``tree`` decomposition: split or kept whole as the reference (SR_thought), and the same
    sub-questions (SR; case and spacing aside)."""
    from agentkit.planners.tree import parse_subquestions

    got, ref = parse_subquestions(predicted, 8), parse_subquestions(reference, 8)
    thought = bool(got) == bool(ref)
    same = [" ".join(q.lower().split()) for q in got] == [" ".join(q.lower().split()) for q in ref]
    ok = thought and same and (bool(ref) or "sub-question" in predicted.lower())
    return {"SR_thought": thought, "SR_action": thought, "SR_args": ok, "SR": ok}


def _score_program(predicted: str, reference: str, tools: Sequence[str]) -> dict[str, bool]:
    from agentkit.planners.program import split_reply

    ref = dsl.parse_program(split_reply(reference)[1], tools)
    ref_tools, ref_calls, ref_answer = canonical_program(ref)
    try:
        got = dsl.parse_program(split_reply(predicted)[1], tools)
    except dsl.DSLError:
        return dict.fromkeys(METRICS, False)
    got_tools, got_calls, got_answer = canonical_program(got)
    action = got_tools == ref_tools
    args = action and got_calls == ref_calls
    return {"SR_thought": True, "SR_action": action, "SR_args": args,
            "SR": args and got_answer == ref_answer}  # fmt: skip


# ---------------------------------------------------------------------------------- running


def read_samples(
    path: Path, kinds: Sequence[str] = (), limit: int = 0, seed: int = 0
) -> list[dict[str, Any]]:
    """Held-out samples (the training reader's seeded sampling), each ending with the assistant
    turn to predict."""
    from agentkit.mllm.train._vlm import read_jsonl

    if not path.is_file():
        raise ConfigError(
            f"no held-out samples at {path}; make them with `agentkit data gen tooluse --out "
            f"{path.parent}`"
        )
    rows = read_jsonl(path, kinds, limit, seed)
    for row in rows:
        if row["messages"][-1].get("role") != "assistant":
            raise ConfigError(f"a sample in {path} does not end with the assistant turn to predict")
    return rows


def prompt_of(row: dict[str, Any]) -> list[Message]:
    """The sample's messages before its last assistant turn, as the backend takes them."""
    return [
        Message(
            role=m["role"],
            content=str(m["content"]),
            images=[Path(p) for p in m.get("images") or []],
        )
        for m in row["messages"][:-1]
    ]


def stops_of(row: dict[str, Any]) -> list[str] | None:
    """Where the sample's turn ends: a ReAct turn at its "Observation:", other kinds at EOS."""
    return None if row.get("kind") in _NOT_REACT else ["Observation:"]


_MEDIA_RE = re.compile(r"(?:^|, )([A-Za-z_]\w*) \(")


def read_task(row: dict[str, Any]) -> tuple[list[str], str]:
    """The media ids and the question of a sample's task turn (``planners/prompts/task.txt``:
    ``Images: image_0 (480x320 image)`` / ``Question: ...``)."""
    media: list[str] = []
    question = ""
    user = next((m for m in row["messages"] if m.get("role") == "user"), None)
    for line in str(user["content"] if user else "").splitlines():
        if line.startswith("Images: "):
            media = _MEDIA_RE.findall(line[len("Images: ") :])
        elif line.startswith("Question: ") and not question:
            question = line[len("Question: ") :].strip()
    return media, question


def grammar_of(row: dict[str, Any], words: bool = True) -> ProgramGrammar | None:
    """The grammar the agent decodes this sample's turn under (``Options.constrain``, and with
    ``words`` the question's word rule, ``Options.constrain_words``): a program sample is a
    whole program (``program`` planner), a code-action turn one line that may use the names the
    earlier lines set (``react`` with ``--actions code``); other turns (prose, JSON calls,
    decider and summarizer answers) are decoded free, as in the agent: None."""
    from agentkit.planners.expect import Expectation

    kind, reference = str(row.get("kind")), str(row["messages"][-1]["content"])
    code_turn = kind in ("tool_call", "final") and _CODE_LINE_RE.match(reference)
    if kind != "program" and not code_turn:
        return None
    media, question = read_task(row)
    rule = Expectation.of(question).words_for if words else None
    if kind == "program":
        return ProgramGrammar(_specs(), media=media, mode="program", words=rule)
    prompt = "\n".join(str(m["content"]) for m in row["messages"][1:-1])
    names = earlier_names(prompt)
    lines = prompt_lines(prompt, names, media)
    return ProgramGrammar(_specs(), media=media, variables=names, mode="line", words=rule,
                          lines=lines)  # fmt: skip


def prompt_lines(prompt: str, names: Sequence[str], media: Sequence[str] = ()) -> list[Line]:
    """The code lines of a ``code`` actions prompt (those :func:`earlier_names` reads, setting
    ``names``) as the word rule reads them; the agent reads them off its steps
    (:func:`agentkit.planners.roles.code_lines`)."""
    tools, known = list(_specs()), {*names, *media}
    before: list[str] = []  # the names the lines above set: what a line may pass
    out: list[Line] = []
    for text in prompt.splitlines():
        if not (m := _EARLIER_LINE_RE.match(text)):
            continue
        try:
            call = dsl.parse_line(text, tools, before, media=media)
        except dsl.DSLError:
            call = None
        before.append(m.group(1))
        if isinstance(call, ToolCall) and call.name:
            out.append(Line.of_call(call.name, call.tool, call.args, known))
    return out


@functools.cache
def _specs() -> dict[str, Any]:
    from agentkit.planners.roles import tool_specs
    from agentkit.tools.base import ToolRegistry

    return tool_specs(ToolRegistry.default())


def predict(
    backend: Backend, row: dict[str, Any], max_new_tokens: int = 256, constraint: Any = None
) -> str:
    """The model's version of the sample's last assistant turn (decoded under ``constraint``
    where the backend supports one)."""
    return generate(
        backend, prompt_of(row), max_new_tokens=max_new_tokens, stop=stops_of(row),
        constraint=constraint,
    ).text  # fmt: skip


def score_row(row: dict[str, Any], predicted: str, tools: Sequence[str]) -> dict[str, bool]:
    """The four flags of ``predicted`` as the sample's last turn (its reference)."""
    ref = str(row["messages"][-1]["content"])
    prompt = "\n".join(str(m["content"]) for m in row["messages"][1:-1])
    return score_turn(str(row.get("kind")), predicted, ref, tools, earlier_names(prompt))


def _rates(flags: Sequence[dict[str, bool]]) -> dict[str, Any]:
    n = len(flags)
    out: dict[str, Any] = {"n": n}
    for m in METRICS:
        out[m] = round(sum(f[m] for f in flags) / n, 4) if n else None
    return out


def evaluate(
    model: str | Backend,
    data: Path,
    splits: Sequence[str] = ("seen", "unseen"),
    kinds: Sequence[str] = (),
    limit: int = 0,
    seed: int = 0,
    max_new_tokens: int = 256,
    on_item: Callable[[int, int], None] | None = None,
    constrain: bool = False,
    constrain_words: bool = True,
) -> dict[str, Any]:
    """Score ``model`` on the held-out files of the tooluse folder ``data``; ``limit`` samples
    (seeded) per split. GPT4Tools scores free generation (the default); ``constrain`` decodes
    code turns as the agent does (:func:`grammar_of`; ``constrain_words``: with the question's
    word rule), which says how much of a model's tool use the decoder's rules carry. Returns the
    report (also what ``--json`` prints)."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; choose from {sorted(SPLITS)}")
    backend = load_backend(model) if isinstance(model, str) else model
    jobs = [(s, r) for s in splits for r in read_samples(data / SPLITS[s], kinds, limit, seed)]
    tools = all_tools()  # every name is callable: a wrong tool is a wrong action, not a non-call
    per: dict[tuple[str, str], list[dict[str, bool]]] = defaultdict(list)
    examples: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, (split, row) in enumerate(jobs):
        grammar = grammar_of(row, constrain_words) if constrain else None
        text = predict(backend, row, max_new_tokens, grammar)
        ref = str(row["messages"][-1]["content"])
        flags = score_row(row, text, tools)
        per[(split, str(row.get("kind")))].append(flags)
        if not flags["SR"] and len(examples) < 5:
            examples.append({"split": split, "kind": row.get("kind"), "predicted": text[:400],
                             "reference": ref[:400]})  # fmt: skip
        if on_item:
            on_item(i + 1, len(jobs))
    report: dict[str, Any] = {"model": getattr(backend, "name", str(model)), "data": str(data)}
    if constrain:
        report["decoding"] = "grammar and word rule" if constrain_words else "grammar"
    for split in splits:
        pooled = [f for (s, _), fs in per.items() if s == split for f in fs]
        report[split] = _rates(pooled) | {
            "by_kind": {k: _rates(fs) for (s, k), fs in sorted(per.items()) if s == split}
        }
    report["seconds_per_sample"] = round((time.perf_counter() - t0) / max(len(jobs), 1), 3)
    report["failures"] = examples
    return report


def all_tools() -> list[str]:
    from agentkit.tools.base import ToolRegistry

    return [t.name for t in ToolRegistry.default()]


__all__ = [
    "METRICS",
    "all_tools",
    "canonical_program",
    "evaluate",
    "grammar_of",
    "normalize_answer",
    "predict",
    "prompt_lines",
    "prompt_of",
    "read_task",
    "score_row",
    "score_turn",
]
