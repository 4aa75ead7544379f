"""A run's LangGraph checkpoints as an append-only log: :class:`LogSaver`.

LangGraph's SQLite saver commits a transaction per graph step, about 2.8 ms of a question's
~10 ms of framework time on two cores (docs/vqa.md). A run has one writer and is only ever
appended to, so its checkpoints are kept in memory (LangGraph's own :class:`InMemorySaver`) and
each ``put`` / ``put_writes`` is also appended to the run's file as one length-prefixed record,
in one ``write()``. Reopening the file replays the records, so a run resumes from its last
finished step after a kill, as before. A record cut short by a kill mid-write is ignored.

A record holds what the in-memory saver has just stored, as it stored it: LangGraph's own
serialisation (``serde.dumps_typed``: msgpack for the state's pydantic models, restricted to the
allowed modules) of the checkpoint and of the channels that changed, so each step is serialised
once and the file grows with what changed, not with the whole state at every step. Logs written
before 2026-12-06 hold the whole checkpoint per record and are still read. Nothing in the file
is executed.
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


#: What a saver reads of a config: the thread, namespace and checkpoint ids.
_IDS = ("thread_id", "checkpoint_ns", "checkpoint_id")


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
        with self._lock:
            saved = super().put(config, checkpoint, metadata, new_versions)
            thread, ns, cid = (saved["configurable"][k] for k in _IDS)
            blobs = [[k, v, *self.blobs[(thread, ns, k, v)]] for k, v in new_versions.items()]
            self._append(["saved", thread, ns, cid, self.storage[thread][ns][cid], blobs])
        return saved

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        conf = config["configurable"]
        key = (conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"])
        with self._lock:
            before = set(self.writes.get(key, ()))
            super().put_writes(config, writes, task_id, task_path)
            new = [[k, v] for k, v in self.writes.get(key, {}).items() if k not in before]
            if new:
                self._append(["wrote", *key, new])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    # -- the file -----------------------------------------------------------------------------

    def _append(self, record: list[Any]) -> None:
        import ormsgpack

        body = ormsgpack.packb(record)
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
            self._restore(ormsgpack.unpackb(data[pos + _HEADER : end]))
            pos = end

    def _restore(self, record: list[Any]) -> None:
        """One record back into the in-memory saver, as :meth:`put` / :meth:`put_writes` left it."""
        kind, *fields = record
        if kind == "saved":
            thread, ns, cid, (cp, meta, parent), blobs = fields
            self.storage[thread][ns][cid] = (tuple(cp), tuple(meta), parent)
            for k, v, type_, payload in blobs:
                self.blobs[(thread, ns, k, v)] = (type_, payload)
        elif kind == "wrote":
            thread, ns, cid, new = fields
            for (task, idx), (task_id, channel, typed, task_path) in new:
                self.writes[(thread, ns, cid)][(task, idx)] = (
                    task_id, channel, tuple(typed), task_path,
                )  # fmt: skip
        elif kind in ("put", "writes"):  # a log written before 2026-12-06: whole checkpoints
            args = self.serde.loads_typed(tuple(fields))
            if kind == "put":
                super().put(*args)
            else:
                config, writes, task_id, task_path = args
                super().put_writes(config, [tuple(w) for w in writes], task_id, task_path)
