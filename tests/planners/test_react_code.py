"""``react`` with ``code`` actions: one DSL line per step, observations shown back as comments."""

from __future__ import annotations

import pytest

from agentkit.planners import dsl
from agentkit.testing import ScriptedBackend


def test_parse_line_reads_one_call_or_the_answer():
    call = dsl.parse_line("reds = count(objects=objs, where={'color': 'red'})", ["count"], ["objs"])
    assert (call.name, call.tool, call.args) == (
        "reds",
        "count",
        {"objects": "objs", "where": {"color": "red"}},
    )
    assert dsl.parse_line("Thought: done\n```\nANSWER = reds\n```", ["count"], ["reds"]) == {
        "ref": "reds"
    }
    assert dsl.parse_line("ANSWER = 3", ["count"]) == {"value": 3}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a = count(objects=objs)\nb = count(objects=objs)", "exactly one line"),
        ("a = count(objects=nope)", "not defined"),
        ("objs = count(objects=objs)", "already assigned"),
        ("ANSWER = count(objects=objs)", "its own line"),
        ("a = __import__('os')", "not a tool"),
        ("", "exactly one line"),
    ],
)
def test_parse_line_refuses(text, why):
    with pytest.raises(dsl.DSLError, match=why):
        dsl.parse_line(text, ["count"], ["objs"])


def test_format_line_round_trips_through_parse_line():
    args = {
        "objects": "objs",
        "where": {"color": "red"},
        "labels": ["a", "objs"],
        "k": -2,
        "x": None,
    }
    line = dsl.format_line("reds", "count", args, {"objs"})
    assert (
        line
        == 'reds = count(objects=objs, where={"color": "red"}, labels=["a", objs], k=-2, x=None)'
    )
    call = dsl.parse_line(line, ["count"], ["objs"])
    assert call.args == args


def test_react_code_runs_lines_and_reads_answer(make_agent, image):
    a, backend = make_agent(
        "react",
        [
            "objs = find(image=image_0)",
            'reds = count(objects=objs, where={"color": "red"})',
            "ANSWER = reds",
        ],
        actions="code",
    )
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and res.stop_reason == "answered"
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.ref for s in executed] == ["objs", "reds"]
    assert executed[1].result["count"] == 2
    # each prompt shows the lines so far with their observations as comments
    last = backend.calls[2][-1].content
    assert "objs = find(image=image_0)\n# objs = 3 objects\n" in last  # a digest, not the listing
    assert 'reds = count(objects=objs, where={"color": "red"})\n# reds = 2' in last
    assert backend.calls[0][0].content.endswith("Reply with the next line only.")  # code prompt


def test_react_code_mends_errors_and_never_runs_python(make_agent, image):
    a, backend = make_agent(
        "react",
        [
            "objs = find(image=image_0)",
            "n = __import__('os').system('echo hacked')",  # refused, shown back
            "ANSWER = objs",  # a list is not an answer: shown back
            "n = count(objects=objs)",
            "ANSWER = n",
        ],
        actions="code",
    )
    res = a.ask("How many things?", images=[image])
    assert res.answer == "3"
    errors = [s.error for s in res.steps if s.role == "controller" and s.error]
    assert len(errors) == 2 and "attribute access" in errors[0] and "list of 3" in errors[1]
    assert "# Could not read your reply: " in backend.calls[4][-1].content


def test_model_folder_declares_code_actions(registry, tmp_path, image):
    from agentkit.graph import Agent

    class Declaring(ScriptedBackend):
        runtime_hints = {"actions": "code"}

    agent = Agent(Declaring(["ANSWER = 1"]), tools=registry, runs_dir=tmp_path)
    assert agent.options.actions == "code"
    assert agent.ask("q", images=[image]).answer == "1"


def test_plan_with_code_actions_runs_the_program_and_the_summarizer_answers(make_agent, image):
    written = 'Thought: find, count\nProgram:\n```\nobjs = find(image=image_0)\nreds = count(objects=objs, where={"color": "red"})\nANSWER = reds\n```'
    a, backend = make_agent("plan", [written, "Final Answer: 2"], actions="code")
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2"
    assert [s.ref for s in res.steps if s.role == "executor"] == ["objs", "reds"]
    assert "program" in backend.calls[0][0].content.lower()  # the program planner's prompt
    summary = backend.calls[1][-1].content  # the program and its observations
    assert "Program:\nobjs = find(image=image_0)" in summary
    assert summary.endswith("ANSWER = reds\n# objs = 3 objects\n# reds = 2")  # digests


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ({"objects": [{}, {}, {}], "width": 4, "height": 3}, "3 objects"),
        ({"objects": [{}], "count": 1, "reference": "the cube"}, "1 object"),
        ({"count": 2, "total": 3, "indices": [0, 2]}, "2"),
        ({"answer": "yes", "count": 1}, "yes"),
        ({"answer": "metal", "attribute": "material", "object": "the cube"}, "metal"),
        ({"text": "", "boxes": []}, "a result with boxes, text"),
    ],
)
def test_digest_is_what_a_program_reads(result, text):
    assert dsl.digest(result) == text


def test_an_unreadable_greedy_line_falls_back_to_the_best_readable_beam(make_agent, image):
    from agentkit.mllm.backends.base import Generation

    class Beams(ScriptedBackend):
        def candidates(self, messages, n, *, max_new_tokens=256):
            self.asked = n
            return [
                Generation(text=t, model="beams")
                for t in ["n = count(objects=nope)", "ANSWER = value", "n = count(objects=objs)"]
            ]

    backend = Beams(["objs = find(image=image_0)", "n = count(objects=nope)", "ANSWER = n"])
    a, _ = make_agent("react", backend, actions="code")
    res = a.ask("How many things?", images=[image])
    assert res.answer == "3" and backend.asked == 4
    ctrl = [s for s in res.steps if s.role == "controller"]
    assert ctrl[1].error is None and ctrl[1].ref == "n" and "beam 3" in ctrl[1].thought
    assert "'nope' is not defined" in ctrl[1].thought


def test_unknown_actions_are_refused_whoever_names_them(registry, tmp_path):
    from agentkit.errors import ConfigError
    from agentkit.graph import Agent
    from agentkit.runtime import Options

    with pytest.raises(ConfigError, match="Options actions 'python'"):
        Agent(
            ScriptedBackend([]),
            tools=registry,
            runs_dir=tmp_path,
            options=Options(actions="python"),
        )

    class Declaring(ScriptedBackend):
        runtime_hints = {"actions": "python"}

    with pytest.raises(ConfigError, match="the model declares actions 'python'"):
        Agent(Declaring([]), tools=registry, runs_dir=tmp_path)


def test_a_line_that_does_not_fit_the_question_gives_way_to_a_beam_that_does(make_agent, image):
    """A filter the question does not name ("blue" for "red things") is likely a misreading:
    the likeliest beam whose words the question names is taken; with none, the greedy stands."""
    from agentkit.mllm.backends.base import Generation

    class Beams(ScriptedBackend):
        beams = ["n = count(objects=objs, where={'color': 'green'})",
                 "n = count(objects=objs, where={'color': 'red'})"]  # fmt: skip

        def candidates(self, messages, n, *, max_new_tokens=256):
            return [Generation(text=t, model="beams") for t in self.beams]

    blue = "n = count(objects=objs, where={'color': 'blue'})"
    backend = Beams(["objs = find(image=image_0)", blue, "ANSWER = n"])
    a, _ = make_agent("react", backend, actions="code")
    res = a.ask("How many red things are there?", images=[image])
    assert res.answer == "2"
    ctrl = [s for s in res.steps if s.role == "controller"]
    assert ctrl[1].args["where"] == {"color": "red"} and "beam 2" in ctrl[1].thought
    assert "the line names blue, which the question does not" in ctrl[1].thought
    Beams.beams = Beams.beams[:1]
    a, _ = make_agent("react", Beams(["objs = find(image=image_0)", blue, "ANSWER = n"]),
                      actions="code")  # fmt: skip
    assert a.ask("How many red things are there?", images=[image]).answer == "1"


def test_an_answer_of_another_kind_than_asked_goes_to_the_summarizer(make_agent, image):
    """ "2" to "Is there ...?" is surely not the answer: the summarizer chooses between yes and
    no (what the model scores likelier); a backend that cannot score keeps the controller's."""
    from tests.planners.test_expect import Scoring

    script = ["objs = find(image=image_0)",
              "n = count(objects=objs, where={'color': 'red'})", "ANSWER = n"]  # fmt: skip
    a, backend = make_agent("react", Scoring("yes", script), actions="code")
    res = a.ask("Is there a red thing?", images=[image])
    assert res.answer == "yes" and backend.scored == [["Final Answer: yes", "Final Answer: no"]]
    assert "the controller answered '2', not yes/no" in res.steps[-1].thought
    a, _ = make_agent("react", ScriptedBackend(script), actions="code")
    assert a.ask("Is there a red thing?", images=[image]).answer == "2"
    # an answer of the kind asked stands, with no model call
    a, backend = make_agent("react", Scoring("7", script), actions="code")
    assert a.ask("How many red things?", images=[image]).answer == "2" and not backend.scored


class Continuing(ScriptedBackend):
    """A scripted backend that, like ``hf:``, continues a reply begun in a last assistant turn."""

    continues_replies = True


def test_react_code_continues_its_program_line_by_line(make_agent, image):
    """``code_context="program"``: the program planner's prompt, the thought and the lines so
    far as the start of the reply; results are not shown, the decider still reads them."""
    backend = Continuing(
        [
            "Thought: find them, count the red ones\n",  # the first turn's thought
            "objs = find(image=image_0)",
            'reds = count(objects=objs, where={"color": "red"})',
            "ANSWER = reds",
        ]
    )
    a, _ = make_agent("react", backend, actions="code", code_context="program")
    res = a.ask("How many red things?", images=[image])
    assert res.answer == "2" and res.stop_reason == "answered"
    assert [s.ref for s in res.steps if s.role == "executor"] == ["objs", "reds"]
    assert "program" in backend.calls[0][0].content.lower()  # the program planner's prompt
    assert backend.calls[0][-1].role == "user"  # the thought is written first
    start = "Thought: find them, count the red ones\nProgram:\n```\n"
    assert [m.role for m in backend.calls[1]][-1] == "assistant"
    assert backend.calls[1][-1].content == start
    assert backend.calls[3][-1].content == (
        start + 'objs = find(image=image_0)\nreds = count(objects=objs, where={"color": "red"})\n'
    )
    assert "# objs" not in backend.calls[3][-1].content
    lines = [s for s in res.steps if s.role == "controller" and s.tool]
    assert all(s.thought == "find them, count the red ones" for s in lines)


def test_react_code_goes_on_in_the_transcript_after_a_failed_line(make_agent, image):
    """The program so far shows no errors: after one, the turn reads the transcript with it."""
    backend = Continuing(
        [
            "Thought: count\n",
            "n = count(objects=objs)",  # no line set objs: a reply that does not read
            "objs = find(image=image_0)",
            "n = count(objects=objs)",
            "ANSWER = n",
        ]
    )
    a, _ = make_agent("react", backend, actions="code", code_context="program", candidates=0)
    res = a.ask("How many things?", images=[image])
    assert res.answer == "3"
    assert backend.calls[1][-1].role == "assistant"
    after = backend.calls[2]
    assert after[-1].role == "user" and "# Could not read your reply: " in after[-1].content
    assert after[0].content.endswith("Reply with the next line only.")  # the code prompt


def test_code_context_needs_a_backend_that_continues_replies(make_agent, image):
    a, backend = make_agent(
        "react", ["objs = find(image=image_0)", "n = count(objects=objs)", "ANSWER = n"],
        actions="code", code_context="program",
    )  # fmt: skip
    assert a.ask("How many things?", images=[image]).answer == "3"
    assert all(call[-1].role == "user" for call in backend.calls)
    assert "# objs = 3 objects" in backend.calls[1][-1].content  # the transcript


def test_model_folder_declares_its_code_context(registry, tmp_path, image):
    from agentkit.errors import ConfigError
    from agentkit.graph import Agent

    class Declaring(Continuing):
        runtime_hints = {"actions": "code", "code_context": "program"}

    agent = Agent(Declaring(["Thought: t\n", "ANSWER = 1"]), tools=registry, runs_dir=tmp_path)
    assert agent.options.code_context == "program"
    assert agent.ask("q", images=[image]).answer == "1"

    class Wrong(ScriptedBackend):
        runtime_hints = {"code_context": "summary"}

    with pytest.raises(ConfigError, match="code_context"):
        Agent(Wrong([]), tools=registry, runs_dir=tmp_path)
