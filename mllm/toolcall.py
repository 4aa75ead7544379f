"""Reading model text as a tool call or a final answer (GPT4Tools / ReAct format).

The format the model writes::

    Thought: I need to find the cubes.
    Action: detect
    Action Input: {"image": "image_0", "classes": ["cube"]}

and after the observations, ``Thought: ... Final Answer: 3``. :func:`parse` never raises: it
returns a :class:`ToolCall`, a :class:`FinalAnswer` or a :class:`ParseError` naming the problem,
which goes back to the controller as an observation. Native function calls of OpenAI-compatible
servers become the same :class:`ToolCall` through :func:`from_openai`.

What :func:`parse` accepts (and why it stops there):

* keywords at the start of a line, any case, with ``**bold**`` or ``#`` decoration:
  ``Thought:``, ``Action:``, ``Action Input:`` (also ``Action_Input:``), ``Final Answer:``, and
  GPT4Tools' original ``Thought: Do I need to use a tool? No`` + ``AI: <answer>``;
* everything from the first ``Observation:`` line on is dropped: observations come from the
  tools, and a model that writes one itself is inventing it;
* code-fence lines (```` ``` ```` / ```` ```json ````) anywhere, and fences or backticks around
  the Action Input on its own line;
* Action Input as a JSON object, repaired when that is unambiguous (single quotes, trailing commas,
  Python ``True/False/None``, unquoted keys and bare-word values), or as ``key=value`` pairs
  (quoted or bare values; numbers, ``true``/``false`` and ``null``/``none`` are coerced);
* any other Action Input (a bare string, a JSON scalar or list) is a single value: it goes to the
  tool's one required argument when the tool's ``Args`` model is known (``schemas``, or ``tools``
  given as :class:`~agentkit.tools.base.Tool` objects), else under the key ``"input"``, where the
  executor's schema validation rejects it with a message naming the real arguments;
* one call per turn: if the text has both an Action and a Final Answer, the one written first
  wins. The model writes left to right, so what comes first is what it decided; whatever follows
  is a continuation it should not have written (a real run stops generating at ``Observation:``,
  and an answer already given ends the turn).

Truncated text (an Action without its input, unclosed JSON, an empty answer), an unknown tool or
text with neither an Action nor a Final Answer give a :class:`ParseError` that says what is
missing and what to write instead. Only the first :data:`MAX_SCAN_CHARS` characters are read, and
every scan is linear, so megabytes of garbage cost milliseconds.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel

from agentkit.state import ToolCall

__all__ = [
    "MAX_SCAN_CHARS",
    "FinalAnswer",
    "ParseError",
    "ToolCall",
    "format_call",
    "format_final",
    "format_observation",
    "from_openai",
    "parse",
]

#: Characters of model text that are read; the rest is ignored (a turn is a few hundred tokens).
MAX_SCAN_CHARS = 65_536
#: Characters of the offending text kept in a :class:`ParseError` (for traces, not for prompts).
MAX_ERROR_TEXT = 4_000
#: JSON nesting deeper than this is refused before :mod:`json` can hit the recursion limit.
MAX_DEPTH = 64

_FORMAT_HINT = (
    "Write 'Action: <tool>' and 'Action Input: {\"arg\": value}' on their own lines, "
    "or 'Final Answer: <answer>'."
)


class FinalAnswer(BaseModel):
    answer: str
    thought: str = ""


class ParseError(BaseModel):
    message: str
    text: str = ""


class _Problem(Exception):
    """Internal: a parse problem with the message the controller will read."""


# A keyword at the start of a line. Bounded prefix class + fixed alternatives: no backtracking
# blow-up, and it is only ever matched against the first 80 characters of a line.
_KEY_RE = re.compile(
    r"[ \t*#>]*(thought|action[ _]?input|action|observation|final[ _]?answer|ai)\**[ \t]*:\**[ \t]?",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"[ \t]*(```|~~~)[\w+-]*[ \t]*\Z")
_NEED_TOOL_RE = re.compile(r"do i need to use a tool\?[ \t]*(yes|no)?[ \t.]*", re.IGNORECASE)
_KV_START_RE = re.compile(r"[A-Za-z_][\w.-]*[ \t]*=(?!=)")
_KV_KEY_RE = re.compile(r"([A-Za-z_][\w.-]*)[ \t]*=(?!=)[ \t]*")
# Where a bare value ends: a separator, or spaces before the next `key=`. The look-behind makes
# each run of spaces one attempt, keeping the search linear.
_KV_BARE_END_RE = re.compile(r"[,;\n]|(?<![ \t])[ \t]+(?=[A-Za-z_][\w.-]*[ \t]*=(?!=))")
_INT_RE = re.compile(r"[-+]?\d+\Z")
_FLOAT_RE = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?\Z")


def _kind(word: str) -> str:
    w = word.lower().replace(" ", "").replace("_", "")
    return {"actioninput": "input", "finalanswer": "final", "ai": "final"}.get(w, w)


def _sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Split text into (preamble, [(kind, content), ...]) at line-start keywords.

    Lines are split on ``\\n`` only (not ``str.splitlines``), so a JSON string holding U+2028 or
    a form feed stays on its line. Fence-only lines are dropped; everything from the first
    ``Observation:`` line on is dropped.
    """
    preamble: list[str] = []
    out: list[tuple[str, list[str]]] = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if _FENCE_RE.match(line):
            continue
        m = _KEY_RE.match(line, 0, 80)
        if m:
            kind = _kind(m.group(1))
            if kind == "observation":
                break
            out.append((kind, [line[m.end() :]]))
        elif out:
            out[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble).strip(), [(k, "\n".join(v).strip()) for k, v in out]


def _clean_thought(parts: list[str]) -> str:
    text = " ".join(p for p in parts if p)
    # GPT4Tools' fixed question is a switch, not reasoning: keep only what follows it.
    m = _NEED_TOOL_RE.match(text.lstrip())
    if m:
        text = text.lstrip()[m.end() :]
    return " ".join(text.split())


def _match_tool(name: str, tools: Collection[str] | None) -> str:
    name = name.strip().strip("`'\"*").strip()
    if name.endswith("()"):
        name = name[:-2].strip()
    name = name.rstrip(".:").strip()
    if not name:
        raise _Problem(f"'Action:' names no tool. {_FORMAT_HINT}")
    if tools is None or name in tools:
        return name
    folded = {re.sub(r"[\s-]+", "_", t.lower()): t for t in tools}
    hit = folded.get(re.sub(r"[\s-]+", "_", name.lower()))
    if hit is not None:
        return hit
    valid = ", ".join(sorted(tools)) or "(none)"
    close = difflib.get_close_matches(name, list(tools), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise _Problem(f"unknown tool {name[:80]!r}.{hint} Valid tools: {valid}.")


# ---------------------------------------------------------------------------------------------
# Lenient JSON: a linear scan that rewrites the unambiguous mistakes into JSON, then json.loads.


def _scan_json(s: str, start: int) -> tuple[str, int]:
    """Rewrite the JSON value that opens at ``s[start]`` (``{`` or ``[``) into strict JSON.

    Returns (json_text, end_index). Raises :class:`_Problem` for unclosed or mismatched brackets.
    """
    out: list[str] = []
    stack: list[str] = []
    i, n = start, len(s)
    closers = {"{": "}", "[": "]"}
    while i < n:
        c = s[i]
        if c in "\"'":
            q, i = c, i + 1
            buf = ['"']
            while i < n and s[i] != q:
                ch = s[i]
                if ch == "\\" and i + 1 < n:
                    nxt = s[i + 1]
                    buf.append("'" if nxt == "'" else ch + nxt)
                    i += 2
                    continue
                if ch == '"':
                    buf.append('\\"')
                elif ord(ch) < 0x20:
                    buf.append(f"\\u{ord(ch):04x}")
                else:
                    buf.append(ch)
                i += 1
            if i >= n:
                missing = q + "".join(closers[b] for b in reversed(stack))
                raise _Problem(
                    f"the JSON in 'Action Input' is not closed: a string is cut off (missing {missing!r})."
                )
            buf.append('"')
            out.append("".join(buf))
            i += 1
            continue
        if c in "{[":
            stack.append(c)
            if len(stack) > MAX_DEPTH:
                raise _Problem(
                    f"the JSON in 'Action Input' is nested deeper than {MAX_DEPTH} levels."
                )
            out.append(c)
        elif c in "}]":
            if not stack or closers[stack[-1]] != c:
                raise _Problem(
                    f"the JSON in 'Action Input' has a stray {c!r} at character {i - start}."
                )
            stack.pop()
            while out and out[-1].isspace():
                out.pop()
            if out and out[-1] == ",":  # trailing comma
                out.pop()
            out.append(c)
            if not stack:
                return "".join(out), i + 1
        elif c.isdigit() or c in "-+.":  # a number: copied as written
            j = i + 1
            while j < n and (s[j].isdigit() or s[j] in "+-.eE"):
                j += 1
            out.append(s[i:j])
            i = j
            continue
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (s[j].isalnum() or s[j] in "_-."):
                j += 1
            word = s[i:j]
            k = j
            while k < n and s[k] in " \t\r\n":
                k += 1
            lit = {
                "True": "true",
                "False": "false",
                "None": "null",
                "true": "true",
                "false": "false",
                "null": "null",
            }
            if word in lit and not (k < n and s[k] == ":"):
                out.append(lit[word])
            else:  # an unquoted key or bare-word value: quote it
                out.append(json.dumps(word))
            i = j
            continue
        else:
            out.append(c)
        i += 1
    missing = "".join(closers[b] for b in reversed(stack))
    raise _Problem(
        f"the JSON in 'Action Input' is not closed (missing {missing!r}); the text may be cut off."
    )


def _load_json(s: str, start: int = 0) -> tuple[Any, int]:
    """Decode the JSON object or array opening at ``s[start]``, strictly first, then leniently."""
    try:
        return json.JSONDecoder().raw_decode(s, start)
    except (ValueError, RecursionError):
        pass
    fixed, end = _scan_json(s, start)
    try:
        return json.loads(fixed), end
    except RecursionError:
        raise _Problem(
            f"the JSON in 'Action Input' is nested deeper than {MAX_DEPTH} levels."
        ) from None
    except ValueError as e:
        raise _Problem(f"the JSON in 'Action Input' is invalid: {e}.") from None


# ---------------------------------------------------------------------------------------------
# key=value pairs


def _coerce(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    try:
        if _INT_RE.match(v):
            return int(v)
        if _FLOAT_RE.match(v):
            return float(v)
    except ValueError:  # more digits than int() converts
        return v
    return v


def _parse_kv(s: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t\r\n,;":
            i += 1
        if i >= n:
            return out
        m = _KV_KEY_RE.match(s, i)
        if not m:
            raise _Problem(
                f"'Action Input' mixes key=value pairs with other text near {s[i : i + 40]!r}; use JSON."
            )
        key, i = m.group(1), m.end()
        if i < n and s[i] in "\"'":
            q, j, buf = s[i], i + 1, []
            while j < n and s[j] != q:
                if s[j] == "\\" and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            if j >= n:
                raise _Problem(
                    f"the value of {key!r} in 'Action Input' is not closed (missing {q!r})."
                )
            out[key], i = "".join(buf), j + 1
        elif i < n and s[i] in "[{":
            out[key], i = _load_json(s, i)
        else:
            end = _KV_BARE_END_RE.search(s, i)  # `a=1, b=2`, `a=1 b=2`
            j = end.start() if end else n
            seg = s[i:j].strip()
            if not seg:
                raise _Problem(f"'{key}=' in 'Action Input' has no value; the text may be cut off.")
            out[key], i = _coerce(seg), j


def _strip_fences(s: str) -> str:
    s = s.strip()
    if s.startswith("```") or s.startswith("~~~"):
        fence = s[:3]
        s = s[3:]
        j = 0
        while j < len(s) and (s[j].isalnum() or s[j] in "_+-"):
            j += 1
        s = s[j:]
        if s.rstrip().endswith(fence):
            s = s.rstrip()[:-3]
        s = s.strip()
    if len(s) >= 2 and s[0] == "`" and s[-1] == "`":
        s = s[1:-1].strip()
    return s


def _single_arg(tool: str, schemas: Mapping[str, type[BaseModel]]) -> str:
    """The argument a lone value belongs to: the tool's one required field, or its only field."""
    model = schemas.get(tool)
    if model is None:
        return "input"
    fields = model.model_fields
    required = [k for k, f in fields.items() if f.is_required()]
    if len(required) == 1:
        return required[0]
    if len(fields) == 1:
        return next(iter(fields))
    return "input"


def _parse_input(raw: str, tool: str, schemas: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    s = _strip_fences(raw)
    if not s:
        raise _Problem(
            f"'Action Input' for {tool!r} is empty; the text may be cut off. "
            "Give the arguments as a JSON object (use {} when there are none)."
        )
    value: Any
    if s[0] in "{[":
        value, _ = _load_json(s)  # text after the value is ignored (the model ran on)
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    elif _KV_START_RE.match(s):
        return _parse_kv(s)
    elif s[0] in "\"'" and len(s) >= 2 and s[-1] == s[0]:
        try:
            value = json.loads(s) if s[0] == '"' else s[1:-1]
        except ValueError:
            value = s[1:-1]
    elif s[0] in "\"'":
        raise _Problem(
            f"the string in 'Action Input' for {tool!r} is not closed (missing {s[0]!r})."
        )
    else:
        value = _coerce(s)
    return {_single_arg(tool, schemas): value}


# ---------------------------------------------------------------------------------------------


def _names_and_schemas(
    tools: Collection[Any] | None, schemas: Mapping[str, type[BaseModel]] | None
) -> tuple[set[str] | None, dict[str, type[BaseModel]]]:
    known: dict[str, type[BaseModel]] = dict(schemas or {})
    if tools is None:
        return None, known
    names: set[str] = set()
    for t in tools:
        if isinstance(t, str):
            names.add(t)
        else:  # a Tool object (or a registry iterated as Tools)
            names.add(t.name)
            known.setdefault(t.name, t.Args)
    return names, known


def _parse(
    text: str, tools: Collection[Any] | None, schemas: Mapping[str, type[BaseModel]] | None
) -> ToolCall | FinalAnswer | ParseError:
    if not isinstance(text, str):
        return ParseError(message=f"expected model text (str), got {type(text).__name__}.")
    capped = len(text) > MAX_SCAN_CHARS
    scan = text[:MAX_SCAN_CHARS]
    names, known = _names_and_schemas(tools, schemas)
    preamble, secs = _sections(scan)

    def error(msg: str) -> ParseError:
        if capped:
            msg += f" (Only the first {MAX_SCAN_CHARS} characters were read.)"
        return ParseError(message=msg, text=scan[:MAX_ERROR_TEXT])

    first = next((i for i, (k, _) in enumerate(secs) if k in ("action", "final")), None)
    if first is None:
        if any(k == "input" for k, _ in secs):
            return error(
                f"found 'Action Input' but no 'Action: <tool>' line before it. {_FORMAT_HINT}"
            )
        if not scan.strip():
            return error(f"the model wrote nothing. {_FORMAT_HINT}")
        return error(f"found neither an 'Action:' nor a 'Final Answer:' line. {_FORMAT_HINT}")
    thoughts = [c for k, c in secs[:first] if k == "thought"] or [preamble]
    thought = _clean_thought(thoughts)
    kind, content = secs[first]
    if kind == "final":
        if not content:
            return error(
                "'Final Answer:' is empty; the text may be cut off. Write the answer after 'Final Answer:'."
            )
        return FinalAnswer(answer=content, thought=thought)
    name, _, rest = content.partition("\n")
    try:
        tool = _match_tool(name, names)
        for k, c in secs[first + 1 :]:
            if k == "input":
                return ToolCall(
                    tool=tool, args=_parse_input(c, tool, known), thought=thought, id=None
                )
            if k in ("action", "final"):
                break
        if rest.strip().startswith("{"):  # the JSON came without its 'Action Input:' label
            return ToolCall(
                tool=tool, args=_parse_input(rest, tool, known), thought=thought, id=None
            )
        raise _Problem(
            f"'Action: {tool}' has no 'Action Input:' line; the text may be cut off. "
            "Write 'Action Input: {...}' on the next line (use {} when there are no arguments)."
        )
    except _Problem as e:
        return error(str(e))


def parse(
    text: str,
    tools: Collection[Any] | None = None,
    schemas: Mapping[str, type[BaseModel]] | None = None,
) -> ToolCall | FinalAnswer | ParseError:
    """Read one controller turn. Never raises.

    ``tools``: the valid tool names (a call to any other is a :class:`ParseError` listing them);
    :class:`~agentkit.tools.base.Tool` objects or a ``ToolRegistry`` work too and also give the
    schemas. ``schemas``: tool name -> its ``Args`` model, used only to place a lone (non-object)
    Action Input under the tool's single required argument; without it the value goes under
    ``"input"`` and the executor's validation names the real arguments.
    """
    try:
        return _parse(text, tools, schemas)
    except Exception as e:  # the contract is "never raises"; a bug here must not kill a run
        return ParseError(
            message=f"internal parser error ({type(e).__name__}: {e}). {_FORMAT_HINT}",
            text=str(text)[:MAX_ERROR_TEXT],
        )


def from_openai(
    tool_calls: list[dict[str, Any]], tools: Collection[Any] | None = None, thought: str = ""
) -> list[ToolCall] | ParseError:
    """Turn OpenAI chat-completions ``message.tool_calls`` into :class:`ToolCall` s.

    Each item is ``{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}``;
    ``arguments`` must be a JSON object (an empty string means no arguments; an already-decoded
    dict is accepted). Malformed JSON, a missing name or an unknown tool (when ``tools`` is given)
    give a :class:`ParseError` for the whole list: the model should repeat the turn. Never raises.
    """
    try:
        names, _ = _names_and_schemas(tools, None)
        if not isinstance(tool_calls, list):
            return ParseError(
                message=f"tool_calls must be a list, got {type(tool_calls).__name__}."
            )
        calls = []
        for n, item in enumerate(tool_calls):
            if hasattr(item, "model_dump"):  # an openai SDK object
                item = item.model_dump()
            fn = item.get("function") if isinstance(item, dict) else None
            if (
                not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
                or not fn["name"].strip()
            ):
                return ParseError(
                    message=f"tool call {n} has no function name: {str(item)[:200]}",
                    text=str(item)[:MAX_ERROR_TEXT],
                )
            name = fn["name"].strip()
            raw = fn.get("arguments")
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                args: Any = {}
            elif isinstance(raw, dict):
                args = raw
            elif isinstance(raw, str):
                try:
                    args = json.loads(raw)
                except (ValueError, RecursionError) as e:
                    return ParseError(
                        message=f"arguments of tool call {n} ({name}) are not valid JSON: {e}.",
                        text=raw[:MAX_ERROR_TEXT],
                    )
            else:
                return ParseError(
                    message=f"arguments of tool call {n} ({name}) must be a JSON string, got {type(raw).__name__}."
                )
            if not isinstance(args, dict):
                return ParseError(
                    message=f"arguments of tool call {n} ({name}) must be a JSON object, got {type(args).__name__}.",
                    text=str(raw)[:MAX_ERROR_TEXT],
                )
            try:
                name = _match_tool(name, names)
            except _Problem as e:
                return ParseError(message=str(e), text=name[:MAX_ERROR_TEXT])
            call_id = item.get("id")
            calls.append(
                ToolCall(
                    tool=name,
                    args=args,
                    thought=thought,
                    id=call_id if isinstance(call_id, str) else None,
                )
            )
        return calls
    except Exception as e:
        return ParseError(message=f"internal parser error ({type(e).__name__}: {e}).")


# ---------------------------------------------------------------------------------------------
# The canonical text: what training data holds and what prompts show. Each function returns
# lines without a trailing newline; a transcript joins them with "\n".


def format_call(call: ToolCall) -> str:
    """``Thought / Action / Action Input`` text of a call; ``parse`` reads it back to ``call``
    (with the thought's whitespace collapsed to single spaces and ``id`` dropped)."""
    thought = " ".join(call.thought.split())
    args = json.dumps(call.args, ensure_ascii=False)
    head = f"Thought: {thought}\n" if thought else ""
    return f"{head}Action: {call.tool}\nAction Input: {args}"


def format_observation(text: str) -> str:
    """``Observation: ...`` on one line (line breaks become spaces, so the observation cannot
    start a line that looks like a keyword)."""
    return "Observation: " + " ".join(p.strip() for p in text.splitlines() if p.strip())


def format_final(answer: str, thought: str = "") -> str:
    """``Thought / Final Answer`` text; the answer may span lines."""
    thought = " ".join(thought.split())
    head = f"Thought: {thought}\n" if thought else ""
    return f"{head}Final Answer: {answer.strip()}"
