"""``plan``: the whole plan first, one checkpointed call at a time, re-plan once on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.errors import BackendError
from agentkit.graph import load_steps
from agentkit.mllm.toolcall import ParseError
from agentkit.planners.plan import parse_plan

TOOLS = ["add", "find", "count", "boom"]


def call(tool: str, args: dict, thought: str = "a step") -> str:
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(args)}"


def numbered(*calls: str) -> str:
    return "Plan:\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(calls, 1))


# -- parsing ----------------------------------------------------------------------------------


def test_parse_numbered_react_blocks():
    text = numbered(
        call("find", {"image": "image_0"}, "look"),
        call("count", {"objects": "find_0", "label": "cube"}, "count them"),
    )
    calls = parse_plan(text, TOOLS)
    assert [(c.tool, c.args, c.thought) for c in calls] == [
        ("find", {"image": "image_0"}, "look"),
        ("count", {"objects": "find_0", "label": "cube"}, "count them"),
    ]


def test_parse_blocks_without_thoughts_and_a_trailing_final_answer():
    text = (
        "Action: add\nAction Input: a=1, b=2\n"
        "Action: add\nAction Input: {'a': 3, 'b': 4}\n"
        "Final Answer: 3 and 7"
    )
    assert [c.args for c in parse_plan(text, TOOLS)] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_parse_json_list_in_a_fence():
    text = '```json\n[{"tool": "add", "args": {"a": 1, "b": 1}}, {"action": "find", "action_input": {"image": "image_0"}}]\n```'
    assert [c.tool for c in parse_plan(text, TOOLS)] == ["add", "find"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("I would look at the image.", "no tool calls"),
        (numbered(call("add", {"a": 1, "b": 1}), call("teleport", {})), "step 2"),
        ('1. Thought: x\nAction: add\nAction Input: {"a": 1,', "step 1"),
        ('[{"tool": "teleport", "args": {}}]', "teleport"),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_parse_errors_name_the_step(text, needle):
    err = parse_plan(text, TOOLS)
    assert isinstance(err, ParseError) and needle in err.message


# -- running ----------------------------------------------------------------------------------


def test_plan_runs_in_order_and_the_summarizer_answers(make_agent, tmp_path):
    plan = numbered(
        call("find", {"image": "image_0"}),
        call("count", {"objects": "find_0", "where": {"color": "red"}}),
    )
    a, backend = make_agent("plan", [plan, "Thought: two red things\nFinal Answer: 2"])
    res = a.ask("How many red things?")
    assert res.answer == "2" and res.stop_reason == "answered"
    assert [s.role for s in res.steps] == [
        "controller",
        "executor",
        "executor",
        "summarizer",
    ]
    assert res.steps[2].result["count"] == 2 and res.steps[2].ref == "count_0"
    assert len(backend.calls) == 2  # one plan, one summary: no model call per step
    summary_prompt = backend.calls[1][-1].content
    assert "Action: count" in summary_prompt and "Observation: count_0 = 2 of 3" in summary_prompt
    assert "summarizer" in backend.calls[1][0].content
    # every call was checkpointed as it finished
    assert [s.role for s in load_steps(tmp_path / "runs" / res.thread)] == [
        s.role for s in res.steps
    ]


def test_the_summarizer_answers_with_the_likeliest_value_the_results_hold(make_agent):
    """A number question is answered with a count the calls returned, the one the model scores
    likeliest: not the words it would write freely. Constraints off: it writes freely."""
    from tests.planners.test_expect import Scoring

    plan = numbered(
        call("find", {"image": "image_0"}),
        call("count", {"objects": "find_0", "where": {"color": "red"}}),
        call("count", {"objects": "find_0", "where": {"color": "blue"}}),
    )
    free = "Final Answer: several"
    a, backend = make_agent("plan", Scoring("1", [plan, free]))
    res = a.ask("How many blue things are there?")
    assert res.answer == "1" and backend.scored == [["Final Answer: 2", "Final Answer: 1"]]
    assert "likeliest" in res.steps[-1].thought and len(backend.calls) == 1  # no free reply
    a, backend = make_agent("plan", Scoring("1", [plan, free]), constrain=False)
    assert a.ask("How many blue things are there?").answer == "several" and not backend.scored


def test_budget_cuts_a_long_plan(make_agent):
    plan = numbered(*[call("add", {"a": i, "b": 1}) for i in range(5)])
    a, _ = make_agent("plan", [plan, "Final Answer: stopped"])
    res = a.ask("add a lot", max_steps=2)
    assert res.stop_reason == "budget"
    assert len([s for s in res.steps if s.role == "executor"]) == 2
    assert res.answer == "stopped"


def test_failed_call_replans_once_with_the_error_shown(make_agent):
    first = numbered(call("boom", {}), call("add", {"a": 1, "b": 1}))
    second = numbered(call("add", {"a": 2, "b": 2}))
    a, backend = make_agent("plan", [first, second, "Final Answer: 4"])
    res = a.ask("q?")
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.tool for s in executed] == ["boom", "add"]  # the first plan stopped at its failure
    assert executed[1].args == {"a": 2, "b": 2}
    replan_prompt = backend.calls[1][-1].content
    assert "sensor on fire" in replan_prompt and "write a new plan" in replan_prompt
    assert res.answer == "4" and res.stop_reason == "answered"


def test_second_failure_stops_when_no_replan_is_left(make_agent):
    bad = numbered(call("boom", {}))
    a, _ = make_agent("plan", [bad, bad, "Final Answer: unknown"], replans=1)
    res = a.ask("q?")
    assert res.stop_reason == "call_failed"
    assert [s.tool for s in res.steps if s.role == "executor"] == ["boom", "boom"]
    a, _ = make_agent("plan", [bad, "Final Answer: unknown"], replans=0)
    assert a.ask("q?").stop_reason == "call_failed"
    # the budget spent on the failing plan does not hide why it stopped
    spent = numbered(call("add", {"a": 1, "b": 1}), call("boom", {}))
    a, _ = make_agent("plan", [spent, "Final Answer: unknown"], replans=0)
    assert a.ask("q?", max_steps=2).stop_reason == "call_failed"


def test_unreadable_plans_stop_after_the_parse_limit(make_agent):
    a, backend = make_agent("plan", ["hmm", "still no", "Final Answer: ?"], max_parse_errors=2)
    res = a.ask("q?")
    assert res.stop_reason == "parse_errors"
    assert "Could not read your plan" in backend.calls[1][-1].content


def test_native_tool_calls_are_a_plan(make_agent):
    reply = {
        "text": "",
        "tool_calls": [
            {"tool": "add", "args": {"a": 1, "b": 2}},
            {"tool": "add", "args": {"a": "add_0", "b": 1}},
        ],
    }
    a, _ = make_agent("plan", [reply, "Final Answer: 4"])
    res = a.ask("1+2+1?")
    assert [s.result for s in res.steps if s.role == "executor"] == [{"value": 3.0}, {"value": 4.0}]


def test_resume_after_backend_error_runs_no_call_twice(make_agent, tmp_path):
    plan = numbered(call("add", {"a": 1, "b": 1}), call("add", {"a": "add_0", "b": 1}))
    a, _ = make_agent("plan", [plan])  # the summarizer's call finds the script empty
    res = a.ask("q?", thread="p1")
    # the summarizer keeps a backend failure as a failed step rather than losing the run
    assert res.steps[-1].role == "summarizer" and "no reply" in res.steps[-1].error

    first = numbered(call("add", {"a": 1, "b": 1}), call("boom", {}))
    a, _ = make_agent("plan", [first])  # the re-plan after boom finds the script empty
    with pytest.raises(BackendError):
        a.ask("q?", thread="p2")
    kept = load_steps(tmp_path / "runs" / "p2")
    assert [(s.role, s.tool) for s in kept] == [
        ("controller", None),
        ("executor", "add"),
        ("executor", "boom"),
        ("decider", None),
    ]
    b, backend = make_agent(
        "plan", [numbered(call("add", {"a": "add_0", "b": 1})), "Final Answer: 3"]
    )
    res = b.resume("p2")
    assert res.answer == "3"
    assert [s.started for s in res.steps[:4]] == [s.started for s in kept]  # none run twice
    assert [s.result for s in res.steps if s.role == "executor" and s.ok] == [
        {"value": 2.0},
        {"value": 3.0},
    ]
    assert "sensor on fire" in backend.calls[0][-1].content


def test_cli_plan(tmp_path: Path):
    s = tmp_path / "s.json"
    plan = numbered(call("calculate", {"expression": "6*7"}))
    s.write_text(json.dumps([plan, "Final Answer: 42"]))
    r = CliRunner().invoke(
        app,
        ["ask", "What is 6*7?", "--planner", "plan", "--model", f"scripted:{s}"]
        + ["--runs-dir", str(tmp_path / "runs"), "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["answer"] == "42"
    assert [s["role"] for s in out["steps"]] == ["controller", "executor", "summarizer"]
