"""A run's LangGraph checkpoints as an append-only log: :class:`LogSaver`.

LangGraph's SQLite saver commits a transaction per graph step, about 2.8 ms of a question's
~10 ms of framework time on two cores (docs/vqa.md). A run has one writer and is only ever
appended to, so its checkpoints are kept in memory (LangGraph's own :class:`InMemorySaver`) and
each ``put`` / ``put_writes`` is also appended to the run's file as one length-prefixed record,
in one ``write()``. Reopening the file replays the records, so a run resumes from its last
finished step after a kill, as before. A record cut short by a kill mid-write is ignored.

Records hold LangGraph's own serialisation (``serde.dumps_typed``: msgpack for the state's
pydantic models, restricted to the allowed modules); nothing in the file is executed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from agentkit.errors import ConfigError

#: How hard each record is pushed to disk (``AGENTKIT_CHECKPOINT_SYNC``).
SYNC_LEVELS = ("off", "normal", "full")
_HEADER = 4  # bytes of each record's length


def sync_level(value: str) -> str:
    """``value`` if it is one of :data:`SYNC_LEVELS`, else a clear error."""
    if value not in SYNC_LEVELS:
        raise ConfigError(
            f"AGENTKIT_CHECKPOINT_SYNC={value!r} is invalid: expected off, normal or full"
        )
    return value


def _keys(config: Any) -> dict[str, dict[str, Any]]:
    """What a saver reads of a config: the thread, namespace and checkpoint ids (the rest holds
    the run's live objects)."""
    conf = config.get("configurable", {})
    keys = ("thread_id", "checkpoint_ns", "checkpoint_id")
    return {"configurable": {k: conf[k] for k in keys if k in conf}}


class LogSaver(InMemorySaver):
    """LangGraph checkpoints in memory, each also appended to ``path`` as it is made.

    ``sync``: ``off`` hands every record to the OS at once (a killed process loses nothing;
    an OS crash or power cut may lose the last steps); ``normal`` and ``full`` also fsync each
    record (power-loss durability, at a disk flush per step)."""

    def __init__(self, path: str | Path, *, serde: Any, sync: str = "off") -> None:
        super().__init__(serde=serde)
        self.path = Path(path)
        self.sync = sync_level(sync)
        self._lock = threading.Lock()
        self._replay()
        self._file: Any = None  # opened by the first record: a reader never writes

    # -- LangGraph's saver interface ---------------------------------------------------------

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        record = self.serde.dumps_typed((_keys(config), checkpoint, metadata, new_versions))
        with self._lock:
            saved = super().put(config, checkpoint, metadata, new_versions)
            self._append("put", record)
        return saved

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        record = self.serde.dumps_typed((_keys(config), list(writes), task_id, task_path))
        with self._lock:
            super().put_writes(config, writes, task_id, task_path)
            self._append("writes", record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    # -- the file -----------------------------------------------------------------------------

    def _append(self, kind: str, record: tuple[str, bytes]) -> None:
        import ormsgpack

        body = ormsgpack.packb([kind, record[0], record[1]])
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._file.write(len(body).to_bytes(_HEADER, "little") + body)
        if self.sync != "off":
            os.fsync(self._file.fileno())

    def _replay(self) -> None:
        """Rebuild the in-memory checkpoints from the file's records, in order."""
        import ormsgpack

        if not self.path.is_file():
            return
        data, pos = self.path.read_bytes(), 0
        while pos + _HEADER <= len(data):
            size = int.from_bytes(data[pos : pos + _HEADER], "little")
            end = pos + _HEADER + size
            if end > len(data):
                break  # the last record was cut short by a kill: its step did not finish
            kind, type_, payload = ormsgpack.unpackb(data[pos + _HEADER : end])
            args = self.serde.loads_typed((type_, payload))
            if kind == "put":
                super().put(*args)
            elif kind == "writes":
                config, writes, task_id, task_path = args
                super().put_writes(config, [tuple(w) for w in writes], task_id, task_path)
            pos = end
