"""AGENTKIT_CHECKPOINT_SYNC: how hard the run checkpoint's SQLite syncs (off by default)."""

from __future__ import annotations

import sqlite3

import pytest

from agentkit.errors import ConfigError
from agentkit.graph import Agent, _checkpointer
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import ToolRegistry


@pytest.mark.parametrize(("value", "level"), [(None, 0), ("normal", 1), ("FULL", 2)])
def test_sync_level_follows_the_environment(tmp_path, monkeypatch, value, level):
    if value is None:
        monkeypatch.delenv("AGENTKIT_CHECKPOINT_SYNC", raising=False)
    else:
        monkeypatch.setenv("AGENTKIT_CHECKPOINT_SYNC", value)
    cp = _checkpointer(tmp_path / "c.sqlite")
    try:
        assert cp.conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        cp.conn.close()


def test_bad_value_is_a_clear_error_and_runs_still_persist(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_CHECKPOINT_SYNC", "sometimes")
    agent = Agent(ScriptedBackend(["Final Answer: 1"]), tools=ToolRegistry(), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="off, normal or full"):
        agent.ask("How many?")
    monkeypatch.delenv("AGENTKIT_CHECKPOINT_SYNC")
    res = agent.ask("How many?", thread="t")
    assert res.answer == "1"
    rows = sqlite3.connect(tmp_path / "t" / "checkpoint.sqlite").execute(
        "SELECT count(*) FROM checkpoints"
    )
    assert rows.fetchone()[0] > 0  # every step was committed with sync off
