"""The README's tool commands run as written (docs that run, STYLE §14)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(prefix: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


TOOL_COMMANDS = readme_commands("agentkit tool ")


def test_readme_shows_tool_commands():
    assert len(TOOL_COMMANDS) >= 3


@pytest.mark.parametrize("command", TOOL_COMMANDS)
def test_readme_tool_command_runs(command, tmp_path):
    argv = [sys.executable, "-m", "agentkit.cli", *shlex.split(command)[1:]]
    # a first run: libraries that announce the settings files they create must not do it on stdout
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")}
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    if "--json" in command:
        data = json.loads(out.stdout)
        assert not (isinstance(data, dict) and data.get("error")), data
