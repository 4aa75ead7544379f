"""Run independent jobs in parallel: in-process, on local Ray workers or on a Ray cluster.

The worlds' generators (``mllm/worlds/gen.py``) and ``agentkit eval vqa`` shard their items with
these. Each job's result must depend only on the job (its seed and key), never on the worker or
the order, so a run gives the same bytes whichever way it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agentkit.errors import ConfigError


def progress_bar(desc: str, total: int, enabled: bool):
    """A rich progress bar on stderr (elapsed and remaining time); disabled when not ``enabled``
    or there is nothing to do."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{desc}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled or total == 0,
    )


def init_ray(workers: int, ray_address: str | None, **options: Any) -> bool:
    """Start Ray for ``workers`` local processes, or join the cluster at ``ray_address``, unless
    it runs already; True when this call started it (the caller then shuts it down).

    Local workers run at the caller's priority: Ray starts its workers at niceness 15, so on a
    machine where anything else runs (a training job) the scenes or questions they work on got
    a few percent of a core and crawled (measured: one scene a minute, against ~7 s)."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR", **options}
    if ray_address:
        ray.init(address=ray_address, **common)
    else:
        ray.init(num_cpus=workers, include_dashboard=False,
                 _system_config={"worker_niceness": 0}, **common)  # fmt: skip
    return True


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[dict[str, Any]],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    desc: str = "working",
    progress: bool = True,
    on_result: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Run ``fn(**job)`` for every job, in order of ``jobs`` in the result, with a progress bar;
    ``on_result`` gets each result as soon as its job finishes (so a caller can save it: an
    interrupted run keeps what was done).

    ``fn`` must be a module-level function (Ray ships it by reference to its workers).
    """
    done_one = on_result or (lambda result: None)
    if workers < 1:
        raise ConfigError(f"workers={workers} is invalid: expected an int >= 1")
    results: list[Any] = [None] * len(jobs)
    with progress_bar(desc, len(jobs), progress) as bar:
        task = bar.add_task(desc, total=len(jobs))
        if not jobs:
            return results
        if workers == 1 and ray_address is None:
            for i, job in enumerate(jobs):
                results[i] = fn(**job)
                done_one(results[i])
                bar.advance(task)
            return results
        import ray

        started = init_ray(workers, ray_address, configure_logging=True)
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(fn)
            try:
                index = {remote.remote(**job): i for i, job in enumerate(jobs)}
            except (
                ImportError
            ) as e:  # e.g. a pyarrow built for another numpy breaks Ray's serializer
                raise ConfigError(
                    f"Ray cannot ship tasks in this environment ({e}); run with --workers 1, "
                    "or install a pyarrow that matches the installed numpy"
                ) from e
            pending = list(index)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    results[index[done[0]]] = ray.get(done[0])
                except ray.exceptions.RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                done_one(results[index[done[0]]])
                bar.advance(task)
        finally:
            if started:
                ray.shutdown()
    return results
