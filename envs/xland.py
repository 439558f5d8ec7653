"""XLand-MiniGrid as a task family: the rulesets of an XLand-100B file, or rulesets of its own.

XLand-100B (Nikulin et al. 2024, arXiv 2406.08973) stores one HDF5 group per task ("0" .. "N-1",
each a ruleset of an XLand-MiniGrid benchmark). Here a task is a group, ``{"group": g}``, so the
train / validation / test split is a split over rulesets; ``ad.data.xland`` reads the histories.
The observation is the agent's 5 x 5 egocentric view of (tile, colour) codes; six actions
(forward, turn right, turn left, pick up, put down, toggle).

Rolling out (collection, evaluation in context) runs XLand-MiniGrid's own JAX envs (the optional
``xland`` extra: ``xminigrid``) behind a Gymnasium interface, one jitted step per call. Which
ruleset group g is:

- ``benchmark`` given (a benchmark name of ``xminigrid.load_benchmark``, or the path of its
  file) with ``dataset`` (the XLand-100B file): the ruleset the file's group g names
  (``ruleset-id``), so a model trained on the file is rolled out on its held-out rulesets;
- ``benchmark`` null: a ruleset of this family's own, drawn from g: ``num_objects`` distinct
  objects (tile, colour) placed at random each episode, the goal being to stand next to the first,
  with no other rules.

Not a registered family: configs name it ``env.family: envs.xland:XLandMiniGrid``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete
from stable_baselines3.common.vec_env import VecEnv

from envs.base import TaskFamily
from envs.tasks import Task, TaskError

# xminigrid >= 0.8's constants (the datasets' code pins xminigrid ~= 0.8): a cell is
# (tile, colour), packed into one byte as tile * NUM_COLORS + colour.
NUM_TILES = 15
NUM_COLORS = 14
NUM_ACTIONS = 6
VIEW_SIZE = 5


def observation_space() -> Box:
    """The unpacked view: (5, 5, 2) integer codes, tile then colour."""
    return Box(0, max(NUM_TILES, NUM_COLORS) - 1, (VIEW_SIZE, VIEW_SIZE, 2), np.uint8)


# The objects of the family's own rulesets: xminigrid's ball, square, pyramid, key, hex and star
# (tile codes) in red, green, blue, purple, yellow and grey (colour codes).
OBJECT_TILES = (3, 4, 5, 7, 11, 12)
OBJECT_COLORS = (1, 2, 3, 4, 5, 6)
AGENT_NEAR_GOAL = 3  # xminigrid's goal code for AgentNearGoal(tile)
MAX_RULES = 1  # the family's own rulesets have none (one empty rule, as xminigrid encodes it)
# The attribute by which an XLand-100B group names its ruleset (ad.data.xland reads the rest).
RULESET_ATTR = "ruleset-id"


def own_ruleset(group: int, num_objects: int) -> dict[str, np.ndarray]:
    """The family's own ruleset ``group``: ``num_objects`` distinct objects, the goal being to
    stand next to the first (xminigrid's encodings: goal (5,), rules (1, 7), init_tiles (n, 2))."""
    rng = np.random.default_rng([group, num_objects])
    palette = [(t, c) for t in OBJECT_TILES for c in OBJECT_COLORS]
    chosen = rng.choice(len(palette), size=num_objects, replace=False)
    tiles = np.array([palette[i] for i in chosen], dtype=np.uint8)  # (n, 2)
    goal = np.zeros(5, dtype=np.uint8)
    goal[:3] = (AGENT_NEAR_GOAL, *tiles[0])
    return {"goal": goal, "rules": np.zeros((MAX_RULES, 7), np.uint8), "init_tiles": tiles}


@functools.cache
def _benchmark(name_or_path: str) -> Any:
    _jitted("XLand-MiniGrid-R1-9x9")  # says in one line when xminigrid is missing
    from xminigrid.benchmarks import load_benchmark, load_benchmark_from_path

    try:
        if Path(name_or_path).is_file():
            return load_benchmark_from_path(name_or_path)
        return load_benchmark(name_or_path)
    except Exception as e:  # an unknown name, no network for the download, a damaged file
        raise TaskError(
            f"XLandMiniGrid benchmark {name_or_path!r} could not be loaded ({type(e).__name__}: "
            f"{e}); give an xminigrid benchmark name it can download, or the path of its file"
        ) from None


@functools.cache
def _ruleset_ids(dataset: str) -> dict[int, int]:
    """group -> ruleset-id of an XLand-100B file (its groups' attributes; the family lies below
    ad.data, so it reads these itself)."""
    import h5py

    try:
        with h5py.File(dataset, "r") as f:
            return {int(name): int(f[name].attrs[RULESET_ATTR]) for name in f}
    except (OSError, KeyError, ValueError):
        raise TaskError(
            f"XLandMiniGrid dataset {dataset} is not an XLand-100B file whose groups name their "
            "ruleset-id; give the file the model was trained on"
        ) from None


@functools.cache
def _jitted(env_id: str) -> tuple[Any, Any, Any]:
    """XLand-MiniGrid's default params and jitted reset and step: compiled once per process."""
    try:
        import jax
        import xminigrid
    except ImportError:
        raise TaskError(
            "XLandMiniGrid envs need xminigrid (JAX): pip install -e '.[xland]'"
        ) from None
    env, params = xminigrid.make(env_id)
    return params, jax.jit(env.reset), jax.jit(env.step)


@functools.cache
def _random_returns(env_id: str, max_steps: int, episodes: int) -> Any:
    """A jitted function (params, key) -> the returns of ``episodes`` episodes of uniformly random
    actions, all stepped at once (vmap over episodes, scan over steps)."""
    _, reset, step = _jitted(env_id)
    import jax
    import jax.numpy as jnp

    def episode(params, key):
        reset_key, action_key = jax.random.split(key)
        actions = jax.random.randint(action_key, (max_steps,), 0, NUM_ACTIONS)

        def one(carry, action):
            timestep, total, done = carry
            timestep = step(params, timestep, action)
            total = total + jnp.where(done, 0.0, timestep.reward)
            return (timestep, total, done | (timestep.step_type == 2)), None

        start = (reset(params, reset_key), jnp.float32(0.0), jnp.bool_(False))
        (_, total, _), _ = jax.lax.scan(one, start, actions)
        return total

    return jax.jit(
        lambda params, key: jax.vmap(episode, (None, 0))(params, jax.random.split(key, episodes))
    )


class XLandEnv(gym.Env):
    """One XLand-MiniGrid ruleset behind Gymnasium's interface (no auto-reset).

    The episode ends with ``terminated`` when the goal is met (reward ``1 - 0.9 t / T``, as
    XLand-MiniGrid gives it), and with ``truncated`` after ``T`` = ``max_steps`` steps.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, env_id: str, ruleset: dict[str, np.ndarray], max_steps: int) -> None:
        params, self._reset, self._step = _jitted(env_id)
        import jax.numpy as jnp
        from xminigrid.types import RuleSet

        rules = RuleSet(**{k: jnp.asarray(v) for k, v in ruleset.items()})
        self.params = params.replace(ruleset=rules, max_steps=max_steps)
        self.observation_space = observation_space()
        self.action_space = Discrete(NUM_ACTIONS)
        self._timestep = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        import jax

        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(2**31)))
        self._timestep = self._reset(self.params, key)
        return np.asarray(self._timestep.observation, dtype=np.uint8), {}

    def step(self, action):
        if self._timestep is None:
            raise RuntimeError("XLandEnv.step before reset")
        self._timestep = ts = self._step(self.params, self._timestep, int(action))
        last = bool(ts.step_type == 2)  # xminigrid's StepType.LAST
        terminated = last and float(ts.discount) == 0.0
        observation = np.asarray(ts.observation, dtype=np.uint8)
        return observation, float(ts.reward), terminated, last and not terminated, {}


@functools.cache
def _batched(env_id: str) -> tuple[Any, Any]:
    """Jitted batch functions: (params, seeds) -> timesteps reset from ``seeds`` (one key seed
    per env); (params, timesteps, actions, seeds) -> the stepped timesteps, and the batch to go
    on from: the envs whose episode ended reset from their ``seeds``, in the same call."""
    _, reset, step = _jitted(env_id)
    import jax
    import jax.numpy as jnp

    def reset_all(params, seeds):
        return jax.vmap(lambda s: reset(params, jax.random.key(s)))(seeds)

    def step_all(params, timesteps, actions, seeds):
        stepped = jax.vmap(step, (None, 0, 0))(params, timesteps, actions)
        ended = stepped.step_type == 2  # xminigrid's StepType.LAST

        def pick(fresh, kept):
            return jnp.where(ended.reshape(ended.shape + (1,) * (kept.ndim - 1)), fresh, kept)

        return stepped, jax.tree_util.tree_map(pick, reset_all(params, seeds), stepped)

    return jax.jit(reset_all), jax.jit(step_all)


class XLandVecEnv(VecEnv):
    """``num_envs`` envs of one XLand-MiniGrid ruleset stepped as one JAX batch (vmap), with
    ``DummyVecEnv``'s semantics over ``XLandEnv``: env i draws each reset's key from its own
    generator, seeded by ``seed(s)`` with s + i, so it steps exactly as ``XLandEnv`` would.

    Each env's next reset key is drawn as soon as its last reset is done (the same draws, in
    the same order), so one jitted call steps the batch and resets the envs that ended.
    """

    def __init__(
        self, env_id: str, ruleset: dict[str, np.ndarray], max_steps: int, num_envs: int
    ) -> None:
        self.params = XLandEnv(env_id, ruleset, max_steps).params
        self._reset_all, self._step_all = _batched(env_id)
        self.render_mode = None  # read by VecEnv.__init__
        super().__init__(num_envs, observation_space(), Discrete(NUM_ACTIONS))
        self._rngs = [np.random.default_rng() for _ in range(num_envs)]
        self._next_seeds = np.zeros(num_envs, np.uint32)  # each env's next reset key seed
        self._timesteps = None
        self._actions = None

    def _draw_seeds(self, envs: np.ndarray) -> None:
        for i in np.flatnonzero(envs):
            self._next_seeds[i] = self._rngs[i].integers(2**31)

    def reset(self) -> np.ndarray:
        for i, seed in enumerate(self._seeds):
            if seed is not None:  # as gymnasium's reset(seed=...): a fresh generator
                self._rngs[i] = np.random.default_rng(seed)
        self._reset_seeds()
        self._reset_options()
        everyone = np.ones(self.num_envs, bool)
        self._draw_seeds(everyone)
        self._timesteps = self._reset_all(self.params, self._next_seeds)
        self._draw_seeds(everyone)
        return np.array(self._timesteps.observation, dtype=np.uint8)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)

    def step_wait(self):
        if self._timesteps is None:
            raise RuntimeError("XLandVecEnv.step before reset")
        stepped, self._timesteps = self._step_all(
            self.params, self._timesteps, self._actions, self._next_seeds
        )
        observations = np.array(stepped.observation, dtype=np.uint8)
        rewards = np.array(stepped.reward, dtype=np.float32)  # writeable: PPO adds to it
        dones = np.asarray(stepped.step_type) == 2
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():  # the ended envs were reset: keep their last observations
            truncated = dones & (np.asarray(stepped.discount) != 0.0)
            for i in np.flatnonzero(dones):
                infos[i] = {
                    "terminal_observation": observations[i].copy(),
                    "TimeLimit.truncated": bool(truncated[i]),
                }
            observations = np.array(self._timesteps.observation, dtype=np.uint8)
            self._draw_seeds(dones)
        return observations, rewards, dones, infos

    def close(self) -> None:
        self._timesteps = None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any):
        raise NotImplementedError(f"XLandVecEnv has no per-env {method_name}()")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class XLandMiniGrid(TaskFamily):
    """XLand-MiniGrid's single-room rulesets: ``num_tasks`` of them on ``grid_size`` grids.

    Args:
        num_tasks: the tasks (an XLand-100B file's group count when training on one).
        grid_size: 9 (``XLand-MiniGrid-R1-9x9``) or 13 (``-R1-13x13``); episodes last at most
            3 * grid_size**2 steps, as XLand-MiniGrid's default.
        benchmark: null (the family's own rulesets), or an xminigrid benchmark name or file
            whose rulesets the ``dataset``'s groups name.
        dataset: the XLand-100B file (needed with ``benchmark``).
        num_objects: objects in each of the family's own rulesets (with ``benchmark`` null).
        episode_length: steps before an episode is truncated (default 3 * grid_size**2, as
            XLand-MiniGrid's and XLand-100B's).
    """

    name = "XLandMiniGrid"
    default_num_test: ClassVar[int] = 64
    default_num_validation: ClassVar[int] = 32

    def __init__(
        self,
        num_tasks: int = 1,
        grid_size: int = 9,
        benchmark: str | None = None,
        dataset: str | None = None,
        num_objects: int = 3,
        episode_length: int | None = None,
    ) -> None:
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise TaskError(f"XLandMiniGrid num_tasks={num_tasks!r}: give the file's group count")
        if grid_size not in (9, 13):
            raise TaskError(f"XLandMiniGrid grid_size={grid_size!r}: use 9 or 13")
        if (benchmark is None) != (dataset is None):
            raise TaskError(
                "XLandMiniGrid needs benchmark and dataset together (the rulesets an XLand-100B "
                "file's groups name), or neither (the family's own rulesets)"
            )
        palette = len(OBJECT_TILES) * len(OBJECT_COLORS)
        if not isinstance(num_objects, int) or not 1 <= num_objects <= palette:
            raise TaskError(f"XLandMiniGrid num_objects={num_objects!r}: use 1..{palette}")
        default_length = 3 * grid_size**2
        length = default_length if episode_length is None else episode_length
        if not isinstance(length, int) or length < 1:
            raise TaskError(f"XLandMiniGrid episode_length={episode_length!r}: use a positive int")
        kwargs = {"num_tasks": num_tasks, "grid_size": grid_size}
        if benchmark is not None:  # stored with the data only where given, as before
            kwargs |= {"benchmark": benchmark, "dataset": dataset}
        if num_objects != 3:
            kwargs["num_objects"] = num_objects
        if length != default_length:
            kwargs["episode_length"] = length
        super().__init__(**kwargs)
        self.num_tasks, self.size = num_tasks, grid_size
        self.benchmark, self.dataset, self.num_objects = benchmark, dataset, num_objects
        self._episode_length = length

    def all_tasks(self) -> list[Task]:
        return [{"group": g} for g in range(self.num_tasks)]

    def validate_task(self, task: Any) -> Task:
        group = task.get("group") if isinstance(task, dict) else None
        if not isinstance(group, int) or not 0 <= group < self.num_tasks:
            raise TaskError(
                f"XLandMiniGrid task {task!r}: expected {{'group': 0..{self.num_tasks - 1}}}"
            )
        return {"group": group}

    @property
    def episode_length(self) -> int:
        return self._episode_length

    def ruleset(self, task: Task) -> dict[str, np.ndarray]:
        """The ruleset of ``task``, as xminigrid encodes it."""
        group = self.validate_task(task)["group"]
        if self.benchmark is None:
            return own_ruleset(group, self.num_objects)
        ids = _ruleset_ids(self.dataset)
        if group not in ids:
            raise TaskError(f"XLandMiniGrid group {group} is not in {self.dataset}")
        rules = _benchmark(self.benchmark).get_ruleset(ids[group])
        return {k: np.asarray(getattr(rules, k)) for k in ("goal", "rules", "init_tiles")}

    @property
    def env_id(self) -> str:
        return f"XLand-MiniGrid-R1-{self.size}x{self.size}"

    def make_env(self, task: Task) -> XLandEnv:
        return XLandEnv(self.env_id, self.ruleset(task), self.episode_length)

    def make_vec_env(self, task: Task, num_envs: int) -> XLandVecEnv:
        """The envs as one JAX batch, faster than one env at a time (bench/xland_vec_env.py)."""
        return XLandVecEnv(self.env_id, self.ruleset(task), self.episode_length, num_envs)

    def random_return(self, task: Task) -> float:
        """The mean return of ``random_return_episodes`` uniformly random episodes, stepped at
        once in JAX, seeded from the task (the same task always gives the same number)."""
        import jax

        env = self.make_env(task)
        episodes = self.random_return_episodes
        returns = _random_returns(self.env_id, self.episode_length, episodes)
        key = jax.random.key(self.validate_task(task)["group"])
        return float(np.mean(returns(env.params, key)))

    @property
    def spaces(self) -> tuple[Box, Discrete]:
        """(observation space, action space) of every task."""
        return observation_space(), Discrete(NUM_ACTIONS)
