"""The training runs of a history dataset, checked against the config before any window is cut.

A *run* here is what the manifest calls one: one history file of one (split, task, seed). Training
uses the manifest's ``train`` runs only, and refuses a dataset whose runs or files hold a validation
or test task of the configured split (the worst mistake: evaluation would then test on training
data, or settings would be chosen on it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

from ad.config import ExperimentConfig
from ad.defaults import DERIVED_FIELDS, SourceShape, derive
from ad.errors import UserError
from ad.fields import replace_section
from envs.split import EVALUATION_SPLITS, SPLITS, TaskSplit
from envs.tasks import canonical_json, task_key


@dataclass(frozen=True)
class TrainingRuns:
    """The checked training runs of one dataset folder.

    ``entries[i]``, ``metadata[i]`` and ``files[i]`` describe the same run; a kept stream's
    ``history`` field indexes these lists.
    """

    dataset_dir: Path
    manifest: dict
    split: TaskSplit
    entries: list[dict]  # the manifest's entries of the train runs
    metadata: list[dict]  # the metadata stored in each run's file
    xland: bool = False  # the runs are groups of an XLand-100B file (dataset_dir is that file)

    @property
    def files(self) -> list[Path]:
        """The history file of each run (an XLand-100B file: the file itself for each group)."""
        if self.xland:
            return [self.dataset_dir] * len(self.entries)
        return [self.dataset_dir / entry["file"] for entry in self.entries]

    def open_reader(self, index: int) -> Any:
        """A reader of run ``index`` that serves slices of its streams (``read(s, start, stop)``);
        open one per process."""
        if self.xland:
            from ad.data.xland import XLandReader

            return XLandReader(self.dataset_dir, self.entries[index]["group"])
        from ad.data.history_reader import HistoryReader

        return HistoryReader(self.files[index])


def _split_difference(manifest_split: dict, configured: dict) -> str:
    for key in ("family", "family_kwargs", "seed", *SPLITS):
        theirs, ours = manifest_split.get(key), configured[key]
        if canonical_json(theirs) != canonical_json(ours):
            if key in SPLITS:  # task lists: too long to print
                return f"other {key} tasks: {len(theirs or [])} there, {len(ours)} here"
            return f"{key} {theirs!r} there, {ours!r} here"
    return "no difference"


def _check_task(dataset_dir: Path, file: str, task: dict, split: TaskSplit) -> None:
    where = split.split_of(task)
    if where in EVALUATION_SPLITS:
        raise UserError(
            f"dataset {dataset_dir} trains on {file} whose task {task_key(task)} is a {where} "
            f"task of the configured split (env.family={split.family}, env.split_seed={split.seed}); "
            "collect with the same env section as this config, or fix the env section"
        )
    if where is None:
        raise UserError(
            f"dataset {dataset_dir}: task {task_key(task)} of {file} is not a training task of the "
            f"configured split (env.split_seed={split.seed}); use the collect config's env section"
        )


def _first_tasks(cfg: ExperimentConfig, split: TaskSplit) -> tuple[dict, ...]:
    """The training tasks to train on: all, or the first ``train.data.num_tasks`` of them."""
    n = cfg.train.data.num_tasks
    if n is None:
        return split.train
    if n > len(split.train):
        raise UserError(
            f"train.data.num_tasks is {n} but the split has {len(split.train)} training tasks; "
            "lower it, or collect with a larger env.num_train_tasks"
        )
    return split.train[:n]


def load_training_runs(cfg: ExperimentConfig) -> TrainingRuns:
    """Validate a dataset against the config and list its training runs.

    Args:
        cfg: the experiment config (``dataset_dir`` and the env section are used).

    Returns:
        The training runs, in manifest order, with each file's metadata.

    Raises:
        UserError: missing folder or file, wrong schema, a validation or test task among the
            training runs, a manifest split that differs from the configured one, no training
            runs.
    """
    from ad.data.histories import read_metadata
    from ad.data.manifest import load_manifest
    from ad.data.xland import is_xland_file

    dataset_dir = Path(cfg.dataset_dir)
    if is_xland_file(dataset_dir):
        return _xland_training_runs(cfg, dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(
            f"dataset folder {dataset_dir} not found; run ad-collect with this config first "
            "or point train.dataset at a collected dataset"
        )
    manifest = load_manifest(dataset_dir)
    split = cfg.env.task_split()
    entries = [r for r in manifest.get("runs", []) if r.get("split") == "train"]
    for entry in entries:  # a leak of evaluation tasks is the worst mistake: check it first
        _check_task(dataset_dir, entry["file"], entry["task"], split)
    if canonical_json(manifest.get("split")) != canonical_json(split.to_json()):
        raise UserError(
            f"dataset {dataset_dir} was collected with another task split "
            f"({_split_difference(manifest.get('split') or {}, split.to_json())}); "
            "use the same env section as the collect config"
        )
    if not entries:
        raise UserError(
            f"dataset {dataset_dir} has no training runs; collect with collect.splits "
            "including 'train'"
        )
    kept = {task_key(t) for t in _first_tasks(cfg, split)}
    entries = [e for e in entries if task_key(e["task"]) in kept]
    metadata = []
    for entry in entries:  # the files themselves must not hold validation or test tasks either
        metadata.append(read_metadata(dataset_dir / entry["file"]))
        _check_task(dataset_dir, entry["file"], metadata[-1].get("task"), split)
    return TrainingRuns(dataset_dir, manifest, split, entries, metadata)


XLAND_SETTINGS = ("model.context_steps", "train.data.subsample_every", "eval.num_episodes")


def _xland_training_runs(cfg: ExperimentConfig, path: Path) -> TrainingRuns:
    """The training groups of an XLand-100B file: the config's split over its rulesets.

    The file has no episode tables, so nothing is derived from it (the settings of
    :data:`XLAND_SETTINGS` must be given) and its histories are read as whole streams.
    """
    from ad.data.spaces import space_to_json
    from ad.data.xland import read_groups
    from envs.xland import NUM_ACTIONS, XLandMiniGrid

    groups = read_groups(path)
    family = cfg.env.make_family()
    if not isinstance(family, XLandMiniGrid) or family.num_tasks != len(groups):
        raise UserError(
            f"{path} is an XLand-100B file of {len(groups)} tasks: set env.family: "
            f"envs.xland:XLandMiniGrid and env.family_kwargs.num_tasks: {len(groups)}"
        )
    size = f"{family.size}x{family.size}"
    other = sorted({g["env_id"] for g in groups if not g["env_id"].endswith(size)})
    if other:
        raise UserError(
            f"{path} holds {other[0]} tasks, not {size}: set env.family_kwargs.grid_size to match"
        )
    unset = [k for k in XLAND_SETTINGS if reduce(getattr, k.split("."), cfg) is None]
    if unset:
        raise UserError(
            f"{path} is an XLand-100B file, which has no episode tables to derive settings "
            f"from: set {', '.join(unset)} in the config"
        )
    if cfg.train.mode == "ed" or cfg.train.data.subsample_every != 1:
        raise UserError(
            "XLand-100B histories are read as whole streams: set train.data.subsample_every: 1 "
            "(episode subsampling and ED's last episodes need episode tables it does not have)"
        )
    split = cfg.env.task_split(family)
    observation_space, action_space = family.spaces
    entries, metadata = [], []
    for task in _first_tasks(cfg, split):
        info = groups[task["group"]]
        name = f"{path.name}#{info['group']}"
        _check_task(path, name, task, split)
        entries.append({"file": name, "split": "train", "task": task, **info})
        metadata.append(
            {
                "task": task,
                "env_id": info["env_id"],
                "ruleset_id": info["ruleset_id"],
                "n_envs": info["num_streams"],
                "num_steps": info["num_steps"],
                "episode_length": family.episode_length,
                "observation_space": space_to_json(observation_space),
                "action_space": space_to_json(action_space),
                "num_actions": NUM_ACTIONS,
                "optimal_actions": True,  # the expert's actions
            }
        )
    manifest = {"split": split.to_json(), "runs": entries}
    return TrainingRuns(path, manifest, split, entries, metadata, xland=True)


def dataset_fingerprint(entries: list[dict], cfg: ExperimentConfig) -> str:
    """sha256 over the training runs' checksums and the window-selection settings.

    Args:
        entries: the manifest entries of the training runs.
        cfg: the experiment config (its train section chooses the kept episodes).

    Returns:
        A hex digest that changes when the training data or the episodes kept of it change.
    """
    payload = {
        "runs": sorted([entry["file"], entry.get("sha256")] for entry in entries),
        "mode": cfg.train.mode,
        "subsample_every": cfg.train.data.subsample_every,
        "subsample_offsets": cfg.train.data.subsample_offsets,
        "ed_last_episodes": cfg.train.ed.last_episodes,
    }
    if cfg.train.data.window_steps is not None:  # windows other than the band (absent: as before)
        payload["window_steps"] = cfg.train.data.window_steps
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def source_shape(training: TrainingRuns) -> SourceShape:
    """Episode length, steps and complete episodes per stream of the training runs (the fewest
    over the runs), from the manifest: no history file is read."""
    entries = training.entries
    return SourceShape(
        episode_length=int(training.metadata[0]["episode_length"]),
        steps_per_stream=min(int(e["num_steps"]) for e in entries),
        episodes_per_stream=min(int(e["num_episodes"]) // int(e["num_streams"]) for e in entries),
    )


def resolve_config(cfg: ExperimentConfig, training: TrainingRuns) -> ExperimentConfig:
    """``cfg`` with its null ``model.context_steps``, ``train.data.subsample_every`` and
    ``eval.num_episodes`` derived from the training runs by the rule of :mod:`ad.defaults`, and
    in ED mode with ``train.ed.context_steps`` set, that as ``model.context_steps`` (unset, the
    derived context is capped at the ``train.ed.last_episodes`` episodes ED keeps of a stream).

    Args:
        cfg: the experiment config.
        training: its checked training runs.

    Returns:
        The config with every derived field set (``cfg`` itself when none is null).

    Raises:
        UserError: streams too short to derive a context of at least one episode.
    """
    ed_context = cfg.train.ed.context_steps
    if cfg.train.mode == "ed" and ed_context is not None:
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, context_steps=ed_context)
        )
    if None not in (cfg.model.context_steps, cfg.train.data.subsample_every, cfg.eval.num_episodes):
        return cfg
    shape = source_shape(training)
    context_steps, subsample_every, num_episodes = derive(
        shape, cfg.model.context_steps, cfg.train.data.subsample_every, cfg.eval.num_episodes
    )
    if cfg.train.mode == "ed" and cfg.model.context_steps is None:
        # ED keeps only the last episodes of each stream: a derived context fits in them
        context_steps = min(context_steps, cfg.train.ed.last_episodes * shape.episode_length)
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, context_steps=context_steps),
        train=replace_section(cfg.train, "data", subsample_every=subsample_every),
        eval=dataclasses.replace(cfg.eval, num_episodes=num_episodes),
    )


def describe_derived(
    given: ExperimentConfig, resolved: ExperimentConfig, training: TrainingRuns
) -> str:
    """One log line: which settings were derived, to what, from which numbers."""
    shape = source_shape(training)
    values = []
    if given.train.mode == "ed" and given.train.ed.context_steps is not None:
        values.append(
            f"model.context_steps={given.train.ed.context_steps} (train.ed.context_steps)"
        )
    for key in DERIVED_FIELDS:
        if reduce(getattr, key.split("."), given) is None:
            values.append(f"{key}={reduce(getattr, key.split('.'), resolved)}")
    return (
        f"derived {', '.join(values)} from episodes of {shape.episode_length} steps and streams "
        f"of {shape.steps_per_stream} steps / {shape.episodes_per_stream} episodes (ad-train "
        "--help-config states the rule)"
    )
