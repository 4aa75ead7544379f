"""The program language's prefix grammar (constrained decoding) and how the planners use it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.planners import dsl
from agentkit.planners.grammar import ProgramGrammar
from agentkit.testing import ScriptedBackend

TOOLS = {
    "detect": ["image", "classes", "conf"],
    "select": ["objects", "color", "size"],
    "count": ["objects", "where"],
    "compare": ["a", "b", "op"],
}
MEDIA = ["image_0"]


def grammar(mode="program", variables=()):
    return ProgramGrammar(TOOLS, media=MEDIA, variables=variables, mode=mode)


def every_prefix_viable(g: ProgramGrammar, text: str) -> str | None:
    """The first prefix the grammar refuses, or None."""
    state = g.start()
    for i, ch in enumerate(text):
        state = g.feed(state, ch)
        if state is None:
            return text[: i + 1]
    return None


PROGRAM = (
    "Thought: find the red things, count them\nProgram:\n```\n"
    'objs = detect(image=image_0, classes=["cube", "sphere"], conf=0.25)\n'
    "# keep the red ones\n"
    'reds = select(objects=objs, color="red")\n'
    'n = count(objects=reds, where={"size": "large", "k": [-1.5, 2e3, None, True]})\n'
    "m = count(objects=objs)\n"
    'more = compare(a=n, b=m, op="greater")\n'
    "ANSWER = more\n```\nthat is all"
)


def test_a_whole_program_is_viable_at_every_prefix_and_parses():
    assert every_prefix_viable(grammar(), PROGRAM) is None
    program = dsl.parse_program(PROGRAM.split("Program:\n", 1)[1], list(TOOLS), media=MEDIA)
    assert [c.name for c in program.calls] == ["objs", "reds", "n", "m", "more"]


@pytest.mark.parametrize(
    ("text", "refused_at"),
    [
        ("```\nANSWER = answer", "ANSWER = a"),  # no line set it (nor any name with an a)
        ("```\nobjs = detect(image_0)", "objs = detect(image_"),  # positional argument
        ("```\nobjs = detectx(", "objs = detectx"),  # not a tool
        ("```\nobjs = detect(image=image_0)\nobjs = ", "\nobjs "),  # assigned twice
        ("```\nobjs = detect(image=image_0, image=", "image_0, i"),  # keyword twice
        ("```\nobjs = detect(picture=", "detect(p"),  # not an argument of detect
        ("```\nobjs = detect(image=image_1)", "image=image_1"),  # not a media id of the run
        ("```\n  objs", "```\n "),  # indentation
        ("```\nx = detect(image=image_0\nANSWER = x", "image_0\n"),  # one line per statement
        ("```\ndetect = detect(image=image_0)", "detect "),  # a tool's name
        ("```\nx = detect(image=image_0)\nANSWER = x\ny = ", "\ny"),  # ANSWER is last
        ("```\nx = detect(image=image_0)\nANSWER = image_0", "ANSWER = i"),  # media: no answer
        ("```\nx = __import__('os')", "x = _"),
        ("```\nx = detect(image=image_0).boxes", "image_0)."),
        ("```\nx = detect(image=image_0) + 1", "image_0) +"),
    ],
)
def test_what_the_parser_would_refuse_is_refused_as_it_is_written(text, refused_at):
    refused = every_prefix_viable(grammar(), text)
    assert refused is not None and refused.endswith(refused_at)
    with pytest.raises(dsl.DSLError):  # the parser agrees
        dsl.parse_program(text.split("```\n", 1)[1], list(TOOLS), media=MEDIA)


def test_text_outside_the_code_is_free():
    g = grammar()
    assert g.viable("Thought: anything at all (even x = __import__)\nProgram:\n")
    assert g.viable("```\nANSWER = 3\n```\nObservation: whatever follows the code")
    assert g.viable("```\nx = detect(image=image_0)  \n\n# a note\nANSWER = x  \n")
    assert g.viable('```\nANSWER = count(objects=[image_0], where={"a": 1})\n```')


def test_line_mode_takes_one_line_after_the_names_so_far():
    g = grammar("line", variables=["objs"])
    assert g.viable("n = count(objects=objs)")
    assert g.viable("Thought: count them\nn = count(objects=objs)\nObservation: 3")
    assert g.viable("ANSWER = objs")
    assert g.viable("n = count(objects=objs)\n# n = 3\n")  # the next comment (a stop string)
    assert not g.viable("ANSWER = n")  # n is not set yet
    assert not g.viable("objs = detect(image=image_0)")  # already set
    assert not g.viable("ANSWER = count(objects=objs)")  # parse_line wants the call first
    assert not g.viable("n = count(objects=objs)\nm = ")  # one line per turn


def test_a_reply_may_end_only_once_its_answer_or_line_is_complete():
    g = grammar()

    def done(text):
        state = g.feed(g.start(), text)
        assert state is not None, text
        return g.done(state)

    assert not done("Thought: count\nProgram:\n")
    assert not done("```\nx = detect(image=image_0)\n")
    assert not done("```\nx = detect(image=image_0)\nANSWER = ")
    assert done("```\nx = detect(image=image_0)\nANSWER = x")
    assert done("```\nx = detect(image=image_0)\nANSWER = x\n```")
    line = grammar("line", variables=["objs"])
    assert not line.done(line.feed(line.start(), "Thought: count them\n"))
    assert not line.done(line.feed(line.start(), "n = count(objects=objs"))
    assert line.done(line.feed(line.start(), "n = count(objects=objs)"))


def _clevr_programs(n_scenes: int = 12) -> list[tuple[str, str]]:
    """(question, reply) as the data generator writes them, for questions about unrendered
    scenes of the world (every family, 1-4 steps)."""
    from agentkit.mllm.data import programs_to_tools as P
    from agentkit.mllm.data.gt import projected_scene
    from agentkit.mllm.worlds.questions import generate_questions

    scenes = [projected_scene(seed) for seed in range(n_scenes)]
    out = []
    for q in generate_questions(scenes, per_scene=10, seed=0):
        plan = P.to_plan(q["program"], image="image_0")
        text = P.to_program(plan, media=["image_0"])
        out.append(
            (q["question"], f"Thought: {P.program_thought(plan)}\nProgram:\n```\n{text}\n```")
        )
    return out


def test_every_program_of_the_world_is_viable_whole_and_line_by_line():
    """The grammar must never block what the parser reads: each program the data generator writes
    (the replies the core is trained on), whole and as react's one line per turn."""
    from agentkit.planners.roles import tool_specs
    from agentkit.tools.base import ToolRegistry

    tools = tool_specs(ToolRegistry.default())  # typed by each tool's schema, as the planners do
    programs = _clevr_programs()
    assert len(programs) >= 100
    for question, reply in programs:
        g = ProgramGrammar(tools, media=MEDIA)
        assert every_prefix_viable(g, reply) is None, (question, reply)
        body = reply.split("```\n")[1]
        names: list[str] = []
        for line in body.strip().split("\n"):
            lg = ProgramGrammar(tools, media=MEDIA, variables=names, mode="line")
            assert every_prefix_viable(lg, line) is None, (question, line)
            names.append(line.split(" = ")[0])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('x = relate(objects=objs, reference=objs, relation="fr', True),
        ('x = relate(objects=objs, reference=objs, relation="front")', True),
        ('x = relate(objects=objs, reference=objs, relation="frx', False),  # a Literal's words
        ('x = relate(objects=objs, reference=objs, relation="fron"', False),
        ('x = query(objects=objs, attribute="colour', False),
        ("x = combine(a=image_0", False),  # a list of objects, not an image
        ("x = select(objects=2", False),
        ('x = exist(objects="', False),
        ("x = detect(image=2222", False),
        ('x = detect(image="image_0", conf=0.3, classes=["cube"], color=None)', True),
        ('x = select(objects=objs, color="any text at all")', True),  # a plain str: free
        ('x = count(objects=objs, where={"color": "red"}, min_score=None)', True),
        ("x = count(objects=objs, where=[", False),
        ("x = compare(a=objs, b=3, relation=", True),
        ('x = relate(objects=objs, relation="front")', False),  # reference is required
        ("x = detect()", False),
        ("x = detect(image=image_0)", True),  # the rest have defaults
    ],
)
def test_values_follow_each_arguments_schema(text, ok):
    from agentkit.planners.roles import tool_specs
    from agentkit.tools.base import ToolRegistry

    g = ProgramGrammar(tool_specs(ToolRegistry.default()), media=MEDIA, variables=["objs"],
                       mode="line")  # fmt: skip
    assert g.viable(text) is ok


def test_arg_specs_read_types_enums_and_unions_from_a_schema():
    from typing import Literal

    from pydantic import BaseModel

    from agentkit.planners.grammar import KINDS, arg_specs

    class Args(BaseModel):
        objects: list[dict]
        op: Literal["union", "intersection"]
        label: str | None = None
        k: int = 1
        anything: object = None

    specs = arg_specs(Args.model_json_schema())
    assert specs["objects"].kinds == {"list"} and specs["op"].enum == ("union", "intersection")
    assert specs["label"].kinds == {"string", "null"} and specs["label"].enum == ()
    assert specs["k"].kinds == {"number"} and specs["anything"].kinds == KINDS
    assert [k for k, spec in specs.items() if spec.required] == ["objects", "op"]


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r"), max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(sorted(TOOLS)), st.data()), min_size=1, max_size=4))
def test_any_line_format_line_writes_is_viable(calls):
    """Whatever values a call carries (quotes, escapes, unicode, nesting, earlier names), the
    canonical line reads back and the grammar lets every prefix of it through."""
    names: list[str] = []
    lines = []
    for i, (tool, data) in enumerate(calls):
        keys = data.draw(st.lists(st.sampled_from(TOOLS[tool]), unique=True, max_size=3))
        args = {}
        for k in keys:
            use_name = names and data.draw(st.booleans())
            args[k] = data.draw(st.sampled_from(names)) if use_name else data.draw(_values)
        lines.append(dsl.format_line(f"v{i}", tool, args, set(names)))
        names.append(f"v{i}")
    text = "```\n" + "\n".join(lines) + f"\nANSWER = v{len(calls) - 1}\n```"
    dsl.parse_program(text, list(TOOLS), media=MEDIA)  # reads
    assert every_prefix_viable(grammar(), text) is None, text


# -- the planners hand the grammar to a backend that supports constraints ----------------------


class Constrained(ScriptedBackend):
    """Scripted replies, recording the constraint each call was given."""

    supports_constraints = True

    def __init__(self, replies):
        super().__init__(replies)
        self.constraints: list = []

    def generate(self, messages, *, constraint=None, **kw):
        self.constraints.append(constraint)
        return super().generate(messages, **kw)


def test_program_planner_decodes_under_the_runs_grammar(make_agent, image):
    backend = Constrained(
        ["Program:\n```\nobjs = find(image=image_0)\nn = count(objects=objs)\nANSWER = n\n```"]
    )
    agent, _ = make_agent("program", backend)
    assert agent.ask("How many?", images=[image]).answer == "3"
    (g,) = backend.constraints
    assert isinstance(g, ProgramGrammar) and g.mode == "program"
    assert g.viable("```\nobjs = find(image=image_0)")
    assert not g.viable("```\nobjs = find(image=image_1")  # this run's media only
    assert not g.viable("```\nobjs = search(")  # this registry's tools only


def test_react_code_turns_decode_under_the_names_so_far(make_agent, image):
    backend = Constrained(["objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n"])
    agent, _ = make_agent("react", backend, actions="code")
    assert agent.ask("How many?", images=[image]).answer == "3"
    first, second, third = backend.constraints
    assert all(g.mode == "line" for g in backend.constraints)
    assert not first.viable("n = count(objects=objs)") and second.viable("n = count(objects=objs)")
    assert third.viable("ANSWER = n") and not second.viable("ANSWER = n")
    # the earlier steps are lines a word rule reads (name, tool, strings given)
    assert first.start().lines == () and [ln.name for ln in third.start().lines] == ["objs", "n"]
    assert third.start().lines[0].tool == "find"


def test_constrain_off_or_a_backend_without_support_gets_no_grammar(make_agent, image):
    backend = Constrained(["Program:\n```\nobjs = find(image=image_0)\nANSWER = objs\n```"] * 4)
    agent, _ = make_agent("program", backend, constrain=False)
    agent.ask("What is there?", images=[image])
    assert backend.constraints and all(c is None for c in backend.constraints)


def test_a_word_rule_narrows_strings_as_they_are_written():
    """A rule sees the call's strings so far: here a size may be followed by a colour only when
    the pair describes one object ("small red" or "large blue"); a keyword the rule leaves no
    word is not offered, and keywords without a rule stay free."""

    def rule(tool, keyword, given, code):
        if tool != "select" or keyword not in ("color", "size"):
            return None
        pairs = {("small", "red"), ("large", "blue")}
        if keyword == "size":
            return [s for s, c in pairs if not given or (s, given[-1]) in pairs]
        return [c for s, c in pairs if not given or (given[-1], c) in pairs]

    g = ProgramGrammar(TOOLS, media=MEDIA, mode="line", words=rule)
    assert g.viable('reds = select(objects=objs, size="small", color="red")') is False  # objs
    g = ProgramGrammar(TOOLS, media=MEDIA, variables=["objs"], mode="line", words=rule)
    assert g.viable('reds = select(objects=objs, size="small", color="red")')
    assert g.viable('reds = select(objects=objs, color="blue", size="large")')
    assert not g.viable('reds = select(objects=objs, size="small", color="b')
    assert not g.viable('reds = select(objects=objs, color="green')
    assert g.viable('n = count(objects=objs, where={"color": "green"})')  # nested: no rule
    # a keyword with no word left is not offered
    g = ProgramGrammar(TOOLS, media=MEDIA, variables=["objs"], mode="line",
                       words=lambda tool, keyword, given, code: [] if keyword == "color" else None)  # fmt: skip
    assert not g.viable("reds = select(objects=objs, co")
    assert g.viable('reds = select(objects=objs, size="tiny")')


def test_the_question_narrows_filters_relations_and_comparisons():
    """``Expectation.words_for`` as the planners' word rule: a select's filters describe one
    object of the question; same compares the attribute the question compares; relate takes
    the relation it names."""
    from agentkit.planners.expect import Expectation

    e = Expectation.of(
        "Is the large cylinder the same color as the small cube in front of the sphere?"
    )
    assert set(e.words_for("select", "size", ())) == {"small", "tiny", "large", "big"}
    assert e.words_for("select", "color", ()) == ()  # the question names no colour
    assert e.words_for("select", "shape", ("large",)) == ("cylinder",)
    assert set(e.words_for("select", "shape", ("tiny",))) == {"cube", "block"}
    assert e.words_for("same", "attribute", ()) == ("color",)
    assert e.words_for("relate", "relation", ()) == ("front",)
    assert e.words_for("select", "objects", ()) is None
    assert e.words_for("query", "attribute", ()) is None  # it asks yes or no
    other = Expectation.of("What shape is the other thing that is the same size as the cube?")
    assert other.words_for("query", "attribute", ()) == ("shape",)  # not size, compared
    assert other.words_for("same", "attribute", ()) == ("size",)
    assert Expectation.of("Are there more cubes than balls?").words_for(
        "compare", "relation", ()
    ) == ("more",)
    plain = Expectation.of("What is this?")
    assert plain.words_for("select", "color", ()) is None  # describes nothing: no rule
    no_relation = Expectation.of("How many red cubes are there?")
    assert no_relation.words_for("relate", "relation", ()) is None


def test_a_word_rule_reads_the_code_so_far():
    """The rule sees the lines this reply finished (name, tool, strings) and the names the call
    being written passed, by keyword: here a count's ``where`` colour must be the colour the
    counted objects were selected by."""
    from agentkit.planners.grammar import Code, Line

    seen: list[Code] = []

    def rule(tool, keyword, given, code):
        seen.append(code)
        if tool != "select" or keyword != "size":
            return None
        source = code.line(dict(code.passed).get("objects", ""))
        return ["large"] if source is not None and source.tool == "select" else None

    g = ProgramGrammar(TOOLS, media=MEDIA, words=rule)
    head = 'Program:\n```\nobjs = detect(image=image_0)\nreds = select(objects=objs, color="red")\n'
    assert g.viable(head + 'big = select(objects=reds, size="large")')
    assert not g.viable(head + 'big = select(objects=reds, size="small")')
    assert g.viable(head + 'small = select(objects=objs, size="small")')  # objs: a detect's
    code = next(c for c in reversed(seen) if c.passed)
    assert code.lines == (Line("objs", "detect"), Line("reds", "select", ("red",)))
    assert code.passed == (("objects", "objs"),) and code.line("nope") is None


def test_a_relation_is_taken_from_the_object_the_question_takes_it_from():
    """``relate``'s relation, once its reference is a select of this program, is one the
    question takes from the object that select describes; otherwise any the question names."""
    from agentkit.planners.expect import Expectation
    from agentkit.planners.grammar import Code, Line

    e = Expectation.of("How many things are behind the cyan cube or in front of the big cube?")
    cyan = Line("cyan_cubes", "select", ("cyan", "cube"))
    big = Line("big_cubes", "select", ("large", "block"))
    at = Code((cyan, big), (("objects", "objs"), ("reference", "cyan_cubes")))
    assert e.words_for("relate", "relation", (), at) == ("behind",)
    assert e.words_for("relate", "relation", (), Code(at.lines, (("reference", "big_cubes"),))) == (
        "front",
    )
    # no reference yet, one made by another tool or another reply, or values no object has
    assert set(e.words_for("relate", "relation", (), Code(at.lines))) == {"behind", "front"}
    other = Code((Line("left_objs", "relate"),), (("reference", "left_objs"),))
    assert set(e.words_for("relate", "relation", (), other)) == {"behind", "front"}
    red = Code((Line("reds", "select", ("red",)),), (("reference", "reds"),))
    assert set(e.words_for("relate", "relation", (), red)) == {"behind", "front"}
    assert set(e.words_for("relate", "relation", ())) == {"behind", "front"}


def test_a_where_dict_is_held_as_a_selects_filters():
    """``count(..., where={...})``: each key an attribute the question gives a value of, each
    value one that, with the dict's other values, describes one object of the question; a
    question that describes nothing leaves the dict free."""
    from agentkit.planners.expect import Expectation
    from agentkit.planners.roles import tool_specs
    from agentkit.tools.base import ToolRegistry

    specs = tool_specs(ToolRegistry.default())
    q = "What number of objects are cyan balls and in front of the small purple shiny object?"
    g = ProgramGrammar(specs, media=MEDIA, words=Expectation.of(q).words_for)
    head = "Program:\n```\nobjs = detect(image=image_0)\nn = count(objects=objs, where="
    assert g.viable(head + '{"color": "cyan", "shape": "sphere"})')
    assert g.viable(head + '{"size": "small", "material": "metal", "color": "purple"})')
    assert not g.viable(head + '{"material": "sphere"')  # a shape is no material
    assert not g.viable(head + '{"color": "cyan", "size": "small"')  # two objects' values
    assert not g.viable(head + '{"label": ')  # not an attribute the question gives
    assert g.viable(head + '{"shape": "ball"})')  # a synonym, as select takes it
    free = ProgramGrammar(specs, media=MEDIA, words=Expectation.of("What is this?").words_for)
    assert free.viable(head + '{"label": "x", "n": [1, "a"]})')


def test_the_planners_grammar_holds_filters_to_the_question_unless_told_not_to(
    registry, tmp_path, image
):
    from agentkit.graph import Agent
    from agentkit.runtime import Options
    from agentkit.tools.base import ToolRegistry

    tools = ToolRegistry([*registry, ToolRegistry.default()["select"]])
    reply = ["Program:\n```\nobjs = find(image=image_0)\nANSWER = objs\n```"] * 4

    def grammar(**opts):
        backend = Constrained(reply)
        agent = Agent(backend, tools=tools, planner="program", runs_dir=tmp_path / "runs",
                      options=Options(**opts))  # fmt: skip
        agent.ask("How many small red things are there?", images=[image])
        return backend.constraints[0]

    g = grammar()
    head = "```\nobjs = find(image=image_0)\nreds = select(objects=objs, "
    assert g.viable(head + 'size="small", color="red")')
    assert not g.viable(head + 'color="blue"')  # the question names no blue
    g = grammar(constrain_words=False)
    assert g.word_rule is None and g.viable(head + 'color="blue")')


def test_a_question_asked_of_all_of_a_set_is_not_answered_by_exist(registry, tmp_path, image):
    """ "Are all the red things cubes?": whether any object is there answers it the wrong way
    round, so the grammar leaves ``exist`` out while the program is written (and the fit check
    names a program that answers with it); a question that is not asked of all keeps it, and
    so does one negated too ("Are all the cubes not red?")."""
    from agentkit.graph import Agent
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation
    from agentkit.runtime import Options
    from agentkit.tools.base import ToolRegistry

    default = ToolRegistry.default()
    tools = ToolRegistry([*registry, *(default[n] for n in ("select", "exist", "compare"))])
    reply = ["Program:\n```\nobjs = find(image=image_0)\nANSWER = objs\n```"] * 4

    def grammar(question, **opts):
        backend = Constrained(reply)
        agent = Agent(backend, tools=tools, planner="program", runs_dir=tmp_path / "runs",
                      options=Options(**opts))  # fmt: skip
        agent.ask(question, images=[image])
        return backend.constraints[0]

    head = "```\nobjs = find(image=image_0)\nfound = "
    g = grammar("Are all the red things cubes?")
    assert not g.viable(head + "exist(") and g.viable(head + "compare(")
    assert grammar("Are there any red cubes?").viable(head + "exist(")
    assert grammar("Are all the red things cubes?", constrain_words=False).viable(head + "exist(")
    assert Expectation.of("Are all the cubes not red?").unfit_tools() == frozenset()

    def program(last):
        return dsl.parse_program(
            'objs = detect(image=image_0)\ncubes = select(objects=objs, shape="cube")\n'
            'reds = select(objects=objs, color="red")\n'
            f'rest = combine(a=cubes, b=reds, op="difference")\nfound = {last}\nANSWER = found',
            ToolRegistry.default().names(),
        )

    every = Expectation.of("Are all the cubes red?")
    assert "asks whether all are so" in every.unmet(program("exist(objects=rest)"), "no")
    assert every.unmet(program('compare(a=rest, b=0, relation="same")'), "yes") is None
    some = Expectation.of("Is there a cube that is not red?")
    assert some.unmet(program("exist(objects=rest)"), "yes") is None


def test_the_kind_a_question_asks_for_leaves_the_tools_of_other_kinds_out(
    registry, tmp_path, image
):
    """A count's last line is a count and a value's a query: the grammar leaves out the yes/no
    tools for "How many cubes are not red?" (the core wrote ``compare(a=cubes, b=reds)`` for it)
    and ``count`` too for "What color is ...?"; a yes/no question keeps ``compare`` only when it
    compares two counts or asks of all of a set."""
    from agentkit.graph import Agent
    from agentkit.runtime import Options
    from agentkit.tools.base import ToolRegistry

    default = ToolRegistry.default()
    names = ("select", "exist", "compare", "count", "combine", "query")
    tools = ToolRegistry([*registry, *(default[n] for n in names)])
    reply = ["Program:\n```\nobjs = find(image=image_0)\nANSWER = objs\n```"] * 4

    def viable(question, tool, first="objs = find(image=image_0)\n", **opts):
        backend = Constrained(reply)
        agent = Agent(backend, tools=tools, planner="program", runs_dir=tmp_path / "runs",
                      options=Options(**opts))  # fmt: skip
        agent.ask(question, images=[image])
        return backend.constraints[0].viable(f"```\n{first}x = {tool}(")

    number, value = "How many cubes are not red?", "What color is the cube?"
    assert not viable(number, "compare") and not viable(number, "exist")
    assert viable(number, "count") and viable(number, "combine")
    assert not viable(value, "count") and not viable(value, "exist") and viable(value, "query")
    assert all(viable("Are there more cubes than red things?", t) for t in ("compare", "count"))
    assert viable("Are there as many cubes as red things?", "compare")
    joined = "Is there a thing that is red and a cube?"  # two sets joined, no counts compared
    assert not viable(joined, "compare") and viable(joined, "exist")
    assert viable("Are all the red things cubes?", "compare")
    # a join needs its words: a negation, "all", "and", "or", "either", "both"
    assert not viable("Are there as many cubes as red things?", "combine")
    assert not viable("How many red cubes are there?", "combine")
    assert viable("How many cubes and red things are there?", "combine")
    assert viable("Is there a cube that is not red?", "combine")
    assert viable(number, "compare", constrain_words=False)
    # a description of the image is the caption tool's alone; with no caption tool, any serves
    assert viable("Describe the image.", "find", first="")
    tools = ToolRegistry([*tools, default["caption"]])
    for question in ("Describe the image.", "What do you see?"):
        assert viable(question, "caption", first="")
        assert not viable(question, "find", first="") and not viable(question, "count", first="")
    assert viable("How many cubes are there?", "caption", first="")  # any tool may come first
