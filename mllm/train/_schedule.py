"""The learning-rate schedule of the from-scratch perception recipes (segmenter, asr).

A run ends after ``steps`` optimizer steps or ``max_minutes`` of the process's CPU time, whichever
comes first, and the schedule follows whichever is further along, so a budget-ended run still
anneals. CPU time, not wall time: with ``threads=1`` it is the training's own compute, so a shared
or paused machine gives the same model later rather than a worse one on time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Protocol


class Schedule(Protocol):
    steps: int
    max_minutes: float
    warmup: int
    lr: float
    min_lr_ratio: float
    restart_minutes: Sequence[float]


def progress(step: int, seconds: float, cfg: Schedule) -> float:
    """How far the run is, 0..1: by steps, or by the compute budget (``seconds`` of CPU time)
    when that is further along."""
    p = step / cfg.steps
    if cfg.max_minutes > 0:
        p = max(p, seconds / (60 * cfg.max_minutes))
    return min(1.0, p)


def scheduled(step: int, seconds: float, cfg: Schedule) -> float:
    """:func:`progress` as the schedule reads it. With ``restart_minutes`` (warm restarts, as a
    run resumed with a larger budget, and again with a larger one, trains): until the first
    that many CPU minutes the schedule runs as if the budget ended there, then as if it ended at
    the next, and after the last it follows ``max_minutes``' own."""
    for r in sorted(cfg.restart_minutes):
        if 0 < r < cfg.max_minutes and seconds < 60 * r:
            leg = copy.copy(cfg)
            leg.max_minutes = r
            return progress(step, seconds, leg)
    return progress(step, seconds, cfg)


def lr_at(step: int, done: float, cfg: Schedule) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_lr_ratio`` as
    ``done`` (:func:`progress`) goes from the end of the warm-up to 1."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    start = cfg.warmup / cfg.steps
    p = min(1.0, max(0.0, (done - start) / max(1e-9, 1 - start)))
    r = cfg.min_lr_ratio
    return cfg.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))
