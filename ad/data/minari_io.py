"""Learning histories in and out of Minari, the Gymnasium ecosystem's offline-RL dataset format.

Export (:func:`export_minari`) writes every history of a dataset folder as Minari episodes, in
history order (run by run, stream by stream, episode by episode), losslessly (images are not
JPEG-encoded). Each episode's metadata (its ``options``) names where it came from: ``split``,
``task_index``, ``task`` (JSON), ``run`` (the history file), ``stream``, ``episode`` (its index in
the stream) and ``finished`` (False for a stream's last episode when the history ended inside it).
The first episode of each run also carries ``run_metadata``, the history's own metadata as JSON,
and the dataset's metadata carries ``ad_histories`` (the split and the dataset's name), so that
:func:`import_minari` restores the histories exactly.

What Minari has and these histories do not: an episode's observation after its last step (Minari
stores T + 1 observations). The histories record the observation each action was chosen on, so
the export repeats the last one as row T; ``infos.optimal_actions`` (the family oracle's action,
where the histories have it) is padded the same way. Import drops row T.

Import of any other Minari dataset (:func:`import_minari` with ``task_field``): the episodes of
each task, in episode order, become one stream of one run; the task is read from each episode's
metadata field (a dotted path, e.g. ``options.goal``) and must be a task of the config's family
split, which decides its split. Streams are cut to the shortest task's length (a history's
streams share one length), and an episode that ends neither terminated nor truncated is marked
truncated at its last step, so that its end survives the concatenation.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ad.config import ExperimentConfig, config_to_dict
from ad.data.histories import History, history_spaces, read_history, write_history
from ad.data.manifest import load_manifest, run_file_name, write_manifest
from ad.data.spaces import num_actions, space_to_json
from ad.errors import UserError
from ad.utils import package_versions, to_json
from envs.tasks import canonical_json, task_key

ALGORITHM_PREFIX = "minari:"  # the source algorithm of imported foreign histories


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise UserError(
            "Minari export and import need the minari package: pip install -e '.[minari]'"
        ) from None
    return minari


# --------------------------------------------------------------------------- export


def export_minari(dataset_dir: str | Path, dataset_id: str) -> dict:
    """Write the histories of ``dataset_dir`` as the Minari dataset ``dataset_id``.

    The dataset goes where Minari keeps local datasets (``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets``); a failed export removes what it wrote.

    Returns:
        ``dataset_id``, ``path``, ``runs``, ``episodes`` and ``steps`` written.

    Raises:
        UserError: no minari package, a dataset folder without a manifest, or an existing id.
    """
    minari = _minari()
    from minari.storage.datasets_root_dir import get_dataset_path

    dataset_dir = Path(dataset_dir)
    manifest = load_manifest(dataset_dir)
    if not manifest["runs"]:
        raise UserError(f"{dataset_dir} holds no learning histories; run ad-collect first")
    target = get_dataset_path(dataset_id)
    if target.exists():
        raise UserError(
            f"a Minari dataset {dataset_id!r} already exists at {target}; choose another id "
            "or delete it (minari delete ID)"
        )
    first = read_history(dataset_dir / manifest["runs"][0]["file"])
    observation_space, action_space = history_spaces(first.metadata)
    counts = {"runs": 0, "episodes": 0, "steps": 0}

    def buffers() -> Iterator[Any]:
        for run in manifest["runs"]:
            history = read_history(dataset_dir / run["file"])
            if history.metadata["observation_space"] != first.metadata["observation_space"]:
                raise UserError(f"{run['file']} has another observation space than the others")
            counts["runs"] += 1
            counts["steps"] += history.num_streams * history.num_steps
            for buffer in _episode_buffers(history, counts["episodes"]):
                counts["episodes"] += 1
                yield buffer

    try:
        with warnings.catch_warnings():
            # Minari warns that no env spec is set: these histories name their family instead.
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers(),  # a generator: one history in memory at a time
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=manifest["algorithm"],
                description=(
                    f"Learning histories of {manifest['algorithm']} on {manifest['family']}, "
                    "exported by ad: episodes in history order; see each episode's options."
                ),
                jpeg_encoding=False,
            )
            dataset.storage.update_metadata(
                {"ad_histories": {"name": manifest.get("name"), "split_info": manifest["split"]}}
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return {"dataset_id": dataset_id, "path": str(target), **counts}


def _episode_buffers(history: History, first_id: int) -> Iterator[Any]:
    """The Minari episode buffers of one history, stream by stream."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    meta = history.metadata
    run_metadata = {k: v for k, v in meta.items() if k != "split_info"}
    episode_id = first_id
    for s in range(history.num_streams):
        dones = history.terminations[s] | history.truncations[s]
        ends = [*(np.flatnonzero(dones) + 1).tolist()]
        if not ends or ends[-1] != history.num_steps:
            ends.append(history.num_steps)  # the unfinished last episode
        start = 0
        for k, end in enumerate(ends):
            rows = slice(start, end)
            options = {
                "split": meta["split"],
                "task_index": meta["task_index"],
                "task": json.dumps(meta["task"], sort_keys=True),
                "run": history.path.name,
                "stream": s,
                "episode": k,
                "finished": bool(dones[end - 1]),
            }
            if s == 0 and k == 0:
                options["run_metadata"] = json.dumps(run_metadata, sort_keys=True)
            infos = None
            if history.optimal_actions is not None:
                infos = {"optimal_actions": _with_last_repeated(history.optimal_actions[s, rows])}
            yield EpisodeBuffer(
                id=episode_id,
                seed=int(meta["seed"]) + s if k == 0 else None,
                options=options,
                observations=_with_last_repeated(history.observations[s, rows]),
                actions=history.actions[s, rows],
                rewards=history.rewards[s, rows],
                terminations=history.terminations[s, rows],
                truncations=history.truncations[s, rows],
                infos=infos,
            )
            episode_id += 1
            start = end


def _with_last_repeated(rows: np.ndarray) -> np.ndarray:
    """T + 1 rows for Minari: the last row again stands for the unrecorded final one."""
    return np.concatenate([rows, rows[-1:]])


# --------------------------------------------------------------------------- import


def import_minari(cfg: ExperimentConfig, dataset_id: str, task_field: str | None = None) -> dict:
    """Turn the Minari dataset ``dataset_id`` into learning histories in ``cfg.collect_dir``.

    A dataset exported by :func:`export_minari` comes back exactly (arrays and metadata);
    any other needs ``task_field`` (see the module docstring). The folder must hold no
    histories yet; a failed import removes the files it wrote.

    Returns:
        ``dataset_dir``, ``runs``, ``steps`` and ``dropped_steps`` (foreign data cut to one
        stream length).

    Raises:
        UserError: no minari package, an unknown dataset id, a folder with histories, a missing
            task field, or a task that is not one of the config's family.
    """
    minari = _minari()
    try:
        dataset = minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(
            f"cannot load the Minari dataset {dataset_id!r} ({e}); list local ones with "
            "minari list local"
        ) from None
    out = cfg.collect_dir
    if out.is_dir() and any(out.glob("*.h5")):
        raise UserError(
            f"{out} already holds learning histories; import into another collect.output_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
    exported = dataset.storage.metadata.get("ad_histories")
    if exported is None and task_field is None:
        raise UserError(
            f"{dataset_id!r} was not exported by ad: name the episode metadata field that holds "
            "each episode's task with --task-field (e.g. options.goal)"
        )
    written: list[Path] = []
    try:
        if exported is not None:
            summary = _import_exported(dataset, exported, out, cfg, written)
        else:
            summary = _import_foreign(dataset, dataset_id, task_field, out, cfg, written)
        write_manifest(out, cfg.name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return {"dataset_dir": str(out), **summary}


def _import_exported(dataset, exported: dict, out: Path, cfg, written: list[Path]) -> dict:
    """Rebuild the histories of a dataset :func:`export_minari` wrote."""
    runs, steps = 0, 0
    for run_meta, parts in _runs_of(_episodes(dataset)):
        metadata = {**json.loads(run_meta), "split_info": exported["split_info"]}
        arrays = _stack_streams(parts)
        _write(out / parts[0][0]["run"], metadata, arrays, cfg, written)
        runs += 1
        steps += arrays["actions"].shape[0] * arrays["actions"].shape[1]
    return {"runs": runs, "steps": steps, "dropped_steps": 0}


def _episodes(dataset) -> Iterator[tuple[dict, Any]]:
    """(metadata, episode) of every episode of a Minari dataset, in order."""
    metadata = dataset.storage.get_episode_metadata(range(dataset.total_episodes))
    return zip(metadata, dataset.iterate_episodes(), strict=True)


def _write(path: Path, metadata: dict, arrays: dict, cfg, written: list[Path]) -> None:
    """One imported history, written as ad-collect writes (the config's chunking and
    compression); ``written`` collects it for the clean-up of a failed import."""
    write_history(
        path,
        metadata,
        **arrays,
        chunk_steps=cfg.collect.chunk_steps,
        compression=cfg.collect.compression,
    )
    written.append(path)


def _runs_of(episodes) -> Iterator[tuple[str, list]]:
    """(run metadata JSON, [(options, episode), ...]) per run, in dataset order."""
    current: list = []
    run_meta = None
    for meta, episode in episodes:
        options = meta.get("options", {})
        if "run_metadata" in options:
            if current:
                yield run_meta, current
            run_meta, current = options["run_metadata"], []
        if run_meta is None:
            raise UserError("the Minari dataset's first episode names no run; re-export it")
        current.append((options, episode))
    if current:
        yield run_meta, current


def _stack_streams(parts: list) -> dict[str, np.ndarray]:
    """(S, T, ...) arrays from one run's episodes, each with T + 1 observation rows."""
    streams: dict[int, dict[str, list]] = {}
    for options, episode in parts:
        rows = streams.setdefault(int(options["stream"]), {})
        for key, value in _episode_rows(episode).items():
            rows.setdefault(key, []).append(value)
    return {
        key: np.stack([np.concatenate(streams[s][key]) for s in sorted(streams)])
        for key in streams[min(streams)]
    }


def _episode_rows(episode) -> dict[str, np.ndarray]:
    """One episode's step rows in this project's layout (row T of the observations dropped)."""
    rows = {
        "observations": np.asarray(episode.observations)[:-1],
        "actions": np.asarray(episode.actions),
        "rewards": np.asarray(episode.rewards),
        "terminations": np.asarray(episode.terminations, bool),
        "truncations": np.asarray(episode.truncations, bool),
    }
    infos = episode.infos or {}
    if "optimal_actions" in infos:
        rows["optimal_actions"] = np.asarray(infos["optimal_actions"])[:-1]
    return rows


def _import_foreign(dataset, dataset_id, task_field, out: Path, cfg, written: list[Path]) -> dict:
    """One run per task: its episodes in order as one stream, cut to the shortest task's."""
    family = cfg.env.make_family()
    split = cfg.env.task_split(family)
    streams: dict[str, dict] = {}
    for i, (meta, episode) in enumerate(_episodes(dataset)):
        task = _task_of(meta, task_field, i, dataset_id)
        key = task_key(task)
        if split.split_of(task) is None:
            raise UserError(
                f"episode {i} of {dataset_id!r}: {task_field} = {json.dumps(canonical_json(task))} "
                f"is no task of {split.family}'s split; check --task-field and env.family"
            )
        rows = _episode_rows(episode)
        if not (rows["terminations"][-1] or rows["truncations"][-1]):
            rows["truncations"][-1] = True  # keep the episode's end in the stream
        entry = streams.setdefault(key, {"task": task, "rows": []})
        entry["rows"].append(rows)
    env = family.make_env(next(iter(streams.values()))["task"])
    obs_json, act_json = space_to_json(env.observation_space), space_to_json(env.action_space)
    if space_to_json(dataset.observation_space) != obs_json or (
        space_to_json(dataset.action_space) != act_json
    ):
        raise UserError(
            f"{dataset_id!r} has other spaces than {split.family}'s envs "
            f"({dataset.observation_space}, {dataset.action_space} vs {env.observation_space}, "
            f"{env.action_space}); import it with its own family"
        )
    joined = {
        key: {name: np.concatenate([r[name] for r in entry["rows"]]) for name in entry["rows"][0]}
        for key, entry in streams.items()
    }
    length = min(len(arrays["actions"]) for arrays in joined.values())
    total = sum(len(arrays["actions"]) for arrays in joined.values())
    versions = package_versions()
    for key, entry in streams.items():
        task = entry["task"]
        label = split.split_of(task)
        index = [task_key(t) for t in split.tasks(label)].index(key)
        metadata = {
            "env_id": family.env_id,
            "family": split.family,
            "family_kwargs": split.family_kwargs,
            "split_info": split.to_json(),
            "algorithm": ALGORITHM_PREFIX + dataset_id,
            "algorithm_kwargs": {"task_field": task_field},
            "n_envs": 1,
            "total_steps": length,
            "task": canonical_json(task),
            "task_index": index,
            "split": label,
            "seed": 0,
            "observation_space": obs_json,
            "action_space": act_json,
            "num_actions": num_actions(env.action_space),
            "episode_length": family.episode_length,
            "optimal_return": family.optimal_return(task),
            "random_return": family.random_return(task),
            "package_versions": versions,
            "config": config_to_dict(cfg),
        }
        arrays = {name: value[None, :length] for name, value in joined[key].items()}
        _write(out / run_file_name(label, index, 0), metadata, arrays, cfg, written)
    return {
        "runs": len(streams),
        "steps": length * len(streams),
        "dropped_steps": total - length * len(streams),
    }


def _task_of(meta: dict, field: str, index: int, dataset_id: str) -> Any:
    """The task named by the dotted ``field`` of one episode's metadata."""
    value: Any = meta
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            fields = ", ".join(sorted(_dotted(meta))) or "none"
            raise UserError(
                f"episode {index} of {dataset_id!r} has no metadata field {field!r} "
                f"(it has: {fields}); pass --task-field with the field that holds the task"
            )
        value = value[part]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    value = to_json(value)
    return value if isinstance(value, dict) else {field.split(".")[-1]: value}


def _dotted(meta: dict, prefix: str = "") -> Iterator[str]:
    for key, value in meta.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
