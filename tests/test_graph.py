"""The agent loop end to end with a scripted model: routing, budgets, errors, persistence, traces."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agentkit.errors import BackendError, ConfigError, MediaError
from agentkit.graph import Agent, load_steps
from agentkit.runtime import Options
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import Tool, ToolRegistry
from agentkit.trace import read_events, render_html


class AddArgs(BaseModel):
    a: float = Field(description="first number")
    b: float = Field(description="second number")


class AddResult(BaseModel):
    value: float


def _add(args: AddArgs, ctx) -> AddResult:
    return AddResult(value=args.a + args.b)


class SleepArgs(BaseModel):
    seconds: float


class Boxes(BaseModel):
    objects: list[dict]


def _sleep(args: SleepArgs, ctx) -> AddResult:
    time.sleep(args.seconds)
    return AddResult(value=args.seconds)


def _boom(args: SleepArgs, ctx) -> AddResult:
    raise RuntimeError("sensor on fire")


def _find(args: SleepArgs, ctx) -> Boxes:
    return Boxes(objects=[{"label": "cube", "box": [4, 4, 20, 20], "score": 0.9}])


class TallyArgs(BaseModel):
    objects: list[dict]


def _tally(args: TallyArgs, ctx) -> AddResult:
    return AddResult(value=len(args.objects))


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry(
        [
            Tool("add", "Adds two numbers.", AddArgs, AddResult, _add),
            Tool("nap", "Sleeps.", SleepArgs, AddResult, _sleep, timeout=0.3),
            Tool("boom", "Always fails.", SleepArgs, AddResult, _boom),
            Tool("find", "Finds cubes.", SleepArgs, Boxes, _find),
            Tool("tally", "Counts objects.", TallyArgs, AddResult, _tally),
        ]
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "scene.png"
    Image.new("RGB", (32, 24), (90, 90, 90)).save(p)
    return p


def call(tool: str, args: dict, thought: str = "a step") -> str:
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(args)}"


def agent(replies, registry, tmp_path, **opts) -> tuple[Agent, ScriptedBackend]:
    backend = ScriptedBackend(replies)
    return Agent(
        backend, tools=registry, runs_dir=tmp_path / "runs", options=Options(**opts)
    ), backend


def test_two_tool_calls_then_answer(registry, image, tmp_path):
    a, backend = agent(
        [
            call("add", {"a": 2, "b": 3}),
            call("add", {"a": 5, "b": 10}),
            "Thought: the sum is 15\nFinal Answer: 15",
        ],
        registry,
        tmp_path,
    )
    res = a.ask("What is 2+3+10?", images=[image])
    assert res.answer == "15"
    assert res.stop_reason == "answered"
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.result for s in executed] == [{"value": 5.0}, {"value": 15.0}]
    # the controller saw the first observation before its second call
    assert 'Observation: add_0 = {"value":5.0}' in backend.calls[1][-1].content
    # images reach the model as files of the run's media store, never inline
    assert backend.calls[0][-1].images and backend.calls[0][-1].images[0].name == "image_0.png"
    assert "image_0 (32x24 image)" in backend.calls[0][-1].content


@pytest.fixture
def torch_threads():
    """Torch's CPU threads as they were before the test, put back after it."""
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_torch_threads_follow_options_then_the_model_folder(registry, tmp_path, torch_threads):
    """A run sets torch's CPU threads to what Options say, else to what the model's folder
    declares (the shipped core: 1), else leaves them; a declaration that is no count >= 1 is
    refused before any run."""

    class Declaring(ScriptedBackend):
        runtime_hints = {"threads": "1"}

    torch_threads.set_num_threads(2)
    untold = Agent(ScriptedBackend(["Final Answer: 0"]), tools=registry, runs_dir=tmp_path)
    assert untold.options.threads is None
    untold.ask("q?")
    assert torch_threads.get_num_threads() == 2  # nobody asked: torch's own setting stands
    declared = Agent(Declaring(["Final Answer: 0"]), tools=registry, runs_dir=tmp_path)
    assert torch_threads.get_num_threads() == 2  # set by a run, not by building the agent
    assert declared.ask("q?").answer == "0" and torch_threads.get_num_threads() == 1
    told = Agent(Declaring(["Final Answer: 0"]), tools=registry, runs_dir=tmp_path,
                 options=Options(threads=2))  # fmt: skip
    told.ask("q?")
    assert torch_threads.get_num_threads() == 2  # Options win over the folder
    for hint in ("0", "all"):
        Declaring.runtime_hints = {"threads": hint}
        with pytest.raises(ConfigError, match=f"the model declares threads {hint!r}"):
            Agent(Declaring([]), tools=registry, runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="Options threads 0; expected an int >= 1"):
        Agent(ScriptedBackend([]), tools=registry, runs_dir=tmp_path, options=Options(threads=0))


def test_tool_errors_become_observations_and_the_run_goes_on(registry, tmp_path):
    a, backend = agent(
        [
            call("boom", {"seconds": 0}),
            call("add", {"a": "two", "b": 1}),
            call("nap", {"seconds": 2}),
            call("teleport", {}),
            "Final Answer: unsure",
        ],
        registry,
        tmp_path,
    )
    res = a.ask("Try things.")
    executed = [s for s in res.steps if s.role == "executor"]
    assert "sensor on fire" in executed[0].error
    assert "a:" in executed[1].error  # names the bad field
    assert "longer than 0.3 s" in executed[2].error
    last_prompt = backend.calls[4][-1].content
    assert "Observation: Error: boom failed: RuntimeError: sensor on fire" in last_prompt
    assert res.answer == "unsure"


def test_unparseable_replies_are_fed_back_then_stop(registry, tmp_path):
    a, backend = agent(
        ["I think maybe", "???", "no format at all"], registry, tmp_path, max_parse_errors=3
    )
    res = a.ask("q?")
    assert res.stop_reason == "parse_errors"
    ctrl = [s for s in res.steps if s.role == "controller"]
    assert len(ctrl) == 3 and all(s.error for s in ctrl)
    assert "Could not read your reply" in backend.calls[1][-1].content


def test_step_budget_is_enforced_and_summarizer_answers(registry, tmp_path):
    replies = [call("add", {"a": i, "b": 1}) for i in range(3)] + [
        "Final Answer: 3 calls were made"
    ]
    a, backend = agent(replies, registry, tmp_path)
    res = a.ask("Loop forever", max_steps=3)
    assert res.stop_reason == "budget"
    assert len([s for s in res.steps if s.role == "executor"]) == 3
    assert res.steps[-1].role == "summarizer" and res.answer == "3 calls were made"
    # the summarizer got the observations, with its own prompt
    assert "summarizer" in backend.calls[-1][0].content


@pytest.mark.parametrize("reply", ["large large large " * 40, "no answer format here"])
def test_an_unreadable_summary_is_no_answer_not_noise(registry, tmp_path, reply):
    """A summarizer reply without a readable Final Answer (or a run-on one) gives no answer and a
    failed summarizer step; the gathered observations stay in the steps."""
    replies = [call("add", {"a": i, "b": 1}) for i in range(2)] + [
        reply if reply.startswith("no") else f"Final Answer: {reply}"
    ]
    a, _ = agent(replies, registry, tmp_path)
    res = a.ask("Loop forever", max_steps=2)
    assert res.answer is None and res.steps[-1].role == "summarizer" and res.steps[-1].error
    assert len([s for s in res.steps if s.role == "executor" and not s.error]) == 2


def test_model_decider_can_end_the_chain(registry, tmp_path):
    a, _ = agent(
        [call("add", {"a": 1, "b": 1}), "yes", "Final Answer: 2"],
        registry,
        tmp_path,
        model_decider=True,
    )
    res = a.ask("1+1?")
    assert [s.role for s in res.steps] == ["controller", "executor", "decider", "summarizer"]
    assert res.answer == "2"


def test_native_tool_calls(registry, tmp_path):
    a, _ = agent(
        [
            {"text": "", "tool_calls": [{"tool": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]},
            "Final Answer: 3",
        ],
        registry,
        tmp_path,
    )
    res = a.ask("1+2?")
    assert res.steps[1].result == {"value": 3.0}


def test_backend_failure_keeps_finished_steps_and_resumes(registry, tmp_path):
    a, _ = agent(
        [call("add", {"a": 1, "b": 1})], registry, tmp_path
    )  # script ends: BackendError next
    with pytest.raises(BackendError):
        a.ask("1+1 then?", thread="t1")
    run_dir = tmp_path / "runs" / "t1"
    kept = load_steps(run_dir)
    assert [s.role for s in kept] == ["controller", "executor"]
    assert read_events(run_dir / "trace.jsonl")[-1]["event"] == "error"
    b, _ = agent(["Final Answer: 2"], registry, tmp_path)
    res = b.resume("t1")
    assert res.answer == "2"
    assert [s.started for s in res.steps[:2]] == [s.started for s in kept]


def test_a_one_node_per_step_graph_writes_its_checkpoints_in_its_own_thread(
    registry, tmp_path, monkeypatch
):
    """react/plan/program run one node per super-step: LangGraph's checkpoint writes run in
    the graph's thread as they are handed over (no pool is started), each before the next
    step, so a run killed between steps resumes from every step it finished; any other
    config keeps LangGraph's pool."""
    import threading

    from agentkit import checkpoint as ck
    from agentkit.graph import InlineExecutor, inline_background_work

    assert inline_background_work()
    writers: list[str] = []
    put = ck.LogSaver.put

    def noting(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(ck.LogSaver, "put", noting)
    a, _ = agent([call("add", {"a": 1, "b": 1}), "Final Answer: 2"], registry, tmp_path)
    assert a.ask("1+1?").answer == "2"
    assert len(writers) >= 3 and set(writers) == {threading.current_thread().name}

    from langgraph.pregel import _executor

    with _executor.get_executor_for_config({"configurable": {}}) as pool:
        assert not isinstance(pool, InlineExecutor)
        assert pool.submit(threading.current_thread).result() is not threading.current_thread()
    failed = InlineExecutor().submit(lambda: 1 / 0)
    assert isinstance(failed.exception(), ZeroDivisionError)  # kept, as a worker's would be


def test_bad_image_fails_before_any_model_call(registry, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    a, backend = agent(["Final Answer: x"], registry, tmp_path)
    with pytest.raises(MediaError, match="cannot read image"):
        a.ask("q?", images=[bad])
    assert backend.calls == []


def test_trace_events_and_html(registry, image, tmp_path):
    a, _ = agent([call("find", {"seconds": 0}), "Final Answer: one cube"], registry, tmp_path)
    res = a.ask("How many cubes?", images=[image], thread="tr")
    events = read_events(res.trace)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and kinds[-2:] == ["answer", "run_end"]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == len(res.steps)
    assert all("seconds" in e and "started" in e for e in steps)
    assert steps[0]["model"] == "scripted" and steps[0]["tokens_in"] > 0
    page = render_html(tmp_path / "runs" / "tr").read_text()
    assert "How many cubes?" in page and "<rect" in page and "data:image/png;base64," in page
    assert "Answer: one cube" in page


def test_later_calls_pass_earlier_results_by_name(registry, tmp_path):
    a, backend = agent(
        [
            call("find", {"seconds": 0}),
            call("find", {"seconds": 0}),
            call("tally", {"objects": "find_1"}),
            call("tally", {"objects": "find_9"}),
            "Final Answer: 1",
        ],
        registry,
        tmp_path,
    )
    res = a.ask("How many?")
    executed = [s for s in res.steps if s.role == "executor"]
    assert [s.ref for s in executed] == ["find_0", "find_1", "tally_0", None]
    assert executed[2].args == {"objects": "find_1"}  # recorded as the model wrote it
    assert executed[2].result == {"value": 1.0}
    assert "objects" in executed[3].error  # an unknown name stays a string and fails validation
    assert "Observation: find_1 = " in backend.calls[2][-1].content


def test_graph_is_compiled_once_and_concurrent_runs_keep_their_own_runtime(
    registry, tmp_path, monkeypatch
):
    """The planner's graph is built once per process, shared by agents; each run's nodes still
    write to that run's media, trace and checkpoint, also when two runs overlap in threads."""
    import threading

    import agentkit.planners.react as react

    builds = []
    build = react.build_react
    monkeypatch.setattr(react, "build_react", lambda *a, **k: (builds.append(1), build(*a, **k))[1])
    backend = ScriptedBackend(
        [{"text": call("add", {"a": 1, "b": 2}), "sleep": 0.2}, "Final Answer: 3"],
        index_by="observations",
    )
    agents = [Agent(backend, tools=registry, runs_dir=tmp_path / "runs") for _ in range(2)]
    for a in agents:
        a._build = react.build_react
    sizes = [(32, 24), (16, 8)]
    images = []
    for i, size in enumerate(sizes):
        images.append(tmp_path / f"im{i}.png")
        Image.new("RGB", size).save(images[-1])
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        results[i] = agents[i].ask("1+2?", images=[images[i]], thread=f"t{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    for i, (w, h) in enumerate(sizes):
        res = results[i]
        assert res.answer == "3" and res.thread == f"t{i}"
        assert [s.result for s in res.steps if s.role == "executor"] == [{"value": 3.0}]
        events = read_events(res.trace)
        start = next(e for e in events if e["event"] == "run_start")
        assert start["thread"] == f"t{i}"
        assert sum(e["event"] == "step" for e in events) == len(res.steps)
        assert load_steps(tmp_path / "runs" / f"t{i}") == res.steps
        assert Image.open(tmp_path / "runs" / f"t{i}" / "media" / "image_0.png").size == (w, h)
    prompts = [m[-1].content for m in backend.calls]
    assert sum("image_0 (32x24 image)" in p for p in prompts) == 2  # the two turns of run 0
    assert sum("image_0 (16x8 image)" in p for p in prompts) == 2
