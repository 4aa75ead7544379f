"""The program DSL: a strict whitelist over Python's syntax tree; nothing is ever executed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkit.planners.dsl import (
    MAX_LINES,
    DSLError,
    answer_value,
    format_answer,
    parse_program,
    strip_fences,
)

TOOLS = ["detect", "count", "calculate"]
MEDIA = ["image_0", "image_1"]


def parse(text: str, media=MEDIA):
    return parse_program(text, TOOLS, media=media)


OK_HEAD = "objs = detect(image=image_0)\n"


@pytest.mark.parametrize(
    ("program", "needle"),
    [
        ("x = __import__('os')\nANSWER = x", "'__import__' is not a tool"),
        ("__import__('os')", "'__import__' is not a tool"),
        ("f = open('x')\nANSWER = f", "'open' is not a tool"),
        ("x = exec('import os')\nANSWER = x", "'exec' is not a tool"),
        ("x = eval('1')\nANSWER = x", "'eval' is not a tool"),
        ("x = getattr(objs, 'a')\nANSWER = x", "'getattr' is not a tool"),
        (OK_HEAD + "ANSWER = objs.count", "attribute access"),
        (OK_HEAD + "n = count(objects=objs.items)\nANSWER = n", "attribute access"),
        ("n = detect.__globals__(image=image_0)\nANSWER = n", "attribute access"),
        (OK_HEAD + "ANSWER = objs[0]", "subscripts"),
        (OK_HEAD + "n = count(objects=objs[0:2])\nANSWER = n", "subscripts"),
        ("f = lambda: 1\nANSWER = f", "lambda"),
        (OK_HEAD + "n = count(objects=[i for i in objs])\nANSWER = n", "comprehensions"),
        (OK_HEAD + "n = count(objects={i: 1 for i in objs})\nANSWER = n", "comprehensions"),
        (OK_HEAD + "n = count(objects=(i for i in objs))\nANSWER = n", "generator"),
        ('n = detect(image=f"image_{0}")\nANSWER = n', "f-strings"),
        ("import os\nANSWER = 1", "imports"),
        ("from os import path\nANSWER = 1", "imports"),
        ("n = teleport(image=image_0)\nANSWER = n", "'teleport' is not a tool"),
        ("n = detect('image_0')\nANSWER = n", "positional arguments"),
        ("n = detect(*['image_0'])\nANSWER = n", "positional arguments"),
        ("n = detect(**{'image': 'image_0'})\nANSWER = n", "** unpacking"),
        ("(n := detect(image=image_0))\nANSWER = 1", "'detect' is not a tool|walrus"),
        ("ANSWER = (n := 1)", "walrus"),
        ("n = detect(image=image_0, k=(m := 2))\nANSWER = n", "walrus"),
        ("n = detect(image=unknown_name)\nANSWER = n", "'unknown_name' is not defined"),
        ("n = detect(image=image_7)\nANSWER = n", "'image_7' is not defined"),
        (OK_HEAD + "objs = detect(image=image_1)\nANSWER = objs", "already assigned"),
        ("a = b = detect(image=image_0)\nANSWER = a", "exactly one plain name"),
        ("a, b = detect(image=image_0)\nANSWER = a", "exactly one plain name"),
        ("_x = detect(image=image_0)\nANSWER = _x", "may not start with _"),
        ("__builtins__ = detect(image=image_0)\nANSWER = 1", "may not start with _"),
        ("count = detect(image=image_0)\nANSWER = count", "is a tool"),
        ("image_1 = detect(image=image_0)\nANSWER = image_1", "media id"),
        (OK_HEAD + "n = count(objects=detect(image=image_0))\nANSWER = n", "inside an argument"),
        (OK_HEAD + "ANSWER = 1 + 2", "arithmetic"),
        (OK_HEAD + "n = count(objects=objs, min_score=0.1 * 5)\nANSWER = n", "arithmetic"),
        (OK_HEAD + "ANSWER = objs if objs else 0", "conditional"),
        (OK_HEAD + "ANSWER = objs and 1", "and/or"),
        (OK_HEAD + "ANSWER = objs == 1", "comparisons"),
        (OK_HEAD + "n = count(objects=objs, where={'a'})\nANSWER = n", "sets"),
        (
            OK_HEAD + "n = count(objects=objs, label=b'cube')\nANSWER = n",
            "bytes constant b'cube'",
        ),
        (OK_HEAD + "n = count(objects=objs, label=...)\nANSWER = n", "ellipsis constant"),
        (OK_HEAD + "n = count(objects=objs, min_score=1j)\nANSWER = n", "complex"),
        (OK_HEAD + "n = count(objects=objs, min_score=1e999)\nANSWER = n", "not finite"),
        (OK_HEAD + "n = count(objects=objs, label=-'x')\nANSWER = n", "before a number"),
        (OK_HEAD + "n = count(objects=objs, min_score=-1e999)\nANSWER = n", "not finite"),
        (OK_HEAD + "n = count(objects=objs, min_score=-True)\nANSWER = n", "before a number"),
        (OK_HEAD + "n = count(objects=objs, where={1: 'a'})\nANSWER = n", "quoted strings"),
        (OK_HEAD + "n = count(objects=objs, where={**x})\nANSWER = n", "** unpacking"),
        (OK_HEAD + "n = count(objects=[*objs])\nANSWER = n", "* unpacking"),
        (OK_HEAD + "n = count(objects=objs, label='objs')\nANSWER = n", "both a quoted"),
        ("def f():\n    pass\nANSWER = 1", "function definitions"),
        ("class A:\n    pass\nANSWER = 1", "class definitions"),
        ("for i in x:\n    pass\nANSWER = 1", "loops"),
        ("while True:\n    pass\nANSWER = 1", "loops"),
        ("if 1:\n    n = 1\nANSWER = 1", "if statements"),
        ("with open('x') as f:\n    pass\nANSWER = 1", "with statements"),
        ("try:\n    pass\nexcept Exception:\n    pass\nANSWER = 1", "try statements"),
        ("global x\nANSWER = 1", "global"),
        ("del x\nANSWER = 1", "del"),
        ("x: int = 1\nANSWER = 1", "annotated"),
        ("x += 1\nANSWER = 1", "augmented"),
        ("'a docstring'\nANSWER = 1", "str constant"),
        ("n = 3\nANSWER = n", "copying a value"),
        (OK_HEAD + "m = objs\nANSWER = m", "copying a value"),
        (OK_HEAD.strip(), "last line must be `ANSWER"),
        ("ANSWER = 1\nn = detect(image=image_0)", "last line only"),
        ("ANSWER = image_0", "names no variable"),
        ("", "empty"),
        ("# only a comment", "empty"),
        ("n = detect(image=image_0", "not valid syntax"),
        ("n = detect(image=image_0)\n  ANSWER = n", "not valid syntax"),
        ("Thought: count the cubes", "not valid syntax"),
        (
            "\n".join(f"x{i} = detect(image=image_0)" for i in range(MAX_LINES)) + "\nANSWER = x0",
            "lines",
        ),
        ("n = detect(image='" + "a" * 5000 + "')\nANSWER = n", "longer than 4096 bytes"),
        ("n = detect(image=image_0)\x00\nANSWER = n", "not valid syntax"),
    ],
)
def test_unsafe_or_invalid_programs_are_refused(program, needle):
    with pytest.raises(DSLError) as e:
        parse(program)
    assert any(n in str(e.value) for n in needle.split("|")), str(e.value)


def test_errors_name_the_line():
    with pytest.raises(DSLError) as e:
        parse(OK_HEAD + "n = count(objects=objs)\nm = os.system(command='rm')\nANSWER = n")
    assert e.value.line == 3 and str(e.value).startswith("line 3: ")


def test_the_valid_forms():
    p = parse(
        "```python\n"
        "# find everything first\n"
        "objs = detect(image=image_0, classes=['cube', 'sphere'], conf=0.25)\n"
        'reds = count(objects=objs, where={"color": "red", "big": True}, min_score=-1,'
        " label=None)\n"
        "both = count(objects=[objs, reds], tags=('a', -2.5), empty={})\n"
        "ANSWER = reds\n"
        "```"
    )
    assert [(c.name, c.tool) for c in p.calls] == [
        ("objs", "detect"),
        ("reds", "count"),
        ("both", "count"),
    ]
    assert p.calls[0].args == {"image": "image_0", "classes": ["cube", "sphere"], "conf": 0.25}
    assert p.calls[1].args == {
        "objects": "objs",
        "where": {"color": "red", "big": True},
        "min_score": -1,
        "label": None,
    }
    assert p.calls[2].args == {"objects": ["objs", "reds"], "tags": ["a", -2.5], "empty": {}}
    assert p.answer == {"ref": "reds"}
    assert "```" not in p.source


def test_answer_forms():
    assert parse("ANSWER = 3").answer == {"value": 3}
    assert parse("ANSWER = 'blue'").answer == {"value": "blue"}
    assert parse("ANSWER = -2.5").answer == {"value": -2.5}
    p = parse("ANSWER = calculate(expression='2*3')")
    assert p.calls[0].name == "ANSWER" and p.answer == {"ref": "ANSWER"}


def test_media_ids_without_a_known_list_are_recognised_by_shape():
    p = parse_program("n = detect(image=image_3)\nANSWER = n", TOOLS)
    assert p.calls[0].args == {"image": "image_3"}
    with pytest.raises(DSLError, match="not defined"):
        parse_program("n = detect(image=picture)\nANSWER = n", TOOLS)


def test_strip_fences():
    assert strip_fences("```\na = 1\n```\ntrailing") == "a = 1"
    assert strip_fences("~~~py\na = 1\n~~~") == "a = 1"
    assert strip_fences("a = 1\n```") == "a = 1"


@pytest.mark.parametrize(
    ("value", "answer"),
    [
        (True, "yes"),
        (False, "no"),
        (3, "3"),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1 / 3, "0.333333"),
        (" red ", "red"),
    ],
)
def test_format_answer(value, answer):
    assert format_answer(value) == answer


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ([1, 2, 3], "list of 3 items"),
        ({"a": [1], "b": [2]}, "fields ['a', 'b']"),
        (None, "None"),
        ("  ", "empty"),
        (float("nan"), "not a usable number"),
    ],
)
def test_format_answer_refuses_non_answers(value, needle):
    with pytest.raises(DSLError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        format_answer(value)


def test_answer_value_picks_the_answer_field():
    assert answer_value({"count": 2, "total": 3, "indices": [0, 2]}) == 2
    assert answer_value({"value": 6.0}) == 6.0
    assert answer_value({"caption": "a red cube", "box": [1, 2, 3, 4]}) == "a red cube"
    assert answer_value({"objects": [1]}) == [1]
    assert answer_value({"a": [1], "b": [2]}) == {"a": [1], "b": [2]}


# -- fuzzing: whatever the model writes, the parser answers with a Program or a DSLError ------

_TOKENS = [
    "objs", "n", "ANSWER", "detect", "count", "image_0", "x", "=", "(", ")", "[", "]", "{", "}",
    ",", ":", ".", "'a'", '"b"', "1", "-", "2.5", "True", "None", "lambda", "for", "in", "import",
    "f'{x}'", "**", "*", ":=", "\n", " ", "```", "#", "\\", "__import__", "if", "else", "@",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_only_ever_raises_dslerror(text):
    try:
        p = parse(text)
    except DSLError as e:
        assert str(e)  # always says what is wrong
        return
    assert set(p.answer) <= {"ref", "value"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=60))
def test_random_token_soup_only_ever_raises_dslerror(tokens):
    text = "".join(tokens)
    try:
        p = parse(text)
    except DSLError:
        return
    # whatever was accepted is a list of tool calls with a final answer, nothing else
    assert all(c.tool in TOOLS and c.name for c in p.calls)
    assert set(p.answer) <= {"ref", "value"}
