"""Builders shared by the test modules (one place, so that no test module imports another)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Discrete, Space

import envs
from ad.config import ExperimentConfig, ModelConfig, config_from_dict, config_to_dict
from ad.data.histories import read_history, read_metadata, rewrite_history, write_history
from ad.data.manifest import MANIFEST_SCHEMA_VERSION, file_sha256, merge_manifest
from ad.data.spaces import space_to_json
from ad.errors import UserError
from ad.evaluation.metrics import SMOOTHING, first_episode_reaching
from ad.evaluation.summary import ComparedRun, PerEpisode, RunSummary, SourceCurve
from ad.learn.checkpoint import Checkpoint, FamilyRecord, checkpoint_name
from ad.learn.model import ADTransformer, FamilyPolicy
from ad.utils import package_versions
from envs import make_family
from envs.darkroom import MOVES, DarkRoom

ROOT = Path(__file__).resolve().parent.parent  # the checkout
SCRIPTS = Path(sys.executable).parent  # the venv's bin/, where pip put the console scripts
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_MODEL = {
    "embed_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "ff_dim": 64,
    "context_steps": 16,
    "dropout": 0.0,
}

FAMILY = "F"  # the family name of one-family test models


# --------------------------------------------------------------------------- refusals


def refused_in_one_line(
    call: Callable[[], object],
    *words: str,
    error: type[BaseException] | tuple[type[BaseException], ...] = UserError,
) -> str:
    """``call()`` must raise ``error`` with a one-line message that holds every one of
    ``words``; returns the message. The project's standard for bad input."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def one_error_line(stderr: str) -> str:
    """What an entry point printed on bad input: exactly one ``error: ...`` line and no
    traceback; returns that line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def checkout_env() -> dict[str, str]:
    """The environment for an installed console script run in a subprocess, with this checkout
    first on PYTHONPATH (so that it runs this code and finds the test modules' classes)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


# --------------------------------------------------------------------------- damaged files


def flip_a_data_byte(path: Path, stream: int, dataset: str = "actions") -> None:
    """Corrupt one stream's stored ``dataset`` values of a history written uncompressed (its
    chunk is stored verbatim) in place: the structure still reads, only the data tell."""
    raw = bytearray(path.read_bytes())
    offset = raw.find(getattr(read_history(path), dataset)[stream].tobytes())
    assert offset > 0
    raw[offset + 8] ^= 0x01
    path.write_bytes(bytes(raw))
    read_metadata(path)


def set_schema_version(path: Path, version: int) -> None:
    """Rewrite a history's metadata as if another schema version had written it."""
    rewrite_history(path, metadata={**read_metadata(path), "schema_version": version})


def forge_root_schema_version(path: Path, version: int | None) -> None:
    """Set (None: delete) the root ``schema_version`` attribute of a history; no code of the
    project writes such a file."""
    import h5py

    with h5py.File(path, "r+") as f:
        if version is None:
            del f.attrs["schema_version"]
        else:
            f.attrs["schema_version"] = version


def write_json(path: Path, data) -> str:
    """``data`` (a JSON object, or a record with ``to_json()`` such as a summary) written at
    ``path``, its folders made; returns the path as a string, as a command line takes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data if isinstance(data, dict) else data.to_json()))
    return str(path)


def one_family(
    cfg: ModelConfig, observation_space: Space, action_space: Space | int
) -> FamilyPolicy:
    """A fresh one-family model's policy; an int action space is Discrete(n)."""
    if isinstance(action_space, int):
        action_space = Discrete(action_space)
    return ADTransformer(cfg, {FAMILY: (observation_space, action_space)}).policy()


# --------------------------------------------------------------------------- evaluation


class _EndEarly(gym.Wrapper):
    """Terminates each episode after a task-dependent number of steps (like Key-to-Door), and
    adds 0.5 on every step in the goal's column, so that rewards are frequent."""

    def __init__(self, env: gym.Env, length: int, column: int) -> None:
        super().__init__(env)
        self.length, self.column, self.t = length, column, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        reward += 0.5 * float(obs[0] == self.column)
        return obs, reward, terminated or self.t >= self.length, truncated, info


class VariableLengthDarkRoom(DarkRoom):
    """Episodes of 5..11 steps depending on the goal, so envs in one batch end at different steps."""

    def make_env(self, task):
        x, y = task["goal"]
        return _EndEarly(super().make_env(task), length=5 + (x + 2 * y) % 7, column=x)


def make_config(tmp_path: Path, family: str = "DarkRoom", **eval_settings) -> ExperimentConfig:
    eval_cfg = {"num_episodes": 3, "num_seeds": 2, "max_tasks": 3, "action_mode": "argmax"}
    return config_from_dict(
        {
            "name": "evaltest",
            "env": {"family": family},
            "model": SMALL_MODEL,
            "train": {"dataset": str(tmp_path / "data"), "run_dir": str(tmp_path / "run")},
            "eval": {**eval_cfg, **eval_settings},
        }
    )


def random_model(cfg: ExperimentConfig, family: envs.TaskFamily, seed: int = 0) -> FamilyPolicy:
    """A one-family model with spaces of ``family``'s env, weights 10x the N(0, 0.02) init, so
    that its actions vary with its inputs."""
    env = family.make_env(family.all_tasks()[0])
    torch.manual_seed(seed)
    spaces = (env.observation_space, env.action_space)
    policy = ADTransformer(cfg.model, {family_name(family): spaces}).policy()
    with torch.no_grad():
        for p in policy.parameters():
            if p.ndim >= 2:
                p.mul_(10.0)
    return policy.eval()


def family_name(family: envs.TaskFamily) -> str:
    """The name a family's split records (``module:Class`` for a test's own family)."""
    return getattr(family, "registry_name", family.name)


def save_run(
    run_dir: Path, cfg: ExperimentConfig, policy: FamilyPolicy, split, **state_changes
) -> Path:
    """A checkpoint (step 7) of a one-family run as ad-train writes it; ``state_changes``
    replace keys of the saved state (to write damaged ones)."""
    record = FamilyRecord(
        config=config_to_dict(cfg),
        observation_space=space_to_json(policy.observation_space),
        action_space=space_to_json(policy.action_space),
        split=split.to_json(),
        dataset_fingerprint="test",
        dataset_dir={"from_run": "../data", "absolute": str(cfg.dataset_dir.resolve())},
    )
    ckpt = Checkpoint(
        model=policy.model.state_dict(),
        optimizer={},
        step=7,
        rng=[],
        config=config_to_dict(cfg),
        model_config=config_to_dict(cfg.model),
        families={policy.name: record},
        dataset_fingerprint="test",
        versions=package_versions(),
    )
    path = run_dir / "checkpoints" / checkpoint_name(7)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**ckpt.to_state(), **state_changes}, path)
    return run_dir


def scripted_learner(family, task, num_streams: int, num_episodes: int, seed: int) -> dict:
    """Real Dark Room episodes of an epsilon-greedy walker whose epsilon decays to 0: a learner."""
    rng = np.random.default_rng(seed)
    env = family.make_env(task)
    goal = np.asarray(task["goal"])
    arrays = {k: [] for k in ("observations", "actions", "rewards", "terminations", "truncations")}
    for _ in range(num_streams):
        rows = {k: [] for k in arrays}
        for episode in range(num_episodes):
            epsilon = max(0.0, 1.0 - episode / (0.6 * num_episodes))
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
            done = False
            while not done:
                greedy = int(np.argmin([np.abs(obs + m - goal).sum() for m in MOVES]))
                action = int(rng.integers(5)) if rng.random() < epsilon else greedy
                next_obs, reward, terminated, truncated, _ = env.step(action)
                for key, value in zip(
                    arrays, (obs, action, reward, terminated, truncated), strict=True
                ):
                    rows[key].append(value)
                obs, done = next_obs, terminated or truncated
        for key in arrays:
            arrays[key].append(np.asarray(rows[key]))
    return {key: np.stack(value) for key, value in arrays.items()}


def write_dataset(dataset_dir: Path, family, split, runs: list[tuple[str, int]]) -> None:
    """Histories of (split, task index) runs and the dataset's manifest.json."""
    entries = []
    for label, index in runs:
        task = split.tasks(label)[index]
        arrays = scripted_learner(family, task, num_streams=2, num_episodes=12, seed=index)
        path = dataset_dir / f"{label}-task{index:04d}-seed0.h5"
        metadata = {
            "env_id": family.env_id,
            "family": split.family,
            "family_kwargs": split.family_kwargs,
            "task": task,
            "task_index": index,
            "split": label,
            "split_info": split.to_json(),
            "algorithm": "scripted",
            "algorithm_kwargs": {},
            "seed": 0,
            "observation_space": {"type": "MultiDiscrete", "nvec": [9, 9]},
            "action_space": {"type": "Discrete", "n": 5},
            "num_actions": 5,
            "episode_length": 20,
            "optimal_return": family.optimal_return(task),
            "random_return": family.random_return(task),
        }
        write_history(path, metadata, **arrays)
        entries.append(
            {
                "file": path.name,
                "split": label,
                "task_index": index,
                "task": task,
                "seed": 0,
                "sha256": file_sha256(path),
            }
        )
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "name": "evaltest",
        "family": split.family,
        "family_kwargs": split.family_kwargs,
        "split": split.to_json(),
        "runs": entries,
    }
    (dataset_dir / "manifest.json").write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- datasets


CENTRE = (4, 4)  # where every DarkRoom episode starts


def write_run(
    dataset_dir: Path,
    split_seed: int,
    split_name: str,
    task_index: int,
    seed: int = 0,
    num_streams: int = 2,
    num_steps: int = 240,
    epsilon: float = 0.4,
    terminate_prob: float = 0.3,
    oracle: bool = True,
) -> Path:
    """One fake-but-valid learning history of DarkRoom (epsilon-greedy towards the goal), with
    the family oracle's action at every step (``optimal_actions``) unless ``oracle`` is False."""
    family = make_family("DarkRoom")
    split = family.split(split_seed)
    task = split.tasks(split_name)[task_index]
    goal = np.array(task["goal"])
    names = ("observations", "actions", "rewards", "terminations", "truncations", "optimal_actions")
    arrays = {k: [] for k in names}
    for s in range(num_streams):
        rng = np.random.default_rng([seed, task_index, s])
        env = family.make_env(task)
        obs, _ = env.reset(seed=seed + s)
        rows = {k: [] for k in arrays}
        for _ in range(num_steps):
            dx, dy = goal - obs  # greedy: right / left first, then down / up, then stay
            greedy = 4 if dx > 0 else 3 if dx < 0 else 2 if dy > 0 else 1 if dy < 0 else 0
            action = int(rng.integers(5)) if rng.random() < epsilon else greedy
            rows["optimal_actions"].append(family.optimal_action(env, task))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            terminated = bool(reward > 0 and rng.random() < terminate_prob)
            for key, value in zip(
                names, (obs, action, reward, terminated, truncated and not terminated), strict=False
            ):
                rows[key].append(value)
            obs = env.reset()[0] if terminated or truncated else next_obs
        for key in arrays:
            arrays[key].append(np.array(rows[key]))
    metadata = {
        "env_id": family.env_id,
        "family": "DarkRoom",
        "family_kwargs": {},
        "split_info": split.to_json(),
        "algorithm": "scripted",
        "algorithm_kwargs": {"epsilon": epsilon},
        "task": task,
        "task_index": task_index,
        "split": split_name,
        "seed": seed,
        "observation_space": space_to_json(env.observation_space),
        "action_space": space_to_json(env.action_space),
        "num_actions": 5,
        "episode_length": family.episode_length,
        "optimal_return": family.optimal_return(task),
        "random_return": 0.0,
        "package_versions": {},
        "config": {"name": "test"},
    }
    path = dataset_dir / f"{split_name}-task{task_index:04d}-seed{seed}.h5"
    stacked = {key: np.stack(value) for key, value in arrays.items()}
    if not oracle:
        del stacked["optimal_actions"]
    write_history(path, metadata, **stacked, chunk_steps=32)
    return path


def make_dataset(
    dataset_dir: Path,
    split_seed: int = 0,
    train_tasks: tuple[int, ...] = (0, 1, 2),
    test_tasks: tuple[int, ...] = (0,),
    validation_tasks: tuple[int, ...] = (),
    **kwargs,
) -> Path:
    """A dataset folder with the given train / validation / test runs and its manifest."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for index in train_tasks:
        write_run(dataset_dir, split_seed, "train", index, **kwargs)
    for index in validation_tasks:
        write_run(dataset_dir, split_seed, "validation", index, **kwargs)
    for index in test_tasks:
        write_run(dataset_dir, split_seed, "test", index, **kwargs)
    merge_manifest(dataset_dir)
    return dataset_dir


def tiny_config(
    dataset_dir: Path, run_dir: Path | None = None, *overrides: str
) -> ExperimentConfig:
    """A config with a tiny model over ``dataset_dir`` (default DarkRoom split, seed 0)."""
    data = {
        "name": "test",
        "model": {
            "embed_dim": 16,
            "num_layers": 1,
            "num_heads": 2,
            "ff_dim": 32,
            "context_steps": 40,
            "dropout": 0.0,
            "input_mask_prob": 0.0,
        },
        "train": {
            "dataset": str(dataset_dir),
            "run_dir": str(run_dir) if run_dir else None,
            "batch_size": 8,
            "num_steps": 10,
            "log_every": 5,
            "optim": {"warmup_steps": 2, "lr": 1e-3},
            "checkpoint": {"every": 5},
        },
    }
    return config_from_dict(data, list(overrides))


# --------------------------------------------------------------------------- collection


TINY_PPO = {"n_steps": 32, "batch_size": 64, "n_epochs": 2}


def windows_of(cfg: ExperimentConfig):
    """The training windows of a specialist's config, opened as training opens them."""
    from ad.learn.train import open_families

    return open_families(cfg)[0].windows


def collect_config(out: Path, family="DarkRoom", algorithm="PPO", kwargs=None, **collect_fields):
    collect_fields.setdefault("splits", ["train", "test"])  # 3 runs; test_cli collects all three
    collect_fields.setdefault("seeds", [0])
    collect_section = {
        "algorithm": algorithm,
        "algorithm_kwargs": kwargs or {},
        "output_dir": str(out),
        **collect_fields,
    }
    env = {"family": family, "num_train_tasks": 2, "num_validation_tasks": 1, "num_test_tasks": 1}
    return config_from_dict({"name": "test", "env": env, "collect": collect_section})


def bandit_config(out: Path, total_steps=400, **fields):
    fields.setdefault("splits", ["train"])
    fields.setdefault("seeds", [0])
    return config_from_dict(
        {
            "name": "bandit",
            "env": {
                "family": "Bandit",
                "num_train_tasks": 3,
                "num_validation_tasks": 1,
                "num_test_tasks": 1,
            },
            "collect": {
                "algorithm": "UCB",
                "n_envs": 4,
                "total_steps": total_steps,
                "output_dir": str(out),
                **fields,
            },
        }
    )


# --------------------------------------------------------------------------- summaries


EPISODES = 20


def curve(
    normalised: np.ndarray | list[float], episode_to_80: int | None = None, scale: float = 10.0
) -> dict:
    """The ``CurveStats`` fields of a normalised curve whose returns are ``scale`` times it (a
    band of +-1 return around the mean)."""
    normalised = np.asarray(normalised, dtype=float)
    returns = scale * normalised
    return {
        "per_episode": PerEpisode(
            mean=returns.tolist(),
            ci_low=(returns - 1).tolist(),
            ci_high=(returns + 1).tolist(),
            iqm=returns.tolist(),
            normalised_mean=normalised.tolist(),
        ),
        "first_episode_return": float(returns[0]),
        "last10_return": float(returns[-10:].mean()),
        "last10_normalised": float(normalised[-10:].mean()),
        "episode_to_50": first_episode_reaching(normalised, 0.5, SMOOTHING),
        "episode_to_80": first_episode_reaching(normalised, 0.8, SMOOTHING)
        if episode_to_80 is None
        else episode_to_80,
    }


def summary(
    split_seed: int, train_seed: int, level: float, family: str = "DarkRoom", episodes=EPISODES
) -> RunSummary:
    """An ad-eval summary whose AD curve rises linearly to ``level`` over ``episodes`` episodes
    (ED flat at 0.1, the source to 1 + split_seed / 100); returns are 10x the normalised ones.
    ``.to_json()`` is its summary.json."""
    ad = curve(np.linspace(0.0, level, episodes))
    ed = curve(np.full(episodes, 0.1))
    source = curve(np.linspace(0.0, 1.0 + 0.01 * split_seed, episodes))
    run = f"runs/s{split_seed}t{train_seed}"
    tasks = [{"goal": [i, i + 1]} for i in range(3)]
    compared = {"checkpoint": f"{run}-ed/checkpoints/step-000010.pt", "normalised_at": {"1": 0.1}}
    return RunSummary(
        **ad,
        run=run,
        checkpoint=f"{run}/checkpoints/step-000010.pt",
        step=10,
        label="AD (run)",
        split="test",
        family=family,
        family_kwargs={},
        tasks=tasks,
        num_tasks=len(tasks),
        num_episodes=episodes,
        num_seeds=2,
        seed=0,
        action_mode="sample",
        temperature=1.0,
        decoding="kv_cache",
        optimal_return=10.0,
        random_return=0.0,
        optimal_returns=[10.0] * len(tasks),
        random_returns=[0.0] * len(tasks),
        optimal_from="family",
        normalised_at={"1": 0.0},
        source=SourceCurve(
            **source, num_runs=3, num_streams=6, num_episodes=episodes, num_tasks=len(tasks)
        ),
        warnings=[],
        data_efficiency_ratio=None,
        compare=[
            ComparedRun(
                **ed, label="ED (run-ed)", run=f"{run}-ed", data_efficiency_ratio=None, **compared
            )
        ],
        config={"env": {"split_seed": split_seed}, "train": {"seed": train_seed}},
        versions={"python": "3.11.0"},
    )
