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

S, T = 3, 50


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
    ("obs_shape", "obs_dtype", "compression"),
    [((2,), np.int64, "gzip"), ((7, 7, 3), np.uint8, "lzf"), ((), np.int64, None)],
)
def test_round_trip_write_close_reopen(tmp_path, obs_shape, obs_dtype, compression):
    arrays = _arrays(obs_shape, obs_dtype)
    path = tmp_path / "train-task0000-seed0.h5"
    write_history(
        path,
        {
            "task": {"goal": [1, 2]},
            "num_actions": 5,
            "observation_space": {"type": "Discrete", "n": 9},
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
    meta = {"num_actions": 5, "observation_space": {"type": "Discrete", "n": 9}}
    write_history(path, meta, **arrays, chunk_steps=16)
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
    write_history(path, {"num_actions": 5, "observation_space": {}}, **arrays)
    stored = read_episodes(path)
    derived = episode_table(arrays["rewards"], arrays["terminations"], arrays["truncations"])
    for name, array in derived.items():
        np.testing.assert_allclose(stored[name], array)
    assert len(stored["episode_returns"]) == 3 * 5 + 1  # 5 per stream, +1 early termination


def test_failed_write_leaves_neither_file_nor_temp(tmp_path):
    path = tmp_path / "h.h5"
    with pytest.raises(ValueError):  # h5py rejects the filter after the temp file exists
        write_history(path, {}, **_arrays(), compression="no-such-filter")
    assert not path.exists() and not list(tmp_path.iterdir())
    bad = _arrays()
    bad["rewards"] = bad["rewards"][:, :-1]
    with pytest.raises(ValueError, match="rewards"):
        write_history(path, {}, **bad)
    with pytest.raises(TypeError):  # metadata must be JSON
        write_history(path, {"x": object()}, **_arrays())
    assert not list(tmp_path.iterdir())


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def _written(tmp_path, compression="gzip"):
    path = tmp_path / "h.h5"
    write_history(
        path, {"num_actions": 5, "observation_space": {}}, **_arrays(), compression=compression
    )
    return path


def test_truncated_file_is_a_one_line_error(tmp_path):
    path = _written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for reader in (read_metadata, read_history, validate_history, HistoryReader):
        with pytest.raises(HistoryError) as excinfo:
            reader(path)
        assert "delete it and re-run ad-collect" in _one_line_error(excinfo)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(HistoryError) as excinfo:
        read_metadata(path)
    assert "cannot open it as HDF5" in _one_line_error(excinfo)
    with pytest.raises(HistoryError, match="not found"):
        read_history(tmp_path / "missing.h5")


def test_flipped_data_byte_fails_its_checksum(tmp_path):
    arrays = _arrays()
    path = tmp_path / "h.h5"
    write_history(
        path, {"num_actions": 5, "observation_space": {}}, **arrays, chunk_steps=T, compression=None
    )
    raw = bytearray(path.read_bytes())
    chunk = arrays["rewards"][1].tobytes()  # stream 1's chunk is stored verbatim
    offset = raw.find(chunk)
    assert offset > 0
    raw[offset + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    read_metadata(path)  # the structure is intact: only reading the data can tell
    with pytest.raises(HistoryError) as excinfo:
        read_history(path)
    assert "reading its data failed" in _one_line_error(excinfo)
    with pytest.raises(HistoryError):
        validate_history(path)


@pytest.mark.parametrize("version", [1, 3])  # 1: train / heldout splits; 3: a future version
def test_other_schema_version_is_refused(tmp_path, monkeypatch, version):
    monkeypatch.setattr(histories, "SCHEMA_VERSION", version)
    path = _written(tmp_path)
    monkeypatch.undo()
    for reader in (read_metadata, read_history):
        with pytest.raises(HistoryVersionError) as excinfo:
            reader(path)
        message = _one_line_error(excinfo)
        assert f"schema version {version}" in message and "re-collect" in message


def test_rewritten_schema_version_is_refused(tmp_path):
    path = _written(tmp_path)
    rewrite_history(path, metadata={**read_metadata(path), "schema_version": 7})
    assert not stale_temp_files(path) and sorted(p.name for p in tmp_path.iterdir()) == ["h.h5"]
    for reader in (read_metadata, read_history, validate_history, HistoryReader):
        with pytest.raises(HistoryVersionError) as excinfo:
            reader(path)
        assert "schema version 7" in _one_line_error(excinfo)


def test_episode_arrays_of_the_wrong_shape_are_one_line_errors(tmp_path):
    path = _written(tmp_path)
    returns = read_episodes(path)["episode_returns"]
    rewrite_history(path, datasets={"episode_returns": np.append(returns, 0.0)})
    read_metadata(path)  # structurally fine
    with pytest.raises(HistoryError) as excinfo:  # allclose used to raise a bare ValueError
        validate_history(path)
    assert "episode_returns is shaped (17,)" in _one_line_error(excinfo)

    # All returns equal: a single stored value would broadcast and pass allclose.
    arrays = _arrays()
    arrays["rewards"][:] = 0.0
    write_history(path, {"num_actions": 5, "observation_space": {}}, **arrays)
    validate_history(path)
    rewrite_history(path, datasets={"episode_returns": np.zeros(1)})
    with pytest.raises(HistoryError) as excinfo:
        validate_history(path)
    assert "shaped (1,) but the step data give (16,)" in _one_line_error(excinfo)


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


def test_load_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="no manifest.json") as excinfo:
        load_manifest(tmp_path)
    _one_line_error(excinfo)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99, "runs": []}))
    with pytest.raises(UserError, match="schema version 99"):
        load_manifest(tmp_path)
    # Version 1: a dataset of the two-way (train / heldout) split; never read with another split.
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "runs": []}))
    with pytest.raises(UserError, match="train / validation / test split.*re-collect") as excinfo:
        load_manifest(tmp_path)
    _one_line_error(excinfo)
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


def test_root_schema_version_attribute_is_checked(tmp_path):
    """Issue 12: the root attribute README documents is checked too, not only the JSON copy."""
    import h5py  # only to forge the attribute; ad.data.histories never writes such a file

    path = _written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    for reader in (read_metadata, read_history, validate_history, HistoryReader):
        with pytest.raises(HistoryVersionError) as excinfo:
            reader(path)
        message = _one_line_error(excinfo)
        assert str(path) in message and "schema version 99 in its root attribute" in message
    with h5py.File(path, "r+") as f:
        del f.attrs["schema_version"]
    with pytest.raises(HistoryVersionError):
        read_metadata(path)
