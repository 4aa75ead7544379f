"""The tool-call parser: every accepted form, and properties over malformed model output."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentkit.mllm.toolcall import (
    MAX_SCAN_CHARS,
    FinalAnswer,
    ParseError,
    ToolCall,
    format_call,
    format_final,
    format_observation,
    from_openai,
    parse,
)

TOOLS = ["detect", "crop", "calculate", "image_info"]
RESULT_TYPES = (ToolCall, FinalAnswer, ParseError)
MODEST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def call(tool: str, thought: str = "", **args) -> ToolCall:
    return ToolCall(tool=tool, args=args, thought=thought)


def assert_sane(r) -> None:
    """What every parse result must satisfy, whatever the input."""
    assert isinstance(r, RESULT_TYPES)
    if isinstance(r, ParseError):
        assert r.message.strip()
        assert not r.message.startswith("internal parser error"), r.message


# ---------------------------------------------------------------------------------------------
# Accepted forms


@pytest.mark.parametrize(
    "text",
    [
        'Thought: find the cubes\nAction: detect\nAction Input: {"image": "image_0", "classes": ["cube"]}',
        # keywords in any case, extra spaces, Windows line ends
        'THOUGHT:   find the cubes  \r\naction:  detect\r\nACTION INPUT:{"image": "image_0", "classes": ["cube"]}\r\n',
        # fenced as a whole
        '```\nThought: find the cubes\nAction: detect\nAction Input: {"image": "image_0", "classes": ["cube"]}\n```',
        # fence around the JSON on its own lines, and inline backticks
        'Thought: find the cubes\nAction: detect\nAction Input:\n```json\n{"image": "image_0",\n "classes": ["cube"]}\n```',
        'Thought: find the cubes\nAction: detect\nAction Input: `{"image": "image_0", "classes": ["cube"]}`',
        # single quotes, trailing commas
        "Thought: find the cubes\nAction: detect\nAction Input: {'image': 'image_0', 'classes': ['cube',],}",
        # unquoted keys and bare words
        "Thought: find the cubes\nAction: detect\nAction Input: {image: image_0, classes: [cube]}",
        # key=value pairs, quoted and bare
        'Thought: find the cubes\nAction: detect\nAction Input: image=image_0, classes=["cube"]',
        "Thought: find the cubes\nAction: detect\nAction Input: image='image_0' classes=['cube']",
        # GPT4Tools yes/no style; the fixed question is not kept as the thought
        'Thought: Do I need to use a tool? Yes find the cubes\nAction: detect\nAction Input: {"image": "image_0", "classes": ["cube"]}',
        # markdown decoration
        '**Thought:** find the cubes\n**Action:** `detect`\n**Action Input:** {"image": "image_0", "classes": ["cube"]}',
        # an invented observation and everything after it is dropped
        'Thought: find the cubes\nAction: detect\nAction Input: {"image": "image_0", "classes": ["cube"]}\n'
        "Observation: 3 cubes\nThought: I know\nFinal Answer: 3",
        # text after the JSON on the same line or the next is ignored
        'Thought: find the cubes\nAction: detect\nAction Input: {"image": "image_0", "classes": ["cube"]} then count them\nok',
        # tool name case and quoting are forgiven when the tool list is known
        'Thought: find the cubes\nAction: "Detect"\nAction Input: {"image": "image_0", "classes": ["cube"]}',
        # the label was forgotten but the JSON follows the Action line
        'Thought: find the cubes\nAction: detect\n{"image": "image_0", "classes": ["cube"]}',
    ],
)
def test_accepted_call_forms(text: str) -> None:
    assert parse(text, TOOLS) == call("detect", "find the cubes", image="image_0", classes=["cube"])


def test_preamble_is_the_thought_when_there_is_no_thought_line() -> None:
    r = parse(
        'Let me look.\nAction: crop\nAction Input: {"image": "image_0", "box": [0, 0, 5, 5]}', TOOLS
    )
    assert r == call("crop", "Let me look.", image="image_0", box=[0, 0, 5, 5])


def test_key_value_coercion() -> None:
    r = parse(
        "Action: crop\nAction Input: image=image_0 padding=0.25 n=3 flag=TRUE other=none label=red cube",
        TOOLS,
    )
    assert isinstance(r, ToolCall)
    assert r.args == {
        "image": "image_0",
        "padding": 0.25,
        "n": 3,
        "flag": True,
        "other": None,
        "label": "red cube",
    }


def test_python_literals_in_json() -> None:
    r = parse(
        "Action: crop\nAction Input: {'a': True, 'b': None, 'c': -1.5e3, 'd': 'it\\'s'}", TOOLS
    )
    assert isinstance(r, ToolCall)
    assert r.args == {"a": True, "b": None, "c": -1500.0, "d": "it's"}


class _CalcArgs(BaseModel):
    expression: str


class _TwoArgs(BaseModel):
    image: str
    padding: float = 0.0


def test_bare_input_goes_under_input_without_schema() -> None:
    r = parse("Action: calculate\nAction Input: 2 * (3 + 4)", TOOLS)
    assert r == call("calculate", input="2 * (3 + 4)")


def test_bare_input_maps_to_the_single_required_argument() -> None:
    schemas = {"calculate": _CalcArgs, "crop": _TwoArgs}
    assert parse("Action: calculate\nAction Input: 2 * (3 + 4)", TOOLS, schemas) == call(
        "calculate", expression="2 * (3 + 4)"
    )
    assert parse('Action: calculate\nAction Input: "2 * 3"', TOOLS, schemas) == call(
        "calculate", expression="2 * 3"
    )
    assert parse("Action: crop\nAction Input: image_0", TOOLS, schemas) == call(
        "crop", image="image_0"
    )


def test_tool_objects_give_names_and_schemas() -> None:
    class FakeTool:
        name = "calculate"
        Args = _CalcArgs

    assert parse("Action: calculate\nAction Input: 1+1", [FakeTool()]) == call(
        "calculate", expression="1+1"
    )


@pytest.mark.parametrize(
    ("text", "answer", "thought"),
    [
        ("Thought: I counted them.\nFinal Answer: 3", "3", "I counted them."),
        ("final answer:   There are 3 cubes.  ", "There are 3 cubes.", ""),
        ("Thought: Do I need to use a tool? No\nAI: There are 3 cubes.", "There are 3 cubes.", ""),
        ("```\nThought: done\nFinal Answer: red\n```", "red", "done"),
        ("Thought: done\nFinal Answer: a list:\n- one\n- two", "a list:\n- one\n- two", "done"),
    ],
)
def test_final_answer_forms(text: str, answer: str, thought: str) -> None:
    assert parse(text, TOOLS) == FinalAnswer(answer=answer, thought=thought)


def test_first_of_action_and_final_answer_wins() -> None:
    act_first = 'Thought: look\nAction: detect\nAction Input: {"image": "image_0"}\nFinal Answer: 3'
    assert isinstance(parse(act_first, TOOLS), ToolCall)
    final_first = (
        'Thought: known\nFinal Answer: 3\nAction: detect\nAction Input: {"image": "image_0"}'
    )
    assert parse(final_first, TOOLS) == FinalAnswer(answer="3", thought="known")


def test_only_the_first_call_is_read() -> None:
    text = 'Action: detect\nAction Input: {"a": 1}\nAction: crop\nAction Input: {"b": 2}'
    assert parse(text, TOOLS) == call("detect", a=1)


# ---------------------------------------------------------------------------------------------
# Errors name what was wrong


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "Action: detetc\nAction Input: {}",
            ["detetc", "detect", "crop", "calculate", "image_info"],
        ),
        ("Action: detect", ["Action Input", "cut off"]),
        ("Action: detect\nAction Input:", ["empty", "cut off"]),
        ('Action: detect\nAction Input: {"image": "ima', ["not closed", '"'.strip()]),
        ('Action: detect\nAction Input: {"image": ["a", "b"', ["not closed", "]}"]),
        ('Action: detect\nAction Input: {"image": "a"]', ["stray"]),
        ("Action: detect\nAction Input: {'a': 1 2}", ["invalid"]),
        ("Action: detect\nAction Input: image=", ["image", "no value"]),
        ("Action: detect\nAction Input: 'abc", ["not closed"]),
        ("Action:\nAction Input: {}", ["names no tool"]),
        ("Action Input: {}", ["no 'Action: <tool>'"]),
        ("Final Answer:", ["Final Answer", "empty"]),
        ("I think there are three cubes.", ["neither", "Action", "Final Answer"]),
        ("", ["nothing"]),
        ("Observation: 3 cubes\nFinal Answer: 3", ["neither"]),
        ("Action: detect\nAction Input: " + "[" * 200, ["nested deeper"]),
    ],
)
def test_errors_say_what_is_wrong(text: str, words: list[str]) -> None:
    r = parse(text, TOOLS)
    assert isinstance(r, ParseError), r
    for w in words:
        assert w in r.message, (w, r.message)
    assert r.text == text


def test_non_string_input_is_an_error_not_an_exception() -> None:
    r = parse(None)  # type: ignore[arg-type]
    assert isinstance(r, ParseError) and "str" in r.message


def test_huge_inputs_are_capped_and_fast() -> None:
    valid = 'Thought: look\nAction: detect\nAction Input: {"image": "image_0"}'
    cases = [
        "x" * 8_000_000,
        "\n" * 2_000_000,
        " " * 3_000_000 + "Action:",
        valid + "\n" + "{[" * 2_000_000,
        "Action: detect\nAction Input: " + "[" * 1_000_000,
        "Action: detect\nAction Input: {" + '"a":1,' * 500_000,
        "Action: detect\nAction Input: " + "a=b " * 500_000,
        "Thought: " + "y" * 5_000_000 + "\n" + valid,
    ]
    for text in cases:
        t0 = time.perf_counter()
        r = parse(text, TOOLS)
        assert time.perf_counter() - t0 < 1.0
        assert_sane(r)
        assert len(r.text if isinstance(r, ParseError) else "") <= 4_000
    assert parse(cases[3], TOOLS) == call("detect", "look", image="image_0")
    last = parse(cases[-1], TOOLS)
    assert isinstance(last, ParseError) and str(MAX_SCAN_CHARS) in last.message


# ---------------------------------------------------------------------------------------------
# Properties

_idents = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_args = st.dictionaries(st.text(max_size=10), _json, max_size=5)
_calls = st.builds(ToolCall, tool=_idents, args=_args, thought=st.text(max_size=60))


def _expected(c: ToolCall) -> ToolCall:
    return c.model_copy(update={"thought": " ".join(c.thought.split()), "id": None})


@MODEST
@given(_calls)
def test_format_call_round_trips(c: ToolCall) -> None:
    assume(not c.thought.lower().lstrip().startswith("do i need to use a tool?"))
    text = format_call(c)
    assert parse(text) == _expected(c)
    assert parse(text, [c.tool, "other_tool"]) == _expected(c)


@settings(max_examples=40, deadline=None)
@given(_calls)
def test_truncation_at_every_position(c: ToolCall) -> None:
    """A cut-off call is either an error or (cut in trailing space only) the call itself."""
    assume(not c.thought.lower().lstrip().startswith("do i need to use a tool?"))
    text = format_call(c)
    full = parse(text, [c.tool])
    for i in range(len(text)):
        r = parse(text[:i], [c.tool])
        assert_sane(r)
        assert isinstance(r, ParseError) or r == full, (text[:i], r)


_plain_args = st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-1000, 1000)
        | st.from_regex(r"[a-z0-9 ]{0,10}", fullmatch=True),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)
_plain_calls = st.builds(
    ToolCall,
    tool=st.sampled_from(TOOLS),
    args=_plain_args,
    thought=st.from_regex(r"[A-Za-z ,.]{0,30}", fullmatch=True),
)
_noise = st.text(max_size=40).filter(lambda s: not any(ch in s for ch in ":`~{\n\r"))


@MODEST
@given(
    _plain_calls,
    st.sampled_from(
        [
            "fence",
            "json_fence",
            "quotes",
            "trailing_comma",
            "before",
            "after",
            "observation",
            "case",
        ]
    ),
    _noise,
)
def test_forgiven_mistakes_parse_to_the_same_call(c: ToolCall, mistake: str, noise: str) -> None:
    text = format_call(c)
    head, _, js = text.rpartition("Action Input: ")
    if mistake == "fence":
        text = f"```text\n{text}\n```"
    elif mistake == "json_fence":
        text = f"{head}Action Input:\n```json\n{js}\n```"
    elif mistake == "quotes":
        text = f"{head}Action Input: {js.replace(chr(34), chr(39))}"
    elif mistake == "trailing_comma":
        text = f"{head}Action Input: {js.replace('}', ',}').replace(']', ',]').replace('{,}', '{}').replace('[,]', '[]')}"
    elif mistake == "before":
        text = f"{noise}\n{text}" if c.thought.strip() else text  # noise reads as the thought
    elif mistake == "after":
        text = f"{text}\n{noise}"
    elif mistake == "observation":
        text = f"{text}\nObservation: {noise}\nFinal Answer: {noise or 'x'}"
    elif mistake == "case":
        text = (
            text.replace("Thought:", "thought :")
            .replace("Action Input:", "ACTION_INPUT:")
            .replace("Action:", "action:")
        )
    assert parse(text, TOOLS) == _expected(c), text


@MODEST
@given(_plain_calls, _idents)
def test_unknown_tool_names_it_and_lists_the_valid_ones(c: ToolCall, name: str) -> None:
    assume(name not in TOOLS and name.replace("_", "") not in {t.replace("_", "") for t in TOOLS})
    r = parse(format_call(c.model_copy(update={"tool": name})), TOOLS)
    assert isinstance(r, ParseError)
    assert repr(name) in r.message
    assert all(t in r.message for t in TOOLS)


@MODEST
@given(st.text(max_size=300))
def test_random_unicode_never_raises(text: str) -> None:
    assert_sane(parse(text, TOOLS))
    assert_sane(parse(text))


_fragments = st.sampled_from(
    [
        "Thought:",
        "Action:",
        "Action Input:",
        "Final Answer:",
        "AI:",
        "Observation:",
        "\n",
        "```",
        "{",
        "}",
        "[",
        "]",
        "'",
        '"',
        ",",
        "=",
        "\\",
        "detect",
        "image_0",
        "True",
        "1e5",
        "-",
        " ",
        "**",
        ":",
    ]
)


@MODEST
@given(st.lists(_fragments | st.text(max_size=5), max_size=40))
def test_keyword_soup_never_raises(parts: list[str]) -> None:
    text = "".join(parts)
    assert_sane(parse(text, TOOLS))
    assert_sane(parse(text, None, {"detect": _CalcArgs}))


@MODEST
@given(
    st.text(max_size=40).filter(lambda s: s.strip() == s and s and "\n" not in s and "\r" not in s),
    st.text(max_size=40),
)
def test_format_final_round_trips(answer: str, thought: str) -> None:
    assume(not thought.lower().lstrip().startswith("do i need to use a tool?"))
    assume(not answer.startswith("```") and not answer.startswith("~~~"))
    assert parse(format_final(answer, thought)) == FinalAnswer(
        answer=answer, thought=" ".join(thought.split())
    )


def test_format_observation_is_one_line() -> None:
    assert (
        format_observation("3 cubes\nFinal Answer: 3\n\n") == "Observation: 3 cubes Final Answer: 3"
    )
    transcript = "\n".join(
        [format_call(call("detect", "look", image="image_0")), format_observation("a\nb")]
    )
    assert parse(transcript, TOOLS) == call("detect", "look", image="image_0")


# ---------------------------------------------------------------------------------------------
# OpenAI native function calls


def _oa(name: str, arguments, id: str = "call_1") -> dict:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_from_openai_reads_calls() -> None:
    calls = from_openai(
        [
            _oa("detect", '{"image": "image_0"}'),
            _oa("calculate", "", "call_2"),
            _oa("crop", {"box": [1, 2, 3, 4]}, "c3"),
        ],
        TOOLS,
    )
    assert calls == [
        ToolCall(tool="detect", args={"image": "image_0"}, id="call_1"),
        ToolCall(tool="calculate", args={}, id="call_2"),
        ToolCall(tool="crop", args={"box": [1, 2, 3, 4]}, id="c3"),
    ]
    assert from_openai([]) == []


@pytest.mark.parametrize(
    ("tool_calls", "words"),
    [
        ([_oa("detect", '{"image": "image_0"')], ["detect", "not valid JSON"]),
        ([_oa("detect", "[1, 2]")], ["detect", "JSON object", "list"]),
        ([_oa("detect", 5)], ["must be a JSON string"]),
        ([{"id": "x", "type": "function", "function": {"arguments": "{}"}}], ["no function name"]),
        ([{"id": "x"}], ["no function name"]),
        (["nonsense"], ["no function name"]),
        ([_oa("detecc", "{}")], ["detecc", "detect", "crop"]),
        ("not a list", ["must be a list"]),
    ],
)
def test_from_openai_errors(tool_calls, words: list[str]) -> None:
    r = from_openai(tool_calls, TOOLS)
    assert isinstance(r, ParseError)
    for w in words:
        assert w in r.message, (w, r.message)


@MODEST
@given(
    st.lists(
        st.builds(_oa, _idents, st.text(max_size=30) | _args.map(json.dumps), st.text(max_size=5)),
        max_size=3,
    )
)
def test_from_openai_never_raises(tool_calls: list[dict]) -> None:
    r = from_openai(tool_calls)
    assert isinstance(r, list | ParseError)
    if isinstance(r, ParseError):
        assert not r.message.startswith("internal parser error")
