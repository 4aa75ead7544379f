"""Throughput of the procedural worlds on this machine.

    .venv/bin/python benchmarks/worlds.py                 # scenes: 1 vs 2 worker processes
    .venv/bin/python benchmarks/worlds.py --scenes 6 --samples 32 --width 320 --height 240
    .venv/bin/python benchmarks/worlds.py --only questions    # questions/s and answer balance

Scenes are rendered by Blender's Cycles on the CPU. ``bpy`` is process-global, so parallelism means
processes: one worker uses every core (Cycles' own threads), N workers split the cores between
them (``threads = cores // N``). Each part is a function so other worlds can add theirs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def _render_one(args: tuple[int, str, int, int, int, int]) -> float:
    seed, out_dir, samples, width, height, threads = args
    from agentkit.mllm.worlds.render import make_scene

    t = time.perf_counter()
    make_scene(seed, out_dir, samples=samples, width=width, height=height, threads=threads)
    return time.perf_counter() - t


def scenes_per_minute(
    n_scenes: int, workers: int, *, samples: int, width: int, height: int
) -> float:
    """Render ``n_scenes`` scenes with ``workers`` processes; return scenes per minute (wall)."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    with tempfile.TemporaryDirectory(prefix="agentkit-bench-") as out:
        jobs = [(1000 + i, out, samples, width, height, threads) for i in range(n_scenes)]
        # spawn: a fresh interpreter per worker, so no bpy state is shared through fork
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_render_one, jobs[:workers]))  # warm-up: import bpy in each worker
            t = time.perf_counter()
            list(pool.map(_render_one, jobs))
            wall = time.perf_counter() - t
    return 60.0 * n_scenes / wall


def bench_scenes(
    n_scenes: int = 4, *, samples: int = 32, width: int = 320, height: int = 240
) -> dict[str, float]:
    """Scenes per minute with 1 and 2 workers, and their ratio; prints them."""
    print(f"scenes: {n_scenes} scenes, {width}x{height}, {samples} samples, {os.cpu_count()} cores")
    out: dict[str, float] = {}
    for workers in (1, 2):
        spm = scenes_per_minute(n_scenes, workers, samples=samples, width=width, height=height)
        out[f"workers_{workers}"] = spm
        print(f"  {workers} worker(s): {spm:6.1f} scenes/min  ({60.0 / spm:5.2f} s/scene)")
    out["ratio"] = out["workers_2"] / out["workers_1"]
    print(f"  2 workers / 1 worker: {out['ratio']:.2f}x")
    return out


def bench_questions(n_scenes: int = 200, per_scene: int = 10, *, seed: int = 0) -> dict[str, float]:
    """Questions per second (one process) on synthetic scene graphs; prints the answer balance."""
    from agentkit.mllm.worlds.questions import answer_balance, generate_questions
    from agentkit.mllm.worlds.synthetic import synthetic_scene

    scenes = [synthetic_scene(seed + i) for i in range(n_scenes)]
    t = time.perf_counter()
    qs = generate_questions(scenes, per_scene=per_scene, seed=seed)
    wall = time.perf_counter() - t
    qps = len(qs) / wall
    print(f"questions: {len(qs)} from {n_scenes} scene graphs, {per_scene} per scene, 1 process")
    print(f"  {qps:8.0f} questions/s  ({1000 * wall / len(qs):.2f} ms/question)")
    print("  family           n  most common answer (share)")
    for fam, b in answer_balance(qs).items():
        print(f"  {fam:15s} {b['n']:4d}  {b['top_answer']} ({b['top_share']:.1%})")
    return {"questions_per_s": qps, "questions": float(len(qs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4, help="scenes per measurement")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--question-scenes", type=int, default=200, help="scene graphs to ask about"
    )
    parser.add_argument("--only", choices=["scenes", "questions"], help="run one part")
    args = parser.parse_args()
    if args.only != "questions":
        bench_scenes(args.scenes, samples=args.samples, width=args.width, height=args.height)
    if args.only != "scenes":
        bench_questions(args.question_scenes)


if __name__ == "__main__":
    main()
