"""``tree``: sub-questions answered by parallel react branches, then merged or voted."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.errors import BackendError, ConfigError
from agentkit.graph import load_steps
from agentkit.mllm.backends.base import Generation
from agentkit.planners.roles import program_reply
from agentkit.planners.tree import normalize, parse_subquestions, vote
from agentkit.state import BranchAnswer
from agentkit.trace import read_events

Q = "Are there more red things than blue things?"
RED = "How many red things are there?"
BLUE = "How many blue things are there?"


def call(tool: str, args: dict) -> str:
    return f"Thought: a step\nAction: {tool}\nAction Input: {json.dumps(args)}"


class KeyedBackend:
    """Replies by the question the prompt asks (branches run in parallel threads, so a reply
    order by call would be a race). ``scripts[question]`` is consumed in order."""

    name = "keyed"

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls: list[tuple[str, list]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def generate(self, messages, *, tools=None, max_new_tokens=256, stop=None, on_token=None):
        line = next(x for x in messages[-1].content.splitlines() if x.startswith("Question: "))
        question = line.removeprefix("Question: ")
        with self._lock:
            self.calls.append((question, messages))
            self.threads.add(threading.current_thread().name)
            left = self.scripts.get(question)
            if not left:
                raise BackendError(f"no reply left for {question!r}")
            text = left.pop(0)
        return Generation(text=text, model=self.name, tokens_in=1, tokens_out=1)


# -- pieces -----------------------------------------------------------------------------------


def test_parse_subquestions():
    text = "Sub-question: How many red?\n**Sub-question 2:** How many blue?\nnoise\n"
    assert parse_subquestions(text, 4) == ["How many red?", "How many blue?"]
    assert parse_subquestions("1. Is it red?\n2. Is it big?\n- Is it round?", 2) == [
        "Is it red?",
        "Is it big?",
    ]
    assert parse_subquestions("Sub-question: a?\nsub-question: A?", 4) == ["a?"]
    assert parse_subquestions("I cannot split this.", 4) == []


def test_normalize_and_vote():
    assert normalize(" The Cube. ") == "cube" and normalize("2.0") == "2"
    assert normalize("True") == "yes" and normalize("0.50") == "0.5"
    answers = [
        BranchAnswer(index=2, question="c", answer="3"),
        BranchAnswer(index=0, question="a", answer="2"),
        BranchAnswer(index=1, question="b", answer="3.0"),
        BranchAnswer(index=3, question="d", answer=None),
    ]
    winner, counts = vote(answers)
    assert winner == "3.0" and counts == {"3": 2, "2": 1}  # written as the earliest 3-voter did
    tie = [
        BranchAnswer(index=1, question="b", answer="no"),
        BranchAnswer(index=0, question="a", answer="yes"),
    ]
    assert vote(tie)[0] == "yes"  # ties go to the earliest branch
    assert vote([BranchAnswer(index=0, question="a")])[0] is None


# -- running ----------------------------------------------------------------------------------


def test_branches_run_in_parallel_and_the_summarizer_merges(make_agent, image):
    backend = KeyedBackend(
        {
            Q: [f"Sub-question: {RED}\nSub-question: {BLUE}", "Final Answer: yes"],
            RED: [
                call("find", {"image": "image_0"}),
                call("count", {"objects": "find_0", "where": {"color": "red"}}),
                "Final Answer: 2",
            ],
            BLUE: [
                call("find", {"image": "image_0"}),
                call("count", {"objects": "find_0", "where": {"color": "blue"}}),
                "Final Answer: 1",
            ],
        }
    )
    a, _ = make_agent("tree", backend)
    res = a.ask(Q, images=[image])
    assert res.answer == "yes" and res.stop_reason == "answered"
    assert len(backend.threads) >= 2  # the two branches ran in different threads
    by_branch = {b: [s for s in res.steps if s.branch == b] for b in (0, 1)}
    for b, want in ((0, 2), (1, 1)):
        executed = [s for s in by_branch[b] if s.role == "executor"]
        # each branch has its own refs: both name their detection find_0
        assert [s.ref for s in executed] == ["find_0", "count_0"]
        assert executed[1].result["count"] == want
    assert res.steps[0].role == "controller" and res.steps[0].branch is None
    assert res.steps[-1].role == "summarizer" and res.steps[-1].branch is None
    merge_prompt = next(m for q, m in backend.calls if q == Q and "summarizer" in m[0].content)
    assert f"Sub-question 1: {RED}\nAnswer: 2" in merge_prompt[-1].content
    assert f"Sub-question 2: {BLUE}\nAnswer: 1" in merge_prompt[-1].content
    # the trace carries the branch of every branch step
    events = [e for e in read_events(res.trace) if e["event"] == "step"]
    assert sorted(e["branch"] for e in events if e["branch"] is not None) == [0] * 5 + [1] * 5
    assert len(by_branch[0]) == len(by_branch[1]) == 5  # call, call, answer; two observations


def test_vote_takes_the_majority_without_a_summarizer_call(make_agent):
    rephrasings = ["How many cubes?", "What is the number of cubes?", "Count the cubes."]
    backend = KeyedBackend(
        {
            Q: ["\n".join(f"Sub-question: {r}" for r in rephrasings)],
            rephrasings[0]: ["Final Answer: 2"],
            rephrasings[1]: ["Final Answer: 3"],
            rephrasings[2]: ["Final Answer: 3."],
        }
    )
    a, _ = make_agent("tree", backend, vote=True)
    res = a.ask(Q)
    assert res.answer == "3"
    note = [s for s in res.steps if s.role == "decider"][-1]
    assert note.observation == "Votes: 3: 2, 2: 1. Answer: 3"
    assert "Rephrase the question" in backend.calls[0][1][0].content
    assert not any("summarizer" in m[0].content for _, m in backend.calls)


def test_one_branch_answer_is_the_answer(make_agent):
    backend = KeyedBackend({Q: ["I will not split it."], "2+2?": []})
    backend.scripts[Q].append("Final Answer: 4")  # the branch asks Q itself: its answer
    a, _ = make_agent("tree", backend)
    res = a.ask(Q)
    assert res.answer == "4"
    assert "answered whole" in res.steps[0].error
    assert [s.branch for s in res.steps] == [None, 0]


def test_no_subquestions_keeps_the_question_whole_without_an_error(make_agent):
    backend = KeyedBackend({Q: ["No sub-questions.", "Final Answer: 4"]})
    a, _ = make_agent("tree", backend)
    res = a.ask(Q)
    assert res.answer == "4" and res.steps[0].error is None
    assert res.steps[0].observation == f"Sub-question 1: {Q}"


def test_branch_budgets(make_agent):
    subs = [f"Question {i}?" for i in range(4)]
    loop = [call("add", {"a": 1, "b": 1})] * 10 + ["Final Answer: 2"]
    backend = KeyedBackend(
        {
            Q: [
                "\n".join(f"Sub-question: {s}" for s in subs) + "\nSub-question: extra?",
                "Final Answer: ok",
            ]
        }
        | {s: list(loop) for s in subs}
    )
    a, _ = make_agent("tree", backend, max_total_steps=6)
    res = a.ask(Q, max_steps=5)
    executed = [s for s in res.steps if s.role == "executor"]
    assert len(executed) <= 6  # the total bound
    # max_branches (4) dropped the fifth; 6 // 4 = 1 call per branch
    assert sorted(s.branch for s in executed) == [0, 1, 2, 3]
    loop = [call("add", {"a": 1, "b": 1})] * 3 + ["Final Answer: 2"]
    a, _ = make_agent("tree", KeyedBackend({Q: [f"Sub-question: {subs[0]}"], subs[0]: loop}))
    res = a.ask(Q, max_steps=3)  # one branch: its budget is the task's
    assert len([s for s in res.steps if s.role == "executor"]) == 3
    assert res.answer == "2"  # the branch's own summarizer answered after its budget


def test_failed_branch_resumes_without_rerunning_the_finished_one(make_agent, tmp_path):
    first = KeyedBackend(
        {
            Q: [f"Sub-question: {RED}\nSub-question: {BLUE}"],
            RED: ["Final Answer: 2"],
            BLUE: [call("nap", {"seconds": 0.3})],  # then its script runs out: BackendError
        }
    )
    a, _ = make_agent("tree", first)
    with pytest.raises(BackendError, match="no reply left"):
        a.ask(Q, thread="t1")
    kept = load_steps(tmp_path / "runs" / "t1")
    assert [s.role for s in kept] == ["controller"]  # branch writes are not steps until merged
    second = KeyedBackend(
        {BLUE: [call("nap", {"seconds": 0}), "Final Answer: 1"], Q: ["Final Answer: yes"]}
    )
    b, _ = make_agent("tree", second)
    res = b.resume("t1")
    assert res.answer == "yes"
    asked = [q for q, _ in second.calls]
    assert RED not in asked  # the finished branch was not run again
    assert [s.branch for s in res.steps if s.role == "controller"] == [None, 0, 1, 1]


def test_cli_tree(tmp_path: Path):
    s = tmp_path / "s.json"
    # one branch, so a call-ordered script is deterministic: decompose, branch call, answer
    s.write_text(
        json.dumps(
            [
                "Sub-question: What is 6*7?",
                call("calculate", {"expression": "6*7"}),
                "Final Answer: 42",
            ]
        )
    )
    r = CliRunner().invoke(
        app,
        ["ask", "What is six times seven?", "--planner", "tree", "--model", f"scripted:{s}"]
        + ["--runs-dir", str(tmp_path / "runs"), "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["answer"] == "42"
    assert [(s["role"], s["branch"]) for s in out["steps"]] == [
        ("controller", None),
        ("controller", 0),
        ("executor", 0),
        ("controller", 0),
    ]


def test_branches_really_overlap(make_agent, registry):
    """Each branch's tool waits at a two-party barrier: it passes only if both run at once."""
    from pydantic import BaseModel

    from agentkit.tools.base import Tool

    class NoArgs(BaseModel):
        pass

    class Met(BaseModel):
        met: bool

    barrier = threading.Barrier(2, timeout=5)

    def _meet(args, ctx) -> Met:
        barrier.wait()
        return Met(met=True)

    registry.register(Tool("meet", "Waits for the other branch.", NoArgs, Met, _meet))
    subs = ["Meet one?", "Meet two?"]
    backend = KeyedBackend(
        {Q: ["\n".join(f"Sub-question: {s}" for s in subs), "Final Answer: met"]}
        | {s: [call("meet", {}), "Final Answer: yes"] for s in subs}
    )
    a, _ = make_agent("tree", backend)
    res = a.ask(Q)
    assert res.answer == "met"
    assert [s.result for s in res.steps if s.role == "executor"] == [{"met": True}] * 2


def test_no_branch_answer_is_no_answer_not_a_guess(make_agent):
    backend = KeyedBackend(
        {Q: ["Sub-question: a?\nSub-question: b?"], "a?": ["junk"] * 3, "b?": ["junk"] * 3}
    )
    a, _ = make_agent("tree", backend, max_parse_errors=3)
    res = a.ask(Q)
    assert res.answer is None and res.stop_reason == "no_evidence"
    note = [s for s in res.steps if s.role == "decider" and s.branch is None][-1]
    assert "No branch answered (2 sub-questions)" in note.error
    merge = "split into sub-questions"  # the tree summarizer's prompt: never asked to guess
    assert not any(merge in m[0].content for _, m in backend.calls)


def test_the_merge_may_answer_a_value_no_branch_returned(make_agent, image):
    """ "How many red or blue things?" is 2 + 1: the merge writes freely even with a backend
    that scores replies (a choice among the counts observed could not say 3)."""

    class Scoring(KeyedBackend):
        scored: list = []

        def score(self, messages, candidates):
            self.scored.append(candidates)
            return [0.0] * len(candidates)

    both = "How many things are red or blue?"
    backend = Scoring(
        {
            both: [f"Sub-question: {RED}\nSub-question: {BLUE}", "Final Answer: 3"],
            RED: [call("find", {"image": "image_0"}),
                  call("count", {"objects": "find_0", "where": {"color": "red"}}),
                  "Final Answer: 2"],
            BLUE: [call("find", {"image": "image_0"}),
                   call("count", {"objects": "find_0", "where": {"color": "blue"}}),
                   "Final Answer: 1"],
        }
    )  # fmt: skip
    a, _ = make_agent("tree", backend)
    assert a.ask(both, images=[image]).answer == "3" and not backend.scored


def program(*lines: str) -> str:
    return program_reply("find, then count", lines)


def test_program_branches_answer_each_subquestion_with_one_program(make_agent, image):
    """Options(branches="program"): each branch writes one program, the interpreter runs it and
    its ANSWER is the branch's answer (no model call after the program); the merge reads both."""
    backend = KeyedBackend(
        {
            Q: [f"Sub-question: {RED}\nSub-question: {BLUE}", "Final Answer: yes"],
            RED: [program("objs = find(image=image_0)",
                          'n = count(objects=objs, where={"color": "red"})', "ANSWER = n")],
            BLUE: [program("objs = find(image=image_0)",
                           'n = count(objects=objs, where={"color": "blue"})', "ANSWER = n")],
        }
    )  # fmt: skip
    a, _ = make_agent("tree", backend, branches="program")
    res = a.ask(Q, images=[image])
    assert res.answer == "yes" and res.stop_reason == "answered"
    for b, want in ((0, 2), (1, 1)):
        executed = [s for s in res.steps if s.branch == b and s.role == "executor"]
        assert [s.ref for s in executed] == ["objs", "n"]  # the program's own names
        assert executed[1].result["count"] == want
    # a program branch makes one model call: the program (the scripts are used up)
    assert [q for q, _ in backend.calls].count(RED) == 1
    assert "Program:" in next(m for q, m in backend.calls if q == RED)[0].content
    merge_prompt = next(m for q, m in backend.calls if q == Q and "summarizer" in m[0].content)
    assert f"Sub-question 1: {RED}\nAnswer: 2" in merge_prompt[-1].content


def test_branches_is_checked_and_settled_by_the_model_folder(make_agent, image):
    with pytest.raises(ConfigError, match="branches"):
        make_agent("tree", KeyedBackend({}), branches="plan")
    a, _ = make_agent("tree", KeyedBackend({}))
    assert a.options.branches == "react"  # nobody said: the library default

    class Declaring(KeyedBackend):
        runtime_hints = {"planner": "tree", "branches": "program"}

    backend = Declaring({RED: ["No sub-questions.", program("objs = find(image=image_0)",
                                 'n = count(objects=objs, where={"color": "red"})', "ANSWER = n")]})  # fmt: skip
    a, _ = make_agent(None, backend)
    assert a.planner == "tree" and a.options.branches == "program"
    assert a.ask(RED, images=[image]).answer == "2"
    a, _ = make_agent(None, Declaring({}), branches="react")  # the caller's word wins
    assert a.options.branches == "react"
