"""Where checkpoints come from: shipped names, local paths, never the network.

Like ``whisper.load_model``: a short table of known names that resolve to files shipped inside the
package (``agentkit/weights/``), and anything else is taken as a path. A name or path that does
not exist is a :class:`~agentkit.errors.WeightsNotFound` that says where to put the file and
which recipe rebuilds it. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentkit.errors import WeightsNotFound

#: Shipped checkpoints live here (package data).
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Known:
    name: str
    file: str  # relative to the weights folder: a file or a folder
    what: str
    recipe: str  # the `agentkit train` recipe that rebuilds it


KNOWN: dict[str, Known] = {
    k.name: k
    for k in (
        # a leg over the detector recipe's YOLO (docs/detector.md): agentkit train detector, then
        # detector-sharp
        Known(
            "scenes-yolo", "scenes-yolo.pt", "YOLO detector for the scene world", "detector-sharp"
        ),
        Known("scenes-attr", "scenes-attr.pt", "attribute head of the scene detector", "detector"),
        Known(
            "scenes-sam",
            "scenes-sam.pt",
            "compact SAM for the scene world (2.8 M params, 256 px; box/point prompts)",
            "segmenter",
        ),
        # legs over the asr recipe's model (docs/asr.md): agentkit train asr, asr-slots, asr-16k,
        # asr-32k, asr-voices, asr-64k, asr-80k, asr-96k, asr-worded, asr-composed, asr-spliced,
        # asr-spliced-half
        Known(
            "speech-whisper",
            "speech-whisper.pt",
            "small whisper model for spoken questions",
            "asr-spliced-half",
        ),
        # the last of six stages: mllm-align, mllm-tooluse, mllm-dpo, mllm-tooluse-compare on
        # the dpo output, mllm-tooluse-clevr on that, then mllm-tooluse-negation (docs/mllm.md)
        Known(
            "agentkit-mllm",
            "agentkit-mllm",
            "tiny LLaVA-style tool-use core",
            "mllm-tooluse-negation",
        ),
    )
}


def search_dirs() -> list[Path]:
    """Folders searched for shipped names: ``$AGENTKIT_WEIGHTS`` (``:``-separated) first, then the
    package's own ``weights/``."""
    extra = [Path(p) for p in os.environ.get("AGENTKIT_WEIGHTS", "").split(os.pathsep) if p]
    return [*extra, PACKAGE_WEIGHTS]


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a shipped name (``scenes-yolo``) or a path into an existing file or folder.

    Raises :class:`WeightsNotFound` naming the valid names, the folders searched and the recipe
    that rebuilds a missing shipped checkpoint.
    """
    s = os.fspath(name_or_path)
    known = KNOWN.get(s)
    if known is not None:
        for d in search_dirs():
            p = d / known.file
            if p.exists():
                return p
        where = ", ".join(str(d / known.file) for d in search_dirs())
        raise WeightsNotFound(
            f"checkpoint {s!r} ({known.what}) is not installed; looked in: {where}. "
            f"Rebuild it with `agentkit train {known.recipe}`, or put the file there "
            "(or in a folder named by $AGENTKIT_WEIGHTS)."
        )
    p = Path(s).expanduser()
    if p.exists():
        return p
    names = ", ".join(sorted(KNOWN))
    raise WeightsNotFound(
        f"no checkpoint at {s!r}: not a file or folder, and not a shipped name (known names: {names}). "
        "agentkit never downloads weights: put the file on disk and pass its path."
    )


def ultralytics_offline() -> None:
    """Keep ultralytics from reaching the network: no hub checks, no pip auto-installs of missing
    extras (both hang without internet). Call before importing ultralytics; a user's own
    ``YOLO_OFFLINE`` / ``YOLO_AUTOINSTALL`` settings win.

    Also imports it with stdout pointed at stderr: its logger binds the stdout of import time, and
    on a first run it announces the settings file it creates, which would corrupt the JSON a
    ``--json`` command prints. Its messages go to stderr from then on."""
    import contextlib
    import sys

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if "ultralytics" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics  # noqa: F401
