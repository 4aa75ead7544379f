"""The ``program`` planner's language: a few lines of tool calls, read without ever running Python.

A program (VisProg-style) names each tool result and ends with the answer::

    objs = detect(image=image_0, classes=["cube"])
    reds = count(detections=objs, where={"color": "red"})
    ANSWER = reds

:func:`parse_program` reads the text with :func:`ast.parse` (``mode="exec"``) **only to get a
syntax tree**; nothing is compiled, evaluated or executed. The tree is walked against a strict
whitelist:

* every line is ``name = tool(key=value, ...)``: one plain name on the left (new, not starting
  with ``_``, not a tool name), a call of a *registered tool* with keyword arguments only;
* a value is a constant (str, int, float, bool, None), a list / tuple / dict of values (dict keys
  are strings), a minus sign on a number, or a name: an earlier variable (its result is passed,
  see :func:`agentkit.tools.base.ref_value`) or a media id of the run (``image_0``, passed as is);
* the last line is ``ANSWER = name`` (or a constant, or a tool call whose result is the answer).

Anything else — attribute access, subscripts, lambdas, comprehensions, imports, f-strings,
operators, calls of non-tools, positional arguments, undefined names, reassignments, more than
:data:`MAX_LINES` lines or :data:`MAX_CHARS` bytes — is a :class:`DSLError` naming the line and what
is not allowed; the planner shows it to the controller, which may rewrite the program.

Markdown code fences around the program are dropped. :func:`format_answer` turns the ANSWER's value
into the short answer: ``True/False`` → ``yes``/``no``, an integral float → an integer string,
a tool result → its one answer field (``count``'s ``count``, ``calculate``'s ``value``); a list is
an error (the program should end with ``count(...)`` when the question asks how many).
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Collection, Iterable
from typing import Any

from pydantic import BaseModel, Field

from agentkit.errors import ParseFailure
from agentkit.state import Step, ToolCall

__all__ = [
    "DSLError",
    "Program",
    "format_answer",
    "digest",
    "format_line",
    "format_program",
    "parse_line",
    "parse_program",
    "read_answer",
    "strip_fences",
]

MAX_LINES = 20
MAX_CHARS = 4096
ANSWER = "ANSWER"
#: A bare name that is not a variable is read as a media id when it looks like one.
MEDIA_ID_RE = re.compile(r"[a-z][a-z0-9]*_\d+\Z")
#: Result fields that hold "the answer" of a tool, in the order they are tried.
ANSWER_FIELDS = ("answer", "caption", "count", "value", "text", "label", "exists")

_NOT_ALLOWED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (a.b)",
    ast.Subscript: "subscripts (x[0])",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.NamedExpr: "the walrus operator (:=)",
    ast.BinOp: "arithmetic operators (use the calculate tool)",
    ast.BoolOp: "and/or",
    ast.Compare: "comparisons",
    ast.IfExp: "conditional expressions",
    ast.Starred: "* unpacking",
    ast.Set: "sets (use a list)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
    ast.Import: "imports",
    ast.ImportFrom: "imports",
    ast.FunctionDef: "function definitions",
    ast.AsyncFunctionDef: "function definitions",
    ast.ClassDef: "class definitions",
    ast.For: "loops",
    ast.AsyncFor: "loops",
    ast.While: "loops",
    ast.If: "if statements",
    ast.With: "with statements",
    ast.AsyncWith: "with statements",
    ast.Try: "try statements",
    ast.Raise: "raise",
    ast.Return: "return",
    ast.Delete: "del",
    ast.Assert: "assert",
    ast.Global: "global",
    ast.Nonlocal: "nonlocal",
    ast.Pass: "pass",
    ast.Break: "break",
    ast.Continue: "continue",
    ast.AnnAssign: "annotated assignments",
    ast.AugAssign: "augmented assignments (+=)",
    ast.Match: "match statements",
}


class DSLError(ParseFailure):
    """A program that is not in the language; ``line`` is 1-based (0: the whole text)."""

    def __init__(self, message: str, line: int = 0):
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class Program(BaseModel):
    """A parsed program: the calls in order (each named by its variable) and the answer."""

    calls: list[ToolCall] = Field(description="One call per line; ``call.name`` is its variable.")
    answer: dict[str, Any] = Field(
        description='{"ref": variable} or {"value": constant}: what ANSWER was set to.'
    )
    source: str = Field(description="The program text, fences removed.")


def strip_fences(text: str) -> str:
    """The program inside the first Markdown code fence, or the text without fence lines."""
    lines = text.replace("\r\n", "\n").split("\n")
    fences = [i for i, ln in enumerate(lines) if ln.strip().startswith(("```", "~~~"))]
    if len(fences) >= 2:
        lines = lines[fences[0] + 1 : fences[1]]
    else:
        lines = [ln for i, ln in enumerate(lines) if i not in fences]
    return "\n".join(lines).strip("\n")


def _what(node: ast.AST) -> str:
    for cls, name in _NOT_ALLOWED.items():
        if isinstance(node, cls):
            return name
    if isinstance(node, ast.Call):
        return "calls inside arguments (give each call its own line)"
    if isinstance(node, ast.Constant):
        return f"the {type(node.value).__name__} constant {node.value!r:.40}"
    return f"{type(node).__name__} ({ast.dump(node)[:40]}...)"


class _Reader:
    def __init__(self, tools: Collection[str], media: Collection[str] | None):
        self.tools = set(tools)
        self.media = set(media) if media is not None else None
        self.variables: list[str] = []

    # -- values -------------------------------------------------------------------------

    def value(self, node: ast.expr, line: int, names: set[str], texts: set[str]) -> Any:
        """A whitelisted value as JSON data; names become their string (resolved later)."""
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str):
                texts.add(v)
                return v
            if v is None or isinstance(v, bool):
                return v
            if isinstance(v, int | float):
                if isinstance(v, float) and not math.isfinite(v):
                    raise DSLError(f"the number {v!r} is not finite", line)
                return v
            raise DSLError(f"not allowed: {_what(node)}; use str, int, float, bool or None", line)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            num = node.operand.value if isinstance(node.operand, ast.Constant) else None
            if not isinstance(num, int | float) or isinstance(num, bool):
                raise DSLError("a sign is only allowed before a number", line)
            if not math.isfinite(num):
                raise DSLError(f"the number {num!r} is not finite", line)
            return -num if isinstance(node.op, ast.USub) else num
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e, line, names, texts) for e in node.elts]
        if isinstance(node, ast.Dict):
            out: dict[str, Any] = {}
            for key, item in zip(node.keys, node.values, strict=True):
                if key is None:
                    raise DSLError("not allowed: ** unpacking", line)
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise DSLError("dict keys must be quoted strings", line)
                out[key.value] = self.value(item, line, names, texts)
            return out
        if isinstance(node, ast.Name):
            return self.name(node.id, line, names)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            raise DSLError(
                f"calling {node.func.id!r} inside an argument is not allowed; give each tool "
                "call its own line and pass its variable",
                line,
            )
        raise DSLError(f"not allowed: {_what(node)}", line)

    def name(self, name: str, line: int, names: set[str]) -> str:
        if name in self.variables:
            names.add(name)
            return name
        if self.media is not None and name in self.media:
            return name
        if self.media is None and MEDIA_ID_RE.match(name) and name not in self.tools:
            return name
        known = ", ".join(self.variables) or "none yet"
        images = (
            f"; media: {', '.join(sorted(self.media)) or 'none'}" if self.media is not None else ""
        )
        raise DSLError(f"name {name!r} is not defined (variables: {known}{images})", line)

    # -- statements ---------------------------------------------------------------------

    def call(self, node: ast.Call, target: str, line: int) -> ToolCall:
        if not isinstance(node.func, ast.Name):
            raise DSLError(f"not allowed: {_what(node.func)}; call a tool by its name", line)
        tool = node.func.id
        if tool not in self.tools:
            raise DSLError(
                f"{tool!r} is not a tool; only tools can be called: {', '.join(sorted(self.tools))}",
                line,
            )
        if node.args:
            raise DSLError(
                f"positional arguments are not allowed; write {tool}(name=value, ...)", line
            )
        args: dict[str, Any] = {}
        names: set[str] = set()
        texts: set[str] = set()
        for kw in node.keywords:
            if kw.arg is None:
                raise DSLError("not allowed: ** unpacking", line)
            args[kw.arg] = self.value(kw.value, line, names, texts)
        # Names travel as strings and are resolved by exact match: a quoted string equal to a
        # variable of the same call would be resolved too, so refuse the ambiguity.
        clash = names & texts
        if clash:
            raise DSLError(
                f"the text {sorted(clash)[0]!r} is both a quoted string and a variable in this "
                "call; rename the variable",
                line,
            )
        return ToolCall(tool=tool, args=args, name=target)

    def statement(self, node: ast.stmt, last: bool) -> tuple[str, ToolCall | None, Any]:
        """One line: (its variable, its call or None, the answer expression on the last line)."""
        line = node.lineno
        form = "every line is `name = tool(key=value)`"
        if isinstance(node, ast.Expr):
            inner = node.value
            if isinstance(inner, ast.Call):
                self.call(inner, "_", line)  # a non-tool or a bad argument says so first
                raise DSLError(f"not allowed: a call whose result is not named; {form}", line)
            raise DSLError(f"not allowed: {_what(inner)}; {form}", line)
        if not isinstance(node, ast.Assign):
            what = _NOT_ALLOWED.get(type(node), f"{type(node).__name__} statements")
            raise DSLError(f"not allowed: {what}; {form}", line)
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise DSLError("assign to exactly one plain name (no a = b = ..., a, b = ...)", line)
        target = node.targets[0].id
        if target == ANSWER:
            if not last:
                raise DSLError("ANSWER must be set on the last line only", line)
            if isinstance(node.value, ast.Call):
                return target, self.call(node.value, target, line), {"ref": target}
            if isinstance(node.value, ast.Name) and node.value.id in self.variables:
                return target, None, {"ref": node.value.id}
            value = self.value(node.value, line, set(), set())
            if isinstance(node.value, ast.Name):  # a media id is not an answer
                raise DSLError(f"ANSWER = {value} names no variable", line)
            return target, None, {"value": value}
        if not isinstance(node.value, ast.Call):
            if isinstance(node.value, ast.Name | ast.Constant | ast.List | ast.Dict):
                what = "copying a value"
            else:
                what = _what(node.value)
            raise DSLError(
                f"not allowed: {what}; assign a tool call: {target} = tool(key=value)", line
            )
        call = self.call(node.value, target, line)
        if target.startswith("_"):
            raise DSLError(f"the name {target!r} is not allowed (names may not start with _)", line)
        if target in self.tools:
            raise DSLError(f"the name {target!r} is a tool; choose another name", line)
        if target in self.variables:
            raise DSLError(f"{target!r} is already assigned; use a new name", line)
        if self.media and target in self.media or self.media is None and MEDIA_ID_RE.match(target):
            raise DSLError(f"{target!r} looks like a media id; choose another name", line)
        if last:
            raise DSLError(
                f"the last line must be `ANSWER = <variable>`, e.g. ANSWER = {target}", line
            )
        return target, call, None


def _code_lines(source: str) -> list[str]:
    return [ln for ln in source.split("\n") if ln.strip() and not ln.strip().startswith("#")]


def _syntax(source: str) -> ast.Module:
    """The syntax tree of ``source`` (parsed, never compiled); DSLError when it is not Python."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not our business
            return ast.parse(source, mode="exec")
    except SyntaxError as e:
        raise DSLError(f"not valid syntax: {e.msg}", e.lineno or 0) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise DSLError(f"not valid syntax: {type(e).__name__}: {e}") from None


def parse_program(
    text: str, tools: Collection[str], media: Collection[str] | None = None
) -> Program:
    """Read a program; raises :class:`DSLError` (never anything else) when it is not in the
    language. ``tools`` are the callable names; ``media`` the run's media ids (``None``: any name
    shaped like ``image_0`` is taken for one)."""
    if not isinstance(text, str):
        raise DSLError(f"a program is text, not {type(text).__name__}")
    if len(text.encode("utf-8", "replace")) > MAX_CHARS:
        raise DSLError(
            f"the program is longer than {MAX_CHARS} bytes; write at most {MAX_LINES} lines"
        )
    source = strip_fences(text)
    lines = _code_lines(source)
    if not lines:
        raise DSLError("the program is empty; write `name = tool(...)` lines and `ANSWER = name`")
    if len(lines) > MAX_LINES:
        raise DSLError(f"the program has {len(lines)} lines; at most {MAX_LINES} are allowed")
    tree = _syntax(source)
    if not tree.body:
        raise DSLError("the program is empty; write `name = tool(...)` lines and `ANSWER = name`")
    reader = _Reader(tools, media)
    calls: list[ToolCall] = []
    answer: dict[str, Any] | None = None
    for i, node in enumerate(tree.body):
        target, call, ans = reader.statement(node, last=i == len(tree.body) - 1)
        if call is not None:
            calls.append(call)
        reader.variables.append(target)
        answer = ans
    if answer is None:  # pragma: no cover - statement() enforces ANSWER on the last line
        raise DSLError("the last line must be `ANSWER = <variable>`")
    return Program(calls=calls, answer=answer, source=source)


#: A ``Thought:`` line of a reply (also read by the program and plan planners).
THOUGHT_RE = re.compile(r"[ \t*#>]*thought[ \t]*:", re.IGNORECASE)


def parse_line(
    text: str,
    tools: Collection[str],
    variables: Collection[str] = (),
    media: Collection[str] | None = None,
) -> ToolCall | dict[str, Any]:
    """One line of a program written a step at a time (the ``react`` planner's code actions,
    CodeAct-style): ``name = tool(key=value)`` gives its call (``call.name`` is ``name``);
    ``ANSWER = name`` (or a constant) gives the answer expression, as :class:`Program`'s
    ``answer``. ``variables`` are the names earlier lines set. A leading ``Thought:`` line and a
    code fence are allowed; the same whitelist as :func:`parse_program` applies, and anything
    else, more than one line included, is a :class:`DSLError`."""
    if not isinstance(text, str):
        raise DSLError(f"a line is text, not {type(text).__name__}")
    if len(text.encode("utf-8", "replace")) > MAX_CHARS:
        raise DSLError(f"the line is longer than {MAX_CHARS} bytes")
    source = strip_fences(text)
    lines = [ln for ln in _code_lines(source) if not THOUGHT_RE.match(ln)]
    if len(lines) != 1:
        raise DSLError(
            f"write exactly one line, `name = tool(key=value)` or `ANSWER = name` "
            f"(got {len(lines)})"
        )
    tree = _syntax(lines[0].strip())
    node = tree.body[0]
    is_answer = (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == ANSWER
    )
    reader = _Reader(tools, media)
    reader.variables = list(variables)
    _, call, answer = reader.statement(node, last=is_answer)
    if is_answer:
        if call is not None:
            raise DSLError(
                f"give the call its own line first (x = {call.tool}(...)), then ANSWER = x"
            )
        return answer
    assert call is not None  # statement() returns a call for every non-ANSWER line
    return call


def format_value(value: Any, names: Collection[str] = ()) -> str:
    """``value`` (JSON data) written in the language; a string in ``names`` (a variable or a
    media id) is written bare, as the name it is."""
    if isinstance(value, str):
        return value if value in names else json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v, names) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(str(k))}: {format_value(v, names)}" for k, v in value.items()
        )
        return "{" + inner + "}"
    raise DSLError(f"cannot write a {type(value).__name__} in the language")


def format_line(name: str, tool: str, args: dict[str, Any], names: Collection[str] = ()) -> str:
    """The line ``name = tool(key=value, ...)``; see :func:`format_value` for ``names``."""
    inner = ", ".join(f"{k}={format_value(v, names)}" for k, v in args.items())
    return f"{name} = {tool}({inner})"


def format_program(
    calls: Iterable[ToolCall], answer: dict[str, Any], media: Collection[str]
) -> str:
    """A program's text: one :func:`format_line` per call, then ``ANSWER = ...`` (``answer`` as
    :class:`Program` holds it); variables and ``media`` ids are written bare."""
    calls = list(calls)
    names = {*media, *(c.name or "" for c in calls)}
    lines = [format_line(c.name or "", c.tool, c.args, names) for c in calls]
    expr = answer["ref"] if "ref" in answer else format_value(answer.get("value"), names)
    return "\n".join([*lines, f"{ANSWER} = {expr}"])


def digest(result: dict[str, Any]) -> str:
    """A result in a few words, as a program sees it: how many objects a list holds
    (``3 objects``), else the value ANSWER would read (``1``, ``yes``, ``metal``). What the
    ``code`` actions' transcript shows: the full observation (attributes, boxes) would let a small
    model copy its arguments from the listing instead of the question."""
    objects = result.get("objects")
    if isinstance(objects, list):
        return f"{len(objects)} object{'' if len(objects) == 1 else 's'}"
    try:
        return format_answer(answer_value(result))
    except DSLError:
        return "a result with " + ", ".join(sorted(result))


def read_answer(answer: dict[str, Any], steps: Iterable[Step]) -> str:
    """The short answer an ANSWER expression (``{"ref": name}`` or ``{"value": constant}``) gives
    over the executor ``steps`` of its program; :class:`DSLError` when it is not one (a list, a
    whole detection result, a name with no value)."""
    if "value" in answer:
        return format_answer(answer["value"])
    name = answer.get("ref")
    step = next((s for s in steps if s.ref == name and s.result is not None), None)
    if step is None:
        raise DSLError(f"ANSWER names {name!r}, which has no value")
    return format_answer(answer_value(step.result or {}))


# ---------------------------------------------------------------------------------------------
# the answer


def answer_value(result: dict[str, Any]) -> Any:
    """The one value a tool result answers with: its first :data:`ANSWER_FIELDS` field, else its
    only scalar field, else its only list (which :func:`format_answer` refuses, saying how long
    it is), else the result itself (refused too)."""
    for key in ANSWER_FIELDS:
        if key in result and not isinstance(result[key], list | dict):
            return result[key]
    scalars = [v for v in result.values() if not isinstance(v, list | dict)]
    if len(scalars) == 1:
        return scalars[0]
    lists = [v for v in result.values() if isinstance(v, list)]
    return lists[0] if len(lists) == 1 else result


def format_answer(value: Any) -> str:
    """The short answer for ANSWER's value; raises :class:`DSLError` for lists, dicts and None."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DSLError(f"ANSWER is {value}, not a usable number")
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    if isinstance(value, str):
        if not value.strip():
            raise DSLError("ANSWER is an empty string")
        return value.strip()
    if value is None:
        raise DSLError("ANSWER is None; end the program with the variable that holds the answer")
    if isinstance(value, list):
        raise DSLError(
            f"ANSWER is a list of {len(value)} items, not an answer; to answer how many, "
            "end with n = count(...) and ANSWER = n"
        )
    if isinstance(value, dict):
        raise DSLError(
            f"ANSWER is a result with fields {sorted(value)}, not one value; pass it to a tool "
            "that answers the question (count, calculate...)"
        )
    raise DSLError(f"ANSWER is a {type(value).__name__}, not an answer")
