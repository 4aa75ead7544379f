"""Constrained decoding for the program language: can this partial reply still become readable?

A small core's programs fail to read (:mod:`agentkit.planners.dsl`) mostly in ways that show
while they are written: a name no earlier line set (``ANSWER = answer``), a name set twice, a tool
or an argument that does not exist, a positional argument, a call without an argument its
tool requires. :class:`ProgramGrammar` follows a reply character by character and says when it
has left the language; a backend that supports constraints (``hf:``) asks it, at each generated
token, which of the model's most likely next tokens keep the reply viable and masks the others,
as grammar-constrained decoding does for JSON schemas (Outlines, llama.cpp grammars,
transformers-CFG). The model still chooses; it only cannot choose what the parser would refuse.

The grammar is that of :func:`~agentkit.planners.dsl.parse_program` as the planners write it, one
statement per line: ``name = tool(key=value, ...)``, ``ANSWER = name``, ``# comments``. Values
are names (earlier variables, media ids, ``True`` / ``False`` / ``None``), quoted strings,
numbers, and lists / dicts of those. Text outside the code is free: in ``program`` mode everything
before the opening code fence (the Thought) and after the closing one; in ``line`` mode (react's
code actions) ``Thought:`` lines and comments. The parser stays the judge: the grammar only prunes,
and what it lets through is parsed as before.

Nothing here runs model text: it is a character scanner over a few states.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from agentkit.planners.dsl import ANSWER

__all__ = ["ArgSpec", "Code", "Line", "ProgramGrammar", "State", "WordRule", "arg_specs"]

Mode = Literal["program", "line"]

_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z0-9_]")
_NUMBER = set("0123456789.eE+-_")
_CONSTANTS = ("True", "False", "None")
_CLOSE = {"[": "]", "{": "}", "(": ")"}

# Where a line is (``phase``). Values follow a keyword or ``ANSWER =``.
_LINE_START = "line_start"  # start of a code line
_TARGET = "target"  # the assigned name
_AFTER_TARGET = "after_target"  # spaces, then "="
_AFTER_EQ = "after_eq"  # spaces, then the tool (or ANSWER's value)
_TOOL = "tool"  # the tool's name
_AFTER_TOOL = "after_tool"  # spaces, then "("
_ARGS = "args"  # spaces, then a keyword or ")"
_KEYWORD = "keyword"
_AFTER_KEYWORD = "after_keyword"  # spaces, then "="
_VALUE = "value"  # spaces, then a value
_NAME = "name"  # a name as a value
_STRING = "string"
_NUMBER_PHASE = "number"
_NESTED = "nested"  # inside [..] / {..} / (..) of a value
_AFTER_VALUE = "after_value"  # spaces, then "," or ")"
_END = "end"  # spaces, then the newline
_FREE_LINE = "free_line"  # a comment or Thought line: anything up to the newline
_PROSE = "prose"  # program mode, before the opening fence: free
_AFTER = "after"  # after the code: free
#: Phases between tokens of a statement, where spaces are skipped.
_SPACED = frozenset({_AFTER_TARGET, _AFTER_EQ, _AFTER_TOOL, _ARGS, _AFTER_KEYWORD, _VALUE,
                     _AFTER_VALUE, _END})  # fmt: skip


#: Kinds of value an argument takes; a variable (an earlier result) is always allowed.
KINDS = frozenset({"string", "number", "list", "dict", "bool", "null"})


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """What one tool argument accepts: value ``kinds`` (of :data:`KINDS`) and, for a string that
    must be one of a few words (a ``Literal``), those words."""

    kinds: frozenset[str] = KINDS
    enum: tuple[str, ...] = ()
    #: the call cannot close without it (the schema gives no default: the tool would refuse)
    required: bool = False


ANY = ArgSpec()


@dataclass(frozen=True, slots=True)
class Line:
    """A finished code line: the name it set, its tool, the strings it gave (top level, in
    order)."""

    name: str
    tool: str
    given: tuple[str, ...] = ()

    @classmethod
    def of_call(
        cls, name: str, tool: str, args: Mapping[str, Any], names: Collection[str] = ()
    ) -> Line:
        """The line of a parsed call: its top-level string arguments, the earlier names and
        media ids it passes (``names``) aside."""
        given = tuple(v for v in args.values() if isinstance(v, str) and v not in names)
        return cls(name, tool, given)


@dataclass(frozen=True, slots=True)
class Code:
    """What a word rule may read of the code written so far: the finished lines (the caller's,
    then this reply's) and the earlier names the call being written passed, by keyword."""

    lines: tuple[Line, ...] = ()
    passed: tuple[tuple[str, str], ...] = ()

    def line(self, name: str) -> Line | None:
        """The line that set ``name`` (None: none the grammar knows of)."""
        return next((ln for ln in reversed(self.lines) if ln.name == name), None)


#: What a caller may know of the strings a call should take, beyond the tools' schemas (e.g. the
#: values a question names: :meth:`agentkit.planners.expect.Expectation.words_for`):
#: ``(tool, keyword, strings this call already gave, the code so far) -> the words that
#: keyword's string may be``, or None for no rule. An empty collection leaves the keyword out.
#: In a keyword's dict value the rule is asked for ``"where."`` (a key) and ``"where.color"`` (the
#: value of key ``color``); the dict's values count among the strings the call gave.
WordRule = Callable[[str, str, tuple[str, ...], Code], Collection[str] | None]


def arg_specs(schema: Mapping[str, Any]) -> dict[str, ArgSpec]:
    """Each argument's :class:`ArgSpec` from a tool's JSON schema (``Args.model_json_schema()``):
    ``type`` and ``anyOf`` give the kinds, a string ``enum`` its words; anything the schema does
    not pin down (a ``$ref``, no type) allows every kind."""
    types = {"string": "string", "number": "number", "integer": "number", "array": "list",
             "object": "dict", "boolean": "bool", "null": "null"}  # fmt: skip
    out = {}
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        kinds: set[str] = set()
        words: list[str] = []
        free_text = False
        for alt in prop.get("anyOf", [prop]):
            if "enum" in alt:
                words += [str(v) for v in alt["enum"]]
                kinds.add("string")
            elif alt.get("type") in types:
                kinds.add(types[alt["type"]])
                free_text |= alt["type"] == "string"
            else:
                kinds |= KINDS
        out[name] = ArgSpec(frozenset(kinds) or KINDS, () if free_text else tuple(words),
                            name in required)  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class State:
    """Where the scanner is; immutable, so a decoder keeps one per partial reply."""

    phase: str
    line: str = ""  # the current line so far (prose and fences are recognised by it)
    buf: str = ""  # the identifier being read
    target: str = ""
    tool: str = ""
    used: tuple[str, ...] = ()  # keywords given so far on this line
    given: tuple[str, ...] = ()  # the strings given to them (top level, whole; a dict's values)
    arg: str = ""  # the keyword whose value is being read
    quote: str = ""  # the open string's quote; "\\" after an escape
    stack: str = ""  # open brackets of a nested value
    variables: tuple[str, ...] = ()
    answered: bool = False  # ANSWER was set (line mode: one code line was written)
    passed: tuple[tuple[str, str], ...] = ()  # (keyword, earlier name) this call passed
    slot: str = ""  # in a keyword's dict value: "key" or "value" (of ``dkey``)
    dkey: str = ""  # the key whose value is being read
    lines: tuple[Line, ...] = ()  # the code lines finished so far (the caller's, then this reply's)


class ProgramGrammar:
    """The program language as a prefix grammar for constrained decoding.

    ``tools`` maps each tool to its arguments: names (any value), or name -> :class:`ArgSpec`
    (:func:`arg_specs` of the tool's schema: a value of the wrong kind, or a word outside a
    ``Literal``, is refused as it is written); ``media`` are the run's media ids;
    ``variables`` the names earlier lines set (react's code actions: the steps so far).
    ``mode="program"``: a whole reply whose code sits in a fence; ``"line"``: one code line,
    possibly after a ``Thought:`` line. ``words``: a :data:`WordRule` that narrows what a
    keyword's string may be, given the strings the call already gave and the code so far
    (``lines``: the earlier lines the caller knows of, e.g. react's steps, then this reply's).

    >>> g = ProgramGrammar({"detect": ["image"], "count": ["objects"]}, media=["image_0"])
    >>> g.viable("objs = detect(image=image_0)\\nn = count(objects=objs)\\nANSWER = n")
    False
    >>> g.viable("Thought: count\\n```\\nobjs = detect(image=image_0)\\nANSWER = objs\\n```")
    True
    >>> g.viable("Thought: count\\n```\\nANSWER = answer")  # no line set `answer`
    False
    """

    def __init__(
        self,
        tools: Mapping[str, Collection[str]],
        *,
        media: Collection[str] = (),
        variables: Collection[str] = (),
        mode: Mode = "program",
        words: WordRule | None = None,
        lines: Collection[Line] = (),
    ) -> None:
        if mode not in ("program", "line"):
            raise ValueError(f"mode {mode!r}: expected 'program' or 'line'")
        self.specs = {
            name: {a: args[a] if isinstance(args, Mapping) else ANY for a in args}
            for name, args in tools.items()
        }
        self.media = tuple(media)
        self.mode = mode
        self.word_rule = words
        self._ruled: dict[tuple[Any, ...], tuple[str, ...] | None] = {}
        self._start = State(
            phase=_PROSE if mode == "program" else _LINE_START,
            variables=tuple(variables),
            lines=tuple(lines),
        )

    # -- the interface a constrained decoder uses -----------------------------------------

    def start(self) -> State:
        """The state of the empty reply."""
        return self._start

    def feed(self, state: State, text: str) -> State | None:
        """The state after ``text`` more characters, or None when the reply can no longer
        become readable."""
        s: State | None = state
        for ch in text:
            s = self._step(s, ch)  # type: ignore[arg-type]
            if s is None:
                return None
        return s

    def done(self, state: State) -> bool:
        """Whether the reply may end here: its ANSWER line (program) or its code line (line
        mode) is complete."""
        if state.answered:
            return True
        ended = self._step(state, "\n") if state.phase not in (_PROSE, _FREE_LINE) else None
        return ended is not None and ended.answered

    def viable(self, text: str) -> bool:
        """Whether ``text`` is a prefix of a readable reply (for tests and checks)."""
        return self.feed(self._start, text) is not None

    # -- one character ---------------------------------------------------------------------

    def _step(self, s: State, ch: str) -> State | None:
        phase = s.phase
        if phase in (_PROSE, _FREE_LINE, _AFTER):
            return self._free(s, ch)
        if ch == "\n" and phase not in (_LINE_START, _END, _AFTER_VALUE, _NAME, _NUMBER_PHASE):
            if phase == _TARGET and s.line.startswith("`"):
                return self._fence_line(s)
            return None  # a statement is one line
        if ch == " " and phase in _SPACED:
            return replace(s, line=s.line + ch)
        if phase == _LINE_START:
            return self._line_start(s, ch)
        if phase == _TARGET:
            if _IDENT.match(ch):
                return replace(s, buf=s.buf + ch, line=s.line + ch)
            return self._target_done(s, ch)
        if phase == _AFTER_TARGET:
            if ch == "=":
                return replace(s, phase=_AFTER_EQ, line=s.line + ch)
            return None
        if phase == _AFTER_EQ:
            if s.target == ANSWER:
                return self._value_start(s, ch)
            if _IDENT_START.match(ch):
                return self._ident(replace(s, phase=_TOOL, buf=""), ch, self._tool_names())
            return None
        if phase == _TOOL:
            if _IDENT.match(ch):
                return self._ident(s, ch, self._tool_names())
            if s.buf not in self.specs:
                return None
            return self._step(replace(s, phase=_AFTER_TOOL, tool=s.buf, buf=""), ch)
        if phase == _AFTER_TOOL:
            if ch != "(":
                return None
            return replace(s, phase=_ARGS, line=s.line + ch, used=(), given=(), passed=(), arg="")
        if phase == _ARGS:
            if ch == ")":
                return self._close(s)
            if _IDENT_START.match(ch):
                return self._ident(replace(s, phase=_KEYWORD, buf=""), ch, self._keywords(s))
            return None
        if phase == _KEYWORD:
            if _IDENT.match(ch):
                return self._ident(s, ch, self._keywords(s))
            if s.buf not in self._keywords(s):
                return None
            s = replace(s, phase=_AFTER_KEYWORD, used=(*s.used, s.buf), arg=s.buf, buf="")
            return self._step(s, ch)
        if phase == _AFTER_KEYWORD:
            return replace(s, phase=_VALUE, line=s.line + ch) if ch == "=" else None
        if phase == _VALUE:
            return self._value_start(s, ch)
        if phase == _NAME:
            allowed = self._value_names(s)
            if _IDENT.match(ch):
                return self._ident(s, ch, allowed)
            if s.buf not in allowed:
                return None
            if s.buf in self.specs:  # ANSWER = tool(...): the call's result is the answer
                return self._step(replace(s, phase=_AFTER_TOOL, tool=s.buf, buf=""), ch)
            if s.tool and s.arg and not s.stack and s.buf in s.variables:
                s = replace(s, passed=(*s.passed, (s.arg, s.buf)))
            return self._step(replace(s, phase=_NESTED if s.stack else _AFTER_VALUE, buf=""), ch)
        if phase == _STRING:
            line = s.line + ch
            words = self._words(s)
            if words is not None:  # one of a Literal's (or the word rule's) words, nothing else
                if ch == s.quote:
                    if s.buf not in words:
                        return None
                    if s.stack:
                        return self._nested_string_done(s, line)
                    given = (*s.given, s.buf)
                    return replace(s, phase=_AFTER_VALUE, quote="", line=line, buf="", given=given)
                return self._ident(s, ch, words)
            if s.quote.endswith("\\"):
                return replace(s, quote=s.quote[:-1], line=line, buf=s.buf + ch)
            if ch == "\\":
                return replace(s, quote=s.quote + "\\", line=line)
            if ch == s.quote:
                if s.stack:
                    return self._nested_string_done(s, line)
                given = (*s.given, s.buf)
                return replace(s, phase=_AFTER_VALUE, quote="", line=line, buf="", given=given)
            return replace(s, line=line, buf=s.buf + ch)
        if phase == _NUMBER_PHASE:
            if ch in _NUMBER:
                return replace(s, line=s.line + ch)
            return self._step(replace(s, phase=_NESTED if s.stack else _AFTER_VALUE), ch)
        if phase == _NESTED:
            return self._nested(s, ch)
        if phase == _AFTER_VALUE:
            if s.target == ANSWER and not s.tool:  # ANSWER = name: the line ends
                return self._end_line(s) if ch == "\n" else None
            if ch == ",":
                return replace(s, phase=_ARGS, line=s.line + ch)
            if ch == ")":
                return self._close(s)
            return None
        if phase == _END:
            return self._end_line(s) if ch == "\n" else None
        raise AssertionError(f"unknown phase {phase}")

    # -- pieces ----------------------------------------------------------------------------

    def _close(self, s: State) -> State | None:
        """``)`` ends the call once every argument its schema requires is given (the tool
        would refuse the call at run time)."""
        missing = [k for k, spec in self.specs.get(s.tool, {}).items()
                   if spec.required and k not in s.used]  # fmt: skip
        return None if missing else replace(s, phase=_END, line=s.line + ")")

    def _free(self, s: State, ch: str) -> State:
        """Prose, a comment or Thought line, or text after the code: anything goes; a newline
        ends a line (in prose, a fence line opens the code)."""
        if ch != "\n":
            return replace(s, line=s.line + ch)
        if s.phase == _PROSE:
            opens = s.line.lstrip().startswith(("```", "~~~"))
            return replace(s, phase=_LINE_START if opens else _PROSE, line="")
        if s.phase == _FREE_LINE:
            return replace(s, phase=_LINE_START, line="")
        return replace(s, line="")

    def _line_start(self, s: State, ch: str) -> State | None:
        if ch == "\n":
            return s  # a blank line
        if ch in "#`~":  # a comment or a (closing) fence
            return replace(s, phase=_TARGET if ch != "#" else _FREE_LINE, buf="", line=ch)
        if s.answered and self.mode == "program":
            return None  # ANSWER is the last line
        if s.answered and ch == "O":  # line mode: the observation that follows the call
            return replace(s, phase=_AFTER, line=ch)
        if s.answered:
            return None  # line mode: one code line per turn
        if _IDENT_START.match(ch):
            return replace(s, phase=_TARGET, buf=ch, line=ch, target="", tool="", used=())
        return None

    def _target_done(self, s: State, ch: str) -> State | None:
        """The assigned name is complete; ``ch`` follows it."""
        if s.line.startswith(("`", "~")):  # a fence line: the code ends (program) or a free line
            return self._fence_char(s, ch)
        name = s.buf
        if ch == ":" and name.lower() == "thought" and self.mode == "line" and not s.answered:
            return replace(s, phase=_FREE_LINE, line=s.line + ch, buf="")
        if ch not in " =":
            return None
        if name != ANSWER and not self._new_name_ok(s, name):
            return None
        s = replace(s, phase=_AFTER_TARGET, target=name, buf="")
        return self._step(s, ch)

    def _fence_char(self, s: State, ch: str) -> State | None:
        if ch in "`~" and not s.buf:
            return replace(s, line=s.line + ch)
        return replace(s, phase=_FREE_LINE if self.mode == "line" else _AFTER, line=s.line + ch)

    def _fence_line(self, s: State) -> State:
        """A fence line ended: in program mode the code is over."""
        if self.mode == "program":
            return replace(s, phase=_AFTER, line="")
        return replace(s, phase=_LINE_START, line="")

    def _new_name_ok(self, s: State, name: str) -> bool:
        return (
            not name.startswith("_")
            and name not in s.variables
            and name not in self.specs
            and name not in self.media
            and name not in _CONSTANTS
        )

    def _value_start(self, s: State, ch: str) -> State | None:
        line = s.line + ch
        kinds = self._spec(s).kinds if not s.stack else KINDS
        if ch in "\"'":
            if "string" not in kinds or self._words(s) == ():
                return None
            return replace(s, phase=_STRING, quote=ch, line=line, buf="")
        if ch.isdigit() or ch in "-+.":
            return replace(s, phase=_NUMBER_PHASE, line=line) if "number" in kinds else None
        if ch in _CLOSE:
            if ("dict" if ch == "{" else "list") not in kinds:
                return None
            slot = "key" if ch == "{" and not s.stack and s.arg else s.slot
            return replace(s, phase=_NESTED, stack=s.stack + ch, line=line, slot=slot)
        if _IDENT_START.match(ch):
            return self._ident(replace(s, phase=_NAME, buf=""), ch, self._value_names(s))
        return None

    def _nested(self, s: State, ch: str) -> State | None:
        """Inside a list / dict / tuple value: strings, numbers, names, nested brackets. In a
        keyword's dict (``where={"color": "red"}``) the slot says whether a key or the value of
        ``dkey`` comes next, for the word rule."""
        if ch in " ,:":
            if s.stack == "{" and s.slot:
                if ch == ":" and s.slot == "key":
                    return replace(s, line=s.line + ch, slot="value")
                if ch == "," and s.slot == "value":
                    return replace(s, line=s.line + ch, slot="key", dkey="")
            return replace(s, line=s.line + ch)
        if ch in "]})":
            if _CLOSE[s.stack[-1]] != ch:
                return None
            stack = s.stack[:-1]
            slot, dkey = (s.slot, s.dkey) if stack else ("", "")
            return replace(s, stack=stack, phase=_NESTED if stack else _AFTER_VALUE,
                           line=s.line + ch, slot=slot, dkey=dkey)  # fmt: skip
        return self._value_start(s, ch)

    @staticmethod
    def _nested_string_done(s: State, line: str) -> State:
        """A string inside a value ended: in a keyword's dict, a key becomes ``dkey`` and a
        value joins the strings the call gave."""
        done = replace(s, phase=_NESTED, quote="", line=line, buf="")
        if s.stack == "{" and s.slot == "key":
            return replace(done, dkey=s.buf)
        if s.stack == "{" and s.slot == "value":
            return replace(done, given=(*s.given, s.buf))
        return done

    def _end_line(self, s: State) -> State:
        """A statement ended with its newline."""
        if s.target == ANSWER:
            return replace(s, phase=_LINE_START, line="", answered=True, target="")
        return replace(
            s,
            phase=_LINE_START,
            line="",
            variables=(*s.variables, s.target),
            lines=(*s.lines, Line(s.target, s.tool, s.given)),
            answered=self.mode == "line",
            target="",
        )

    @staticmethod
    def _ident(s: State, ch: str, allowed: Collection[str]) -> State | None:
        """``ch`` extends the identifier being read, if some allowed name still starts so."""
        buf = s.buf + ch
        if not any(a.startswith(buf) for a in allowed):
            return None
        return replace(s, buf=buf, line=s.line + ch)

    def _tool_names(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def _keywords(self, s: State) -> tuple[str, ...]:
        """The keywords the call may give next: not given yet, and not ruled out (a word rule
        that leaves a keyword no word)."""
        return tuple(
            k for k in self.specs.get(s.tool, {})
            if k not in s.used and self._ruled_words(s, k) != ()
        )  # fmt: skip

    def _ruled_words(self, s: State, keyword: str) -> tuple[str, ...] | None:
        """The word rule's words for ``keyword`` of the call being written (None: no rule),
        asked once per call state."""
        if self.word_rule is None:
            return None
        key = (s.tool, keyword, s.given, s.passed, s.lines)
        if key not in self._ruled:
            words = self.word_rule(s.tool, keyword, s.given, Code(s.lines, s.passed))
            self._ruled[key] = None if words is None else tuple(words)
        return self._ruled[key]

    def _spec(self, s: State) -> ArgSpec:
        """The argument being given a value (any value outside a call's keywords)."""
        return self.specs.get(s.tool, {}).get(s.arg, ANY) if s.arg else ANY

    def _words(self, s: State) -> tuple[str, ...] | None:
        """The words a string being read must be one of (None: free text; empty: no string
        may be written here): the word rule's where it has one, else a ``Literal``'s."""
        if not s.arg:
            return None
        if s.stack == "{" and s.slot:  # a keyword's dict: "where." for a key, "where.color"...
            if s.slot == "value" and not s.dkey:
                return None
            return self._ruled_words(s, f"{s.arg}.{s.dkey if s.slot == 'value' else ''}")
        if s.stack:
            return None
        ruled = self._ruled_words(s, s.arg)
        if ruled is not None:
            return ruled
        return self._spec(s).enum or None

    def _value_names(self, s: State) -> tuple[str, ...]:
        """Names a value may be: in a call, variables (any result) and, for an argument that
        takes text, media ids, and the constants its kinds allow; as ANSWER's value, variables
        (a media id is no answer) and, in a whole program, a tool to call."""
        if s.target != ANSWER or s.tool or s.stack:
            kinds = self._spec(s).kinds if not s.stack else KINDS
            media = self.media if "string" in kinds else ()
            consts = [c for c, k in (("True", "bool"), ("False", "bool"), ("None", "null"))
                      if k in kinds]  # fmt: skip
            return (*s.variables, *media, *consts)
        calls = self._tool_names() if self.mode == "program" else ()
        return (*s.variables, *_CONSTANTS, *calls)
