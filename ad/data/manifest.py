"""The dataset folder: its run files, the config they share and the ``manifest.json`` of them.

A dataset folder holds one learning history per (split, task, seed) run, named by
:func:`run_file_name`, and ``manifest.json``, which lists the valid histories with their checksums
and first/last returns. Every history of one folder was collected with the same config: the
metadata keys in :data:`FINGERPRINT_KEYS` agree. The manifest is always rebuilt from the files
present, so shards written by several machines into one folder merge without copying.

The rest of ``ad`` reads and writes a folder only through :func:`load_manifest` (training's
loader, evaluation's source curves), :func:`resume` (collect: what is done), :func:`write_manifest`
and :func:`merge_manifest` (collect, ``--merge``: rebuild under the folder's lock) and
:func:`scan_histories` (``--inspect``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ad.data.histories import (
    SCHEMA_VERSION,
    HistoryError,
    HistoryVersionError,
    read_episodes,
    read_metadata,
    stream_returns,
    validate_history,
)
from ad.data.temp_files import stale_temp_files
from ad.errors import UserError, one_line
from ad.utils import atomic_write_json
from envs.split import SPLITS
from envs.tasks import canonical_json

if TYPE_CHECKING:
    from ad.config import ExperimentConfig
    from envs.base import TaskFamily
    from envs.split import TaskSplit

try:
    import fcntl
except ImportError:  # Windows: no flock; shards there must not finish at the same moment
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".manifest.lock"
# Metadata that must agree between every history of one dataset folder.
FINGERPRINT_KEYS = (
    "env_id",
    "family",
    "family_kwargs",
    "split_info",
    "algorithm",
    "algorithm_kwargs",
    "n_envs",
    "total_steps",
)
SUMMARY_EPISODES = 10  # first/last-return columns: mean over streams of the first/last 10 episodes
SPLIT_ORDER = {name: i for i, name in enumerate(SPLITS)}  # train, validation, test

# 2: the train / validation / test split (1 held train / heldout runs and split).
MANIFEST_SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"


def run_file_name(split: str, task_index: int, seed: int) -> str:
    """The file name of one run: ``{split}-task{task_index:04d}-seed{seed}.h5``."""
    return f"{split}-task{task_index:04d}-seed{seed}.h5"


def config_fingerprint(cfg: ExperimentConfig, family: TaskFamily, split: TaskSplit) -> dict:
    """The :data:`FINGERPRINT_KEYS` values that the histories of ``cfg`` carry in their metadata.

    Args:
        cfg: the experiment config (env and collect sections).
        family: the task family ``cfg.env`` describes.
        split: its train / validation / test split.

    Returns:
        A plain (JSON-typed) dict; ``total_steps`` is rounded down to a multiple of ``n_envs``.
    """
    steps_per_stream = cfg.collect.total_steps // cfg.collect.n_envs
    return canonical_json(
        {
            "env_id": family.env_id,
            "family": split.family,
            "family_kwargs": split.family_kwargs,
            "split_info": split.to_json(),
            "algorithm": cfg.collect.algorithm,
            "algorithm_kwargs": cfg.collect.algorithm_kwargs,
            "n_envs": cfg.collect.n_envs,
            "total_steps": steps_per_stream * cfg.collect.n_envs,
        }
    )


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the interface


def load_manifest(dataset_dir: str | Path) -> dict:
    """The ``manifest.json`` of a dataset folder.

    Raises:
        UserError: missing, unreadable or of another schema version.
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(
            f"no {MANIFEST_NAME} in {dataset_dir}; collect the dataset first "
            "(ad-collect --config ...)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path} is unreadable ({one_line(e)}); re-run ad-collect to rebuild it"
        ) from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != MANIFEST_SCHEMA_VERSION:
        why = " (made before the train / validation / test split)" if version == 1 else ""
        raise UserError(
            f"{path} has manifest schema version {version!r}{why}, expected "
            f"{MANIFEST_SCHEMA_VERSION}; re-collect the dataset with this version of ad "
            "(ad-collect into a new collect.output_dir)"
        )
    return manifest


def resume(dataset_dir: Path, reference: dict, files: list[str]) -> set[str]:
    """Make ``dataset_dir`` ready to collect the runs ``files``; returns those done already.

    The folder is created and must be writable. Every history in it must belong to the config
    (``reference``), else the call is refused before anything in the folder changes. Histories
    among ``files`` are read whole through their checksums (:func:`validate_history`), so only a
    run whose data are intact counts as done; the others are deleted to be collected again, and
    so are the temporary files that dead writers on this host left for ``files``. Histories of
    other shards get the structural check only: they are not ours to redo.

    Args:
        dataset_dir: the dataset folder.
        reference: the :func:`config_fingerprint` of the config.
        files: this shard's planned file names.

    Returns:
        The names among ``files`` whose histories are complete and valid.

    Raises:
        UserError: an unwritable folder, or histories of another config or schema version.
    """
    _make_writable(dataset_dir)
    mine = set(files)
    done, unreadable = set(), []
    for path in sorted(dataset_dir.glob("*.h5")):
        try:
            metadata = validate_history(path) if path.name in mine else read_metadata(path)
        except HistoryVersionError as e:
            raise UserError(f"{e}; or use another collect.output_dir") from None
        except HistoryError as e:
            if path.name in mine:  # only a run of this shard is ours to redo
                unreadable.append((path, e))
            continue
        error = _mismatch(reference, metadata, path, dataset_dir)
        if error is not None:
            raise error
        done.add(path.name)
    for path, e in unreadable:
        log.warning("%s; re-collecting it", e)
        path.unlink()
    for name in files:
        for tmp in stale_temp_files(dataset_dir / name):
            tmp.unlink(missing_ok=True)  # a write interrupted by a crash
    return done & mine


def write_manifest(
    dataset_dir: str | Path, name: str | None = None, reference: dict | None = None
) -> dict:
    """Rebuild ``manifest.json`` from the valid histories present in ``dataset_dir``.

    Args:
        dataset_dir: the dataset folder.
        name: the config's name, for the manifest's ``name``.
        reference: the :func:`config_fingerprint` of the config (None: the name and fingerprint
            of the first valid file).

    Returns:
        The manifest written.

    Raises:
        UserError: no histories and no reference, or histories of different configs or versions.
    """
    dataset_dir = Path(dataset_dir)
    # Shards finishing at once in a shared folder: each scans and writes in turn, so the last
    # manifest written lists every file that any of them wrote.
    with manifest_lock(dataset_dir):
        reuse = _unchanged_entries(dataset_dir)
        runs, invalid, found = scan_histories(dataset_dir, strict=False, reuse=reuse)
        header = found if reference is None else _header(name, reference)
        if header is None:
            raise UserError(f"no learning histories in {dataset_dir}; run ad-collect first")
        manifest = {**header, "runs": runs, "invalid_files": invalid}
        atomic_write_json(dataset_dir / MANIFEST_NAME, manifest)
    return manifest


def merge_manifest(dataset_dir: Path) -> dict:
    """Rebuild ``manifest.json`` from every valid history in the folder (e.g. after shards);
    ``ad-collect --merge DIR`` on the command line.

    Returns:
        The manifest. Invalid files are listed under ``invalid_files`` and left alone.

    Raises:
        UserError: no histories, or histories of different configs or schema versions.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"dataset folder {dataset_dir} not found; check the path")
    return write_manifest(dataset_dir)


def scan_histories(
    dataset_dir: str | Path, strict: bool = True, reuse: dict[str, dict] | None = None
) -> tuple[list[dict], list[str], dict | None]:
    """Manifest entries of the histories in a folder, sorted; the invalid files; the header.

    Every file is read through its checksums (:func:`validate_history`) except those in
    ``reuse``, which get only the cheap structural check.

    Args:
        dataset_dir: the dataset folder (``ad-collect --inspect`` scans it strictly).
        strict: raise on an invalid file, instead of listing it as invalid.
        reuse: entries to take as they are for files of these names.

    Raises:
        UserError: histories of different configs or of another schema version.
    """
    runs, invalid, header = [], [], None
    reuse = reuse or {}
    for path in sorted(Path(dataset_dir).glob("*.h5")):
        try:
            metadata = read_metadata(path) if path.name in reuse else validate_history(path)
        except HistoryError as e:
            if strict or isinstance(e, HistoryVersionError):
                raise
            log.warning("%s", e)
            invalid.append(path.name)
            continue
        if header is None:  # the first valid file is the reference for the others
            reference = {key: canonical_json(metadata.get(key)) for key in FINGERPRINT_KEYS}
            header = _header(metadata.get("config", {}).get("name"), reference)
        error = _mismatch(reference, metadata, path, Path(dataset_dir))
        if error is not None:
            raise error
        runs.append(reuse.get(path.name) or _run_entry(path, metadata))
    runs.sort(key=lambda r: (SPLIT_ORDER[r["split"]], r["task_index"], r["seed"]))
    return runs, invalid, header


@contextlib.contextmanager
def manifest_lock(dataset_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dataset_dir/.manifest.lock`` (flock; waits for other holders,
    on this or, where the file system supports it, another machine)."""
    if fcntl is None:
        yield
        return
    path = Path(dataset_dir) / LOCK_NAME
    try:
        lock = open(path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as e:
        raise UserError(
            f"cannot write to the dataset folder {dataset_dir} ({e.strerror or e}); check its "
            "permissions"
        ) from None
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            locked = True
        except OSError as e:  # a file system without locks: go on, as before locking existed
            log.warning("cannot lock %s (%s); writing the manifest unlocked", path, e)
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- behind it


def _make_writable(dataset_dir: Path) -> None:
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dataset_dir):
            pass
    except OSError as e:
        raise UserError(
            f"cannot write to the dataset folder {dataset_dir} ({e.strerror or e}); choose a "
            "writable collect.output_dir"
        ) from None


def _mismatch(reference: dict, metadata: dict, path: Path, dataset_dir: Path) -> UserError | None:
    """Why the history at ``path`` (``metadata``, named by its :func:`run_file_name`) does not
    belong with ``reference`` (a :func:`config_fingerprint`, or another file's): a one-line
    UserError naming the first difference and the fix, or None if it does."""
    for key in FINGERPRINT_KEYS:
        old, new = canonical_json(metadata.get(key)), reference.get(key)
        if old != new:
            text = f"{key}: {json.dumps(old)[:60]} in {path.name} vs {json.dumps(new)[:60]}"
            return UserError(
                f"{dataset_dir} already holds histories collected with a different config "
                f"({text}); use another collect.output_dir or delete that folder"
            )
    split, index = metadata.get("split"), metadata.get("task_index")
    tasks = reference["split_info"].get(split) if split in SPLIT_ORDER else None
    if tasks is None or not isinstance(index, int) or not 0 <= index < len(tasks):
        return UserError(f"{path} names no task of the split; delete it and re-run ad-collect")
    if canonical_json(metadata.get("task")) != tasks[index] or path.name != run_file_name(
        split, index, metadata.get("seed", -1)
    ):
        return UserError(f"{path} holds another run than its name says; delete it and re-run")
    return None


def _header(name: str | None, reference: dict) -> dict:
    """The manifest fields above ``runs``: schema versions, name and the fingerprint."""
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "history_schema_version": SCHEMA_VERSION,
        "name": name,
        **{key: reference[key] for key in FINGERPRINT_KEYS if key != "split_info"},
        "split": reference["split_info"],
    }


def _first_last(episodes: dict[str, np.ndarray], num_streams: int) -> tuple[Any, Any]:
    """Mean over streams of the mean return of each stream's first / last 10 episodes."""
    firsts, lasts = [], []
    for returns in stream_returns(episodes, num_streams):
        if len(returns):
            firsts.append(returns[:SUMMARY_EPISODES].mean())
            lasts.append(returns[-SUMMARY_EPISODES:].mean())
    if not firsts:
        return None, None  # no stream finished an episode
    return float(np.mean(firsts)), float(np.mean(lasts))


def _run_entry(path: Path, metadata: dict) -> dict:
    episodes = read_episodes(path)
    first, last = _first_last(episodes, metadata["n_envs"])
    return {
        "file": path.name,
        **{key: metadata[key] for key in ("split", "task_index", "task", "seed")},
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "num_streams": metadata["n_envs"],
        "num_steps": metadata["num_steps"],
        "num_episodes": int(len(episodes["episode_returns"])),
        "first_return": first,
        "last_return": last,
        "optimal_return": metadata.get("optimal_return"),
        "random_return": metadata.get("random_return"),
    }


def _unchanged_entries(dataset_dir: Path) -> dict[str, dict]:
    """Entries of the current manifest whose files are unchanged since it was written, so that a
    rebuild need not hash and read every file of a large dataset again."""
    try:
        written = (dataset_dir / MANIFEST_NAME).stat().st_mtime_ns
        runs = load_manifest(dataset_dir)["runs"]
    except (OSError, UserError, KeyError, TypeError):
        return {}
    unchanged = {}
    for run in runs:
        with contextlib.suppress(OSError, KeyError, TypeError):
            stat = (dataset_dir / run["file"]).stat()
            if stat.st_size == run["bytes"] and stat.st_mtime_ns < written:
                unchanged[run["file"]] = run
    return unchanged
