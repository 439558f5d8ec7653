"""XLand-100B files trained on as they are published (ad/data/xland.py, envs/xland.py)."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from ad.cli import train_main
from ad.config import config_from_dict
from ad.data.xland import XLandReader, read_groups, unpack_states
from ad.errors import UserError
from ad.learn.training_data import load_training_runs, resolve_config
from ad.learn.windows import open_windows
from envs.tasks import TaskError
from envs.xland import AGENT_NEAR_GOAL, NUM_COLORS, NUM_TILES, XLandMiniGrid, own_ruleset
from tests.factories import refused_in_one_line

NUM_GROUPS, HISTORIES, STEPS, CHUNK = 8, 32, 4096, 4096  # the published chunking: (1, 4096, ...)


def write_xland_file(path: Path, num_groups=NUM_GROUPS, env_id="XLand-MiniGrid-R1-9x9", drop=None):
    """A file of the published layout. Each history cycles its actions (a + 1 mod 6, what AD can
    learn from its context); the expert acts one ahead; episodes end every 40 to 60 steps."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for g in range(num_groups):
            group = f.create_group(str(g))
            group.attrs.update(
                {"env-id": env_id, "benchmark-id": "trivial-1m", "ruleset-id": 1000 + 7 * g}
            )
            tiles = rng.integers(0, NUM_TILES, (HISTORIES, STEPS, 5, 5))
            colours = rng.integers(0, NUM_COLORS, (HISTORIES, STEPS, 5, 5))
            tiles[:, :, :, 1:] = 3  # mostly floor, so that the file stays small
            start = rng.integers(0, 6, (HISTORIES, 1))
            actions = (start + np.arange(STEPS)) % 6
            dones = np.zeros((HISTORIES, STEPS), bool)
            for h in range(HISTORIES):
                dones[h, np.cumsum(rng.integers(40, 61, STEPS // 40))[: STEPS // 60] - 1] = True
            arrays = {
                "states": (tiles * NUM_COLORS + colours).astype(np.uint8),
                "actions": actions.astype(np.uint8),
                "rewards": (rng.random((HISTORIES, STEPS)) * dones).astype(np.float16),
                "dones": dones,
                "expert_actions": ((actions + 1) % 6).astype(np.uint8),
            }
            for name, data in arrays.items():
                if name == drop:
                    continue
                group.create_dataset(
                    name,
                    data=data,
                    compression="gzip",
                    compression_opts=6,
                    chunks=(1, CHUNK, *data.shape[2:]),
                )
    return path


@pytest.fixture(scope="module")
def xland_file(tmp_path_factory):
    return write_xland_file(tmp_path_factory.mktemp("xland") / "xland-trivial.hdf5")


def xland_config(path: Path, **train):
    return config_from_dict(
        {
            "name": "xland",
            "env": {
                "family": "envs.xland:XLandMiniGrid",
                "family_kwargs": {"num_tasks": NUM_GROUPS, "grid_size": 9},
                "num_validation_tasks": 2,
                "num_test_tasks": 2,
            },
            "model": {
                "embed_dim": 32,
                "num_layers": 1,
                "num_heads": 2,
                "ff_dim": 64,
                "context_steps": 243,
                "dropout": 0.0,
                "input_mask_prob": 0.0,
            },
            "train": {
                "dataset": str(path),
                "batch_size": 8,
                "num_steps": 60,
                "log_every": 10,
                "data": {"subsample_every": 1},
                "optim": {"warmup_steps": 5, "lr": 3e-3},
                "checkpoint": {"every": 60},
                **train,
            },
            "eval": {"num_episodes": 20},
        }
    )


def test_the_fixture_has_the_published_layout_and_the_reader_unpacks_it(xland_file):
    with h5py.File(xland_file, "r") as f:
        states = f["3/states"]
        assert states.dtype == np.uint8 and states.shape == (HISTORIES, STEPS, 5, 5)
        assert states.chunks == (1, 4096, 5, 5) and states.compression == "gzip"
        assert f["3/rewards"].dtype == np.float16 and f["3/dones"].dtype == bool
        packed = states[5, 100:130]
        raw = {
            k: f[f"3/{k}"][5, 100:130] for k in ("actions", "rewards", "dones", "expert_actions")
        }
    groups = read_groups(xland_file)
    assert [g["group"] for g in groups] == list(range(NUM_GROUPS))
    assert groups[3]["ruleset_id"] == 1021 and groups[3]["env_id"] == "XLand-MiniGrid-R1-9x9"
    rows = XLandReader(xland_file, 3).read(5, 100, 130)
    np.testing.assert_array_equal(rows["observations"], unpack_states(packed))
    np.testing.assert_array_equal(
        rows["observations"][..., 0] * NUM_COLORS + rows["observations"][..., 1], packed
    )
    np.testing.assert_array_equal(rows["actions"], raw["actions"])
    np.testing.assert_array_equal(rows["rewards"], raw["rewards"].astype(np.float32))
    np.testing.assert_array_equal(rows["terminations"], raw["dones"])
    np.testing.assert_array_equal(rows["optimal_actions"], raw["expert_actions"])


@pytest.mark.parametrize("mode, targets", [("ad", "actions"), ("dpt", "expert_actions")])
def test_training_reads_only_training_rulesets_straight_from_the_file(xland_file, mode, targets):
    cfg = xland_config(xland_file, mode=mode)
    training = load_training_runs(cfg)
    split = cfg.env.task_split()
    held_out = {t["group"] for t in (*split.validation, *split.test)}
    assert len(held_out) == 4
    groups = [e["group"] for e in training.entries]
    assert sorted(groups) == sorted(t["group"] for t in split.train) and not held_out & set(groups)
    windows = open_windows(resolve_config(cfg, training), training)
    assert not windows.in_memory and windows.num_windows > 0
    index = windows.num_windows // 2 + 17
    kept, start = windows.locate(index)
    window = windows[index]
    group = training.entries[kept.history]["group"]
    with h5py.File(xland_file, "r") as f:
        g = f[str(group)]
        span = slice(start, start + 243)
        np.testing.assert_array_equal(
            window["observations"], unpack_states(g["states"][kept.stream, span])
        )
        np.testing.assert_array_equal(window["targets"], g[targets][kept.stream, span])
        before = slice(start - 1, start + 242)
        np.testing.assert_array_equal(window["prev_actions"], g["actions"][kept.stream, before])
        np.testing.assert_array_equal(window["prev_dones"], g["dones"][kept.stream, before])
    windows.close()


def test_ad_train_learns_from_an_xland_file(xland_file, tmp_path):
    config = tmp_path / "xland.json"
    cfg = json.loads(json.dumps({"train": {"run_dir": str(tmp_path / "run")}}))
    data = xland_config(xland_file)
    from ad.config import config_to_dict

    merged = config_to_dict(data)
    merged["train"].update(cfg["train"])
    config.write_text(json.dumps(merged))
    assert train_main(["--config", str(config), "--no-progress"]) == 0
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(row["train/loss"]) for row in csv.DictReader(f)]
    # the next action follows from the previous one: the loss falls from ln 6 = 1.79
    assert losses[0] > 1.3 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "change, words",
    [
        ({"env": {"family": "DarkRoom"}}, ["XLand-100B file of 8 tasks", "XLandMiniGrid"]),
        ({"env": {"family_kwargs": {"num_tasks": 9}}}, ["num_tasks: 8"]),
        ({"env": {"family_kwargs": {"grid_size": 13}}}, ["XLand-MiniGrid-R1-9x9", "grid_size"]),
        ({"model": {"context_steps": None}}, ["no episode tables", "model.context_steps"]),
        ({"train": {"data": {"subsample_every": 2}}}, ["subsample_every: 1"]),
    ],
    ids=["family", "num-tasks", "grid-size", "derived", "subsampled"],
)
def test_configs_that_do_not_fit_the_file_are_refused(xland_file, change, words):
    from ad.config import config_to_dict

    data = config_to_dict(xland_config(xland_file))
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                data[section][key] = {**(data[section].get(key) or {}), **value}
            else:
                data[section][key] = value
    if data["env"]["family"] == "DarkRoom":
        data["env"]["family_kwargs"] = {}
    refused_in_one_line(lambda: load_training_runs(config_from_dict(data)), *words)


def test_a_file_of_another_layout_is_refused(tmp_path):
    path = write_xland_file(tmp_path / "broken.hdf5", num_groups=1, drop="expert_actions")
    with pytest.raises(UserError, match="lacks expert_actions"):
        read_groups(path)


def test_the_shipped_config_opens_a_file_once_pointed_at_it(xland_file):
    from ad.config import load_config

    root = Path(__file__).resolve().parents[1]
    overrides = [f"train.dataset={xland_file}", f"env.family_kwargs.num_tasks={NUM_GROUPS}"]
    overrides += ["env.num_validation_tasks=2", "env.num_test_tasks=2", "model.context_steps=1024"]
    cfg = load_config(root / "configs" / "xland_ad.yaml", overrides)
    training = load_training_runs(cfg)
    windows = open_windows(resolve_config(cfg, training), training)
    assert len(training.entries) == NUM_GROUPS - 4 and windows.window_steps == 1024
    windows.close()


# -- XLand-MiniGrid's envs behind the family (the optional xland extra) -------------------------

needs_xminigrid = pytest.mark.skipif(
    importlib.util.find_spec("xminigrid") is None, reason="needs the xland extra (xminigrid)"
)


def write_benchmark(path: Path, num_rulesets: int) -> Path:
    """A benchmark file as xminigrid saves one (a bz2 pickle of arrays): ruleset i is the
    family's own ruleset i, so the two ways of naming rulesets can be compared."""
    rulesets = [own_ruleset(i, 3) for i in range(num_rulesets)]
    arrays = {k: np.stack([r[k] for r in rulesets]) for k in ("goal", "rules", "init_tiles")}
    data = {
        "goals": arrays["goal"],
        "rules": arrays["rules"],
        "init_tiles": arrays["init_tiles"],
        "num_rules": np.ones(num_rulesets, np.uint8),
    }
    with bz2.open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def test_own_rulesets_are_fixed_per_task_and_three_distinct_objects():
    first, again, other = own_ruleset(5, 3), own_ruleset(5, 3), own_ruleset(6, 3)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["init_tiles"], other["init_tiles"])
    tiles = [tuple(t) for t in first["init_tiles"]]
    assert len(set(tiles)) == 3
    assert tuple(first["goal"][:3]) == (AGENT_NEAR_GOAL, *tiles[0])  # next to the first object


@needs_xminigrid
def test_an_xland_env_ends_on_the_goal_or_the_time_limit_and_seeds_repeat():
    family = XLandMiniGrid(num_tasks=10, episode_length=60)
    env = family.make_env({"group": 2})
    rng = np.random.default_rng(0)
    ends = []
    for episode in range(8):
        obs, _ = env.reset(seed=episode)
        assert env.observation_space.contains(obs)
        t, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(6)))
            assert env.observation_space.contains(obs)
            t += 1
        ends.append((terminated, truncated, t, reward))
    for terminated, truncated, t, reward in ends:
        if terminated:  # XLand-MiniGrid's reward for meeting the goal at step t of T
            assert reward == pytest.approx(1 - 0.9 * t / 60, abs=1e-6)
        else:
            assert truncated and t == 60 and reward == 0.0
    assert {e[0] for e in ends} == {True, False}  # random actions sometimes find the goal
    first, _ = env.reset(seed=3)
    again, _ = family.make_env({"group": 2}).reset(seed=3)
    np.testing.assert_array_equal(first, again)
    random = family.random_return({"group": 2})
    assert 0.0 < random < 1.0 and random == family.random_return({"group": 2})


@needs_xminigrid
def test_the_batched_streams_step_exactly_as_one_env_at_a_time():
    """make_vec_env's JAX batch gives DummyVecEnv's observations, rewards, dones and infos over
    XLandEnv, auto-resets included, for the same seeds and actions."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    family = XLandMiniGrid(num_tasks=10, episode_length=20)
    task = {"group": 2}
    one_by_one = DummyVecEnv([lambda: family.make_env(task)] * 4)
    batched = family.make_vec_env(task, 4)
    one_by_one.seed(7)
    batched.seed(7)
    np.testing.assert_array_equal(one_by_one.reset(), batched.reset())
    rng, ends = np.random.default_rng(0), 0
    for _ in range(100):
        actions = rng.integers(0, 6, 4)
        obs_a, rewards_a, dones_a, infos_a = one_by_one.step(actions)
        obs_b, rewards_b, dones_b, infos_b = batched.step(actions)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rewards_a, rewards_b)
        np.testing.assert_array_equal(dones_a, dones_b)
        for i in np.flatnonzero(dones_a):
            ends += 1
            last_a, last_b = infos_a[i], infos_b[i]
            np.testing.assert_array_equal(
                last_a["terminal_observation"], last_b["terminal_observation"]
            )
            assert last_a["TimeLimit.truncated"] == last_b["TimeLimit.truncated"]
    assert ends >= 10  # resets were compared, not only steps


@needs_xminigrid
def test_a_model_trained_on_the_file_is_rolled_out_on_its_held_out_rulesets(xland_file, tmp_path):
    from ad.cli import eval_main
    from ad.config import config_to_dict

    benchmark = write_benchmark(tmp_path / "bench.pkl", 1000 + 7 * NUM_GROUPS)
    kwargs = {"benchmark": str(benchmark), "dataset": str(xland_file)}
    family = XLandMiniGrid(num_tasks=NUM_GROUPS, **kwargs)
    # group 3 of the file names ruleset-id 1021 of the benchmark
    for key, value in family.ruleset({"group": 3}).items():
        np.testing.assert_array_equal(value, own_ruleset(1021, 3)[key])
    data = config_to_dict(xland_config(xland_file, num_steps=10, run_dir=str(tmp_path / "run")))
    data["env"]["family_kwargs"].update(kwargs)
    data["eval"].update({"num_episodes": 3, "num_seeds": 2})
    config = tmp_path / "xland.json"
    config.write_text(json.dumps(data))
    assert train_main(["--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "eval"
    assert eval_main(["--run", str(tmp_path / "run"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    returns = np.load(out / "returns.npz")["returns"]
    assert summary["split"] == "test" and returns.shape == (2, 2, 3)  # 2 test rulesets
    # the source curve: the file's own histories of those rulesets, episode by episode
    with h5py.File(xland_file, "r") as f:
        first = []  # every history's first episode return, of both test rulesets
        for task in summary["tasks"]:
            group = f[str(task["group"])]
            ends = np.argmax(group["dones"][:], axis=1)  # (H,) each history's first episode end
            rewards = group["rewards"][:].astype(np.float64)
            first += [rewards[h, : ends[h] + 1].sum() for h in range(len(ends))]
    assert len(first) == 2 * HISTORIES
    source_first = summary["source"]["per_episode"]["mean"][0]
    assert source_first == pytest.approx(np.mean(first), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"benchmark": "trivial-1m"}, ["benchmark and dataset together"]),
        ({"num_objects": 0}, ["num_objects"]),
        ({"episode_length": 0}, ["episode_length"]),
    ],
)
def test_bad_family_settings_are_refused_in_one_line(kwargs, words):
    refused_in_one_line(lambda: XLandMiniGrid(num_tasks=4, **kwargs), *words, error=TaskError)


@needs_xminigrid
def test_a_dataset_that_is_not_an_xland_file_is_refused_in_one_line(tmp_path):
    family = XLandMiniGrid(num_tasks=2, benchmark="x", dataset=str(tmp_path / "none.hdf5"))
    refused_in_one_line(lambda: family.make_env({"group": 0}), "not an XLand-100B", error=TaskError)


@needs_xminigrid
def test_the_own_rulesets_collect_ordinary_learning_histories(tmp_path):
    from ad.data.collect import collect
    from ad.data.history_reader import HistoryReader
    from ad.data.manifest import load_manifest

    data = {
        "name": "xland_own",
        "env": {
            "family": "envs.xland:XLandMiniGrid",
            "family_kwargs": {"num_tasks": 6, "episode_length": 30},
            "num_validation_tasks": 1,
            "num_test_tasks": 1,
        },
        "collect": {
            "algorithm": "PPO",
            "algorithm_kwargs": {"n_steps": 64, "batch_size": 64},
            "n_envs": 2,
            "total_steps": 256,
            "seeds": [0],
            "splits": ["train"],
            "output_dir": str(tmp_path),
        },
    }
    collect(config_from_dict(data), workers=1, progress=False)
    runs = load_manifest(tmp_path)["runs"]
    assert len(runs) == 4 and {r["split"] for r in runs} == {"train"}
    with HistoryReader(tmp_path / runs[0]["file"]) as reader:
        rows = reader.read(0, 0, 128)
        assert rows["observations"].shape == (128, 5, 5, 2) and reader.num_streams == 2
        assert rows["observations"].dtype == np.uint8


@needs_xminigrid
def test_a_benchmark_that_cannot_be_loaded_is_refused_in_one_line(xland_file):
    family = XLandMiniGrid(num_tasks=NUM_GROUPS, benchmark="no-such", dataset=str(xland_file))
    refused_in_one_line(
        lambda: family.make_env({"group": 0}), "no-such", "could not be loaded", error=TaskError
    )


def test_the_quick_recipe_splits_its_own_rulesets():
    """configs/xland_quick.yaml: 48 of the family's own rulesets, 32 / 8 / 8, two objects each."""
    from ad.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "xland_quick.yaml")
    family = cfg.env.make_family()
    split = cfg.env.task_split(family)
    assert (len(split.train), len(split.validation), len(split.test)) == (32, 8, 8)
    assert family.num_objects == 2 and family.episode_length == 40
    assert len(family.ruleset(split.test[0])["init_tiles"]) == 2
