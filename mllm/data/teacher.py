"""Self-instruct rephrasings of scene questions by a teacher LLM (``--teacher openai:URL#MODEL``).

Templated questions read alike; GPT4Tools had a teacher model write varied instructions. Here a
teacher (any backend spec :func:`~agentkit.mllm.backends.base.load_backend` accepts, usually an
OpenAI-compatible endpoint) rewrites each question once. A rewrite is kept only when it still
names every value the question's program uses (each colour, shape, material, size and relation,
as the word or one of its synonyms) and is a single question, so a rewrite that drops or changes
a condition is rejected rather than trained on with the old answer. Rewrites are cached in
``teacher.jsonl`` under the output folder (keyed by question text), so a re-run asks nothing
again and gives the same samples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentkit.errors import BackendError, ConfigError
from agentkit.mllm.backends.base import Backend, Message, load_backend
from agentkit.mllm.worlds import templates as T

SYSTEM = (
    "You rewrite questions about a picture of simple 3D objects (cubes, spheres, cylinders in "
    "eight colors, rubber or metal, small or large). Rewrite the question in different words with "
    "exactly the same meaning and the same answer: keep every color, shape, material, size and "
    "position it mentions. Reply with the rewritten question only, on one line."
)
CACHE_FILE = "teacher.jsonl"
MAX_CHARS = 300
_RELATION_WORDS = {"left": ("left",), "right": ("right",), "front": ("front",),
                   "behind": ("behind", "back")}  # fmt: skip
_EXTRA = {"sphere": ("spheres", "balls", "globe", "globes"), "cube": ("cubes", "blocks"),
          "cylinder": ("cylinders",), "gray": ("grey",), "metal": ("metallic", "shiny"),
          "large": ("big", "bigger", "larger"), "small": ("tiny", "little", "smaller")}  # fmt: skip


# What a function asks, in words one of which a rewrite must keep (the attribute a query or a
# same-attribute hop names, the comparison, and/or, how many).
_FUNCTION_WORDS = {
    "color": ("color", "colour", "colored", "coloured"), "shape": ("shape", "shaped"),
    "material": ("material", "made"), "size": ("size", "big", "large", "small", "sized"),
    "greater_than": ("more", "greater", "larger", "bigger"),
    "less_than": ("fewer", "less", "smaller"),
    "equal_integer": ("same", "equal", "many"),
    "union": ("or", "either"), "intersect": ("and", "both"),
    "count": ("many", "number", "count"),
}  # fmt: skip


def value_words(program: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Each value or question word the program needs, and the words that may say it."""
    nodes = list(program)
    compares = bool(nodes) and nodes[-1].get("function") in ("greater_than", "less_than",
                                                             "equal_integer")  # fmt: skip
    out: dict[str, tuple[str, ...]] = {}
    for nd in nodes:
        fn = str(nd.get("function", ""))
        asked = fn.split("_", 1)[1] if fn.startswith(("query_", "same_")) else fn
        if asked in _FUNCTION_WORDS and not (fn == "count" and compares):
            out[f"<{fn}>"] = _FUNCTION_WORDS[asked]
        for v in nd.get("value_inputs", []):
            words = _RELATION_WORDS.get(v) or (v, *T.SYNONYMS.get(v, ()), *_EXTRA.get(v, ()))
            out[v] = tuple(dict.fromkeys(words))
    return out


def keeps_meaning(rewrite: str, original: str, program: Iterable[dict[str, Any]]) -> bool:
    """Whether ``rewrite`` is one new question that still names every value of ``program``."""
    text = rewrite.strip()
    if not text or text == original.strip() or len(text) > MAX_CHARS or "\n" in text:
        return False
    if not text.endswith("?") or text.count("?") != 1:
        return False
    tokens = set(re.findall(r"[a-z]+", text.lower()))
    return all(any(w in tokens for w in words) for words in value_words(program).values())


def _clean(text: str) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(rewritten question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"').strip("'").strip()


class Teacher:
    """Asks ``spec``'s model for rewrites, with a cache in ``out/teacher.jsonl``."""

    def __init__(self, spec: str, out: Path, backend: Backend | None = None) -> None:
        self.spec = spec
        self.path = out / CACHE_FILE
        self.cache: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.cache[rec["question"]] = rec["rewrite"]
        self._backend = backend
        self.asked = self.kept = self.rejected = 0

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            try:
                self._backend = load_backend(self.spec)
            except BackendError as e:
                raise ConfigError(f"--teacher {self.spec}: {e}") from e
        return self._backend

    def rewrite(self, question: str, program: list[dict[str, Any]]) -> str | None:
        """A checked rewrite of ``question``, or None (the teacher's text did not pass)."""
        if question not in self.cache:
            try:
                gen = self.backend.generate(
                    [
                        Message(role="system", content=SYSTEM),
                        Message(role="user", content=question),
                    ],
                    max_new_tokens=80,
                )
            except BackendError as e:
                raise ConfigError(f"--teacher {self.spec} failed: {e}") from e
            self.asked += 1
            self.cache[question] = _clean(gen.text)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                rec = {"question": question, "rewrite": self.cache[question]}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        text = self.cache[question]
        if keeps_meaning(text, question, program):
            self.kept += 1
            return text
        self.rejected += 1
        return None
