"""Training windows: alignment across episodes and subsampling, ED, splits, streaming, bad input.

Test datasets are real HDF5 histories (``ad.data.histories.write_history``) of the real DarkRoom env
stepped by a scripted epsilon-greedy policy, with a manifest built by ``ad.data.manifest.merge_manifest``.
The scripted policy marks an episode terminated on some goal visits, so episodes have different
lengths and boundaries fall anywhere in a window. ``make_dataset`` and ``tiny_config`` live in
``tests/factories.py``: test_train.py and test_checkpoint.py use them too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ad.config import ExperimentConfig
from ad.data import histories
from ad.data.histories import read_history
from ad.learn.batches import iterate_batches, window_indices
from ad.learn.kept_streams import KeepPolicy, first_window_of_each, kept_segments, plan_stream
from ad.learn.windows import WINDOW_KEYS
from envs import make_family
from tests.factories import (
    CENTRE,
    make_dataset,
    refused_in_one_line,
    tiny_config,
    windows_of,
    write_run,
)

# --------------------------------------------------------------------------- helpers


def reference_windows(
    dataset_dir: Path, mode: str, k: int, ed_last: int, context: int, offsets: range = range(1)
) -> dict[str, np.ndarray]:
    """All windows, computed independently from whole histories with plain Python loops."""
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    out = {key: [] for key in WINDOW_KEYS}
    for run in manifest["runs"]:
        if run["split"] != "train":
            continue
        h = read_history(dataset_dir / run["file"])
        for s in range(h.num_streams):
            dones = h.terminations[s] | h.truncations[s]
            episodes, current = [], []
            for t in range(h.num_steps):
                current.append(t)
                if dones[t]:
                    episodes.append(current)
                    current = []
            for offset in offsets:
                if mode == "ed":
                    kept = episodes[-ed_last:]
                else:
                    kept = (episodes + ([current] if current else []))[offset::k]
                idx = [t for episode in kept for t in episode]
                targets = h.optimal_actions if mode == "dpt" else h.actions
                rows = {
                    "observations": [h.observations[s, t] for t in idx],
                    "targets": [targets[s, t] for t in idx],
                    "prev_actions": [5] + [h.actions[s, t] for t in idx[:-1]],
                    "prev_rewards": [0.0] + [h.rewards[s, t] for t in idx[:-1]],
                    "prev_dones": [True] + [dones[t] for t in idx[:-1]],
                }
                for start in range(len(idx) - context + 1):
                    for key in WINDOW_KEYS:
                        out[key].append(np.array(rows[key][start : start + context]))
    return {key: np.stack(value) for key, value in out.items()}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "histories", validation_tasks=(0,))


# --------------------------------------------------------------------------- pure functions


def test_kept_segments_subsample_ed_and_unfinished_episode():
    dones = np.zeros(20, dtype=bool)
    dones[[2, 7, 9, 15]] = True  # episodes [0,3) [3,8) [8,10) [10,16) and unfinished [16,20)
    assert kept_segments(dones, "ad", 1, 0) == [(0, 20)]
    assert kept_segments(dones, "ad", 2, 0) == [(0, 3), (8, 10), (16, 20)]
    assert kept_segments(dones, "ad", 3, 0) == [(0, 3), (10, 16)]
    assert kept_segments(dones, "ad", 3, 0, offset=1) == [(3, 8), (16, 20)]
    assert kept_segments(dones, "ad", 3, 0, offset=2) == [(8, 10)]
    assert kept_segments(dones, "ed", 1, 2) == [(8, 16)]  # complete episodes only
    assert kept_segments(dones, "ed", 1, 99) == [(0, 16)]
    assert kept_segments(np.zeros(5, dtype=bool), "ed", 1, 3) == []


def test_plan_stream_numbers_kept_steps_across_segments_and_leaves_out_empty_streams():
    dones = np.zeros(20, dtype=bool)
    dones[[2, 7, 9, 15]] = True  # episodes [0,3) [3,8) [8,10) [10,16) and unfinished [16,20)
    kept = plan_stream(KeepPolicy("ad", 3, (0, 1, 2), 0), 7, 1, 20, dones)
    assert [k.num_kept_steps for k in kept] == [9, 9, 2]  # one kept stream per subsample offset
    first = kept[0]  # segments [0,3) and [10,16)
    assert (first.history, first.stream) == (7, 1)
    assert list(first.segment_starts) == [0, 10] and list(first.segment_kept_starts) == [0, 3]
    assert list(first.original_steps(np.arange(9))) == [0, 1, 2, 10, 11, 12, 13, 14, 15]
    whole = plan_stream(KeepPolicy("ad", 1, (0,), 0), 0, 0, 20, None)  # no boundaries needed
    assert len(whole) == 1 and whole[0].num_kept_steps == 20
    assert plan_stream(KeepPolicy("ed", 1, (0,), 3), 0, 0, 5, np.zeros(5, dtype=bool)) == []
    assert list(first_window_of_each(kept[:2], 4)) == [0, 6, 12]


def test_window_indices_are_a_function_of_seed_and_step_and_ranks_split_the_batch():
    (full,) = window_indices(7, 3, [1000], [8])
    # one family: the batch of np.random.default_rng([seed, step]) (what every run drew before)
    assert np.array_equal(full, np.random.default_rng([7, 3]).integers(0, 1000, size=8))
    assert not np.array_equal(full, window_indices(7, 4, [1000], [8])[0])
    halves = [window_indices(7, 3, [1000], [8], rank=r, world_size=2)[0] for r in range(2)]
    assert np.array_equal(np.concatenate(halves), full)


def test_families_rows_are_laid_end_to_end_and_ranks_take_contiguous_slices():
    sizes, rows = [1000, 50, 7], [5, 2, 1]
    whole = window_indices(7, 3, sizes, rows)
    assert [len(w) for w in whole] == rows
    assert all(w.max() < n for w, n in zip(whole, sizes, strict=True))
    parts = [window_indices(7, 3, sizes, rows, rank=r, world_size=4) for r in range(4)]
    assert [[len(p) for p in part] for part in parts] == [
        [2, 0, 0],
        [2, 0, 0],
        [1, 1, 0],
        [0, 1, 1],
    ]
    for f in range(3):
        assert np.array_equal(np.concatenate([part[f] for part in parts]), whole[f])


# --------------------------------------------------------------------------- windows


def test_num_tasks_trains_on_the_first_training_tasks_only(dataset_dir):
    """The tasks ablation trains on prefixes of the split's training tasks of one dataset."""
    ds = windows_of(tiny_config(dataset_dir, None, "train.data.num_tasks=2"))
    assert [run["task"] for run in ds.runs] == list(ds.split.train[:2])
    assert len({s.history for s in ds.streams}) == 2
    too_many = len(ds.split.train) + 1
    refused_in_one_line(
        lambda: windows_of(tiny_config(dataset_dir, None, f"train.data.num_tasks={too_many}")),
        f"num_tasks is {too_many}",
        "env.num_train_tasks",
    )


@pytest.mark.parametrize(
    ("mode", "k", "offsets"),
    [("ad", 1, "first"), ("ad", 3, "first"), ("ad", 3, "all"), ("ed", 1, "all"), ("dpt", 3, "all")],
    ids=["ad", "ad-subsample3", "ad-subsample3-all-offsets", "ed", "dpt-subsample3-all-offsets"],
)
def test_windows_match_independent_reference(dataset_dir, mode, k, offsets):
    cfg = tiny_config(dataset_dir, None, f"train.mode={mode}", f"train.data.subsample_every={k}",
                      "train.ed.last_episodes=4", f"train.data.subsample_offsets={offsets}")  # fmt: skip
    ds = windows_of(cfg)
    every = range(k) if offsets == "all" and mode != "ed" else range(1)
    expected = reference_windows(dataset_dir, mode, k, 4, 40, every)
    got = ds.get_batch(np.arange(ds.num_windows))
    assert ds.num_windows == len(expected["targets"]) > 0
    for key in WINDOW_KEYS:
        assert np.array_equal(got[key], expected[key]), key
    # The previous kept step is the previous position, across episodes and subsampling gaps.
    shifted = np.array_equal(got["prev_actions"][:, 1:], got["targets"][:, :-1])
    assert shifted == (mode != "dpt")  # DPT: the oracle's actions are targets, not inputs
    # Every token that starts an episode shows DarkRoom's reset observation, the centre.
    starts = got["observations"][got["prev_dones"]]
    assert len(starts) > 0 and (starts == CENTRE).all()
    assert got["prev_dones"].dtype == bool and got["prev_actions"].dtype == np.int64


def test_subsampling_crosses_episode_gaps(dataset_dir):
    ds = windows_of(tiny_config(dataset_dir, None, "train.data.subsample_every=3"))
    stream = ds.streams[0]
    assert len(stream.segment_starts) > 1  # several separate kept segments
    gap = stream.segment_kept_starts[1]  # first kept index of the second segment
    window = ds[gap - 1]  # a window starting at the last step of the first segment
    assert window["prev_dones"][1] and tuple(window["observations"][1]) == CENTRE
    assert stream.original_steps(np.array([gap]))[0] > stream.segment_starts[0] + gap  # skipped


def test_ed_uses_only_the_last_episodes(dataset_dir):
    ds = windows_of(tiny_config(dataset_dir, None, "train.mode=ed", "train.ed.last_episodes=3"))
    for stream in ds.streams:
        h = read_history(ds.files[stream.history])
        dones = h.terminations[stream.stream] | h.truncations[stream.stream]
        ends = np.flatnonzero(dones)
        assert len(stream.segment_starts) == 1
        assert stream.segment_starts[0] == ends[-4] + 1
        assert stream.num_kept_steps == ends[-1] - ends[-4]


def test_ed_context_steps_sets_the_ed_models_context_and_only_its(dataset_dir):
    # one last episode (20 steps) is shorter than the 40-step context: ED needs its own (without
    # it, refused: test_bad_settings_for_a_good_dataset_are_refused)
    ed = ["train.mode=ed", "train.ed.last_episodes=1"]
    ds = windows_of(tiny_config(dataset_dir, None, *ed, "train.ed.context_steps=20"))
    assert ds.window_steps == 20 and ds[0]["observations"].shape[0] == 20
    ad = windows_of(tiny_config(dataset_dir, None, "train.ed.context_steps=20"))
    assert ad.window_steps == 40  # AD keeps model.context_steps


def test_test_and_validation_runs_never_appear(dataset_dir):
    ds = windows_of(tiny_config(dataset_dir))
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert {run["split"] for run in manifest["runs"]} == {"train", "validation", "test"}
    assert {ds.files[s.history].name for s in ds.streams} == {
        run["file"] for run in manifest["runs"] if run["split"] == "train"
    }
    evaluation = {json.dumps(t) for t in ds.split.test + ds.split.validation}
    assert all(json.dumps(run["task"]) not in evaluation for run in ds.runs)


@pytest.mark.parametrize(
    ("mode", "k", "offsets"),
    [
        ("ad", 1, "first"),
        ("ad", 3, "first"),
        ("ad", 3, "all"),
        ("ed", 1, "first"),
        ("dpt", 3, "all"),
    ],
)
def test_streamed_equals_in_memory(dataset_dir, mode, k, offsets):
    common = [f"train.mode={mode}", f"train.data.subsample_every={k}", "train.ed.last_episodes=4",
              f"train.data.subsample_offsets={offsets}"]  # fmt: skip
    memory = windows_of(tiny_config(dataset_dir, None, 'train.data.in_memory="yes"', *common))
    streamed = windows_of(tiny_config(dataset_dir, None, 'train.data.in_memory="no"', *common))
    assert memory.in_memory and not streamed.in_memory
    assert streamed.num_windows == memory.num_windows
    indices = np.arange(memory.num_windows)
    a, b = memory.get_batch(indices), streamed.get_batch(indices)
    for key in WINDOW_KEYS:
        assert np.array_equal(a[key], b[key]) and a[key].dtype == b[key].dtype, key
    streamed.close()


def test_streamed_dataloader_workers_give_the_same_batches(dataset_dir):
    memory = windows_of(tiny_config(dataset_dir, None, 'train.data.in_memory="yes"'))
    streamed = windows_of(tiny_config(dataset_dir, None, 'train.data.in_memory="no"'))
    args = dict(rows=[4], seed=3, start_step=5, num_steps=9)
    expected = list(iterate_batches([memory], **args))
    got = list(iterate_batches([streamed], **args, num_workers=2))
    assert len(got) == len(expected) == 4
    for (x,), (y,) in zip(got, expected, strict=True):
        for key in WINDOW_KEYS:
            assert np.array_equal(x[key], y[key]), key


def test_in_memory_auto_follows_the_memory_budget(dataset_dir):
    assert windows_of(tiny_config(dataset_dir)).in_memory
    assert not windows_of(
        tiny_config(dataset_dir, None, "train.data.max_memory_gb=0.000001")
    ).in_memory


# --------------------------------------------------------------------------- refusals


def _one_line_error(cfg: ExperimentConfig, *words: str) -> str:
    return refused_in_one_line(lambda: windows_of(cfg), *words)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        pytest.param(  # one last episode (20 steps) is shorter than the 40-step context
            ["train.mode=ed", "train.ed.last_episodes=1"],
            ["has 40 kept steps"],
            id="ed-episodes-shorter-than-context",
        ),
        pytest.param(
            ["model.context_steps=19"],
            ["shorter than one episode", "20"],
            id="context-shorter-than-an-episode",
        ),
        pytest.param(
            ["train.data.window_steps=30"],
            ["train.data.window_steps=30 is shorter than model.context_steps=40"],
            id="windows-shorter-than-the-band",
        ),
    ],
)
def test_bad_settings_for_a_good_dataset_are_refused(dataset_dir, overrides, words):
    _one_line_error(tiny_config(dataset_dir, None, *overrides), *words)


# Bad datasets: each builder makes one under tmp_path and returns its folder.


def _manifest_of_another_version(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "d", train_tasks=(0,), test_tasks=())
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    return data


def _history_of_a_future_version(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "d", train_tasks=(0,), test_tasks=())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(histories, "SCHEMA_VERSION", 3)
        write_run(data, 0, "train", 0)
    return data


def _runs_of_split_seed_1(where: str):
    """Collected with split seed 1: its train tasks that are ``where`` tasks of seed 0."""

    def build(tmp_path: Path) -> Path:
        family = make_family("DarkRoom")
        seed0, seed1 = family.split(0), family.split(1)
        task = next(i for i, t in enumerate(seed1.train) if seed0.split_of(t) == where)
        return make_dataset(tmp_path / "d", split_seed=1, train_tasks=(task,), test_tasks=())

    return build


@pytest.mark.parametrize(
    ("build", "words"),
    [
        pytest.param(
            lambda tmp_path: tmp_path / "nowhere", ["not found", "ad-collect"], id="missing"
        ),
        pytest.param(_manifest_of_another_version, ["schema version", "99"], id="manifest-version"),
        pytest.param(
            _history_of_a_future_version, ["schema version", "re-collect"], id="history-version"
        ),
        pytest.param(
            _runs_of_split_seed_1("test"),
            ["is a test task", "same env section"],
            id="a-test-task-in-training-runs",
        ),
        pytest.param(
            _runs_of_split_seed_1("validation"),
            ["is a validation task", "same env section"],
            id="a-validation-task-in-training-runs",
        ),
        pytest.param(
            _runs_of_split_seed_1("train"),
            ["another task split", "seed", "same env section"],
            id="another-split",
        ),
    ],
)
def test_a_bad_dataset_is_refused(tmp_path, build, words):
    _one_line_error(tiny_config(build(tmp_path)), *words)


@pytest.mark.parametrize("in_memory", ["yes", "no"])
def test_windows_longer_than_the_band_keep_the_loss_where_the_band_is_full(dataset_dir, in_memory):
    """train.data.window_steps = 60 over a band of 40: the same steps as the band's windows, with the
    first 39 targets cut, except in each stream's first window, where nothing precedes them."""
    memory = f'train.data.in_memory="{in_memory}"'
    band = windows_of(tiny_config(dataset_dir, None, memory))
    long = windows_of(tiny_config(dataset_dir, None, memory, "train.data.window_steps=60"))
    assert long.window_steps == 60 and long.loss_from == 39 and band.loss_from == 0
    assert long.num_windows == sum(s.num_kept_steps - 59 for s in long.streams) > 0
    key_of = lambda s: (s.history, s.stream, int(s.segment_starts[0]))  # noqa: E731
    band_stream = {key_of(s): j for j, s in enumerate(band.streams)}
    for index in range(long.num_windows):
        kept, start = long.locate(index)
        window = long.get_batch(np.array([index]))
        j = band_stream[key_of(kept)]  # the band's window over this window's first 40 steps
        same = band.get_batch(np.array([band.first_window[j] + start]))
        for key in WINDOW_KEYS[:-1]:
            assert np.array_equal(window[key][:, :40], same[key]), key
        targets = window["targets"][0]
        if start == 0:
            assert np.array_equal(targets[:40], same["targets"][0])
        else:
            assert (targets[:39] == -1).all() and targets[39] == same["targets"][0, 39]
        assert (targets[39:] >= 0).all()
    band.close(), long.close()


@pytest.mark.parametrize("mode", ["ad", "ed"])
def test_streamed_refuses_an_episode_table_that_disagrees_with_the_steps(tmp_path, mode):
    # No checksum covers the episode table; streamed training plans the kept episodes from it.
    data = make_dataset(tmp_path / "d", train_tasks=(0, 1), test_tasks=())
    path = data / "train-task0001-seed0.h5"
    episodes = histories.read_episodes(path)
    ends = episodes["episode_ends"].copy()
    ends[len(ends) // 2] -= 3  # one episode boundary moved: same shapes, wrong boundaries
    histories.rewrite_history(path, datasets={"episode_ends": ends})
    common = [f"train.mode={mode}", "train.data.subsample_every=3", "train.ed.last_episodes=4"]
    message = _one_line_error(
        tiny_config(data, None, 'train.data.in_memory="no"', *common), path.name, "episode_ends"
    )
    assert "ad-collect" in message
    # In memory, boundaries come from the step data themselves, so the same folder trains.
    assert windows_of(tiny_config(data, None, 'train.data.in_memory="yes"', *common)).num_windows


def test_dpt_on_histories_without_the_oracles_actions_is_refused(tmp_path):
    data = make_dataset(tmp_path / "d", train_tasks=(0, 1), test_tasks=(), oracle=False)
    _one_line_error(
        tiny_config(data, None, "train.mode=dpt"),
        "train.mode dpt learns the oracle's actions, but 2 of the 2 training histories",
        "re-collect",
    )
    assert windows_of(tiny_config(data)).targets == "actions"  # AD trains on them as before
