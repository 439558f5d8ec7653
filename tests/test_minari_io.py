"""Learning histories out to Minari and back, and a foreign Minari dataset in (ad/data/minari_io.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ad.cli import collect_main
from ad.config import config_from_dict
from ad.data.collect import collect
from ad.data.histories import read_history, validate_history
from ad.data.manifest import load_manifest
from ad.data.minari_io import export_minari, import_minari
from tests.factories import collect_config, refused_in_one_line

minari = pytest.importorskip("minari")
from minari.data_collector.episode_buffer import EpisodeBuffer  # noqa: E402

STEP_ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")


@pytest.fixture(autouse=True)
def _minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def collected(tmp_path, family="DarkRoom", n_envs=2, total_steps=130):
    """A real dataset: the oracle's noise-distilled histories (fast, and they carry the oracle)."""
    cfg = collect_config(
        tmp_path / "data",
        family=family,
        algorithm="NoisyDemonstrator",
        n_envs=n_envs,
        total_steps=total_steps,  # 65 steps a stream: 3 whole 20-step episodes and a partial one
    )
    collect(cfg, workers=1, progress=False)
    return cfg


@pytest.mark.parametrize("family", ["DarkRoom", "DarkRoomPixels"])
def test_export_writes_every_step_in_history_order_and_minari_reads_it_back(tmp_path, family):
    cfg = collected(tmp_path, family)
    summary = export_minari(cfg.collect_dir, "ad/darkroom/test-v0")
    dataset = minari.load_dataset("ad/darkroom/test-v0")
    manifest = load_manifest(cfg.collect_dir)
    assert summary["runs"] == len(manifest["runs"]) == 3
    assert dataset.total_steps == summary["steps"] == 3 * 130
    episodes = list(dataset.iterate_episodes())
    metadata = list(dataset.storage.get_episode_metadata(range(dataset.total_episodes)))
    assert len(episodes) == summary["episodes"] == 3 * 2 * 4  # runs x streams x (3 + 1 partial)
    i = 0
    for run in manifest["runs"]:
        history = read_history(cfg.collect_dir / run["file"])
        for s in range(history.num_streams):
            start = 0
            for k in range(4):
                options, episode = metadata[i]["options"], episodes[i]
                end = min(start + 20, history.num_steps)
                assert (options["run"], options["stream"], options["episode"]) == (
                    run["file"],
                    s,
                    k,
                )
                assert json.loads(options["task"]) == run["task"]
                assert bool(options["finished"]) == (k < 3)
                assert metadata[i].get("seed") == (s if k == 0 else None)
                # exact, images included (no JPEG): row T repeats the last recorded observation
                np.testing.assert_array_equal(
                    episode.observations[:-1], history.observations[s, start:end]
                )
                np.testing.assert_array_equal(episode.observations[-1], episode.observations[-2])
                for name in ("actions", "rewards", "terminations", "truncations"):
                    np.testing.assert_array_equal(
                        getattr(episode, name), getattr(history, name)[s, start:end]
                    )
                np.testing.assert_array_equal(
                    episode.infos["optimal_actions"][:-1], history.optimal_actions[s, start:end]
                )
                i, start = i + 1, end
    assert dataset.observation_space == history_space(cfg)


def history_space(cfg):
    from ad.data.histories import history_spaces

    first = sorted(cfg.collect_dir.glob("*.h5"))[0]
    return history_spaces(read_history(first).metadata)[0]


def test_an_exported_dataset_imports_back_exactly(tmp_path):
    cfg = collected(tmp_path)
    export_minari(cfg.collect_dir, "roundtrip-v0")
    back = config_from_dict({**_dict(cfg), "collect": {"output_dir": str(tmp_path / "back")}})
    summary = import_minari(back, "roundtrip-v0")
    assert summary["runs"] == 3 and summary["dropped_steps"] == 0
    manifest = load_manifest(tmp_path / "back")
    original = load_manifest(cfg.collect_dir)
    assert [r["file"] for r in manifest["runs"]] == [r["file"] for r in original["runs"]]
    assert manifest["split"] == original["split"]
    for run in original["runs"]:
        mine, theirs = (
            read_history(cfg.collect_dir / run["file"]),
            read_history(tmp_path / "back" / run["file"]),
        )
        validate_history(tmp_path / "back" / run["file"])
        assert theirs.metadata == mine.metadata
        for name in (*STEP_ARRAYS, "optimal_actions"):
            a, b = getattr(mine, name), getattr(theirs, name)
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b)


def _dict(cfg):
    from ad.config import config_to_dict

    return config_to_dict(cfg)


def foreign_dataset(dataset_id, goals, episodes_per_goal, length=20, field="goal"):
    """A Minari dataset made without ad, from plain arrays, as its users write them."""
    from gymnasium.spaces import Discrete, MultiDiscrete

    rng = np.random.default_rng(0)
    buffers = []
    for goal in goals:
        for _ in range(episodes_per_goal):
            buffers.append(
                EpisodeBuffer(
                    id=len(buffers),
                    options={field: np.array(goal)},
                    observations=rng.integers(0, 9, (length + 1, 2)),
                    actions=rng.integers(0, 5, length),
                    rewards=rng.random(length).astype(np.float32),
                    terminations=np.zeros(length, bool),
                    truncations=np.eye(length, dtype=bool)[-1] if length else [],
                )
            )
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        observation_space=MultiDiscrete([9, 9]),
        action_space=Discrete(5),
        algorithm_name="random",
        description="random steps in a dark room",
    )


def test_a_foreign_dataset_becomes_one_stream_per_task_in_its_own_split(tmp_path):
    cfg = collect_config(tmp_path / "imported")
    split = cfg.env.task_split(cfg.env.make_family())
    goals = [split.train[0]["goal"], split.train[1]["goal"], split.test[0]["goal"]]
    dataset = foreign_dataset("foreign-v0", goals, episodes_per_goal=3)
    dataset.storage.update_episodes(  # one more, shorter episode for the first goal
        [
            EpisodeBuffer(
                id=9,
                options={"goal": np.array(goals[0])},
                observations=np.zeros((6, 2), int),
                actions=np.zeros(5, int),
                rewards=np.zeros(5, np.float32),
                terminations=np.zeros(5, bool),
                truncations=np.zeros(5, bool),
            )
        ]
    )
    summary = import_minari(cfg, "foreign-v0", task_field="options.goal")
    assert summary["runs"] == 3 and summary["steps"] == 3 * 60
    assert summary["dropped_steps"] == 5  # streams share the shortest task's length
    manifest = load_manifest(tmp_path / "imported")
    assert sorted((r["split"], r["task_index"]) for r in manifest["runs"]) == [
        ("test", 0),
        ("train", 0),
        ("train", 1),
    ]
    episodes = list(dataset.iterate_episodes())
    history = read_history(tmp_path / "imported" / "train-task0001-seed0.h5")
    assert history.metadata["algorithm"] == "minari:foreign-v0"
    assert history.num_streams == 1 and history.num_steps == 60
    for k in range(3):  # goal 1's episodes 3, 4, 5 in order
        np.testing.assert_array_equal(
            history.observations[0, 20 * k : 20 * (k + 1)], episodes[3 + k].observations[:-1]
        )
        np.testing.assert_array_equal(
            history.actions[0, 20 * k : 20 * (k + 1)], episodes[3 + k].actions
        )
    assert [len(r) for r in history.episode_returns()] == [3]


@pytest.mark.parametrize(
    "goals, field, words",
    [
        (
            [[0, 0]],
            "options.task",
            ["no metadata field 'options.task'", "options.goal", "--task-field"],
        ),
        ([[42, 42]], "options.goal", ["is no task of DarkRoom's split", "--task-field"]),
    ],
    ids=["missing-field", "unknown-task"],
)
def test_foreign_datasets_without_a_known_task_are_refused_and_nothing_is_left(
    tmp_path, goals, field, words
):
    cfg = collect_config(tmp_path / "imported")
    foreign_dataset("bad-v0", goals, episodes_per_goal=1)
    refused_in_one_line(lambda: import_minari(cfg, "bad-v0", task_field=field), *words)
    assert not list((tmp_path / "imported").glob("*"))


def test_the_commands_refuse_taken_ids_and_foreign_data_without_a_task_field(tmp_path, capsys):
    cfg = collected(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_dict(cfg)))
    assert collect_main(["--config", str(config), "--export-minari", "mine-v0"]) == 0
    assert "exported 3 runs" in capsys.readouterr().out
    assert collect_main(["--config", str(config), "--export-minari", "mine-v0"]) == 2
    assert "already exists" in capsys.readouterr().err
    foreign_dataset("other-v0", [[0, 0]], 1)
    fresh = tmp_path / "fresh.json"
    fresh.write_text(json.dumps({**_dict(cfg), "collect": {"output_dir": str(tmp_path / "in")}}))
    assert collect_main(["--config", str(fresh), "--import-minari", "other-v0"]) == 2
    assert "--task-field" in capsys.readouterr().err
