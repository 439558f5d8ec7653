"""In-context rollouts: the frozen model acts on tasks, its own transitions filling its context.

Every (task, seed) pair is one row of a batch. One evaluation step is one incremental forward pass
(``model.step``) for the whole batch; the envs are stepped as one VecEnv per task (the family's
``make_vec_env``: a ``DummyVecEnv`` by default, one JAX batch for XLand-MiniGrid). The model's own
transitions fill its context, kept as a queue of the last c transitions, either as a KV cache or
as tokens re-encoded every step (``eval.decoding``; Laskin et al. 2022, section 3: no gradient
steps at test time).

Token alignment equals training: at step t the model sees obs_t with action_{t-1}, reward_{t-1} and
done_{t-1}; the very first token has prev_action = num_actions ("none"; for Box actions a row of
NaNs), reward 0 and done True. Actions come from the model's action head (``policy.head.act``):
sampled, or its most likely action with ``action_mode="argmax"``; Box actions are clipped to the
Box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ad.config import ExperimentConfig
from ad.data.spaces import has_integer_ids, same_spaces
from ad.errors import UserError
from ad.utils import progress_bar
from envs.base import TaskFamily, family_of_split, seed_streams
from envs.split import TaskSplit
from envs.tasks import Task


def eval_env_seed(seed: int, task_index: int, seed_index: int) -> int:
    """The reset seed of the env of (task, evaluation seed): independent streams from ``seed``."""
    return int(np.random.SeedSequence([seed, task_index, seed_index]).generate_state(1)[0])


def action_rng(seed: int, task_index: int, seed_index: int) -> np.random.Generator:
    """The generator that samples the actions of (task, evaluation seed), apart from its env's."""
    return np.random.default_rng([seed, task_index, seed_index, 1])


def _check_compatible(model: torch.nn.Module, env: Any) -> None:
    obs_space, act_space = env.observation_space, env.action_space
    if not (
        same_spaces(obs_space, model.observation_space)
        and same_spaces(act_space, model.action_space)
    ):
        raise UserError(
            f"the env family does not match the checkpoint: its env has observations {obs_space} "
            f"and actions {act_space}, the model {model.observation_space} and "
            f"{model.action_space}; evaluate with the family the model was trained on"
        )


def first_prev_actions(model: torch.nn.Module, batch: int) -> np.ndarray:
    """The "no previous action" inputs of a batch's first step: id num_actions (Discrete), or a
    row of NaNs (Box)."""
    if model.num_actions is not None:
        return np.full(batch, model.num_actions, dtype=np.int64)  # (B,)
    return np.full((batch, model.head.act_dim), np.nan, dtype=np.float32)  # (B, act_dim)


@torch.no_grad()
def rollout(
    model: torch.nn.Module,
    family: TaskFamily,
    tasks: list[Task] | tuple[Task, ...],
    num_seeds: int,
    num_episodes: int,
    action_mode: str = "sample",
    temperature: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    transitions: dict | None = None,
    task_offset: int = 0,
    seed_offset: int = 0,
    decoding: str = "kv_cache",
    trace_rows: list[int] | None = None,
) -> np.ndarray:
    """Run ``num_episodes`` consecutive episodes per (task, seed) with frozen weights.

    Args:
        model: one family's policy (``ADTransformer.policy(name)``, unwrapped) on ``device``;
            its train/eval mode is restored after.
        family: the task family of ``tasks``.
        tasks: tasks to evaluate; one batch row per (task, seed).
        num_seeds: evaluation seeds per task; the env of (task i, seed j) is reset with
            ``eval_env_seed(seed, i, j)`` at its first episode only.
        num_episodes: consecutive episodes per row; the context carries across them.
        action_mode: "sample" from the action head (softmax(logits / temperature); a
            Gaussian's std times temperature), or "argmax": its most likely action (Box: the
            argmax bins' centres or the Gaussian's mean).
        temperature: softmax temperature (Gaussian: std scale) when sampling.
        seed: base seed of env resets and of the per-row generators that sample actions
            (:func:`action_rng`); a row's returns do not depend on the other rows.
        device: where the model runs.
        progress: show a progress bar over episodes.
        transitions: if a dict is given, it receives every step of every row, in a learning
            history's layout (B rows, N steps): observations (B, N, *obs_shape), actions (B, N)
            or (B, N, act_dim), rewards and dones (B, N); row b is (task b // num_seeds, seed b % num_seeds).
            It also receives next_observations (B, N, *obs_shape): what each step returned, before
            the reset that follows an episode's last step (where the paths pictures end).
        task_offset: index of ``tasks[0]`` in the whole evaluation's task list.
        seed_offset: index of this call's first seed in the whole evaluation. With both, a part
            of a larger evaluation (split across Ray workers) seeds its rows as one batch would.
        decoding: "kv_cache" or "reencode" (``ADTransformer.init_cache``'s decoding modes).
        trace_rows: the rows whose steps ``transitions`` keeps, in this order (None: every row);
            ``ad-eval`` keeps row 0 for its exploration maps.

    Returns:
        Episode returns, shape (num_tasks, num_seeds, num_episodes), float64.
    """
    if num_episodes is None or num_episodes < 1:
        raise UserError("zero episodes to evaluate; set eval.num_episodes >= 1")
    if num_seeds < 1 or len(tasks) == 0 or seed < 0:
        raise UserError("evaluation needs a task, num_seeds >= 1 and a seed >= 0; check eval.*")
    if action_mode not in ("sample", "argmax") or temperature <= 0:
        raise UserError("eval.action_mode must be sample or argmax and eval.temperature > 0")
    # one VecEnv per task, its envs the task's rows (the family's streams: stepped as one batch
    # where the family can, as XLand-MiniGrid's JAX envs)
    venvs = [family.make_vec_env(task, num_seeds) for task in tasks]
    batch = len(tasks) * num_seeds
    # (task index, seed index) of each row, counted in the whole evaluation
    rows = [(task_offset + i // num_seeds, seed_offset + i % num_seeds) for i in range(batch)]
    _check_compatible(model, venvs[0])
    discrete = has_integer_ids(model.observation_space)
    obs_dtype = np.int64 if discrete else np.dtype(model.observation_space.dtype)
    first = []
    for t, venv in enumerate(venvs):
        seed_streams(venv, [eval_env_seed(seed, *row) for row in rows[t * num_seeds :][:num_seeds]])
        first.append(venv.reset())
    observations = np.concatenate(first).astype(obs_dtype)  # (B, *obs_shape)
    prev_actions = first_prev_actions(model, batch)  # "no previous action"
    box = model.num_actions is None
    prev_rewards = np.zeros(batch, dtype=np.float32)
    prev_dones = np.ones(batch, dtype=bool)
    returns = np.zeros((batch, num_episodes))
    running = np.zeros(batch)  # return of each row's current episode
    finished = np.zeros(batch, dtype=np.int64)  # completed episodes per row
    rngs = [action_rng(seed, *row) for row in rows]
    traced = np.arange(batch) if trace_rows is None else np.asarray(trace_rows, dtype=np.int64)
    keys = ("observations", "actions", "rewards", "dones", "next_observations")
    trace: dict[str, list] = {key: [] for key in keys}
    next_observations = observations.copy()  # each step's result, before any reset
    was_training = model.training
    model.eval()
    bar = progress_bar(total=num_episodes, desc="eval episodes", disable=not progress, leave=False)
    try:
        cache = model.init_cache(batch, device=device, mode=decoding)
        while finished.min() < num_episodes:
            inputs = (observations, prev_actions, prev_rewards, prev_dones)
            outputs = model.step(cache, *(torch.from_numpy(x).to(device) for x in inputs))
            actions = model.head.act(outputs, action_mode, temperature, rngs)  # (B, ...)
            if transitions is not None:
                trace["observations"].append(observations[traced])  # fancy index: a copy
                trace["actions"].append(np.asarray(actions)[traced])
            # Rows done with their episodes keep stepping (one batch, one cache) unrecorded.
            # A VecEnv resets an env at its episode's end (no seed: its generator continues).
            step_actions = actions if box else [int(a) for a in actions]
            for t, venv in enumerate(venvs):
                part = slice(t * num_seeds, (t + 1) * num_seeds)
                obs, rewards, dones, infos = venv.step(step_actions[part])
                observations[part] = obs
                next_observations[part] = obs
                prev_rewards[part] = rewards
                prev_dones[part] = dones
                for i in np.flatnonzero(dones):
                    b = t * num_seeds + i
                    next_observations[b] = infos[i]["terminal_observation"]
            running += prev_rewards
            for b in np.flatnonzero(prev_dones):
                if finished[b] < num_episodes:
                    returns[b, finished[b]] = running[b]
                finished[b] += 1
                running[b] = 0.0
            prev_actions[:] = actions
            if transitions is not None:
                trace["rewards"].append(prev_rewards[traced])
                trace["dones"].append(prev_dones[traced])
                trace["next_observations"].append(next_observations[traced])
            bar.update(min(int(finished.min()), num_episodes) - bar.n)
    finally:
        bar.close()
        model.train(was_training)
        for venv in venvs:
            venv.close()
    if transitions is not None:
        transitions.update({key: np.stack(value, axis=1) for key, value in trace.items()})
    return returns.reshape(len(tasks), num_seeds, num_episodes)


def periodic_evaluation(
    policy: torch.nn.Module, cfg: ExperimentConfig, split: TaskSplit, device: torch.device
) -> dict[str, float]:
    """What ``ad-train`` passes to ``ad.learn.train.train`` as its periodic evaluation, for each
    family: one sampled rollout of ``train.validation.episodes`` episodes on the first
    ``train.validation.tasks`` validation tasks of its split (never test tasks: what training looks
    at must not be what is reported), as ``return_first`` and ``return_last``."""
    returns = rollout(
        policy,
        family_of_split(split),  # the family the trained split describes
        split.validation[: cfg.train.validation.tasks],
        num_seeds=1,
        num_episodes=cfg.train.validation.episodes,
        action_mode="sample",
        seed=cfg.train.seed,
        device=device,
        decoding=cfg.eval.decoding,
    )  # (tasks, 1, episodes)
    return {
        "return_first": float(returns[..., 0].mean()),
        "return_last": float(returns[..., -1].mean()),
    }
