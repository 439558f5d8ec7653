"""Evaluation on a Ray cluster: the (task, seed) rows of a rollout, in batches, as Ray tasks
(``eval.backend: ray``).

The rows of one evaluation (tasks x seeds) are cut into rectangles of tasks and seeds of about
``eval.ray_batch_rows`` rows; each rectangle is one Ray task that rolls its rows out as one
batch with the KV cache (:func:`ad.evaluation.rollout.rollout`). Every row is seeded by its
(task index, seed index) in the whole evaluation, and its actions come from its own generator,
so the gathered returns are the returns of one local batch (on the same device type).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ad.data.ray_backend import MAX_RETRIES, ray_session
from ad.errors import UserError
from ad.evaluation.rollout import rollout
from ad.utils import progress_bar
from envs.base import TaskFamily
from envs.tasks import Task

__all__ = ["plan_batches", "rollout_on_ray"]


def plan_batches(
    num_tasks: int, num_seeds: int, batch_rows: int
) -> list[tuple[int, int, int, int]]:
    """Cut the (num_tasks, num_seeds) grid of rows into rectangles of at most ``batch_rows`` rows.

    Whole tasks (all their seeds) are grouped while a task's seeds fit into one batch; otherwise
    each task's seeds are split into runs of ``batch_rows``.

    Args:
        num_tasks: tasks evaluated.
        num_seeds: seeds per task.
        batch_rows: the most rows of one batch (>= 1).

    Returns:
        ``(task_start, task_stop, seed_start, seed_stop)`` per batch, covering every row once.
    """
    if num_seeds <= batch_rows:
        step = batch_rows // num_seeds
        return [(t, min(t + step, num_tasks), 0, num_seeds) for t in range(0, num_tasks, step)]
    return [
        (t, t + 1, s, min(s + batch_rows, num_seeds))
        for t in range(num_tasks)
        for s in range(0, num_seeds, batch_rows)
    ]


def _rollout_batch(
    model: torch.nn.Module,
    family: TaskFamily,
    tasks: list[Task],
    batch: tuple[int, int, int, int],
    settings: dict,
) -> np.ndarray:
    """One batch on a Ray worker: its rows, seeded as in the whole evaluation.

    Returns:
        Returns of the batch, (task_stop - task_start, seed_stop - seed_start, episodes).
    """
    from ad.utils import resolve_device

    torch.set_num_threads(1)  # one CPU per Ray task
    task_start, task_stop, seed_start, seed_stop = batch
    device = resolve_device(settings.pop("device"), "eval.device")
    return rollout(
        model.to(device),
        family,
        tasks[task_start:task_stop],
        seed_stop - seed_start,
        device=device,
        task_offset=task_start,
        seed_offset=seed_start,
        **settings,
    )


def _get(ray: Any, ref: Any) -> np.ndarray:
    """A batch's returns; a user error on the worker is raised here as itself (one line)."""
    from ad.errors import user_errors

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, user_errors()):
            raise e.cause from None
        raise
    except ray.exceptions.RayError as e:  # its worker died MAX_RETRIES + 1 times
        text = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise UserError(
            f"Ray lost an evaluation batch ({text}); check the cluster's nodes and memory, or "
            "lower eval.ray_batch_rows"
        ) from None


def rollout_on_ray(
    model: torch.nn.Module,
    family: TaskFamily,
    tasks: list[Task],
    eval_cfg: Any,
    address: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """:func:`ad.evaluation.rollout.rollout` of ``tasks`` x ``eval_cfg.num_seeds`` rows, in
    batches of ``eval_cfg.ray_batch_rows`` rows on Ray workers.

    Args:
        model: an ADTransformer (unwrapped); a CPU copy is shipped to the workers, each of which
            moves it to ``eval_cfg.device`` (a GPU task asks Ray for one GPU).
        family: the task family of ``tasks``.
        tasks: the tasks to evaluate, in order (their indices seed the rows).
        eval_cfg: the ``eval`` config section (num_seeds, num_episodes, action_mode,
            temperature, decoding, seed, device, ray_batch_rows).
        address: the Ray cluster (``ray.address``; None: Ray's own lookup, else a local one).
        progress: show a bar over batches.

    Returns:
        Episode returns, (num_tasks, num_seeds, num_episodes), float64: the same as a local
        rollout of all rows in one batch.
    """

    if eval_cfg.num_episodes is None:  # derived by ad-train: a checkpoint's config holds it
        raise UserError("eval.num_episodes is not set; set it, or evaluate a trained run's config")
    batches = plan_batches(len(tasks), eval_cfg.num_seeds, eval_cfg.ray_batch_rows)
    settings = {
        "num_episodes": eval_cfg.num_episodes,
        "action_mode": eval_cfg.action_mode,
        "temperature": eval_cfg.temperature,
        "decoding": eval_cfg.decoding,
        "seed": eval_cfg.seed,
        "device": eval_cfg.device,
    }
    num_gpus = 1 if eval_cfg.device.startswith("cuda") else 0
    returns = np.full((len(tasks), eval_cfg.num_seeds, eval_cfg.num_episodes), np.nan)
    with (
        ray_session(address, "ray.address") as ray,
        progress_bar(
            total=len(batches), desc="eval (ray)", unit="batch", disable=not progress
        ) as bar,
    ):
        if num_gpus and ray.cluster_resources().get("GPU", 0) < 1:  # its tasks would wait forever
            raise UserError(
                f"eval.device={eval_cfg.device} but the Ray cluster has no GPU; start its nodes "
                "with --num-gpus N, or evaluate with --set eval.device=cpu"
            )
        task = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=MAX_RETRIES)(_rollout_batch)
        model_ref = ray.put(copy.deepcopy(model).cpu())  # workers without the driver's GPU
        family_ref, tasks_ref = ray.put(family), ray.put(list(tasks))
        pending = {
            task.remote(model_ref, family_ref, tasks_ref, batch, dict(settings)): batch
            for batch in batches
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    t0, t1, s0, s1 = pending.pop(ref)
                    returns[t0:t1, s0:s1] = _get(ray, ref)
                    bar.update()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    return returns
