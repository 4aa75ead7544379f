"""A run's checkpoint log (agentkit.checkpoint.LogSaver) and AGENTKIT_CHECKPOINT_SYNC."""

from __future__ import annotations

import pytest

import agentkit.graph as graph
from agentkit.errors import ConfigError
from agentkit.graph import CHECKPOINT_FILE, SQLITE_CHECKPOINT_FILE, Agent, load_steps
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import ToolRegistry


def ask(tmp_path, thread: str, replies=("Final Answer: 1",)):
    agent = Agent(ScriptedBackend(list(replies)), tools=ToolRegistry(), runs_dir=tmp_path)
    return agent.ask("How many?", thread=thread)


@pytest.mark.parametrize(("value", "fsyncs"), [(None, False), ("normal", True), ("FULL", True)])
def test_sync_level_follows_the_environment(tmp_path, monkeypatch, value, fsyncs):
    if value is None:
        monkeypatch.delenv("AGENTKIT_CHECKPOINT_SYNC", raising=False)
    else:
        monkeypatch.setenv("AGENTKIT_CHECKPOINT_SYNC", value)
    synced = []
    monkeypatch.setattr("agentkit.checkpoint.os.fsync", synced.append)
    assert ask(tmp_path, "t").answer == "1"
    assert bool(synced) == fsyncs


def test_bad_value_is_a_clear_error_and_runs_still_persist(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_CHECKPOINT_SYNC", "sometimes")
    with pytest.raises(ConfigError, match="off, normal or full"):
        ask(tmp_path, "bad")
    monkeypatch.delenv("AGENTKIT_CHECKPOINT_SYNC")
    res = ask(tmp_path, "t")
    assert res.answer == "1"
    assert (tmp_path / "t" / CHECKPOINT_FILE).stat().st_size > 0  # every step was appended
    assert [s.role for s in load_steps(tmp_path / "t")] == [s.role for s in res.steps]


def test_the_log_replays_to_the_same_steps_and_ignores_a_record_cut_short(tmp_path):
    res = ask(tmp_path, "t")
    log = tmp_path / "t" / CHECKPOINT_FILE
    steps = load_steps(tmp_path / "t")
    assert [(s.role, s.started) for s in steps] == [(s.role, s.started) for s in res.steps]
    whole = log.read_bytes()
    log.write_bytes(whole + whole[:40])  # a kill in the middle of the next record
    assert [(s.role, s.started) for s in load_steps(tmp_path / "t")] == [
        (s.role, s.started) for s in steps
    ]


def test_runs_checkpointed_in_sqlite_are_still_read(tmp_path, monkeypatch):
    """Runs made before the log kept their checkpoints in SQLite: read and resumed as they are."""
    serde = graph._serde()
    monkeypatch.setattr(
        graph,
        "_checkpointer",
        lambda d: graph._sqlite_checkpointer(d / SQLITE_CHECKPOINT_FILE, serde, "off"),
    )
    res = ask(tmp_path, "old")
    monkeypatch.undo()
    assert (tmp_path / "old" / SQLITE_CHECKPOINT_FILE).is_file()
    assert [s.role for s in load_steps(tmp_path / "old")] == [s.role for s in res.steps]
    assert not (tmp_path / "old" / CHECKPOINT_FILE).exists()  # read, never converted


def test_a_log_written_before_the_compact_records_is_still_read_and_resumed(tmp_path):
    """tests/fixtures/legacy-log: a react run ("What is 2 + 3?" -> calculate -> 5) logged on
    2026-12-05, when every record held the whole checkpoint."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "legacy-log"
    shutil.copytree(fixture, tmp_path / "runs")
    steps = load_steps(tmp_path / "runs" / "legacy")
    assert [(s.role, s.observation) for s in steps] == [
        ("controller", None),
        ("executor", "calculate_0 = 2 + 3 = 5"),
        ("controller", "Final Answer: 5"),
    ]
    agent = Agent(ScriptedBackend([]), tools=ToolRegistry(), runs_dir=tmp_path / "runs")
    res = agent.resume("legacy")  # finished: answered from the log, no model call
    assert (res.answer, res.stop_reason) == ("5", "answered")


def test_each_record_holds_only_what_changed(tmp_path):
    """A step's record serialises the channels it changed, once: the question is in the log
    as often after six tool calls as after one (a record of the whole state per step put it
    in every record)."""
    question = "What is the sum of the numbers in this long and recognisable question?"

    def occurrences(calls: int) -> int:
        replies = [
            f'Action: calculate\nAction Input: {{"expression": "{i} + 1"}}' for i in range(calls)
        ]
        agent = Agent(
            ScriptedBackend([*replies, f"Final Answer: {calls}"]),
            tools=ToolRegistry.default().subset(["calculate"]),
            runs_dir=tmp_path,
            planner="react",
        )
        res = agent.ask(question, thread=f"t{calls}", max_steps=10)
        assert res.answer == str(calls) and len(res.steps) == 2 * calls + 1
        return (tmp_path / f"t{calls}" / CHECKPOINT_FILE).read_bytes().count(b"recognisable")

    assert occurrences(6) == occurrences(1)
