"""One error hierarchy for the whole project.

Two kinds matter to the agent loop:

* recoverable errors (:class:`ToolError`, :class:`ToolArgsError`, :class:`ToolTimeout`,
  :class:`ParseFailure`) become an observation the controller reads on its next turn;
* unrecoverable ones (:class:`ConfigError`, :class:`WeightsNotFound`, :class:`MediaError`,
  :class:`BackendError`) stop the run with a message that names the bad value, what was expected
  and what to do.
"""

from __future__ import annotations

from typing import Any


class AgentkitError(Exception):
    """Base class of every error agentkit raises on purpose."""


class ConfigError(AgentkitError):
    """A setting, a model spec or a command-line value is wrong."""


class WeightsNotFound(AgentkitError):
    """A checkpoint name or path does not resolve to a file on disk (nothing is ever downloaded)."""


class MediaError(AgentkitError):
    """An image or audio file is missing, unreadable, corrupt or too large."""


class BackendError(AgentkitError):
    """The model backend failed (server unreachable, bad response, generation error)."""


class ToolError(AgentkitError):
    """A tool failed while running. Recoverable: the controller sees the message."""


class ToolArgsError(ToolError):
    """The arguments of a tool call do not match the tool's ``Args`` schema."""


class ToolTimeout(ToolError):
    """A tool call ran past its time limit."""


class UnknownTool(ToolError):
    """The controller named a tool that is not registered."""


class ParseFailure(AgentkitError):
    """Model text could not be read as a tool call or a final answer."""


def validation_message(e: Any) -> str:
    """A pydantic ``ValidationError`` as one line: each problem as ``field: message``."""
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors()
    )
