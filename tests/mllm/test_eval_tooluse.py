"""agentkit eval tooluse: GPT4Tools' success rates, scored on data rather than on wording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.mllm.backends.base import Generation, Message
from agentkit.mllm.data.tooluse import generate
from agentkit.mllm.eval.tooluse import earlier_names, evaluate, score_turn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOOLS = ["detect", "select", "relate", "count", "query", "exist", "same", "compare", "combine"]

REF_PROGRAM = """Thought: Detect, select, count.
Program:
```
objs = detect(image=image_0)
reds = select(objects=objs, color="red")
n = count(objects=reds)
ANSWER = n
```"""


def test_programs_match_on_what_they_do_not_on_names():
    renamed = REF_PROGRAM.replace("reds", "red_things").replace("objs", "all_objects")
    assert all(score_turn("program", renamed, REF_PROGRAM, TOOLS).values())
    quoted = REF_PROGRAM.replace('color="red"', "color='RED'")
    assert all(score_turn("program", quoted, REF_PROGRAM, TOOLS).values())
    wrong_arg = score_turn("program", REF_PROGRAM.replace("red", "blue"), REF_PROGRAM, TOOLS)
    assert wrong_arg == {"SR_thought": True, "SR_action": True, "SR_args": False, "SR": False}
    wrong_tool = score_turn("program", REF_PROGRAM.replace("count(", "exist("), REF_PROGRAM, TOOLS)
    assert wrong_tool["SR_thought"] and not wrong_tool["SR_action"] and not wrong_tool["SR"]
    # passing the detections instead of the selection: same tools, different data flow
    crossed = REF_PROGRAM.replace("count(objects=reds)", "count(objects=objs)")
    assert not score_turn("program", crossed, REF_PROGRAM, TOOLS)["SR_args"]
    assert not any(score_turn("program", "import os; os.system('x')", REF_PROGRAM, TOOLS).values())


def test_react_turns():
    ref = 'Thought: find them\nAction: select\nAction Input: {"objects": "detect_0", "color": "red", "size": "small"}'
    same = "Thought: other words\nAction: select\nAction Input: {'size': 'small', 'objects': 'detect_0', 'color': 'red'}"
    assert all(score_turn("tool_call", same, ref, TOOLS).values())
    other = ref.replace("red", "blue")
    assert score_turn("tool_call", other, ref, TOOLS) == {
        "SR_thought": True, "SR_action": True, "SR_args": False, "SR": False}  # fmt: skip
    final = score_turn("tool_call", "Final Answer: 3", ref, TOOLS)
    assert not any(final.values())
    # a no-tool sample: answering is right, calling a tool is the wrong decision
    assert all(
        score_turn(
            "no_tool", "Thought: known\nFinal Answer: Yes", "Final Answer: yes", TOOLS
        ).values()
    )
    assert not score_turn("no_tool", ref, "Final Answer: yes", TOOLS)["SR_thought"]
    assert score_turn("decider", "yes", "yes", TOOLS)["SR"]
    assert score_turn("summarizer", "Final Answer: 2", "Final Answer: 2", TOOLS)["SR"]
    assert not score_turn("summarizer", "Final Answer: 2", "Final Answer: 3", TOOLS)["SR"]


class Replay:
    """Answers each held-out sample with its own reference turn, or with a fixed text."""

    name = "replay"

    def __init__(self, rows: list[dict], fixed: str | None = None):
        self.fixed = fixed
        self.by_prompt = {self._key(r["messages"][:-1]): r["messages"][-1]["content"] for r in rows}

    @staticmethod
    def _key(messages) -> str:
        return json.dumps([[m["role"] if isinstance(m, dict) else m.role,
                            m["content"] if isinstance(m, dict) else m.content] for m in messages])  # fmt: skip

    def generate(self, messages: list[Message], **kw) -> Generation:
        text = self.fixed if self.fixed is not None else self.by_prompt[self._key(messages)]
        return Generation(text=text, model=self.name)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tooluse")
    generate(EXAMPLES / "scenes", EXAMPLES / "questions" / "questions.jsonl", out, seed=0,
             planners=["program", "react"], prompt_style="compact")  # fmt: skip
    return out


def test_code_action_turns():
    """Code lines: tool and arguments compared as data, the earlier names a line passes as
    written, its own new name not at all; ANSWER by what it names."""
    prompt = "Question: How many red?\nobjs = detect(image=image_0)\n# objs = 3 objects"
    names = earlier_names(prompt)
    assert names == ["objs"]
    ref = 'reds = select(objects=objs, color="red")'
    assert all(
        score_turn("tool_call", "r = select(color='red', objects=objs)", ref, TOOLS, names).values()
    )
    assert score_turn("tool_call", 'r = select(objects=objs, color="blue")', ref, TOOLS, names) == {
        "SR_thought": True, "SR_action": True, "SR_args": False, "SR": False}  # fmt: skip
    assert not any(score_turn("tool_call", "r = select(objects=nope)", ref, TOOLS, names).values())
    assert not score_turn("tool_call", "ANSWER = objs", ref, TOOLS, names)["SR_thought"]
    assert all(score_turn("final", "ANSWER = n", "ANSWER = n", TOOLS, ["objs", "n"]).values())
    assert not score_turn("final", "ANSWER = objs", "ANSWER = n", TOOLS, ["objs", "n"])["SR"]
    # the tree planner's turns: a decomposition by its sub-questions, a merge by its answer
    split = "Sub-question: How many cubes are there?\nSub-question: How many spheres are there?"
    assert all(score_turn("decompose", split.lower(), split, TOOLS).values())
    assert not score_turn("decompose", "No sub-questions.", split, TOOLS)["SR_thought"]
    assert all(score_turn("decompose", "No sub-questions.", "No sub-questions.", TOOLS).values())
    assert not score_turn("decompose", "Sub-question: a?", "No sub-questions.", TOOLS)["SR"]
    assert score_turn("merge", "Final Answer: yes", "Final Answer: yes", TOOLS)["SR"]


def test_a_perfect_model_scores_one_and_a_lazy_one_does_not(heldout):
    rows = [json.loads(x) for f in ("test.jsonl", "test_unseen.jsonl")
            for x in (heldout / f).read_text().splitlines()]  # fmt: skip
    perfect = evaluate(Replay(rows), heldout)
    for split in ("seen", "unseen"):
        assert perfect[split]["n"] > 0
        assert all(perfect[split][m] == 1.0 for m in ("SR_thought", "SR_action", "SR_args", "SR"))
    lazy = evaluate(Replay(rows, fixed="Final Answer: yes"), heldout)
    kinds = lazy["seen"]["by_kind"]
    assert kinds["program"]["SR"] == 0 and kinds["tool_call"]["SR_thought"] == 0
    assert lazy["seen"]["SR"] < 0.5 and lazy["failures"]


def test_limit_and_bad_input(heldout, tmp_path):
    from agentkit.errors import ConfigError

    rows = [json.loads(x) for x in (heldout / "test.jsonl").read_text().splitlines()]
    few = evaluate(Replay(rows), heldout, splits=["seen"], limit=3)
    assert few["seen"]["n"] == 3
    with pytest.raises(ConfigError, match="data gen tooluse"):
        evaluate(Replay(rows), tmp_path)
    with pytest.raises(ConfigError, match="unknown split"):
        evaluate(Replay(rows), heldout, splits=["train"])


class Guesser:
    """A model that decodes under a constraint: of its guesses, likeliest first, it writes the
    first the constraint allows (the first guess when decoded free)."""

    name = "guesser"
    supports_constraints = True

    def __init__(self, guesses: list[str]):
        self.guesses, self.constraints = guesses, []

    def generate(self, messages: list[Message], constraint=None, **kw) -> Generation:
        self.constraints.append(constraint)
        ok = [g for g in self.guesses if constraint is None or constraint.viable(g)]
        return Generation(text=(ok or self.guesses)[0], model=self.name)


def _program_row(question: str, reference: str) -> dict:
    return {"kind": "program", "messages": [
        {"role": "system", "content": "You are the controller."},
        {"role": "user", "content": f"Images: image_0 (480x320 image)\nQuestion: {question}"},
        {"role": "assistant", "content": reference}]}  # fmt: skip


def test_constrained_scoring_decodes_as_the_agent(tmp_path):
    """--constrain: program turns decoded under the program grammar with the question's word
    rule (a filter the question never says is refused as it is written); free by default."""
    from agentkit.mllm.eval.tooluse import grammar_of, read_task

    row = _program_row("How many red things are there?", REF_PROGRAM)
    assert read_task(row) == (["image_0"], "How many red things are there?")
    blue = REF_PROGRAM.replace('"red"', '"blue"')
    unknown = REF_PROGRAM.replace("image=image_0", "image=image_9")
    grammar = grammar_of(row)
    assert grammar.viable(REF_PROGRAM) and not grammar.viable(blue)
    assert not grammar.viable(unknown)  # not a media id of the task
    assert grammar_of(row, words=False).viable(blue)
    # a react code line: one line, over the names the earlier lines set
    code = {"kind": "tool_call", "messages": [*row["messages"][:2],
            {"role": "assistant", "content": "objs = detect(image=image_0)\n# objs = 3 objects"},
            {"role": "user", "content": "Continue."},
            {"role": "assistant", "content": 'reds = select(objects=objs, color="red")'}]}  # fmt: skip
    line = grammar_of(code)
    assert [(ln.name, ln.tool) for ln in line.start().lines] == [("objs", "detect")]
    assert line.viable('reds = select(objects=objs, color="red")')
    assert not line.viable('reds = select(objects=things, color="red")')
    # turns the agent decodes free get no grammar
    assert grammar_of({**row, "kind": "summarizer"}) is None
    (tmp_path / "test.jsonl").write_text(json.dumps(row) + "\n")
    free = evaluate(Guesser([blue, REF_PROGRAM]), tmp_path, splits=["seen"])
    assert free["seen"]["SR"] == 0 and "decoding" not in free
    model = Guesser([unknown, blue, REF_PROGRAM])
    held = evaluate(model, tmp_path, splits=["seen"], constrain=True)
    assert held["seen"]["SR"] == 1 and held["decoding"] == "grammar and word rule"
    assert model.constraints[0] is not None
    grammar_only = evaluate(Guesser([blue]), tmp_path, splits=["seen"], constrain=True,
                            constrain_words=False)  # fmt: skip
    assert grammar_only["seen"]["SR_args"] == 0 and grammar_only["decoding"] == "grammar"
