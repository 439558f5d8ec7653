"""The recorder: every step a source algorithm takes, as the arrays of a learning history.

What is recorded is what the envs received and returned. For Box actions that is the action after
stable-baselines3 mapped its policy's output into the Box: SAC and TD3 squash with tanh into
[-1, 1] and rescale linearly to [low, high] (``policy.unscale_action``; TD3's exploration noise
is added before the rescale and clipped to [-1, 1]); PPO and A2C sample an unbounded Gaussian and
clip it to [low, high] (``np.clip`` in ``collect_rollouts``); during SAC/TD3's ``learning_starts``
the actions are uniform over the Box. So a recorded Box action always lies inside the Box.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class RecordingVecEnv(VecEnvWrapper):
    """Records the first ``num_steps`` steps of every stream into preallocated ``(S, T, ...)`` arrays.

    It sits directly on the family's streams (``TaskFamily.make_vec_env``: a ``DummyVecEnv`` by
    default, or a ``VecEnv`` with its semantics), below any wrapper SB3 adds
    (``VecTransposeImage``), so it stores the env's own observations, the actions actually sent, and
    the raw rewards copied at the step (PPO later adds bootstrapped values to its reward array in
    place). DummyVecEnv merges terminated/truncated into ``dones`` and auto-resets:
    ``terminations = dones and not infos["TimeLimit.truncated"]`` is exactly Gymnasium's
    ``terminated``; ``truncations`` is ``truncated and not terminated``; the observation returned
    after a done is the reset observation, which is the one the next action is chosen on. Steps
    after the arrays are full pass through unrecorded. Discrete actions are int64 ``(S, T)``, Box
    actions float32 ``(S, T, act_dim)`` (see the module docstring for what SB3 sent). A ``reset()``
    in the middle of a history (not done by SB3's learn) marks the interrupted episodes truncated
    at the previous step.

    With an ``oracle`` (the family's, see ``TaskFamily.optimal_action``) it also records, at every
    step, the optimal action in the state the step's action was chosen in (``optimal_actions``,
    shaped and typed like ``actions``): the target DPT trains on.

    Args:
        venv: the run's S streams (``TaskFamily.make_vec_env``).
        num_steps: T, the steps per stream to record.
        on_steps: called with the number of env steps (summed over streams) recorded since its
            last call, about every ``report_every`` env steps and once when full (progress bars).
        report_every: env steps between calls of ``on_steps``.
        oracle: the optimal action of every stream in its current state, as one array; None:
            no ``optimal_actions`` are recorded.
    """

    def __init__(
        self,
        venv: VecEnv,
        num_steps: int,
        on_steps: Callable[[int], None] | None = None,
        report_every: int = 1000,
        oracle: Callable[[], np.ndarray] | None = None,
    ) -> None:
        super().__init__(venv)
        shape, dtype = self.observation_space.shape, self.observation_space.dtype
        num_envs = venv.num_envs
        self.num_steps = int(num_steps)
        self.observations = np.zeros((num_envs, self.num_steps, *shape), dtype)  # (S, T, ...)
        self.actions = np.zeros(
            (num_envs, self.num_steps, *action_shape(self.action_space)),
            action_dtype(self.action_space),
        )  # (S, T) or (S, T, act_dim)
        self.oracle = oracle
        if oracle is not None:
            self.optimal_actions = np.zeros_like(self.actions)
        self.rewards = np.zeros((num_envs, self.num_steps), np.float32)
        self.terminations = np.zeros((num_envs, self.num_steps), bool)
        self.truncations = np.zeros((num_envs, self.num_steps), bool)
        self.t = 0  # steps recorded per stream
        self.on_steps = on_steps
        self._report_every = max(1, report_every // num_envs)  # in steps per stream
        self._reported = 0  # steps per stream already passed to on_steps

    @property
    def full(self) -> bool:
        return self.t >= self.num_steps

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        if 0 < self.t < self.num_steps:
            self.truncations[:, self.t - 1] |= ~self.terminations[:, self.t - 1]
        if self.t < self.num_steps:
            self._record_state(self.t, obs)
        return obs

    def _record_state(self, t: int, obs: np.ndarray) -> None:
        """Step ``t``'s observation and, with an oracle, its optimal action."""
        self.observations[:, t] = obs
        if self.oracle is not None:
            self.optimal_actions[:, t] = self.oracle().reshape(self.optimal_actions[:, t].shape)

    def step_async(self, actions: np.ndarray) -> None:
        if self.t < self.num_steps:
            self.actions[:, self.t] = np.asarray(actions).reshape(self.actions[:, self.t].shape)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        t = self.t
        if t < self.num_steps:
            truncated = np.fromiter(
                (info.get("TimeLimit.truncated", False) for info in infos), bool, self.num_envs
            )
            self.rewards[:, t] = rewards
            self.truncations[:, t] = truncated
            self.terminations[:, t] = dones & ~truncated
            if t + 1 < self.num_steps:
                self._record_state(t + 1, obs)
            if self.on_steps is not None and (
                t + 1 - self._reported >= self._report_every or t + 1 == self.num_steps
            ):
                self.on_steps((t + 1 - self._reported) * self.num_envs)
                self._reported = t + 1
        self.t = t + 1
        return obs, rewards, dones, infos

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded ``(S, T, ...)`` arrays, named as in a history file."""
        arrays = {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminations": self.terminations,
            "truncations": self.truncations,
        }
        if self.oracle is not None:
            arrays["optimal_actions"] = self.optimal_actions
        return arrays


def action_shape(space: spaces.Space) -> tuple[int, ...]:
    """The per-step shape of a recorded action: () for Discrete, (act_dim,) for a Box."""
    return (int(np.prod(space.shape)),) if isinstance(space, spaces.Box) else ()


def action_dtype(space: spaces.Space) -> type:
    """The dtype of recorded actions: float32 for a Box, int64 for Discrete."""
    return np.float32 if isinstance(space, spaces.Box) else np.int64
