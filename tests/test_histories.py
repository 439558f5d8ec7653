"""The history file format: round trips, episode summaries, atomic writes, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest

from ad.data import histories
from ad.data.histories import (
    History,
    HistoryError,
    HistoryVersionError,
    episode_table,
    read_episodes,
    read_history,
    read_metadata,
    rewrite_history,
    validate_history,
    write_history,
)
from ad.data.history_reader import HistoryReader
from ad.data.manifest import load_manifest
from ad.data.temp_files import stale_temp_files, temp_path_for
from ad.errors import UserError
from ad.utils import atomic_write_json, current_umask
from tests.factories import (
    flip_a_data_byte,
    forge_root_schema_version,
    refused_in_one_line,
    set_schema_version,
)

S, T = 3, 50
# what every history's metadata holds besides run details (ad-collect writes more)
META = {
    "num_actions": 5,
    "observation_space": {"type": "Discrete", "n": 9},
    "action_space": {"type": "Discrete", "n": 5},
}


def _arrays(obs_shape=(2,), obs_dtype=np.int64, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    truncations = np.zeros((S, T), bool)
    truncations[:, 9::10] = True  # episodes of 10 steps
    terminations = np.zeros((S, T), bool)
    terminations[1, 4] = True  # stream 1 ends an episode early
    truncations[1, 4] = False
    return {
        "observations": rng.integers(0, 9, (S, T, *obs_shape)).astype(obs_dtype),
        "actions": rng.integers(0, 5, (S, T)),
        "rewards": rng.random((S, T)).astype(np.float32),
        "terminations": terminations,
        "truncations": truncations,
    }


@pytest.mark.parametrize(
    ("obs_shape", "obs_dtype", "compression", "oracle"),
    [
        ((2,), np.int64, "gzip", True),
        ((7, 7, 3), np.uint8, "lzf", False),
        ((), np.int64, None, False),
    ],
)
def test_round_trip_write_close_reopen(tmp_path, obs_shape, obs_dtype, compression, oracle):
    arrays = _arrays(obs_shape, obs_dtype)
    if oracle:  # the family oracle's actions, which DPT learns
        arrays["optimal_actions"] = np.random.default_rng(1).integers(0, 5, (S, T))
    path = tmp_path / "train-task0000-seed0.h5"
    write_history(
        path,
        {
            "task": {"goal": [1, 2]},
            **META,
        },
        **arrays,
        chunk_steps=16,
        compression=compression,
    )
    assert not stale_temp_files(path)  # the temporary file was renamed into place

    history = read_history(path)
    assert isinstance(history, History)
    for name, array in arrays.items():
        loaded = getattr(history, name)
        np.testing.assert_array_equal(loaded, array)
        assert loaded.dtype == array.dtype
    meta = history.metadata
    assert (meta["schema_version"], meta["n_envs"], meta["num_steps"]) == (2, S, T)
    assert meta["total_steps"] == S * T and meta["task"] == {"goal": [1, 2]}
    assert meta["optimal_actions"] is oracle and (history.optimal_actions is None) is not oracle
    assert read_metadata(path) == meta

    with HistoryReader(path) as reader:
        assert (reader.num_streams, reader.num_steps) == (S, T)
        window = reader.read(stream=2, start=7, stop=31)
        for name, array in arrays.items():
            np.testing.assert_array_equal(window[name], array[2, 7:31])
        assert reader.read(0, 5, 5)["actions"].shape == (0,)
        with pytest.raises(IndexError):
            reader.read(S, 0, 1)
        np.testing.assert_array_equal(
            reader.episodes()["episode_ends"], read_episodes(path)["episode_ends"]
        )
    assert validate_history(path) == meta


def test_reader_reads_whole_chunks_once_and_bounds_its_cache(tmp_path):
    arrays = _arrays()
    path = tmp_path / "h.h5"
    write_history(path, META, **arrays, chunk_steps=16)
    with HistoryReader(path, cache_chunks=2) as reader:
        assert reader.chunk_steps == 16
        for start, stop, reads in [(0, 10, 1), (3, 16, 1), (10, 20, 2), (17, 31, 2), (40, 50, 4)]:
            window = reader.read(1, start, stop)
            np.testing.assert_array_equal(window["actions"], arrays["actions"][1, start:stop])
            assert reader.chunk_reads == reads, (start, stop)  # cached chunks are not reread
        assert len(reader._cache) == 2  # chunks 0 and 1 were evicted
        reader.read(1, 0, 1)
        assert reader.chunk_reads == 5
        window["actions"][:] = -1  # a read is a copy: the cache is unharmed
        np.testing.assert_array_equal(reader.read(1, 40, 50)["actions"], arrays["actions"][1, 40:])


def test_episode_summaries_by_hand():
    rewards = np.array([[1, 0, 2, 5, 1], [0, 1, 1, 1, 3]], np.float32)
    terminations = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    truncations = np.array([[0, 0, 0, 1, 0], [0, 0, 1, 0, 1]], bool)
    table = episode_table(rewards, terminations, truncations)
    np.testing.assert_array_equal(table["episode_streams"], [0, 0, 1, 1])
    np.testing.assert_array_equal(table["episode_ends"], [1, 3, 2, 4])
    np.testing.assert_array_equal(table["episode_lengths"], [2, 2, 3, 2])
    np.testing.assert_array_equal(table["episode_returns"], [1, 7, 2, 4])  # stream 0's last
    # step starts an unfinished episode, which is left out.
    history = History(
        None, {}, rewards[..., None], rewards.astype(np.int64), rewards, terminations, truncations
    )
    returns = history.episode_returns()
    assert [r.tolist() for r in returns] == [[1, 7], [2, 4]]
    assert [r.tolist() for r in history.episode_lengths()] == [[2, 2], [3, 2]]


def test_stored_episodes_match_the_step_data(tmp_path):
    arrays = _arrays()
    path = tmp_path / "h.h5"
    write_history(path, META, **arrays)
    stored = read_episodes(path)
    derived = episode_table(arrays["rewards"], arrays["terminations"], arrays["truncations"])
    for name, array in derived.items():
        np.testing.assert_allclose(stored[name], array)
    assert len(stored["episode_returns"]) == 3 * 5 + 1  # 5 per stream, +1 early termination


def _short_rewards() -> dict[str, np.ndarray]:
    arrays = _arrays()
    arrays["rewards"] = arrays["rewards"][:, :-1]
    return arrays


@pytest.mark.parametrize(
    ("write", "error", "match"),
    [
        pytest.param(  # h5py rejects the filter after the temp file exists
            lambda path: write_history(path, {}, **_arrays(), compression="no-such-filter"),
            ValueError,
            None,
            id="unknown-filter",
        ),
        pytest.param(
            lambda path: write_history(path, {}, **_short_rewards()),
            ValueError,
            "rewards",
            id="short-rewards",
        ),
        pytest.param(
            lambda path: write_history(path, {"x": object()}, **_arrays()),
            TypeError,  # metadata must be JSON
            None,
            id="metadata-not-json",
        ),
    ],
)
def test_failed_write_leaves_neither_file_nor_temp(tmp_path, write, error, match):
    with pytest.raises(error, match=match):
        write(tmp_path / "h.h5")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- damaged files
# The builders below each write one damaged (or foreign) history under tmp_path and return its
# path; every reader given must refuse it in one line.

READERS = (read_metadata, read_history, validate_history, HistoryReader)


def _written(tmp_path, compression="gzip"):
    path = tmp_path / "h.h5"
    write_history(path, META, **_arrays(), compression=compression)
    return path


def _truncated(tmp_path):
    path = _written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _without_action_space(tmp_path):
    """Histories of this version always record their action space; no fallback on num_actions."""
    path = tmp_path / "h.h5"
    write_history(path, {k: v for k, v in META.items() if k != "action_space"}, **_arrays())
    return path


def _not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not an hdf5 file" * 100)
    return path


def _flipped_data_byte(tmp_path):
    path = tmp_path / "h.h5"
    write_history(path, META, **_arrays(), chunk_steps=T, compression=None)
    # stream 1's chunk is stored verbatim; the structure stays intact: only the data can tell
    flip_a_data_byte(path, stream=1, dataset="rewards")
    return path


def _with_oracle(damage):
    """A history with the oracle's actions, whose ``optimal_actions`` are then damaged."""

    def build(tmp_path):
        path = tmp_path / "h.h5"
        arrays = {**_arrays(), "optimal_actions": _arrays(seed=1)["actions"]}
        write_history(path, META, **arrays, chunk_steps=T, compression=None)
        damage(path)
        return path

    return build


def _written_as_version(version: int):
    def build(tmp_path):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(histories, "SCHEMA_VERSION", version)
            return _written(tmp_path)

    return build


def _rewritten_as_version_7(tmp_path):
    path = _written(tmp_path)
    set_schema_version(path, 7)
    assert not stale_temp_files(path) and sorted(p.name for p in tmp_path.iterdir()) == ["h.h5"]
    return path


def _root_attribute(version: int | None):
    """Issue 12: the root attribute docs/data-formats.md documents is checked too, not only the
    JSON copy."""

    def build(tmp_path):
        path = _written(tmp_path)
        forge_root_schema_version(path, version)
        return path

    return build


def _episode_returns_one_too_many(tmp_path):
    path = _written(tmp_path)
    returns = read_episodes(path)["episode_returns"]
    rewrite_history(path, datasets={"episode_returns": np.append(returns, 0.0)})
    read_metadata(path)  # structurally fine; allclose used to raise a bare ValueError
    return path


def _one_episode_return_for_all(tmp_path):
    """All returns equal: a single stored value would broadcast and pass allclose."""
    path = tmp_path / "h.h5"
    arrays = _arrays()
    arrays["rewards"][:] = 0.0
    write_history(path, META, **arrays)
    validate_history(path)
    rewrite_history(path, datasets={"episode_returns": np.zeros(1)})
    return path


@pytest.mark.parametrize(
    ("damage", "readers", "error", "words"),
    [
        pytest.param(_truncated, READERS, HistoryError, ["delete it and re-run ad-collect"],
                     id="truncated"),
        pytest.param(_without_action_space, [read_metadata], HistoryError,
                     ["{path}", "lacks action_space", "ad-collect"], id="no-action-space"),
        pytest.param(_not_hdf5, [read_metadata], HistoryError, ["cannot open it as HDF5"],
                     id="not-hdf5"),
        pytest.param(lambda tmp_path: tmp_path / "missing.h5", [read_history], HistoryError,
                     ["not found"], id="missing"),
        pytest.param(_flipped_data_byte, [read_history, validate_history], HistoryError,
                     ["reading its data failed"], id="flipped-data-byte"),
        pytest.param(_with_oracle(lambda p: flip_a_data_byte(p, 1, "optimal_actions")),
                     [read_history, validate_history], HistoryError, ["reading its data failed"],
                     id="flipped-oracle-byte"),
        pytest.param(_with_oracle(lambda p: rewrite_history(
                        p, datasets={"optimal_actions": np.zeros((S, T), np.float32)})),
                     READERS, HistoryError, ["optimal_actions are not shaped and typed as actions"],
                     id="oracle-of-another-type"),
        pytest.param(_with_oracle(lambda p: rewrite_history(
                        p, datasets={"optimal_actions": np.zeros((S, T - 1), np.int64)})),
                     READERS, HistoryError, ["dataset optimal_actions is missing or not shaped"],
                     id="oracle-of-another-shape"),
        pytest.param(_written_as_version(1), [read_metadata, read_history], HistoryVersionError,
                     ["schema version 1", "re-collect"], id="version-1"),  # train / heldout
        pytest.param(_written_as_version(3), [read_metadata, read_history], HistoryVersionError,
                     ["schema version 3", "re-collect"], id="version-3"),  # a future version
        pytest.param(_rewritten_as_version_7, READERS, HistoryVersionError,
                     ["schema version 7"], id="rewritten-version-7"),
        pytest.param(_root_attribute(99), READERS, HistoryVersionError,
                     ["{path}", "schema version 99 in its root attribute"], id="root-attribute-99"),
        pytest.param(_root_attribute(None), [read_metadata], HistoryVersionError, [],
                     id="root-attribute-missing"),
        pytest.param(_episode_returns_one_too_many, [validate_history], HistoryError,
                     ["episode_returns is shaped (17,)"], id="episode-returns-one-too-many"),
        pytest.param(_one_episode_return_for_all, [validate_history], HistoryError,
                     ["shaped (1,) but the step data give (16,)"], id="one-episode-return"),
    ],
)  # fmt: skip
def test_a_damaged_history_is_a_one_line_error(tmp_path, damage, readers, error, words):
    path = damage(tmp_path)
    words = [word.format(path=path) for word in words]  # "{path}": the message names the file
    for reader in readers:
        refused_in_one_line(lambda r=reader: r(path), *words, error=error)


def test_only_temp_files_of_dead_writers_on_this_host_are_stale(tmp_path, caplog):
    path = tmp_path / "h.h5"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(finished.stdout)
    host = socket.gethostname()
    mine_dead = tmp_path / f".h.h5.{host}-{dead}.tmp"
    mine_live = temp_path_for(path)  # this process: alive
    other_host = tmp_path / f".h.h5.otherhost-{dead}.tmp"
    unknown = tmp_path / ".h.h5.nopid.tmp"
    for tmp in (mine_dead, mine_live, other_host, unknown):
        tmp.write_bytes(b"part of a file")
    with caplog.at_level(logging.WARNING, logger="ad.data.temp_files"):
        assert stale_temp_files(path) == [mine_dead]
    warned = " ".join(record.getMessage() for record in caplog.records)
    for left in (mine_live, other_host, unknown):
        assert left.name in warned
    assert mine_live.name.startswith(f".h.h5.{host}-{os.getpid()}")


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        pytest.param(None, "no manifest.json", id="missing"),
        pytest.param("{not json", "unreadable", id="not-json"),
        pytest.param({"schema_version": 99, "runs": []}, "schema version 99", id="version-99"),
        # Version 1: a dataset of the two-way (train / heldout) split; never read with another.
        pytest.param(
            {"schema_version": 1, "runs": []},
            "train / validation / test split.*re-collect",
            id="version-1",
        ),
    ],
)
def test_load_manifest_refuses_in_one_line(tmp_path, manifest, match):
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(UserError, match=match) as excinfo:
        load_manifest(tmp_path)
    assert "\n" not in str(excinfo.value)


def test_load_manifest_reads_version_2(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "runs": []}))
    assert load_manifest(tmp_path)["runs"] == []


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_are_readable_by_others_as_the_umask_allows(tmp_path, umask):
    """Atomic writes must not keep mkstemp's owner-only 0o600 (shared datasets, run folders)."""
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_json(tmp_path / "manifest.json", {"a": 1})
        history = _written(tmp_path)
    finally:
        os.umask(previous)
    for path in (tmp_path / "manifest.json", history):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"a": 1}
