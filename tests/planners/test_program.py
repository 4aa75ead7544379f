"""``program``: the controller writes a DSL program; the interpreter runs it line by line."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.errors import BackendError, ConfigError
from agentkit.graph import load_steps
from agentkit.mllm.backends.base import Generation
from agentkit.planners import dsl
from agentkit.planners.expect import Expectation, program_words, scene_words, unused_calls
from agentkit.planners.program import relaxations, split_reply
from agentkit.planners.roles import program_reply
from agentkit.state import Step
from agentkit.testing import ScriptedBackend
from agentkit.tools import compare, exist, query, relate, select
from agentkit.tools.base import Tool
from agentkit.trace import read_events


def program(*lines: str, thought: str = "find, then count") -> str:
    return program_reply(thought, lines)


COUNT_RED = program(
    "objs = find(image=image_0)",
    'reds = count(objects=objs, where={"color": "red"})',
    "ANSWER = reds",
)


def test_split_reply_forms():
    assert split_reply(COUNT_RED)[0] == "find, then count"
    assert split_reply(COUNT_RED)[1].startswith("```\nobjs = find")
    assert split_reply("Thought: a\nb = x()\nANSWER = b") == ("a", "b = x()\nANSWER = b")
    assert split_reply("I think:\n```py\nANSWER = 1\n```") == ("I think:", "```py\nANSWER = 1\n```")
    assert split_reply("ANSWER = 1") == ("", "ANSWER = 1")


def test_program_runs_with_named_results_and_no_answer_model_call(make_agent, image, tmp_path):
    a, backend = make_agent("program", [COUNT_RED])
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and res.stop_reason == "answered"
    assert len(backend.calls) == 1  # the interpreted ANSWER is the answer
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.ref for s in executed] == ["objs", "reds"]
    assert executed[0].args == {"image": "image_0"}
    assert executed[1].args == {"objects": "objs", "where": {"color": "red"}}  # as written
    assert executed[1].result == {"count": 2, "total": 3, "indices": [0, 2]}
    assert executed[1].observation.startswith("reds = 2 of 3")
    assert res.steps[0].thought == "find, then count"
    assert res.steps[0].observation.startswith("objs = find(image=image_0)")
    assert res.steps[-1].role == "decider" and res.steps[-1].observation == "ANSWER = 2"
    # the prompt lists the tools and the language
    assert "count(objects=objs" in backend.calls[0][0].content
    # one checkpoint per line: what the checkpoint holds is what ran
    assert [s.ref for s in load_steps(tmp_path / "runs" / res.thread) if s.role == "executor"] == [
        "objs",
        "reds",
    ]


def test_failed_line_is_recorded_and_the_program_rewritten(make_agent, image):
    broken = program(
        "objs = find(image=image_0)",
        "x = boom()",
        "n = count(objects=objs)",
        "ANSWER = n",
    )
    fixed = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    a, backend = make_agent("program", [broken, fixed])
    res = a.ask("How many objects?", images=[image])
    assert res.answer == "3"
    executed = [s for s in res.steps if s.role == "executor"]
    assert [(s.tool, s.ok) for s in executed] == [
        ("find", True),
        ("boom", False),
        ("find", True),
        ("count", True),
    ]  # the failed program stopped at its failed line; the rewrite starts afresh
    assert "sensor on fire" in executed[1].error
    note = next(s for s in res.steps if s.role == "decider" and s.error)
    assert note.error.startswith("Line 2 (x = boom(...)) failed")
    rewrite_prompt = backend.calls[1][-1].content
    assert "Program:\nobjs = find(image=image_0)\nx = boom()" in rewrite_prompt
    assert "Observation: Error: boom failed: RuntimeError: sensor on fire" in rewrite_prompt
    assert "rewrite the program" in rewrite_prompt


def test_no_rewrite_left_hands_over_to_the_summarizer(make_agent):
    broken = program("x = boom()", "ANSWER = x")
    a, backend = make_agent("program", [broken, "Final Answer: unknown"], replans=0)
    res = a.ask("q?")
    assert res.stop_reason == "program_failed" and res.answer == "unknown"
    assert "summarizer" in backend.calls[1][0].content
    assert "no rewrite left" in backend.calls[1][-1].content


def test_a_model_that_declares_no_rewrites_hands_a_failed_program_to_the_summarizer(
    registry, tmp_path
):
    """A model folder may declare ``"replans": "0"`` (the shipped core's rewrites never read):
    its failed program goes straight to the summarizer, no rewrite turn asked; Options win over
    the declaration, and a declaration that is no count is refused."""
    from agentkit.graph import Agent
    from agentkit.runtime import Options

    class Declaring(ScriptedBackend):
        runtime_hints = {"replans": "0"}

    broken = program("x = boom()", "ANSWER = x")
    backend = Declaring([broken, "Final Answer: unknown"])
    agent = Agent(backend, tools=registry, planner="program", runs_dir=tmp_path)
    assert agent.options.replans == 0
    res = agent.ask("q?")
    assert res.stop_reason == "program_failed" and len(backend.calls) == 2
    assert "no rewrite left" in backend.calls[1][-1].content
    again = Declaring([broken, program("ANSWER = 1")])
    told = Agent(again, tools=registry, planner="program", runs_dir=tmp_path,
                 options=Options(replans=1))  # fmt: skip
    assert told.ask("q?").answer == "1" and "rewrite the program" in again.calls[1][-1].content
    assert Agent(ScriptedBackend([]), tools=registry, runs_dir=tmp_path).options.replans == 1
    Declaring.runtime_hints = {"replans": "a few"}
    with pytest.raises(ConfigError, match="replans 'a few'"):
        Agent(Declaring([]), tools=registry, runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="Options replans -1; expected an int >= 0"):
        Agent(ScriptedBackend([]), tools=registry, runs_dir=tmp_path, options=Options(replans=-1))


def test_unreadable_program_goes_back_with_the_line_named(make_agent, image):
    bad = program("objs = find(image=image_0)", "n = len(objs)", "ANSWER = n")
    a, backend = make_agent("program", [bad, program("ANSWER = 0")])
    res = a.ask("q?", images=[image])
    assert res.answer == "0"
    assert not [s for s in res.steps if s.role == "executor"]  # nothing of the bad program ran
    err = res.steps[0].error
    assert "line 2: 'len' is not a tool" in err
    assert "line 2: 'len' is not a tool" in backend.calls[1][-1].content


class BeamBackend(ScriptedBackend):
    """A scripted greedy reply plus an n-best list, as ``HFBackend.candidates`` returns."""

    def __init__(self, replies, beams):
        super().__init__(replies)
        self.beams = beams
        self.asked: list[int] = []

    def candidates(self, messages, n, *, max_new_tokens=256):
        self.asked.append(n)
        return [Generation(text=t, model="beams") for t in self.beams[:n]]


def test_an_unreadable_greedy_program_falls_back_to_the_best_readable_beam(make_agent, image):
    bad = program("objs = find(image=image_0)", "n = len(objs)", "ANSWER = n")
    beams = [
        bad,
        program("objs = find(image_0)", "ANSWER = objs"),
        COUNT_RED,
        program("ANSWER = 9"),
    ]
    backend = BeamBackend([bad], beams)
    a, _ = make_agent("program", backend, candidates=4)
    res = a.ask("How many red things?", images=[image])
    assert backend.asked == [4] and len(backend.calls) == 1  # no rewrite turn was needed
    assert res.answer == "2" and res.stop_reason == "answered"
    ctl = res.steps[0]
    assert ctl.error is None and "(beam 3: the greedy program did not parse: line 2" in ctl.thought
    assert ctl.observation.startswith("objs = find(image=image_0)")


def test_no_readable_beam_or_no_beams_keeps_the_rewrite_turn(make_agent, image):
    bad = program("objs = find(image=image_0)", "n = len(objs)", "ANSWER = n")
    backend = BeamBackend([bad, program("ANSWER = 0")], [bad, "x.y = 1"])
    a, _ = make_agent("program", backend, candidates=2)
    res = a.ask("q?", images=[image])
    assert res.answer == "0" and backend.asked == [2]
    assert "line 2: 'len' is not a tool" in res.steps[0].error
    off = BeamBackend([bad, program("ANSWER = 0")], [COUNT_RED])
    a, _ = make_agent("program", off, candidates=0)
    assert a.ask("q?", images=[image]).answer == "0" and off.asked == []


def counting_find(registry, calls: list[str]) -> None:
    """Makes ``find`` pure (it only reads its image) and counts its runs in ``calls``."""
    find = registry["find"]

    def run(args, ctx):
        calls.append(args.image)
        return find.run(args, ctx)

    registry.register(Tool("find", find.description, find.Args, find.Result, run, pure=True))


def test_a_program_of_pure_tools_runs_in_the_controllers_turn(
    make_agent, image, registry, tmp_path
):
    """A program of pure tools runs as soon as it is written: its lines are the run's executor
    steps, checkpointed with the controller's (the executor node never runs), each tool once,
    and no beam is asked for."""
    finds: list[str] = []
    counting_find(registry, finds)
    backend = BeamBackend([COUNT_RED], [program("ANSWER = 9")])
    a, _ = make_agent("program", backend)
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and finds == ["image_0"] and backend.asked == []
    assert [(s.role, s.ref) for s in res.steps] == [
        ("controller", None), ("executor", "objs"), ("executor", "reds"), ("decider", None)
    ]  # fmt: skip
    assert res.steps[2].observation.startswith("reds = 2 of 3")
    assert [s.ref for s in load_steps(tmp_path / "runs" / res.thread)][:3] == [None, "objs", "reds"]


def test_a_program_that_fails_ahead_gives_way_to_the_best_beam_that_runs(
    make_agent, image, registry
):
    """The greedy program parses but its ANSWER is a list: instead of a rewrite turn, the most
    likely beam that parses *and* runs to an answer is taken (not one that fails ahead too);
    the failed attempt leaves no step behind."""
    finds: list[str] = []
    counting_find(registry, finds)
    listy = program("objs = find(image=image_0)", "ANSWER = objs")
    unreadable = program("objs = find(image=image_0)", "n = len(objs)", "ANSWER = n")
    beams = [listy, unreadable, program("objs = find(image=image_0)", "ANSWER = objs"),
             COUNT_RED, program("ANSWER = 9")]  # fmt: skip
    backend = BeamBackend([listy], beams)
    a, _ = make_agent("program", backend, candidates=5)
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and len(backend.calls) == 1 and backend.asked == [5]
    ctl = res.steps[0]
    assert "(beam 4: the greedy program failed when run ahead: " in ctl.thought
    assert "ANSWER is a list of 3 items" in ctl.thought
    assert [s.ref for s in res.steps if s.role == "executor"] == ["objs", "reds"]
    assert finds == ["image_0"]  # every program's find(image_0) is the same call


def test_a_failure_ahead_is_not_waited_for_twice(make_agent, image, registry):
    """A pure tool that fails (think: times out) fails once: the beams that make the same call
    get the remembered failure, and with no beam working the greedy program stands as it ran,
    its failed line a step of the run, and the decider asks for the rewrite (no second call)."""
    booms: list[int] = []
    boom = registry["boom"]

    def run(args, ctx):
        booms.append(1)
        return boom.run(args, ctx)

    registry.register(Tool("boom", boom.description, boom.Args, boom.Result, run, pure=True))
    failing = program("x = boom(seconds=1)", "ANSWER = x")
    backend = BeamBackend(
        [failing, program("ANSWER = 0")],
        [failing, program("y = boom(seconds=1)", "ANSWER = y"), "not a program"],
    )
    a, _ = make_agent("program", backend, candidates=3)
    res = a.ask("q?", images=[image])
    assert res.answer == "0" and booms == [1]
    executed = [s for s in res.steps if s.role == "executor"]
    assert [(s.ref, s.tool) for s in executed] == [(None, "boom")] and executed[0].error
    assert "Line 1 (x = boom(...)) failed" in next(
        s.error for s in res.steps if s.role == "decider"
    )


def test_value_questions_take_values_of_their_attribute():
    size = Expectation("a size", Counter())
    assert [size.kind_fits(a) for a in ("large", "cube", "2", "huge")] == [True, False, False, True]


def test_scene_words_of_questions_and_programs():
    """Synonyms read as detect reads them, counted; variable names and media ids are not words
    of the scene; an attribute's name ("color") is not one of its values."""
    q = "How many big shiny balls are left of the tiny matte block?"
    assert scene_words([q]) == Counter(
        {"large": 1, "metal": 1, "sphere": 1, "left": 1, "small": 1, "rubber": 1, "cube": 1}
    )
    prog = dsl.parse_program(
        "red_things = find(image=image_0)\n"
        'n = count(objects=red_things, where={"color": "red", "shape": "balls"})\nANSWER = n',
        ["find", "count"],
        media=["image_0"],
    )
    assert program_words(prog) == Counter({"red": 1, "sphere": 1})
    expect = Expectation("a number", Counter({"red": 1}))
    assert expect.unmet(prog, "2") == "the program adds sphere against the question"
    assert Expectation("a number", Counter({"red": 1, "sphere": 1})).unmet(prog, "2") is None
    assert "asks for yes/no" in Expectation("yes/no", Counter()).unmet(prog, "2")
    assert Expectation(None, Counter()).unmet(prog, "2") is None  # nothing to hold it to


def test_a_program_that_leaves_a_result_unread_does_not_fit():
    """ "Are there more cubes than balls?" answered by whether there are cubes: the program
    names cubes and balls and answers yes or no, but nothing reads the balls."""
    tools = ["find", "select", "exist", "count", "compare"]
    lines = ["objs = find(image=image_0)", 'cubes = select(objects=objs, shape="cube")',
             'balls = select(objects=objs, shape="sphere")']  # fmt: skip
    one = dsl.parse_program("\n".join([*lines, "e = exist(objects=cubes)", "ANSWER = e"]), tools)
    both = dsl.parse_program(
        "\n".join([*lines, "a = count(objects=cubes)", "b = count(objects=balls)",
                   'm = compare(a=a, b=b, op="greater")', "ANSWER = m"]), tools,
    )  # fmt: skip
    assert [c.name for c in unused_calls(one)] == ["balls"]
    assert unused_calls(both) == []
    constant = dsl.parse_program("objs = find(image=image_0)\nANSWER = 3", tools)
    assert [c.name for c in unused_calls(constant)] == ["objs"]
    expect = Expectation("yes/no", scene_words(["Are there more cubes than balls?"]))
    assert expect.unmet(both, "yes") is None
    assert expect.unmet(one, "yes") == (
        "nothing reads balls = select(...): the program answers another question"
    )


def test_a_program_that_drops_or_adds_a_filter_gives_way_to_a_beam_that_names_the_question(
    make_agent, image, registry
):
    """The question names red things; the greedy program counts every thing (it misses "red"):
    the most likely beam that runs and names what the question names is taken; with none, the
    greedy program's answer stands."""
    counting_find(registry, [])
    every = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    backend = BeamBackend([every], [every, program("ANSWER = 7"), COUNT_RED])
    a, _ = make_agent("program", backend, candidates=3)
    res = a.ask("How many red things are there?", images=[image])
    assert res.answer == "2"
    assert "the program misses red against the question" in res.steps[0].thought
    stuck = BeamBackend([every], [every, program("ANSWER = 7")])
    b, _ = make_agent("program", stuck, candidates=2)
    assert b.ask("How many red things are there?", images=[image]).answer == "3"


def test_a_failed_program_takes_a_beam_that_runs_even_if_it_does_not_fit(
    make_agent, image, registry
):
    """Fitting the question is a preference: when the greedy program fails and no beam fits,
    the likeliest beam that runs is still better than a rewrite turn (a looser filter may
    answer right where a detector missed an attribute)."""
    counting_find(registry, [])
    registry.register(dataclasses.replace(registry["boom"], pure=True))
    failing = program("x = boom(seconds=0)", "ANSWER = x")
    loose = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    backend = BeamBackend([failing], [failing, "not a program", loose])
    a, _ = make_agent("program", backend, candidates=3)
    res = a.ask("How many red things are there?", images=[image])
    assert res.answer == "3" and len(backend.calls) == 1
    assert "(beam 3: the greedy program failed when run ahead: " in res.steps[0].thought


def test_a_program_answering_another_kind_than_asked_gives_way_to_a_beam(
    make_agent, image, registry
):
    """The question asks yes or no; the greedy program counts (it runs, but answers a number):
    the most likely beam whose answer is a yes/no is taken, and, with none that fits the
    question in full, the most likely that answers yes or no (a number is surely wrong). With no
    such beam the greedy program's answer stands."""
    counting_find(registry, [])
    registry.register(select)
    registry.register(exist)
    yes_no = program("objs = find(image=image_0)", 'reds = select(objects=objs, color="red")',
                     "e = exist(objects=reds)", "ANSWER = e")  # fmt: skip
    backend = BeamBackend([COUNT_RED], [COUNT_RED, program("ANSWER = 7"), yes_no])
    a, _ = make_agent("program", backend, candidates=3)
    res = a.ask("Are there red things?", images=[image])
    assert res.answer == "yes" and backend.asked == [3]
    assert "ANSWER is '2', but the question asks for yes/no" in res.steps[0].thought
    every = program("objs = find(image=image_0)", "e = exist(objects=objs)", "ANSWER = e")
    # (the question reworded, "Are there any red things?", gets no program that fits either)
    loose = BeamBackend([COUNT_RED, COUNT_RED], [COUNT_RED, program("ANSWER = 7"), every])
    c, _ = make_agent("program", loose, candidates=3)
    res = c.ask("Are there red things?", images=[image])  # "every" misses red, but says yes/no
    assert res.answer == "yes" and "(beam 3: " in res.steps[0].thought
    assert "Question: Are there any red things?" in loose.calls[1][-1].content
    stuck = BeamBackend([COUNT_RED, COUNT_RED], [COUNT_RED, program("ANSWER = 7")])
    b, _ = make_agent("program", stuck, candidates=2)
    assert b.ask("Are there red things?", images=[image]).answer == "2"


BLUE_SPHERE = program(
    "objs = find(image=image_0)",
    'balls = select(objects=objs, color="blue", shape="sphere")',
    'v = query(objects=balls, attribute="shape")',
    "ANSWER = v",
)


def test_a_referent_nobody_finds_is_read_without_one_of_its_words(make_agent, image, registry):
    """The question presupposes a blue sphere; the image holds a blue cube and a red sphere, so
    the program's select keeps nothing and its query fails ahead. With no beam that runs and
    fits, the program is read with one of that select's filters left out, in the order written
    (without "blue": the red sphere): it runs, fits the question but for that word, and the
    thought says what was left out. A fitting beam still comes first."""
    counting_find(registry, [])
    registry.register(select)
    registry.register(query)
    backend = BeamBackend([BLUE_SPHERE], [BLUE_SPHERE, program("ANSWER = 7")])
    a, _ = make_agent("program", backend, candidates=2)
    res = a.ask("What shape is the blue sphere?", images=[image])
    assert res.answer == "sphere" and res.stop_reason == "answered" and len(backend.calls) == 1
    ctl = res.steps[0]
    assert "(the greedy program found no blue sphere object: read without 'blue')" in ctl.thought
    assert 'balls = select(objects=objs, shape="sphere")' in ctl.observation  # what ran
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.ref for s in executed] == ["objs", "balls", "v"] and not any(
        s.error for s in executed
    )
    assert executed[1].args == {"objects": "objs", "shape": "sphere"}

    blue = program("objs = find(image=image_0)", 'c = select(objects=objs, color="blue")',
                   'v = query(objects=c, attribute="shape")', "ANSWER = v")  # fmt: skip
    fits = BeamBackend([BLUE_SPHERE], [BLUE_SPHERE, blue])
    b, _ = make_agent("program", fits, candidates=2)
    res = b.ask("What shape is the blue thing?", images=[image])
    assert res.answer == "cube" and "(beam 2: the greedy program failed" in res.steps[0].thought


def test_the_reading_that_leaves_one_object_is_taken(make_agent, image, registry):
    """Asked "What size is the purple cube?" where the detector saw a large purple cylinder
    and two small cubes: read without "purple", two cubes are left (query would take the
    likelier one); without "cube", one object. "The" presupposes one, so that reading is taken,
    though its word comes second."""
    scene = [
        {"label": "cube", "shape": "cube", "color": "gray", "size": "small", "box": [1, 1, 5, 5],
         "score": 0.9},
        {"label": "cube", "shape": "cube", "color": "red", "size": "small", "box": [6, 6, 9, 9],
         "score": 0.8},
        {"label": "cylinder", "shape": "cylinder", "color": "purple", "size": "large",
         "box": [2, 6, 4, 8], "score": 0.7},
    ]  # fmt: skip
    find = registry["find"]
    registry.register(Tool("find", find.description, find.Args, find.Result,
                           lambda args, ctx: find.Result(objects=scene), pure=True))  # fmt: skip
    registry.register(select)
    registry.register(query)
    purple_cube = program(
        "objs = find(image=image_0)",
        'c = select(objects=objs, color="purple", shape="cube")',
        'v = query(objects=c, attribute="size")',
        "ANSWER = v",
    )
    a, _ = make_agent("program", BeamBackend([purple_cube], [purple_cube]), candidates=1)
    res = a.ask("What size is the purple cube?", images=[image])
    assert res.answer == "large"
    assert "read without 'cube'" in res.steps[0].thought
    assert 'c = select(objects=objs, color="purple")' in res.steps[0].observation


def test_a_lone_filter_is_never_dropped_and_counts_of_nothing_stand(make_agent, image, registry):
    """A select with one filter is not relaxed (nothing would be left to look for): the failed
    program goes to the rewrite turn as before. Counting nothing is an answer, not a failure."""
    counting_find(registry, [])
    registry.register(select)
    registry.register(query)
    lone = program("objs = find(image=image_0)", 'g = select(objects=objs, color="green")',
                   'v = query(objects=g, attribute="shape")', "ANSWER = v")  # fmt: skip
    a, backend = make_agent("program", BeamBackend([lone, program("ANSWER = 0")], [lone]),
                            candidates=1)  # fmt: skip
    res = a.ask("What shape is the green thing?", images=[image])
    assert res.answer == "0" and len(backend.calls) == 2  # the rewrite turn was asked for
    assert "read without" not in res.steps[0].thought
    none = program("objs = find(image=image_0)", 'g = select(objects=objs, color="green", shape="cube")',
                   "n = count(objects=g)", "ANSWER = n")  # fmt: skip
    b, _ = make_agent("program", [none])
    assert b.ask("How many green cubes are there?", images=[image]).answer == "0"


def test_a_failed_program_is_not_answered_by_a_guess(make_agent, image, registry):
    """No green thing is found, so the program fails and the summarizer answers. "What shape is
    the green thing?": no result holds a shape, so nothing the model wrote would be more than
    a guess; the run ends with no answer and says why (with the constraints off the model still
    writes one). "Is there a cube left of the green thing?": nothing seen says yes, so no,
    with no model call."""
    from tests.planners.test_expect import Scoring

    counting_find(registry, [])
    for tool in (select, query, relate, exist):
        registry.register(tool)
    green = program("objs = find(image=image_0)", 'g = select(objects=objs, color="green")',
                    'v = query(objects=g, attribute="shape")', "ANSWER = v")  # fmt: skip
    a, backend = make_agent("program", Scoring("cube", [green, "Final Answer: cube"]), replans=0)
    res = a.ask("What shape is the green thing?", images=[image])
    assert res.answer is None and res.stop_reason == "no_evidence" and len(backend.calls) == 1
    assert "no result holds a shape and a search found nothing" in res.steps[-1].thought
    b, _ = make_agent("program", Scoring("cube", [green, "Final Answer: cube"]), replans=0,
                      constrain=False)  # fmt: skip
    assert b.ask("What shape is the green thing?", images=[image]).answer == "cube"
    # a program that ran but answers another kind ("no" to a shape question): no answer either
    exists = program("objs = find(image=image_0)", 'g = select(objects=objs, color="green")',
                     "e = exist(objects=g)", "ANSWER = e")  # fmt: skip
    d, _ = make_agent("program", Scoring("cube", [exists]), replans=0)
    res = d.ask("What shape is the green thing?", images=[image])
    assert res.answer is None and res.stop_reason == "no_evidence"
    assert res.steps[-1].thought.startswith("the controller answered 'no', not a shape; no result")
    left = program("objs = find(image=image_0)", 'g = select(objects=objs, color="green")',
                   'l = relate(objects=objs, reference=g, relation="left")',
                   "e = exist(objects=l)", "ANSWER = e")  # fmt: skip
    c, backend = make_agent("program", Scoring("yes", [left]), replans=0)
    res = c.ask("Is there a cube left of the green thing?", images=[image])
    assert res.answer == "no" and res.stop_reason == "program_failed" and not backend.scored


def test_relaxations_follow_empty_selects_back_and_keep_one_filter():
    """The failed line's list came from a select of a select that both kept nothing: the
    nearer has one filter (kept), the farther two, each left out in turn; a program whose last
    step did not fail is not relaxed."""
    tools = ["find", "select", "query"]
    prog = dsl.parse_program(
        "objs = find(image=image_0)\n"
        'a = select(objects=objs, color="blue", shape="sphere")\n'
        'b = select(objects=a, size="small")\n'
        'v = query(objects=b, attribute="color")\nANSWER = v',
        tools,
        media=["image_0"],
    )
    steps = [
        Step(role="executor", tool=c.tool, args=c.args, ref=c.name, result=r)
        for c, r in zip(
            prog.calls[:3],
            [{"objects": [{"label": "cube"}]}, *[{"objects": [], "count": 0}] * 2],
            strict=True,
        )
    ]
    steps.append(Step(role="executor", tool="query", args=prog.calls[3].args, error="needs one"))
    got = list(relaxations(prog, steps, ["image_0"]))
    assert [(lo.sought, lo.word, lo.index) for _, lo in got] == [
        ("blue sphere object", "blue", 1),
        ("blue sphere object", "sphere", 1),
    ]
    assert [c.args for c in got[0][0].calls][1] == {"objects": "objs", "shape": "sphere"}
    assert got[1][0].source.splitlines()[1] == 'a = select(objects=objs, color="blue")'
    assert dsl.parse_program(got[1][0].source, tools, media=["image_0"]) == got[1][0]
    ran = [*steps[:3], steps[3].model_copy(update={"error": None, "ref": "v", "result": {}})]
    assert list(relaxations(prog, ran, ["image_0"])) == []


def test_acting_tools_are_never_run_ahead(make_agent, image, registry):
    """``nap`` is not pure: its program is not run ahead (it would act twice) and runs as steps
    as written; with run-ahead off, a failing program goes to the rewrite turn as before."""
    naps: list[float] = []
    nap = registry["nap"]
    registry.register(
        Tool(
            "nap",
            nap.description,
            nap.Args,
            nap.Result,
            lambda a, c: naps.append(1) or nap.run(a, c),
        )
    )
    backend = BeamBackend([program("x = nap(seconds=0)", "ANSWER = x")], [program("ANSWER = 9")])
    a, _ = make_agent("program", backend)
    assert a.ask("q?", images=[image]).answer == "0" and naps == [1] and backend.asked == []
    listy = program("objs = find(image=image_0)", "ANSWER = objs")
    off = BeamBackend([listy, program("ANSWER = 0")], [COUNT_RED])
    b, _ = make_agent("program", off, run_ahead=False)
    res = b.ask("q?", images=[image])
    assert res.answer == "0" and off.asked == [] and len(off.calls) == 2


def test_unreadable_programs_stop_after_the_parse_limit(make_agent):
    a, _ = make_agent("program", ["import os", "x.y = 1", "Final Answer: ?"], max_parse_errors=2)
    res = a.ask("q?")
    assert res.stop_reason == "parse_errors" and res.answer == "?"


def test_a_list_answer_is_sent_back_for_a_rewrite(make_agent, image):
    listy = program("objs = find(image=image_0)", "ANSWER = objs")
    fixed = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    a, backend = make_agent("program", [listy, fixed])
    res = a.ask("How many?", images=[image])
    assert res.answer == "3"
    assert "ANSWER is a list of 3 items" in backend.calls[1][-1].content


def test_answer_formats(make_agent):
    a, _ = make_agent("program", [program("v = add(a=1.5, b=1.5)", "ANSWER = v")])
    assert a.ask("1.5+1.5?").answer == "3"
    a, _ = make_agent("program", [program("ANSWER = True")])
    assert a.ask("Is it?").answer == "yes"
    a, _ = make_agent("program", [program("ANSWER = calculate(expression='7/2')")])
    assert a.ask("7/2?").answer == "3.5"


def test_summarize_option_lets_the_model_write_the_answer(make_agent, image):
    a, backend = make_agent("program", [COUNT_RED, "Final Answer: two"], summarize=True)
    res = a.ask("How many red?", images=[image])
    assert res.answer == "two"
    assert "Observation: reds = 2 of 3" in backend.calls[1][-1].content


def test_budget_stops_a_long_program(make_agent):
    long = program(*[f"v{i} = add(a={i}, b=1)" for i in range(5)], "ANSWER = v4")
    a, _ = make_agent("program", [long, "Final Answer: partial"])
    res = a.ask("add", max_steps=2)
    assert res.stop_reason == "budget" and res.answer == "partial"
    assert len([s for s in res.steps if s.role == "executor"]) == 2


def test_resume_after_backend_error_continues_from_the_checkpoint(make_agent, image, tmp_path):
    broken = program("objs = find(image=image_0)", "x = boom()", "ANSWER = x")
    a, _ = make_agent("program", [broken])  # the rewrite finds the script empty
    with pytest.raises(BackendError):
        a.ask("How many?", images=[image], thread="r1")
    run_dir = tmp_path / "runs" / "r1"
    kept = load_steps(run_dir)
    assert [(s.role, s.tool) for s in kept] == [
        ("controller", None),
        ("executor", "find"),
        ("executor", "boom"),
        ("decider", None),
    ]
    assert read_events(run_dir / "trace.jsonl")[-1]["event"] == "error"
    fixed = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    b, backend = make_agent("program", [fixed])
    res = b.resume("r1")
    assert res.answer == "3" and res.stop_reason == "answered"
    assert [s.started for s in res.steps[:4]] == [s.started for s in kept]  # nothing ran twice
    assert len(backend.calls) == 1 and "sensor on fire" in backend.calls[0][-1].content


def test_interrupted_mid_program_resumes_at_the_unfinished_line(
    make_agent, image, registry, tmp_path
):
    """Ctrl-C while line 2 runs: line 1 is in the checkpoint, so a resume runs lines 2 and 3."""
    from pydantic import BaseModel

    class NoArgs(BaseModel):
        pass

    class Done(BaseModel):
        ok: bool

    calls = []

    def _halt(args, ctx):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return Done(ok=True)

    registry.register(Tool("halt", "Stops the first time.", NoArgs, Done, _halt))
    prog = program(
        "objs = find(image=image_0)", "h = halt()", "n = count(objects=objs)", "ANSWER = n"
    )
    a, _ = make_agent("program", [prog])
    with pytest.raises(KeyboardInterrupt):
        a.ask("How many?", images=[image], thread="r2")
    kept = load_steps(tmp_path / "runs" / "r2")
    assert [s.ref for s in kept] == [None, "objs"]
    b, backend = make_agent("program", [])  # no model call is needed to finish
    res = b.resume("r2")
    assert res.answer == "3" and backend.calls == []
    assert [s.ref for s in res.steps if s.role == "executor"] == ["objs", "h", "n"]
    assert res.steps[1].started == kept[1].started


def test_cli_program(tmp_path: Path):
    s = tmp_path / "s.json"
    s.write_text(json.dumps([program("v = calculate(expression='6*7')", "ANSWER = v")]))
    r = CliRunner().invoke(
        app,
        ["ask", "What is 6*7?", "--planner", "program", "--model", f"scripted:{s}"]
        + ["--runs-dir", str(tmp_path / "runs"), "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["answer"] == "42"
    assert [(s["role"], s["ref"]) for s in out["steps"]] == [
        ("controller", None),
        ("executor", "v"),
        ("decider", None),
    ]


@pytest.mark.parametrize(
    ("planner", "replies"),
    [
        (
            "react",
            ["Thought: look\nAction: find\nAction Input: {}", "Thought: one\nFinal Answer: 1"],
        ),
        (
            "program",
            [program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")],
        ),
        (
            "plan",
            [
                'Plan:\n1. Thought: look\nAction: find\nAction Input: {"image": "image_0"}',
                "Thought: some\nFinal Answer: 3",
            ],
        ),  # fmt: skip
        (
            "tree",  # its branches' prompts too
            [
                "No sub-questions.",
                "Thought: look\nAction: find\nAction Input: {}",
                "Thought: one\nFinal Answer: 1",
            ],
        ),  # fmt: skip
    ],
)
def test_a_spoken_question_is_shown_to_the_models_as_its_typed_twin(
    planner, replies, make_agent, registry, image, tmp_path
):
    """The models were trained on typed tasks: a spoken run's prompts are the typed run's, with
    no transcription step and no audio id in them (the steps and the trace keep both)."""
    from pydantic import BaseModel

    class HeardArgs(BaseModel):
        audio: str

    class Heard(BaseModel):
        text: str

    question = "How many things are there?"
    registry.register(
        Tool("transcribe", "Speech to text.", HeardArgs, Heard, lambda a, ctx: Heard(text=question))
    )
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")  # the fake transcriber never reads it
    typed, typed_backend = make_agent(planner, list(replies))
    typed_res = typed.ask(question, images=[image])
    spoken, spoken_backend = make_agent(planner, list(replies))
    spoken_res = spoken.ask(None, images=[image], audio=clip)
    assert (
        spoken_res.steps[0].tool == "transcribe" and "audio_0" in spoken_res.steps[0].args.values()
    )
    assert spoken_res.answer == typed_res.answer
    assert len(spoken_backend.calls) == len(typed_backend.calls) > 0
    for heard, read in zip(spoken_backend.calls, typed_backend.calls, strict=True):
        assert [(m.role, m.content) for m in heard] == [(m.role, m.content) for m in read]


class _Heard(BaseModel):
    text: str
    alternatives: list[str] = []


class _HeardArgs(BaseModel):
    audio: str
    alternatives: int = 0


def _transcriber(registry, heard: str, others: list[str]) -> list[int]:
    """A fake ``transcribe`` that hears ``heard``, and ``others`` as its beam's other readings;
    returns the list of the ``alternatives`` each call asked for."""
    asked: list[int] = []

    def run(a: _HeardArgs, ctx) -> _Heard:
        asked.append(a.alternatives)
        return _Heard(text=heard, alternatives=others[: a.alternatives])

    registry.register(Tool("transcribe", "Speech to text.", _HeardArgs, _Heard, run))
    return asked


FAILS = program("objs = find(image=image_0)", "x = boom()", "ANSWER = x")


def test_a_spoken_question_whose_program_fails_is_tried_on_the_next_reading(
    make_agent, registry, image, tmp_path
):
    """The words a failed program was written from may be misheard: the next reading of the
    recording gets a fresh run (the prompt of its typed twin, a budget of its own), and the
    failed attempt stays in the steps."""
    asked = _transcriber(registry, "How many green things?", ["How many red things?", "x"])
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    typed, typed_backend = make_agent("program", [COUNT_RED], replans=0)
    typed.ask("How many red things?", images=[image], max_steps=2)
    spoken, backend = make_agent("program", [FAILS, COUNT_RED], replans=0)
    res = spoken.ask(None, images=[image], audio=clip, max_steps=2)
    assert res.answer == "2" and res.stop_reason == "answered"
    assert res.question == "How many red things?"  # the reading answered
    assert asked == [0, 2]  # the beam runs once, after the failure
    tools = [(s.tool, s.ok) for s in res.steps if s.role == "executor"]
    assert tools == [("transcribe", True), ("find", True), ("boom", False),
                     ("transcribe", True), ("find", True), ("count", True)]  # fmt: skip
    assert any(s.observation == "Heard: How many red things?" for s in res.steps)
    # the second program was asked for exactly as the typed question's was
    assert [(m.role, m.content) for m in backend.calls[1]] == [
        (m.role, m.content) for m in typed_backend.calls[0]
    ]


def test_rehearing_stops_after_the_readings_it_may_try(make_agent, registry, image, tmp_path):
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    asked = _transcriber(registry, "How many green things?", ["How many red things?", "b", "c"])
    a, _ = make_agent("program", [FAILS] * 4, replans=0, rehear=2)
    res = a.ask(None, images=[image], audio=clip)
    assert res.stop_reason == "program_failed" and programs(res) == 3
    assert asked == [0, 2]  # the second re-hearing reads the same beam
    heard = [s.observation for s in res.steps if (s.observation or "").startswith("Heard:")]
    assert heard == ["Heard: How many red things?", "Heard: b"]
    asked.clear()
    off, _ = make_agent("program", [FAILS] * 2, replans=0, rehear=0)
    res = off.ask(None, images=[image], audio=clip)
    assert res.stop_reason == "program_failed" and programs(res) == 1 and asked == [0]
    # a typed question is never re-heard
    typed, _ = make_agent("program", [FAILS] * 2, replans=0)
    res = typed.ask("How many?", images=[image])
    assert res.stop_reason == "program_failed" and programs(res) == 1 and asked == [0]


def programs(res) -> int:
    return sum(s.role == "controller" for s in res.steps)


def test_react_re_hears_a_question_its_controller_cannot_answer(
    make_agent, registry, image, tmp_path
):
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    asked = _transcriber(registry, "How many green things?", ["What is 6*7?"])
    a, _ = make_agent("react", ["gibberish"] * 3 + ["Thought: easy\nFinal Answer: 42"])
    res = a.ask(None, images=[image], audio=clip)
    assert res.answer == "42" and res.stop_reason == "answered"
    assert asked == [0, 2]
    assert [s.error is not None for s in res.steps if s.role == "controller"] == [True] * 3 + [
        False
    ]


def test_tree_re_hears_a_question_whose_branch_fails_and_merges_that_reading_only(
    make_agent, registry, image, tmp_path
):
    """A tree branch that failed on the question as heard stops the run as the failed program
    of a ``program`` run does: a spoken question is decomposed afresh on its next reading, and
    the failed reading's branch answer is not merged with the new one's."""
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    asked = _transcriber(registry, "How many green things?", ["How many red things?"])
    whole = "No sub-questions."
    guess = "Thought: guess\nFinal Answer: 5"  # the failed branch's own summarizer
    replies = [whole, FAILS, guess, whole, COUNT_RED]
    a, backend = make_agent("tree", replies, branches="program", replans=0)
    res = a.ask(None, images=[image], audio=clip)
    assert res.answer == "2" and res.stop_reason == "answered"
    assert res.question == "How many red things?" and asked == [0, 2]
    assert len(backend.calls) == 5  # the one branch's answer is the answer: no merge call
    assert "How many red things?" in backend.calls[3][-1].content  # decomposed afresh
    merged = [s.error for s in res.steps if s.role == "decider" and s.branch is None]
    assert merged == ["Sub-question 1 failed (program_failed).", None]  # then "Heard: ..."
    # no branch answered at all ("no evidence"): that too is a failure on the question as heard
    again, _ = make_agent("tree", [whole, FAILS, "gibberish", whole, COUNT_RED],
                          branches="program", replans=0)  # fmt: skip
    res = again.ask(None, images=[image], audio=clip)
    assert res.answer == "2" and res.question == "How many red things?"
    # typed, the failed branch is the run's stop reason and the summarizer answers
    typed, _ = make_agent("tree", [whole, FAILS, "Thought: none\nFinal Answer: 0"],
                          branches="program", replans=0)  # fmt: skip
    res = typed.ask("How many green things?", images=[image])
    assert res.stop_reason == "program_failed" and res.answer == "0"


def test_react_re_hears_a_spoken_question_it_answered_after_a_failed_call(
    make_agent, registry, image, tmp_path
):
    """react answers anyway once a call fails; on a spoken question that failure is taken as a
    misheard word while another reading is left, and the run is heard again. A typed question's
    answer stands."""
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    asked = _transcriber(registry, "What is the brown one?", ["What is 6*7?"])
    fails = "Thought: look\nAction: boom\nAction Input: {}"
    replies = [fails, "Thought: guess\nFinal Answer: 7", "Thought: easy\nFinal Answer: 42"]
    a, _ = make_agent("react", list(replies))
    res = a.ask(None, images=[image], audio=clip)
    assert res.answer == "42" and res.stop_reason == "answered"
    assert res.question == "What is 6*7?" and asked == [0, 2]
    assert any("boom failed on the question as heard" in (s.error or "") for s in res.steps)
    once, _ = make_agent("react", list(replies), rehear=0)
    assert once.ask(None, images=[image], audio=clip).answer == "7"
    typed, _ = make_agent("react", list(replies))
    res = typed.ask("What is the brown one?", images=[image])
    assert res.answer == "7" and res.stop_reason == "answered"


def test_a_re_heard_react_code_run_answers_from_its_own_names(
    make_agent, registry, image, tmp_path
):
    """Code lines of the re-heard reading may reuse a name the misheard reading set: ANSWER
    reads this reading's value, not the earlier one's."""
    clip = tmp_path / "q.wav"
    clip.write_bytes(b"RIFF")
    _transcriber(registry, "What is one and one?", ["What is 20 and 22?"])
    replies = ["n = add(a=1, b=1)", "x = boom()", "ANSWER = n", "n = add(a=20, b=22)", "ANSWER = n"]
    a, _ = make_agent("react", replies, actions="code")
    res = a.ask(None, images=[image], audio=clip)
    assert res.question == "What is 20 and 22?" and res.answer == "42"


def test_when_no_program_fits_the_question_the_reworded_question_is_tried(
    make_agent, image, registry
):
    """ "How many red things?": the greedy program and every beam count every thing (they miss
    "red"); the question reworded as the templates word it ("How many red things are there?")
    gets a program that fits, which answers, noted in the thought. With ``reword`` off, or when
    the reworded question's programs do not fit either, the greedy program stands."""
    counting_find(registry, [])
    every = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    backend = BeamBackend([every, COUNT_RED], [every, program("ANSWER = 7")])
    a, _ = make_agent("program", backend, candidates=2)
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and res.stop_reason == "answered"
    assert "(read as 'How many red things are there?': no program" in res.steps[0].thought
    assert "Question: How many red things are there?" in backend.calls[1][-1].content
    assert "Question: How many red things?" in backend.calls[0][-1].content
    # "How many cubes are red?" names the cubes and red apart: a program filtering by both in
    # one call fits only the rewording ("How many red cubes are there?"), and is held to that
    red_cubes = program(
        "objs = find(image=image_0)",
        'n = count(objects=objs, where={"color": "red", "label": "cube"})',
        "ANSWER = n",
    )
    split, _ = make_agent("program", BeamBackend([every, red_cubes], [every]), candidates=2)
    res = split.ask("How many cubes are red?", images=[image])
    assert res.answer == "1" and "read as 'How many red cubes are there?'" in res.steps[0].thought
    off, _ = make_agent("program", BeamBackend([every, COUNT_RED], [every]), candidates=2,
                        reword=False)  # fmt: skip
    assert off.ask("How many red things?", images=[image]).answer == "3"
    stuck, _ = make_agent("program", BeamBackend([every, every], [every]), candidates=2)
    res = stuck.ask("How many red things?", images=[image])
    assert res.answer == "3" and "read as" not in res.steps[0].thought


def test_clevrs_there_is_form_reaches_the_models_as_one_sentence(make_agent, image):
    """ "There is a X; how many ... it?": the controller reads the one sentence it means (the
    form the core was trained on), the run keeps the user's words."""
    asked = "There is a red cube; how many things are left of it?"
    a, backend = make_agent("program", [COUNT_RED])
    res = a.ask(asked, images=[image])
    prompt = "\n".join(m.content for m in backend.calls[0] if isinstance(m.content, str))
    assert "How many things are left of the red cube?" in prompt and asked not in prompt
    assert asked in res.trace.read_text() and "left of the red cube" not in res.trace.read_text()


def test_a_question_saying_a_value_of_its_object_selects_that_value_on_the_object(
    make_agent, image, registry
):
    """ "Is the blue cube red?": no program the core writes fits it (a colour said twice is no
    object it knows). The question for that attribute ("What color is the blue cube?") gets a
    program that finds the object; its query becomes a select of the value said, and ANSWER
    whether that kept anything: no. "Is the blue thing a cube?" reads so too: yes."""
    counting_find(registry, [])
    for tool in (select, exist, query):
        registry.register(tool)

    def blue(*last: str, shape: str = ', shape="cube"') -> str:
        return program("objs = find(image=image_0)",
                       f'b = select(objects=objs, color="blue"{shape})', *last)  # fmt: skip

    exists = blue("e = exist(objects=b)", "ANSWER = e")
    colour = blue('v = query(objects=b, attribute="color")', "ANSWER = v")
    a, backend = make_agent("program", BeamBackend([exists, colour], [exists]), candidates=1)
    res = a.ask("Is the blue cube red?", images=[image])
    assert res.answer == "no" and res.stop_reason == "answered"
    assert "(read as 'What color is the blue cube?'" in res.steps[0].thought
    assert "Question: What color is the blue cube?" in backend.calls[1][-1].content
    assert 'red_ones = select(objects=b, color="red")' in res.steps[0].observation
    shape = blue('v = query(objects=b, attribute="shape")', "ANSWER = v", shape="")
    exists = blue("e = exist(objects=b)", "ANSWER = e", shape="")
    b, _ = make_agent("program", BeamBackend([exists, shape], [exists]), candidates=1)
    res = b.ask("Is the blue thing a cube?", images=[image])
    assert (
        res.answer == "yes" and "(read as 'What shape is the blue thing?'" in res.steps[0].thought
    )
    # a program for the attribute's question that answers otherwise than by a query of that
    # attribute is no reading of the question: the greedy program stands
    c, _ = make_agent("program", BeamBackend([exists, exists], [exists]), candidates=1)
    res = c.ask("Is the blue thing a cube?", images=[image])
    assert res.answer == "yes" and "read as" not in res.steps[0].thought


def test_verifying_turns_the_answering_query_into_a_select_and_exist():
    from agentkit.planners.dsl import parse_program
    from agentkit.planners.program import verifying

    names = ["find", "select", "query", "exist"]
    src = program(
        "objs = find(image=image_0)",
        'red_ones = select(objects=objs, shape="cube")',
        'v = query(objects=red_ones, attribute="color")',
        "ANSWER = v",
    ).split("\n", 1)[1]
    got = verifying(parse_program(src, names, media=["image_0"]), "color", "red", ["image_0"])
    assert got is not None and got.source.splitlines()[2:] == [
        'red_ones2 = select(objects=red_ones, color="red")',
        "found = exist(objects=red_ones2)",
        "ANSWER = found",
    ]
    # another attribute queried, or no query answering: nothing to verify
    assert verifying(parse_program(src, names, media=["image_0"]), "size", "small", []) is None
    counted = "objs = find(image=image_0)\nANSWER = objs"
    assert verifying(parse_program(counted, names, media=["image_0"]), "color", "red", []) is None


def test_a_superlative_object_is_found_by_selects_most_in_the_program_for_its_plain_name(
    make_agent, image, registry
):
    """ "What color is the rightmost cube?": the core knows no superlative. The program for
    the question with the object named plainly ("What color is the cube?") finds the cubes; the
    query's list becomes the one cube furthest right, by ``select``'s ``most``: the blue one,
    not the most confident (red) that a query of both cubes would take."""
    counting_find(registry, [])
    for tool in (select, exist, query):
        registry.register(tool)
    colour = program(
        "objs = find(image=image_0)",
        'cubes = select(objects=objs, shape="cube")',
        'v = query(objects=cubes, attribute="color")',
        "ANSWER = v",
    )
    a, backend = make_agent("program", BeamBackend([colour], []), candidates=1)
    res = a.ask("What color is the rightmost cube?", images=[image])
    assert res.answer == "blue" and res.stop_reason == "answered"
    assert "Question: What color is the cube?" in backend.calls[0][-1].content
    assert res.steps[0].observation.splitlines()[1:] == [
        'rightmost = select(objects=objs, shape="cube", most="right")',
        'v = query(objects=rightmost, attribute="color")',
        "ANSWER = v",
    ]  # the select nothing reads any more is dropped
    assert "(read as 'What color is the cube?', the rightmost one" in res.steps[0].thought
    # a program for the plain name that takes no one object (a count) is no reading of it:
    # the question's own words get their program, as before
    counted = program("objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n")
    b, backend = make_agent("program", BeamBackend([counted, colour], []), candidates=1)
    res = b.ask("What color is the leftmost cube?", images=[image])
    assert "Question: What color is the leftmost cube?" in backend.calls[1][-1].content
    assert "most=" not in res.steps[0].observation


def test_with_most_finds_the_superlatives_object_among_the_one_object_uses():
    from agentkit.planners.dsl import parse_program
    from agentkit.planners.expect import Superlative
    from agentkit.planners.program import with_most

    names, media = ["find", "select", "relate", "query", "count", "same", "exist"], ["image_0"]

    def rewritten(sup: Superlative, *lines: str) -> list[str] | None:
        got = with_most(parse_program("\n".join(lines), names, media=media), sup, media)
        return None if got is None else got.source.splitlines()[1:]

    relation = [
        "objs = find(image=image_0)",
        'reds = select(objects=objs, color="red")',
        'spheres = select(objects=reds, shape="sphere")',
        'left_of = relate(objects=objs, reference=spheres, relation="left")',
        'cubes = select(objects=left_of, shape="cube")',
        'v = query(objects=cubes, attribute="color")',
        "ANSWER = v",
    ]
    # "What color is the cube left of the biggest red sphere?": the reference, its chain of
    # selects read back to the detector's list
    assert rewritten(Superlative("", "large", {"color": "red", "shape": "sphere"}), *relation) == [
        'biggest = select(objects=objs, color="red", shape="sphere", most="large")',
        'left_of = relate(objects=objs, reference=biggest, relation="left")',
        'cubes = select(objects=left_of, shape="cube")',
        'v = query(objects=cubes, attribute="color")',
        "ANSWER = v",
    ]
    # "What color is the leftmost cube left of the red sphere?": the queried cubes, from
    # the relation's list they were selected from
    assert rewritten(Superlative("", "left", {"shape": "cube"}), *relation)[3:] == [
        'leftmost = select(objects=left_of, shape="cube", most="left")',
        'v = query(objects=leftmost, attribute="color")',
        "ANSWER = v",
    ]
    # neither use filters by "the object"'s values, and two uses: none told apart
    assert rewritten(Superlative("", "left", {}), *relation) is None
    # "the object" named by its values for the core ("the small red metal cube"): the use
    # that filters by them; the only use of one object is no longer taken on trust, since the
    # question now names another object too ("Is it the same color as the red sphere?")
    named = {"size": "small", "color": "red", "material": "metal", "shape": "cube"}
    same = [
        "objs = find(image=image_0)",
        'reds = select(objects=objs, color="red", shape="sphere")',
        'alike = same(objects=objs, reference=reds, attribute="color")',
        'it = select(objects=alike, size="small", color="red", material="metal", shape="cube")',
        "e = exist(objects=it)",
        "ANSWER = e",
    ]
    assert rewritten(Superlative("", "left", {}), *same)[:2] == [
        'leftmost = select(objects=objs, most="left")',
        'alike = same(objects=objs, reference=leftmost, attribute="color")',
    ]  # plain: the only use
    got = with_most(parse_program("\n".join(same), names, media=media),
                    Superlative("", "left", {}), media, named)  # fmt: skip
    assert got is None
    query = ["objs = find(image=image_0)",
             'it = select(objects=objs, size="small", color="red", material="metal", shape="cube")',
             'v = query(objects=it, attribute="shape")', "ANSWER = v"]  # fmt: skip
    got = with_most(parse_program("\n".join(query), names, media=media),
                    Superlative("", "left", {}), media, named)  # fmt: skip
    assert got is not None and 'leftmost = select(objects=objs, most="left")' in got.source
    # no use of one object at all
    assert rewritten(Superlative("", "left", {}), "objs = find(image=image_0)",
                     "n = count(objects=objs)", "ANSWER = n") is None  # fmt: skip


def test_a_program_whose_last_lines_spoil_it_is_read_up_to_the_line_that_answers(
    make_agent, image, registry
):
    """The core wrote the right count and then a line that fails ("Are there more cylinders
    than cubes?": the right compare, then a compare of its answer with 0). With no beam that
    fits, the program is read up to its last line that runs and fits, that line as ANSWER, and
    the thought says so. A beam that fits still comes first."""
    counting_find(registry, [])
    spoilt = program(
        "objs = find(image=image_0)",
        'n = count(objects=objs, where={"color": "red"})',
        'x = calculate(expression="n / 0")',
        "ANSWER = x",
    )
    a, _ = make_agent(
        "program", BeamBackend([spoilt], [spoilt, program("ANSWER = 7")]), candidates=2
    )
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and res.stop_reason == "answered"
    assert "(the greedy program read up to its line 2: as written" in res.steps[0].thought
    assert res.steps[0].observation.endswith("ANSWER = n")
    b, _ = make_agent("program", BeamBackend([spoilt], [COUNT_RED]), candidates=2)
    res = b.ask("How many red things?", images=[image])
    assert res.answer == "2" and "read up to" not in res.steps[0].thought


def test_a_reply_cut_off_mid_line_is_read_up_to_its_last_whole_line():
    """A reply that ran out of tokens (the core wrote "What do you see?" as one caption line
    after another) reads as its first lines, the last of them as ANSWER; a reply with no
    readable start gives none."""
    from agentkit.planners.dsl import answer_value
    from agentkit.planners.program import readable_start

    names, media = ["find", "count", "caption"], ["image_0"]
    body = "```\nobjs = caption(image=image_0)\nobjs2 = caption(image=image_0)\nobjs3 = capt"
    got = readable_start(body, names, media)
    assert got is not None and got.source.splitlines() == [
        "objs = caption(image=image_0)", "objs2 = caption(image=image_0)", "ANSWER = objs2"
    ]  # fmt: skip
    assert readable_start("objs = find(image=image_0)\nn = len(objs)", names, media).answer == {
        "ref": "objs"
    }
    assert readable_start("n = len(x)\nANSWER = n", names, media) is None
    # a caption answers with its sentence, not with how many objects it names
    assert answer_value({"caption": "2 objects: a red cube, a ball.", "count": 2}).startswith(
        "2 obj"
    )


def test_a_comparison_counted_the_other_way_round_is_turned_as_the_question_names_it(
    make_agent, image, registry
):
    """ "Are there more red things than blue things?": the core compared the blue things with
    the red ones and then spoilt the program. With no beam that fits, the comparison is turned
    (a the red things, b the blue ones) and read up to it: yes (2 red, 1 blue)."""
    counting_find(registry, [])
    for tool in (select, compare):
        registry.register(tool)
    backwards = program(
        "objs = find(image=image_0)",
        'reds = select(objects=objs, color="red")',
        'blues = select(objects=objs, color="blue")',
        'c = compare(a=blues, b=reds, relation="more")',
        'x = calculate(expression="1 / 0")',
        "ANSWER = x",
    )
    a, _ = make_agent("program", BeamBackend([backwards], [backwards]), candidates=2)
    res = a.ask("Are there more red things than blue things?", images=[image])
    assert res.answer == "yes" and res.stop_reason == "answered"
    assert "read with its comparison turned, up to its line 4" in res.steps[0].thought
    assert 'c = compare(a=reds, b=blues, relation="more")' in res.steps[0].observation
