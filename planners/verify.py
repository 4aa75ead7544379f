"""Woodpecker-style verification of a drafted answer against the detector, with no model call.

After the summarizer has an answer, this module

1. extracts what the answer (and the final thought) claims about objects: noun phrases made of
   the scene vocabulary ("large red metal sphere", "grey balls", "a rubber thing"; synonyms as
   :mod:`agentkit.tools.detect` reads them), and, for a plain existence question ("Is there a
   small metal sphere?", "Are there any cubes?"), the yes/no answer's claim about that phrase;
2. looks the claims up in ``detect`` results on the task's images and video frames: a detect step
   already in the run is reused when it saw the whole image (no class or attribute filter, the
   default confidence); otherwise detect runs once per image, recorded as an executor step;
3. corrects or flags:

   * a yes/no existence answer contradicted by detection is flipped only when the detector is
     confident: "no" becomes "yes" when a matching object scores at least
     ``Options.verify_score``; "yes" becomes "no" when nothing matches while the detector saw the
     image well (it found objects, with a mean score of at least ``verify_score``). Otherwise the
     contradiction is flagged in the step and the answer stays;
   * an object the answer names that is not found makes the answer "No <phrase> is visible." when
     the detector is confident, else the answer is marked as resting on insufficient evidence;
   * a claim only the thought makes is flagged, never changes the answer.

An object *matches* a claim when none of its known attributes differ from the claim's (an
attribute the detector did not name is unknown, not a mismatch); a *certain* match also knows
every claimed attribute. A failed detect (no checkpoint, a bad image) is recorded and the answer
is kept unchanged, marked as not verified. The check is one ``summarizer`` step whose ``result``
lists what was checked and what was found.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from agentkit.planners.expect import EXISTENCE_OPENERS
from agentkit.runtime import Runtime
from agentkit.state import RunState, Step, ToolCall
from agentkit.tools.base import execute
from agentkit.tools.detect import ATTRIBUTES, SHAPES, normalize_word

_KIND = {v: k for k, vals in ATTRIBUTES.items() if k != "shape" for v in vals}
_GENERIC = {"thing", "things", "object", "objects", "item", "items"}
_NEGATIONS = {"no", "not", "none", "without", "zero", "nor", "never"}
_WORD = re.compile(r"[a-z]+")
_EXIST = re.compile(
    rf"^(?:{EXISTENCE_OPENERS})\s+(?:a |an |any )?(?P<phrase>[a-z ]+?)"
    r"(?: in the (?:scene|image|picture))?\?*$"
)
_YES, _NO = {"yes", "true", "yeah", "yep"}, {"no", "false", "nope"}
#: Detect's default confidence: a reused detect step that kept only higher scores saw less.
_DETECT_CONF = 0.25


@dataclass
class Claim:
    """An object phrase: its attributes (size/color/material) and shape (None: any thing)."""

    attrs: dict[str, str]
    shape: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"phrase": self.text, **self.attrs, "shape": self.shape}


def _noun(word: str) -> str | None:
    """ "balls" -> "sphere"; "things" -> ""; anything else -> None."""
    if word in _GENERIC:
        return ""
    w = normalize_word(word)
    return w if w in SHAPES else None


def extract_claims(text: str) -> list[Claim]:
    """Object phrases ``text`` asserts: runs of attribute words ending in a shape (or a generic
    "thing" with at least one attribute). Negated phrases ("no red sphere") are left out."""
    words = _WORD.findall(text.lower())
    claims: list[Claim] = []
    for i, w in enumerate(words):
        shape = _noun(w)
        if shape is None:
            continue
        j, attrs = i, {}
        while j > 0 and (kind := _KIND.get(normalize_word(words[j - 1]))) and kind not in attrs:
            attrs[kind] = normalize_word(words[j - 1])
            j -= 1
        if not shape and not attrs:
            continue
        if j > 0 and words[j - 1] in _NEGATIONS:
            continue
        claims.append(Claim(attrs=attrs, shape=shape or None, text=" ".join(words[j : i + 1])))
    return claims


def existence_claim(question: str) -> Claim | None:
    """The phrase of a plain existence question ("Is there a small metal sphere?"), or None when
    the question is anything else (relations, counts, logic: detection alone cannot decide it)."""
    m = _EXIST.match(" ".join(question.lower().split()))
    if not m:
        return None
    words = m.group("phrase").split()
    if not words or _noun(words[-1]) is None:
        return None
    attrs: dict[str, str] = {}
    for w in words[:-1]:
        kind = _KIND.get(normalize_word(w))
        if kind is None or kind in attrs:
            return None
        attrs[kind] = normalize_word(w)
    return Claim(attrs=attrs, shape=_noun(words[-1]) or None, text=" ".join(words))


def _yes_no(answer: str) -> str | None:
    w = answer.strip().lower().rstrip(".!")
    return "yes" if w in _YES else "no" if w in _NO else None


def match(obj: dict[str, Any], claim: Claim) -> str | None:
    """ "certain", "possible" or None: does a detected object fit the claim?"""
    certain = True
    wanted = {**claim.attrs, **({"shape": claim.shape} if claim.shape else {})}
    for kind, value in wanted.items():
        have = obj.get(kind)
        if kind == "shape" and have is None:
            label = normalize_word(str(obj.get("label", "")))
            have = label if label in SHAPES else None
            if have is None and obj.get("label"):
                return None  # a labelled non-scene object ("person") is not a cube
        if have is None:
            certain = False
        elif normalize_word(str(have)) != value:
            return None
    return "certain" if certain else "possible"


# --------------------------------------------------------------------------------------------
# detections


def _images(state: RunState) -> list[str]:
    """The task's own pictures: images and video frames (not crops a tool made)."""
    return [m for m in state.media if m.startswith(("image_", "frame_"))]


def _whole_detection(step: Step, image: str) -> bool:
    a = step.args or {}
    return (
        step.tool == "detect"
        and step.error is None
        and isinstance(step.result, dict)
        and a.get("image") == image
        and not any(a.get(k) for k in ("classes", "color", "material", "size", "shape"))
        and float(a.get("conf", _DETECT_CONF)) <= _DETECT_CONF
    )


def detections(
    rt: Runtime, state: RunState
) -> tuple[list[dict[str, Any]], list[Step], str | None, list[str]]:
    """(objects over all images, new detect steps, error, how each image was covered)."""
    objects: list[dict[str, Any]] = []
    new: list[Step] = []
    sources: list[str] = []
    for image in _images(state):
        old = next((s for s in reversed(state.steps) if _whole_detection(s, image)), None)
        if old is None:
            call = ToolCall(
                tool="detect", args={"image": image}, thought="Verify the answer's objects."
            )
            old = execute(call, rt.tools, rt.tool_context(), rt.options.tool_timeout)
            rt.trace.step(old)
            new.append(old)
            if old.error:
                return objects, new, f"detect failed on {image}: {old.error}", sources
            sources.append(f"{image}: detect run")
        else:
            sources.append(f"{image}: reused {old.ref or 'an earlier detect step'}")
        objects.extend(o for o in (old.result or {}).get("objects", []) if isinstance(o, dict))
    return objects, new, None, sources


# --------------------------------------------------------------------------------------------
# the check


def _best(objects: list[dict[str, Any]], claim: Claim) -> dict[str, float]:
    out = {"certain": 0.0, "possible": 0.0, "n": 0.0}
    for o in objects:
        kind = match(o, claim)
        if kind is None:
            continue
        score = float(o.get("score", 0.0))
        out["n"] += 1
        out["possible"] = max(out["possible"], score)
        if kind == "certain":
            out["certain"] = max(out["certain"], score)
    return out


def verify(
    rt: Runtime, state: RunState, answer: str | None, thought: str = ""
) -> tuple[str | None, list[Step]]:
    """The (possibly corrected) answer and the steps that record the check; ``([], answer)``
    unchanged when there is nothing to check, no image, or no detect tool."""
    if answer is None or "detect" not in rt.tools or not _images(state):
        return answer, []
    question = state.question or state.task.question or ""
    yes_no = _yes_no(answer)
    exist = existence_claim(question) if yes_no else None
    said = extract_claims(answer)
    thought_only = [c for c in extract_claims(thought) if c.text not in {s.text for s in said}]
    if exist is None and not said and not thought_only:
        return answer, []
    t0 = time.perf_counter()
    objects, new, error, sources = detections(rt, state)
    checked = ([{"claim": "existence", **exist.as_dict()}] if exist else []) + [
        {"claim": "answer", **c.as_dict()} for c in said
    ] + [{"claim": "thought", **c.as_dict()} for c in thought_only]  # fmt: skip
    if error is not None:
        step = Step(
            role="summarizer",
            thought="verification with the detector",
            error=f"answer not verified: {error}",
            result={"checked": checked, "verified": False, "changed": False, "answer": answer},
            seconds=time.perf_counter() - t0,
        )
        rt.trace.step(step)
        return answer, [*new, step]

    scores = [float(o.get("score", 0.0)) for o in objects]
    sees_well = bool(scores) and sum(scores) / len(scores) >= rt.options.verify_score
    notes: list[str] = []
    flags: list[str] = []
    final = answer
    for entry, claim in ([(checked[0], exist)] if exist else []) + list(
        zip(checked[1 if exist else 0 :], said + thought_only, strict=True)
    ):
        best = _best(objects, claim)
        entry.update(matches=int(best["n"]), best_score=round(best["possible"], 3))
        found = best["n"] > 0
        if entry["claim"] == "existence":
            if yes_no == "no" and found:
                if best["certain"] >= rt.options.verify_score:
                    final = "yes"
                    notes.append(f"a {claim.text} was detected (score {best['certain']:.2f})")
                else:
                    flags.append(f"a possible {claim.text} was detected (score {best['possible']:.2f})")  # fmt: skip
            elif yes_no == "yes" and not found:
                if sees_well:
                    final = "no"
                    notes.append(f"no {claim.text} was detected among {len(objects)} objects")
                else:
                    flags.append(f"no {claim.text} was detected, but the detector is unsure here")
        elif not found:
            if entry["claim"] == "thought":
                flags.append(f"the thought names a {claim.text}, which was not detected")
            elif final == answer and sees_well:
                final = f"No {claim.text} is visible."
                notes.append(f"no {claim.text} was detected among {len(objects)} objects")
            elif final == answer:
                final = f"{answer} (insufficient evidence: no {claim.text} was detected)"
                flags.append(f"no {claim.text} was detected")
    summary = "; ".join(notes + flags) or "every claim matches a detected object"
    step = Step(
        role="summarizer",
        thought="verification with the detector: " + ", ".join(sources),
        observation=(f"Corrected {answer!r} to {final!r}: " if final != answer else "") + summary,
        result={
            "checked": checked,
            "verified": True,
            "changed": final != answer,
            "flags": flags,
            "answer": answer,
            "corrected": final,
            "objects": len(objects),
        },
        seconds=time.perf_counter() - t0,
    )
    rt.trace.step(step)
    return final, [*new, step]
