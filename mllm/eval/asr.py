"""Speech recognition metric: word error rate of the ``transcribe`` tool on held-out clips.

The clips are a folder written by the ``asr`` recipe (or ``agentkit data gen speech``): ``*.wav``
16 kHz mono with a ``*.json`` beside each holding its ``transcript``. Every clip goes through
:func:`agentkit.tools.transcribe.run`, the call path users get (same loader, same decoding options,
language detected), and the corpus WER is total word edits over total reference words.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

_PUNCT = re.compile(r"[^\w\s']")


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation: ``"Is it red?"`` -> ``["is", "it", "red"]``."""
    return _PUNCT.sub(" ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_kind(word: str) -> str:
    """What a question word names: the attribute (``color``, ``material``, ``size``, ``shape``)
    whose value it spells, synonyms and plurals included (the detector's own reading,
    :func:`agentkit.tools.detect.normalize_word`), ``relation`` for left / right / front /
    behind, else ``other``."""
    from agentkit.mllm.worlds.programs import RELATIONS
    from agentkit.tools.detect import ATTRIBUTES, normalize_word

    w = normalize_word(word)
    if w in RELATIONS:
        return "relation"
    return next((kind for kind, values in ATTRIBUTES.items() if w in values), "other")


def words_wrong(pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Per kind of word said (:func:`word_kind`): how many were said and
    the share not heard as said (substituted or dropped), each reference aligned with its
    hypothesis word by word (``difflib.SequenceMatcher``)."""
    import difflib

    said: dict[str, int] = {}
    wrong: dict[str, int] = {}
    for ref, hyp in pairs:
        r, h = normalise(ref), normalise(hyp)
        heard: set[int] = set()
        for block in difflib.SequenceMatcher(None, r, h, autojunk=False).get_matching_blocks():
            heard.update(range(block.a, block.a + block.size))
        for i, w in enumerate(r):
            k = word_kind(w)
            said[k] = said.get(k, 0) + 1
            wrong[k] = wrong.get(k, 0) + (i not in heard)
    return {k: {"said": n, "wrong": round(wrong[k] / n, 4)} for k, n in sorted(said.items())}


def wer(ref: str, hyp: str) -> float:
    """Word error rate of one hypothesis: edits / reference words (may exceed 1)."""
    r = normalise(ref)
    if not r:
        raise ConfigError(f"reference {ref!r} has no words: WER is undefined")
    return edit_distance(r, normalise(hyp)) / len(r)


def evaluate_asr(
    weights: str | Path = "speech-whisper",
    clips_dir: str | Path = "data/asr/test",
    *,
    limit: int | None = None,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Corpus WER of the transcribe tool with ``weights`` on the clips of ``clips_dir``;
    ``options`` replace the checkpoint's own ``transcribe_options`` keys (e.g. ``{"beam_size":
    None}`` or ``{"beam_size": 5}``: decoding settings are chosen on a dev split this way).

    Returns ``{"clips", "wer", "sentence_accuracy", "words_wrong", "seconds_per_clip",
    "weights", "options", "worst"}``: ``wer`` is summed edits over summed reference words;
    ``words_wrong`` the share of each kind of word said that was not heard (:func:`words_wrong`:
    color, material, size, shape, relation, other); ``worst`` lists up to 5 clips with the
    highest WER (reference and hypothesis) for inspection. Clips that say which user wording
    they speak (the ``worded`` split of ``agentkit train asr-worded``) add ``by_wording``: WER and
    sentence accuracy per form, and pooled over the forms training spoke and the held-out ones.
    """
    from agentkit.tools.base import ToolContext
    from agentkit.tools.transcribe import Args, run

    d = Path(clips_dir)
    metas = sorted(p for p in d.glob("*.json") if (p.with_suffix(".wav")).is_file())
    if not metas:
        raise ConfigError(
            f"no clips (*.wav with a *.json transcript) in {d}; make them with "
            "`agentkit train asr` (data_dir/test) or `agentkit data gen speech`"
        )
    metas = metas[:limit] if limit else metas
    ctx = ToolContext(device=device)
    if options:
        from agentkit.tools._vision import resolve_weights
        from agentkit.tools.base import ModelCache
        from agentkit.tools.transcribe import CHECKPOINT_OPTIONS, load_transcriber

        unknown = set(options) - CHECKPOINT_OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown transcribe option(s) {sorted(unknown)}; known: {sorted(CHECKPOINT_OPTIONS)}"
            )
        # loaded into a cache of this evaluation's own: the process-wide one never holds the
        # settings (a later call, here or in an agent, decodes as the checkpoint says)
        path = resolve_weights(str(weights))
        tuned = load_transcriber(path, device)
        tuned.options = {**tuned.options, **options}
        ctx = ToolContext(device=device, models=ModelCache())
        ctx.models.get("whisper", str(path), device, lambda: tuned)
    edits = words = exact = 0
    rows = []
    t0 = time.perf_counter()
    for m in metas:
        meta = json.loads(m.read_text())
        ref = meta["transcript"]
        hyp = run(Args(audio=str(m.with_suffix(".wav")), weights=str(weights)), ctx).text
        r = normalise(ref)
        e = edit_distance(r, normalise(hyp))
        edits, words, exact = edits + e, words + len(r), exact + (e == 0)
        rows.append({"id": m.stem, "wer": round(e / max(1, len(r)), 3), "ref": ref, "hyp": hyp,
                     "edits": e, "words": len(r), "wording": meta.get("wording")})  # fmt: skip
    dt = time.perf_counter() - t0
    rows.sort(key=lambda x: -x["wer"])
    worded = [x for x in rows if x["wording"]]
    return {
        "clips": len(metas),
        "wer": round(edits / max(1, words), 4),
        "sentence_accuracy": round(exact / len(metas), 4),
        "words_wrong": words_wrong([(x["ref"], x["hyp"]) for x in rows]),
        "seconds_per_clip": round(dt / len(metas), 3),
        "weights": str(weights),
        "options": dict(options or {}),
        "worst": [{k: x[k] for k in ("id", "wer", "ref", "hyp")} for x in rows[:5]],
        **({"by_wording": by_wording(worded)} if worded else {}),
    }


def by_wording(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """WER and sentence accuracy of clips grouped by the user wording they speak, and pooled over
    the forms the speech model's training spoke (``trained forms``) and the held-out ones."""
    from agentkit.mllm.worlds.wordings import HELD_OUT_WORDINGS

    def pooled(part: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "clips": len(part),
            "wer": round(sum(x["edits"] for x in part) / max(1, sum(x["words"] for x in part)), 4),
            "sentence_accuracy": round(sum(x["edits"] == 0 for x in part) / max(1, len(part)), 4),
        }

    groups: dict[str, list[dict[str, Any]]] = {}
    for x in rows:
        groups.setdefault(x["wording"], []).append(x)
    held = [x for x in rows if x["wording"] in HELD_OUT_WORDINGS]
    return {
        "trained forms": pooled([x for x in rows if x["wording"] not in HELD_OUT_WORDINGS]),
        "held-out forms": pooled(held),
        "forms": {name: pooled(part) for name, part in sorted(groups.items())},
    }
