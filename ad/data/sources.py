"""Source algorithms: what learns each task from scratch while every step is recorded.

A source algorithm acts only through a stable-baselines3 ``VecEnv`` (``reset()``, ``step(actions)``)
that collect hands it: a :class:`RecordingVecEnv` around the family's S streams of the task
(``TaskFamily.make_vec_env``: a ``DummyVecEnv`` of S copies of the task's env by default). So
whatever the algorithm (SB3's PPO, DQN, A2C, SAC, TD3, the bandit UCB below, or your own
``module:Class``), the history holds exactly what was sent to and returned by the envs (for Box
actions: after SB3's rescale or clip into the Box, see :mod:`ad.data.recording`).

Action spaces: DQN and UCB act in Discrete spaces, SAC and TD3 in Box spaces, PPO and A2C in
either (:data:`ACTION_SPACES`); a Box must be 1-D with finite bounds, since the model's action
heads bin or normalise each dimension over its bounds.

Writing your own: subclass :class:`SourceAlgorithm`, take ``(venv, seed, **kwargs)`` in the
constructor (kwargs come from ``collect.algorithm_kwargs``) and step ``venv`` in ``learn``; then
set ``collect.algorithm: mypackage.mymodule:MyAlgorithm``. Any other stable-baselines3 algorithm
plugs in by its class, e.g. ``collect.algorithm: sb3_contrib:QRDQN``.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from ad.errors import UserError, one_line
from ad.fields import yaml_floats
from envs.base import import_user_module, is_int
from envs.tasks import TaskError

# --------------------------------------------------------------------------- the interface


class SourceAlgorithm(ABC):
    """Learns one task from scratch, acting only through ``venv``.

    Args:
        venv: an SB3 ``VecEnv`` of S streams (the recorder); seeded by collect before it is passed.
        seed: the run's seed; seed every random number the algorithm draws from it.
        **kwargs: ``collect.algorithm_kwargs``.
    """

    # True: the constructor also takes ``oracle``, the family's optimal actions (make_source).
    uses_oracle: ClassVar[bool] = False
    # True: the S streams feed one learner (SB3: one policy updated from every stream), so by
    # the learner's own experience an episode of each stream is S episodes; False: each stream
    # is a learner (or a schedule) of its own.
    streams_share_learner: ClassVar[bool] = False

    def __init__(self, venv: VecEnv, seed: int, **kwargs: Any) -> None:
        self.venv = venv
        self.seed = seed

    @abstractmethod
    def learn(self, total_steps: int) -> None:
        """Learn for ``total_steps`` env steps summed over streams (``total_steps // S`` calls of
        ``venv.step``), starting with ``venv.reset()``."""


class _StopWhenFull(BaseCallback):
    """Ends SB3's learn() on the step that fills the recorder (no overshoot to a rollout end)."""

    def __init__(self, recorder: VecEnv) -> None:
        super().__init__()
        self.recorder = recorder

    def _on_step(self) -> bool:
        return not getattr(self.recorder, "full", False)


class SmallCNN(BaseFeaturesExtractor):
    """Features of small images such as MiniGrid's 7x7x3 view (NatureCNN needs >= 36x36).

    Two 3x3 convolutions and a linear layer. Accepts channels-first (after SB3's
    VecTransposeImage) or channels-last observations.
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64) -> None:
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        self.channels_last = int(np.argmin(shape)) == 2
        channels = shape[2] if self.channels_last else shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            sample = torch.zeros(1, *shape)
            num_flat = self.cnn(self._channels_first(sample)).shape[1]
        self.linear = nn.Sequential(nn.Linear(num_flat, features_dim), nn.ReLU())

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if self.channels_last else x  # (B, C, H, W)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(self._channels_first(observations.float())))


_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def _import(name: str, what: str) -> Any:
    module_name, _, attr = name.partition(":")
    try:
        module = import_user_module(module_name, what)  # also from the working directory
    except TaskError as e:  # envs' error type; this is a collect setting
        raise UserError(str(e)) from None
    if not hasattr(module, attr):
        raise UserError(f"module {module_name!r} has no {attr!r}; check the {what} in the config")
    return getattr(module, attr)


def _resolve_policy_kwargs(policy_kwargs: dict) -> dict:
    """YAML can only hold strings: map activation/extractor/optimizer names to classes."""
    out = dict(policy_kwargs)
    act = out.get("activation_fn")
    if isinstance(act, str):
        key = act.lower().removeprefix("nn.")
        if key not in _ACTIVATIONS:
            raise UserError(f"unknown activation_fn {act!r}; use one of {sorted(_ACTIVATIONS)}")
        out["activation_fn"] = _ACTIVATIONS[key]
    extractor = out.get("features_extractor_class")
    if isinstance(extractor, str):
        out["features_extractor_class"] = (
            SmallCNN if extractor == "SmallCNN" else _import(extractor, "features extractor")
        )
    optimizer = out.get("optimizer_class")
    if isinstance(optimizer, str):
        if not hasattr(torch.optim, optimizer):
            raise UserError(f"unknown optimizer_class {optimizer!r}; use a torch.optim name")
        out["optimizer_class"] = getattr(torch.optim, optimizer)
    return out


class ReturnSoFar(VecEnvWrapper):
    """The policy's view: each observation with the episode's return so far appended.

    A memoryless (MLP) policy sees only the current observation; where the task has stages that
    the observation does not show (Key-to-Door: whether the key is held, which the key's reward
    told the agent), the return so far is the history the policy lacks. It is made from rewards
    the agent has received, nothing privileged. MultiDiscrete observations get one more
    component, the return rounded and clipped to ``0..levels``; 1-D Box observations one more
    float. It sits above the recorder, so histories keep the env's own observations.
    """

    def __init__(self, venv: VecEnv, levels: int) -> None:
        if not (is_int(levels) and levels >= 1):
            raise UserError(
                f"collect.algorithm_kwargs.observe_return must be an int >= 1 (the highest "
                f"return level the policy tells apart), got {levels!r}"
            )
        space = venv.observation_space
        if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
            view = spaces.MultiDiscrete([*space.nvec.tolist(), levels + 1])
        elif isinstance(space, spaces.Box) and len(space.shape) == 1:
            low, high = np.append(space.low, -np.inf), np.append(space.high, np.inf)
            view = spaces.Box(low.astype(np.float32), high.astype(np.float32))
        else:
            raise UserError(
                f"collect.algorithm_kwargs.observe_return needs a MultiDiscrete or 1-D Box "
                f"observation space, not {space}; remove it for this family"
            )
        super().__init__(venv, observation_space=view)
        self.levels = levels
        self.returns = np.zeros(venv.num_envs)

    def _view(self, obs: np.ndarray, returns: np.ndarray) -> np.ndarray:
        if isinstance(self.observation_space, spaces.MultiDiscrete):
            extra = np.clip(np.rint(returns), 0, self.levels).astype(obs.dtype)
        else:
            extra = returns.astype(np.float32)
        return np.concatenate([obs.reshape(len(returns), -1), extra[:, None]], axis=1)

    def reset(self) -> np.ndarray:
        self.returns[:] = 0
        return self._view(self.venv.reset(), self.returns)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = self.returns + rewards
        for i in np.flatnonzero(dones):  # SB3 bootstraps truncated episodes from this one
            if "terminal_observation" in infos[i]:
                last = infos[i]["terminal_observation"]
                infos[i]["terminal_observation"] = self._view(last[None], ended[i : i + 1])[0]
        self.returns = np.where(dones, 0.0, ended)  # after a done, obs is the next episode's
        return self._view(obs, self.returns), rewards, dones, infos


class SB3Source(SourceAlgorithm):
    """PPO, DQN, A2C, SAC or TD3 from stable-baselines3 with ``collect.algorithm_kwargs`` as arguments.

    Defaults beside SB3's own: ``device="cpu"``, ``verbose=0``; MlpPolicy (SB3 one-hot encodes
    Discrete and MultiDiscrete observations), or for image observations (3-D Box) CnnPolicy with
    :class:`SmallCNN` and ``normalize_images=False`` (MiniGrid's images hold small integer codes,
    not 0..255 intensities; ``policy: MlpPolicy`` takes neither, and SB3 scales 8-bit pixels to
    [0, 1] and flattens them). ``policy_kwargs`` may name ``activation_fn``,
    ``features_extractor_class`` and ``optimizer_class`` by string. ``observe_return: L`` (an
    int >= 1) lets the policy see the episode's return so far (:class:`ReturnSoFar`).
    """

    streams_share_learner = True

    algorithm_class: Any = None

    def __init__(self, venv: VecEnv, seed: int, **kwargs: Any) -> None:
        super().__init__(venv, seed)
        levels = kwargs.pop("observe_return", None)
        if levels is not None:
            venv = ReturnSoFar(venv, levels)
        is_image = (
            isinstance(venv.observation_space, spaces.Box)
            and len(venv.observation_space.shape) == 3
        )
        policy = kwargs.pop("policy", "CnnPolicy" if is_image else "MlpPolicy")
        policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
        if is_image and policy == "CnnPolicy":  # MlpPolicy: SB3 flattens and scales by 1/255
            policy_kwargs.setdefault("features_extractor_class", SmallCNN)
            policy_kwargs.setdefault("normalize_images", False)
        kwargs.setdefault("device", "cpu")
        kwargs.setdefault("verbose", 0)
        self.model = self.algorithm_class(
            policy, venv, seed=seed, policy_kwargs=_resolve_policy_kwargs(policy_kwargs), **kwargs
        )
        if kwargs.get("tensorboard_log") is None:
            # SB3's default logger makes an empty /tmp/SB3-<timestamp> folder for every run.
            outputs = [HumanOutputFormat(sys.stdout)] if kwargs["verbose"] >= 1 else []
            self.model.set_logger(Logger(None, outputs))

    def learn(self, total_steps: int) -> None:
        self.model.learn(total_timesteps=total_steps, callback=_StopWhenFull(self.venv))


class PPOSource(SB3Source):
    algorithm_class = PPO


class DQNSource(SB3Source):
    algorithm_class = DQN


class A2CSource(SB3Source):
    algorithm_class = A2C


class SACSource(SB3Source):
    algorithm_class = SAC


class TD3Source(SB3Source):
    algorithm_class = TD3


class UCB(SourceAlgorithm):
    """UCB1 (Auer et al. 2002), the AD paper's bandit source algorithm; one learner per stream.

    Each step of a stream is one pull: arm = argmax over arms of ``mean + c * sqrt(ln t / n)``
    (t pulls so far, n pulls of the arm), untried arms first, ties broken at random. Observations
    are ignored, so it suits one-step-episode bandits (the Bandit family). Vectorised in numpy
    over the S streams.

    Args:
        c: exploration coefficient (sqrt(2) is UCB1).
    """

    def __init__(self, venv: VecEnv, seed: int, c: float = math.sqrt(2)) -> None:
        super().__init__(venv, seed)
        self.c = float(c)
        self.rng = np.random.default_rng(seed)

    def learn(self, total_steps: int) -> None:
        num_envs, num_arms = self.venv.num_envs, int(self.venv.action_space.n)
        counts = np.zeros((num_envs, num_arms))  # (S, K)
        sums = np.zeros((num_envs, num_arms))  # (S, K)
        rows = np.arange(num_envs)
        self.venv.reset()
        for t in range(total_steps // num_envs):
            with np.errstate(divide="ignore", invalid="ignore"):
                score = sums / counts + self.c * np.sqrt(math.log(max(t, 1)) / counts)
            score = np.where(counts == 0, np.inf, score)
            best = score == score.max(axis=1, keepdims=True)  # (S, K) ties
            noise = self.rng.random((num_envs, num_arms))
            actions = np.argmax(np.where(best, noise, -1.0), axis=1)  # a random best arm
            _, rewards, _, _ = self.venv.step(actions)
            counts[rows, actions] += 1
            sums[rows, actions] += rewards


class NoisyDemonstrator(SourceAlgorithm):
    """AD^eps (Zisman et al. 2023): a demonstrator whose noise falls as the history goes on.

    No learning happens: at step t of a stream of T steps the demonstrator's action is replaced
    by noise with probability ``eps = max(1 - max_perf, 1 - t / (decay_fraction * T))`` (the
    paper's linear schedule: from 1 to ``1 - max_perf`` over the first ``decay_fraction`` of the
    history, then constant). The noise is a uniformly random action from the action space, Discrete
    or Box alike, so that at ``eps = 1`` the demonstrator is the random policy. (Gaussian noise
    scaled by ``eps`` does not get there on a Box: on the point robot, the oracle plus noise of the
    Box's half-width still earns three quarters of the optimal return.) The histories are ordinary
    learning histories, and AD trains on them unchanged.

    Args:
        oracle: the family's oracle (given by collect): the optimal action of every stream in its
            current state, or None for a family without one (``TaskFamily.optimal_action``).
        max_perf: how close to the demonstrator the history ends (1: the demonstrator itself).
        decay_fraction: the share of the history over which the noise falls.
        demonstrator: ``oracle``, or the path of a trained stable-baselines3 model file (.zip),
            which acts deterministically on the env's observations.
        demonstrator_algorithm: the class that saved that file (PPO, DQN, A2C, SAC, TD3 or an SB3
            ``module:Class``).
    """

    uses_oracle = True

    def __init__(
        self,
        venv: VecEnv,
        seed: int,
        oracle: Callable[[], np.ndarray] | None = None,
        max_perf: float = 1.0,
        decay_fraction: float = 0.9,
        demonstrator: str = "oracle",
        demonstrator_algorithm: str = "PPO",
    ) -> None:
        super().__init__(venv, seed)
        if not 0.0 <= max_perf <= 1.0 or not 0.0 < decay_fraction <= 1.0:
            raise UserError(
                f"NoisyDemonstrator needs 0 <= max_perf <= 1 and 0 < decay_fraction <= 1, got "
                f"{max_perf} and {decay_fraction}; fix collect.algorithm_kwargs"
            )
        self.max_perf, self.decay_fraction = float(max_perf), float(decay_fraction)
        self.rng = np.random.default_rng(seed)
        if demonstrator == "oracle":
            if oracle is None:
                raise UserError(
                    "NoisyDemonstrator's demonstrator is the family's oracle, but this family has "
                    "none (TaskFamily.optimal_action); set collect.algorithm_kwargs.demonstrator "
                    "to a trained stable-baselines3 model file"
                )
            self.act = lambda observations: oracle()
        else:
            model = _load_policy(demonstrator, demonstrator_algorithm, venv)
            self.act = lambda observations: model.predict(observations, deterministic=True)[0]

    def epsilon(self, t: int, num_steps: int) -> float:
        """The chance of noise at step ``t`` of a stream of ``num_steps`` steps."""
        return max(1.0 - self.max_perf, 1.0 - t / (self.decay_fraction * num_steps))

    def learn(self, total_steps: int) -> None:
        space, num_envs = self.venv.action_space, self.venv.num_envs
        num_steps = total_steps // num_envs
        observations = self.venv.reset()
        for t in range(num_steps):
            eps = self.epsilon(t, num_steps)
            actions = np.asarray(self.act(observations))
            if isinstance(space, spaces.Box):
                random = self.rng.uniform(space.low, space.high, actions.shape).astype(space.dtype)
            else:
                random = self.rng.integers(0, space.n, num_envs)
            noisy = (self.rng.random(num_envs) < eps).reshape(
                (num_envs,) + (1,) * (random.ndim - 1)
            )
            actions = np.where(noisy, random, actions)
            observations, _, _, _ = self.venv.step(actions)


def _load_policy(path: str, algorithm: str, venv: VecEnv) -> BaseAlgorithm:
    """A trained stable-baselines3 model from ``path``, checked against the env's spaces."""
    cls = resolve_source(algorithm)
    if not (isinstance(cls, type) and issubclass(cls, SB3Source)):
        raise UserError(
            f"demonstrator_algorithm {algorithm} is not a stable-baselines3 algorithm; name the "
            "class that saved the demonstrator file (PPO, DQN, A2C, SAC, TD3 or module:Class)"
        )
    if not Path(path).is_file():
        raise UserError(
            f"demonstrator file {path} does not exist; set collect.algorithm_kwargs.demonstrator "
            "to a saved stable-baselines3 model (.zip) or to oracle"
        )
    try:
        model = cls.algorithm_class.load(path, device="cpu")
    except Exception as e:  # SB3 raises many kinds on a file it cannot read
        raise UserError(f"cannot load demonstrator {path} as {algorithm}: {one_line(e)}") from None
    if model.observation_space != venv.observation_space or model.action_space != venv.action_space:
        raise UserError(
            f"demonstrator {path} acts on {model.observation_space} -> {model.action_space}, not "
            f"this family's {venv.observation_space} -> {venv.action_space}; train it on this family"
        )
    return model


# --------------------------------------------------------------------------- the registry

SOURCES: dict[str, type] = {
    "PPO": PPOSource,
    "DQN": DQNSource,
    "A2C": A2CSource,
    "SAC": SACSource,
    "TD3": TD3Source,
    "UCB": UCB,
    "NoisyDemonstrator": NoisyDemonstrator,
}
# The action spaces each built-in source acts in ("module:Class" sources are not checked here).
ACTION_SPACES: dict[str, tuple[str, ...]] = {
    "PPO": ("Discrete", "Box"),
    "A2C": ("Discrete", "Box"),
    "DQN": ("Discrete",),
    "UCB": ("Discrete",),
    "SAC": ("Box",),
    "TD3": ("Box",),
    "NoisyDemonstrator": ("Discrete", "Box"),
}


def streams_per_learner(algorithm: str, n_envs: int) -> int | None:
    """How many of a run's streams feed one learner: ``n_envs`` for sources whose streams share
    one (SB3), 1 for the others; None for a source that cannot be resolved here."""
    try:
        cls = resolve_source(algorithm)
    except UserError:
        return None
    return int(n_envs) if cls.streams_share_learner else 1


def resolve_source(name: str) -> type:
    """The class of a source algorithm: PPO, DQN, A2C, SAC, TD3, UCB or ``module:Class``.

    ``module:Class`` names a :class:`SourceAlgorithm` subclass or any stable-baselines3 algorithm
    class (e.g. ``sb3_contrib:QRDQN``), which is wrapped like PPO.
    """
    if ":" in name:
        cls = _import(name, "source algorithm")
        if isinstance(cls, type) and issubclass(cls, BaseAlgorithm):
            return type(f"{cls.__name__}Source", (SB3Source,), {"algorithm_class": cls})
    else:
        cls = SOURCES.get(name)
        if cls is None:
            raise UserError(
                f"unknown source algorithm {name!r}; set collect.algorithm to one of "
                f"{', '.join(SOURCES)} or 'module:Class'"
            )
    if not (isinstance(cls, type) and issubclass(cls, SourceAlgorithm)):
        raise UserError(
            f"{name} is not a SourceAlgorithm; subclass ad.data.sources.SourceAlgorithm"
        )
    return cls


def check_action_space(action_space: spaces.Space, algorithm: str) -> None:
    """Refuse an action space the source algorithm (or the AD model) cannot act in, in one line.

    Discrete for DQN and UCB, a 1-D Box with finite bounds for SAC and TD3, either for PPO, A2C
    and ``module:Class`` sources.
    """
    kind = type(action_space).__name__
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise UserError(
            f"the env's action space {action_space} is neither Discrete nor Box; the AD model "
            "predicts Discrete or Box actions, so use a family with one of those"
        )
    allowed = ACTION_SPACES.get(algorithm, ("Discrete", "Box"))
    if kind not in allowed:
        others = [name for name, kinds in ACTION_SPACES.items() if kind in kinds]
        raise UserError(
            f"collect.algorithm {algorithm} needs a {' or '.join(allowed)} action space but the "
            f"env has {action_space}; use {', '.join(others)} for {kind} actions"
        )
    if isinstance(action_space, spaces.Box) and not (
        len(action_space.shape) == 1
        and np.all(np.isfinite(action_space.low))
        and np.all(np.isfinite(action_space.high))
        and np.all(action_space.high > action_space.low)
    ):
        raise UserError(
            f"Box action space {action_space} is not 1-D with finite bounds (low < high); the "
            "model's action heads need both: wrap the env (FlattenAction, RescaleAction)"
        )


def make_source(
    name: str,
    venv: VecEnv,
    seed: int,
    kwargs: dict | None = None,
    oracle: Callable[[], np.ndarray] | None = None,
) -> SourceAlgorithm:
    """Build a source algorithm acting on ``venv``.

    Args:
        name: PPO, DQN, A2C, SAC, TD3, UCB or ``module:Class`` (a :class:`SourceAlgorithm`
            subclass or an SB3 algorithm class).
        venv: the (recording) vector env; see :func:`check_action_space` for its action space.
        seed: the run's seed.
        kwargs: ``collect.algorithm_kwargs``.
        oracle: the family's optimal action for every stream of ``venv`` in its current state,
            or None; passed on to sources whose class sets ``uses_oracle``.

    Raises:
        UserError: unknown algorithm, an action space it cannot act in, or bad keyword arguments.
    """
    cls = resolve_source(name)
    check_action_space(venv.action_space, name)
    kwargs = yaml_floats(kwargs or {})
    if cls.uses_oracle:
        kwargs["oracle"] = oracle
    try:
        return cls(venv, seed, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:  # SB3 checks its arguments by assert
        raise UserError(
            f"bad collect.algorithm_kwargs for {name}: {' '.join(str(e).split())}; fix the config"
        ) from None
