"""In-context evaluation on test tasks: load runs, roll them out, score and plot the returns.

``evaluate`` rolls a checkpoint (and runs to compare) out with :func:`ad.evaluation.rollout.rollout`
on the test tasks of its split (``eval.tasks``: validation tasks to choose settings on), compares with the source algorithm's learning curves on the same
tasks from the collected histories, and writes returns.npz, summary.json (the record:
:mod:`ad.evaluation.summary`) and return_curves.png
(and, for grid families, exploration.png: see :mod:`ad.evaluation.exploration`; for families
with positions in the plane, paths.png: see :mod:`ad.evaluation.paths`).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ad.config import ExperimentConfig, config_from_dict, config_to_dict, parse_override
from ad.errors import UserError
from ad.evaluation.exploration import draws_exploration, write_exploration
from ad.evaluation.metrics import summarise_returns
from ad.evaluation.paths import draws_paths, write_paths
from ad.evaluation.references import (
    source_dataset_dir,
    source_learner_streams,
    source_streams,
    source_summary,
    task_references,
)
from ad.evaluation.rollout import rollout
from ad.evaluation.summary import CurveStats, RunSummary, SourceCurve, write_summary
from ad.learn.checkpoint import Checkpoint, FamilyRecord, find_checkpoint, load_model
from ad.learn.model import FamilyPolicy
from ad.utils import atomic_write_bytes, package_versions, resolve_device, to_json
from envs.base import family_of_split, make_family
from envs.split import TaskSplit
from envs.tasks import Task, TaskError, canonical_json

# --------------------------------------------------------------------------- runs and tasks


@dataclass
class LoadedRun:
    """One family of a checkpoint, ready to evaluate: the model's policy in that family, the
    family's record and resolved config, and its task split."""

    model: FamilyPolicy
    checkpoint: Checkpoint
    record: FamilyRecord
    config: ExperimentConfig
    split: TaskSplit
    checkpoint_path: Path
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.config.train.mode.upper()} ({self.run_dir.name})"


def same_family(name: str, kwargs: dict, split: TaskSplit) -> bool:
    """Whether family ``name(**kwargs)`` is the split's (constructor defaults filled in)."""

    family = make_family(name, **kwargs)
    return name == split.family and canonical_json(family.kwargs) == canonical_json(
        split.family_kwargs
    )


def check_eval_overrides(overrides: list[str] | tuple[str, ...]) -> None:
    """Refuse overrides outside eval.*: the rest is fixed by what the model was trained on."""
    for text in overrides:
        path, _ = parse_override(text)
        if len(path) < 2 or path[0] != "eval":
            raise UserError(
                f"override {text!r} is not an eval.* key; ad-eval only changes eval settings "
                "(the rest comes from the checkpoint), retrain to change it"
            )


def load_run(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> list[LoadedRun]:
    """A run folder (its latest checkpoint) or a checkpoint file: one loaded run per family the
    model was trained on (a specialist: one), each with its config and split.

    Raises:
        UserError: missing source or checkpoint, unreadable or unknown-schema checkpoint, an
            override outside ``eval.*``, a config family that does not match its split.
    """
    check_eval_overrides(overrides)
    checkpoint_path = find_checkpoint(source)
    model, ckpt = load_model(checkpoint_path, device="cpu")
    parent = checkpoint_path.parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    runs = []
    for name, record in ckpt.families.items():
        where = f"checkpoint {checkpoint_path}" + (
            f", family {name}" if len(ckpt.families) > 1 else ""
        )
        cfg = config_from_dict(record.config, overrides)
        try:
            split = TaskSplit.from_json(record.split)
        except TaskError as e:
            raise UserError(f"{where}: {e}") from None
        if not same_family(cfg.env.family, cfg.env.family_kwargs, split):
            raise UserError(
                f"{where}: env family {cfg.env.family} {cfg.env.family_kwargs} does not match "
                f"its split ({split.family} {split.family_kwargs}); it is damaged, retrain"
            )
        runs.append(
            LoadedRun(model.policy(name), ckpt, record, cfg, split, checkpoint_path, run_dir)
        )
    model.to(resolve_device(runs[0].config.eval.device, "eval.device"))
    return runs


def select_tasks(run: LoadedRun, allow_train_tasks: bool) -> tuple[list[Task], str]:
    """The tasks to evaluate and their split label: "test", "validation", or "train" only with
    the flag."""
    label = run.config.eval.tasks
    if label == "train" and not allow_train_tasks:
        raise UserError(
            "eval.tasks=train evaluates tasks the model was trained on; pass --allow-train-tasks "
            "(allow_train_tasks=True) to do that on purpose"
        )
    max_tasks = run.config.eval.max_tasks
    if max_tasks is not None and max_tasks < 1:
        raise UserError("eval.max_tasks must be >= 1, or null for all tasks of the split")
    return list(run.split.tasks(label))[:max_tasks], label


def compared_family(
    others: list[LoadedRun], run: LoadedRun, tasks: list[Task], label: str
) -> LoadedRun:
    """The family of a compared run that ``run`` is evaluated in: the same family, which must
    not have trained on the evaluated (test or validation) tasks."""
    other = next((o for o in others if o.split.family == run.split.family), None)
    if other is None:
        raise UserError(
            f"compared run {others[0].run_dir} has no family {run.split.family} (it has "
            f"{', '.join(o.split.family for o in others)}); compare runs of the same family"
        )
    if not same_family(other.split.family, other.split.family_kwargs, run.split):
        raise UserError(
            f"compared run {other.run_dir} is of family {other.split.family} "
            f"{other.split.family_kwargs}, not {run.split.family} {run.split.family_kwargs}; "
            "compare runs of the same family"
        )
    seen = [t for t in tasks if label != "train" and other.split.split_of(t) == "train"]
    if seen:
        raise UserError(
            f"compared run {other.run_dir} trained on {len(seen)} of the {label} tasks (e.g. "
            f"{seen[0]}); compare runs that share the task split"
        )
    return other


# --------------------------------------------------------------------------- evaluate


def default_eval_dir(run_dir: Path, split: str) -> Path:
    """Where ``ad-eval`` writes by default: ``<run>/eval-<split>``, so that an evaluation on
    validation tasks (choosing settings) never overwrites or passes for one on test tasks."""
    return Path(run_dir) / f"eval-{split}"


def data_efficiency_ratio(stats: CurveStats, source: CurveStats | None) -> float | None:
    """Episodes the model needs to reach 80% normalised score over those its source algorithm
    needs on the same tasks; < 1: the model is more data-efficient (AD's claim). None when
    either never gets there or there is no source curve."""
    if source is None or not stats.episode_to_80 or not source.episode_to_80:
        return None
    return stats.episode_to_80 / source.episode_to_80


def _run_summary(
    run: LoadedRun,
    returns: np.ndarray,
    tasks: list[Task],
    label: str,
    eval_cfg: Any,
    source: SourceCurve | None,
    references: tuple[np.ndarray, np.ndarray, str],
    warnings: list[str],
) -> RunSummary:
    """The summary of one evaluated run (its ``compare`` empty; the caller fills it)."""
    optimal, random, optimal_from = references
    stats, normalised_at = summarise_returns(
        returns, optimal, random, eval_cfg.normalise_at, eval_cfg.seed
    )
    return RunSummary(
        **stats.curve_fields(),
        run=str(run.run_dir),
        checkpoint=str(run.checkpoint_path),
        step=int(run.checkpoint.step),
        label=run.label,
        split=label,
        family=run.split.family,
        family_kwargs=to_json(run.split.family_kwargs),
        tasks=to_json(list(tasks)),
        num_tasks=len(tasks),
        num_episodes=eval_cfg.num_episodes,
        num_seeds=eval_cfg.num_seeds,
        seed=eval_cfg.seed,
        action_mode=eval_cfg.action_mode,
        temperature=eval_cfg.temperature,
        decoding=eval_cfg.decoding,
        optimal_return=to_json(optimal.mean()),
        random_return=to_json(random.mean()),
        optimal_returns=to_json(optimal),
        random_returns=to_json(random),
        optimal_from=optimal_from,
        normalised_at=normalised_at,
        source=source,
        warnings=list(warnings),
        data_efficiency_ratio=data_efficiency_ratio(stats, source),
        compare=[],
        config=to_json(config_to_dict(run.config)),
        versions=package_versions(),
    )


def _write_outputs(folder: Path, summary: RunSummary, returns: np.ndarray, run: LoadedRun) -> None:
    """returns.npz, summary.json, config.yaml and versions.json, each written atomically."""
    from ad.config import save_config
    from ad.utils import write_versions

    buffer = io.BytesIO()
    np.savez(
        buffer,
        returns=returns,
        tasks=np.array(json.dumps(summary.tasks)),
        optimal=np.asarray(summary.optimal_returns, dtype=float),  # an unknown optimum: NaN
        random=np.asarray(summary.random_returns, dtype=float),
        split=np.array(summary.split),
    )
    atomic_write_bytes(folder / "returns.npz", buffer.getvalue())
    write_summary(folder, summary)
    save_config(run.config, folder / "config.yaml")
    write_versions(folder)


def _plot(out_path: Path, summaries: list[RunSummary]) -> None:
    """The main figure: every evaluated run and the source algorithm over the same episodes."""
    from ad.evaluation.plots import plot_return_curves

    main = summaries[0]
    num_episodes = main.num_episodes
    rows: list[tuple[CurveStats, str, str]] = [(s, s.label, "-") for s in summaries]
    if main.source is not None:
        rows.append((main.source, "source algorithm (from scratch)", "--"))
    curves = []
    for stats, label, linestyle in rows:
        per = stats.per_episode
        curves.append(
            {
                "label": label,
                "mean": per.mean[:num_episodes],
                "low": per.ci_low[:num_episodes],
                "high": per.ci_high[:num_episodes],
                "linestyle": linestyle,
            }
        )
    where = f"{main.split} tasks"
    if main.split == "train":
        where = "TRAINING tasks (not held out)"
    title = (
        f"{main.family}: in-context returns on {main.num_tasks} {where}\n"
        f"mean over tasks x {main.num_seeds} seeds, bands: 95% bootstrap CI over tasks"
    )
    # The source's best return is no optimum: its curve is drawn already, so no "optimal" line.
    optimal = main.optimal_return if main.optimal_from == "family" else None
    plot_return_curves(curves, out_path, title, optimal, main.random_return)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_summary(summary: RunSummary) -> str:
    """Lines for the terminal: a table of each run's scores (AD, the runs compared, the source)
    and the data-efficiency figure of merit."""
    lines = [f"warning: {line}" for line in summary.warnings]
    from_source = summary.optimal_from == "source_best"
    reference = "source's best return" if from_source else "optimal return"
    lines += [
        f"{summary.num_tasks} {summary.split} tasks x {summary.num_seeds} seeds x "
        f"{summary.num_episodes} episodes ({reference} {_number(summary.optimal_return)}, "
        f"random {summary.random_return:.2f})"
    ]
    rows: list[tuple[str, CurveStats]] = [(summary.label, summary)]
    rows += [(c.label, c) for c in summary.compare]
    if summary.source is not None:
        rows.append(("source (per stream)", summary.source))
    width = max(len(label) for label, _ in rows) + 2
    lines.append(
        f"  {'return':<{width}}{'episode 1':>10}{'last 10':>10}{'normalised':>12}{'80% at':>8}"
    )
    for label, row in rows:
        last = row.last10_normalised
        lines.append(
            f"  {label:<{width}}{row.first_episode_return:>10.2f}{row.last10_return:>10.2f}"
            f"{'n/a' if last is None else f'{last:.3f}':>12}{row.episode_to_80 or 'never':>8}"
        )
    lines.append("  (normalised: last 10 episodes, 0 = random, 1 = the reference above)")
    lines.append(efficiency_line(summary.episode_to_80, summary.source))
    return "\n".join(lines)


def efficiency_line(episode_to_80: int | None, source: SourceCurve | None) -> str:
    """AD's episodes to 80% over the source's, counted per stream and, where the source's
    streams feed one learner, by that learner's whole experience (< 1: AD is faster)."""
    line = "data efficiency (episodes to 80%, AD / source; < 1: AD is faster): "
    if source is None:
        return line + "n/a, no source curve"
    if episode_to_80 is None or source.episode_to_80 is None:
        return line + "n/a, one of them never reaches 80%"
    line += f"{episode_to_80 / source.episode_to_80:.3f} per stream"
    k = source.streams_per_learner
    if k is None:
        return line + " (the source's streams per learner are unknown)"
    if k > 1:
        line += (
            f"; {episode_to_80 / source.learner_episode_to_80:.3f} by the source learner's whole "
            f"experience ({k} streams feed one learner: 80% at its episode "
            f"{source.learner_episode_to_80})"
        )
    else:
        line += " (each source stream is its own learner: the two counts agree)"
    return line


def evaluate(
    source: Path,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: Path | None = None,
    compare: list[Path] | tuple[Path, ...] = (),
    allow_train_tasks: bool = False,
    progress: bool = True,
) -> list[RunSummary]:
    """Evaluate a run in context (and runs to compare) in each family it was trained on; write
    returns, summary and the figure of each.

    Args:
        source: a run folder (its latest checkpoint is used) or a checkpoint file.
        overrides: ``eval.key=value`` strings, applied to every family; other sections are
            refused.
        out_dir: output folder (default ``<run>/eval-<split>``, e.g. ``eval-test``); with several
            families, family ``f``'s outputs in ``out_dir/f`` and one figure with a panel per
            family in ``out_dir``; compared runs: ``compare-<i>-<run>/`` inside a family's.
        compare: other runs (ED, other sizes) evaluated on the same tasks, seeds and episodes,
            in the same families.
        allow_train_tasks: permit ``eval.tasks=train``, then labelled "train" in every output.
        progress: show progress bars.

    Returns:
        The summary of each family, as written to its ``summary.json`` (``RunSummary.to_json``).
    """
    runs = load_run(source, overrides)
    chosen = [select_tasks(run, allow_train_tasks) for run in runs]  # all checked first
    others = [load_run(p, overrides) for p in compare]  # all loaded before any rollout: fail fast
    compared = [
        [compared_family(o, run, tasks, label) for o in others]
        for run, (tasks, label) in zip(runs, chosen, strict=True)
    ]
    labels = sorted({label for _, label in chosen})
    if len(labels) > 1:
        raise UserError(
            f"the families' eval.tasks differ ({', '.join(labels)}); give one with "
            "--set eval.tasks=..."
        )
    label = labels[0]
    out_dir = Path(out_dir) if out_dir is not None else default_eval_dir(runs[0].run_dir, label)
    if len(runs) == 1:
        return [evaluate_loaded(runs[0], compared[0], *chosen[0], out_dir, progress)]
    summaries = []
    for run, (tasks, _), others_here in zip(runs, chosen, compared, strict=True):
        print(f"\n--- {run.split.family} ---", flush=True)
        folder = out_dir / run.split.family
        summaries.append(evaluate_loaded(run, others_here, tasks, label, folder, progress))
    from ad.evaluation.figure import figure_table, write_figure

    results = write_figure([out_dir / run.split.family / "summary.json" for run in runs], out_dir)
    print(figure_table(results))
    print(f"written: {out_dir / 'figure.png'}, {out_dir / 'figure.json'}")
    return summaries


def evaluate_loaded(
    run: LoadedRun,
    others: list[LoadedRun],
    tasks: list[Task],
    label: str,
    out_dir: Path,
    progress: bool,
) -> RunSummary:
    """One family of :func:`evaluate` once its runs are loaded and its tasks chosen."""
    ecfg = run.config.eval
    device = resolve_device(ecfg.device, "eval.device")
    for other in others:
        other.config = dataclasses.replace(other.config, eval=ecfg)  # evaluated the same way
        other.model.to(device)
    family = family_of_split(run.split)
    warnings: list[str] = []
    dataset_dir = source_dataset_dir(run)
    streams = source_streams(dataset_dir, tasks, label, warnings)
    references = task_references(family, tasks, streams, warnings)
    learner = source_learner_streams(dataset_dir) if streams else None
    source_stats = source_summary(streams, tasks, references[:2], ecfg.seed, learner)
    summaries: list[RunSummary] = []
    all_returns: list[np.ndarray] = []
    # Row 0 (first task, first seed) of the main run, traced for the exploration maps or paths.
    trace: dict | None = {} if draws_exploration(family) or draws_paths(family) else None
    for i, r in enumerate([run, *others]):
        if ecfg.backend == "ray":  # batches of rows as Ray tasks; see ad.evaluation.ray_rollout
            from ad.evaluation.ray_rollout import rollout_on_ray

            returns = rollout_on_ray(r.model, family, tasks, ecfg, run.config.ray.address, progress)
        else:
            returns = rollout(
                r.model,
                family,
                tasks,
                ecfg.num_seeds,
                ecfg.num_episodes,
                ecfg.action_mode,
                ecfg.temperature,
                ecfg.seed,
                device,
                progress,
                decoding=ecfg.decoding,
                transitions=trace if i == 0 else None,
                trace_rows=[0],
            )
        summary = _run_summary(r, returns, tasks, label, ecfg, source_stats, references, warnings)
        if i > 0:  # the main run's outputs are written last, once they list the compared runs
            _write_outputs(out_dir / f"compare-{i}-{r.run_dir.name}", summary, returns, r)
        summaries.append(summary)
        all_returns.append(returns)
    main = dataclasses.replace(summaries[0], compare=[s.compared() for s in summaries[1:]])
    _write_outputs(out_dir, main, all_returns[0], run)

    _plot(out_dir / "return_curves.png", summaries)
    if trace:  # not with backend ray, whose rows run elsewhere
        where = f"{label} task {tasks[0]}, evaluation seed {ecfg.seed}"
        if draws_exploration(family):
            title = f"{run.split.family}, {run.label}: cells visited on {where}"
            write_exploration(out_dir, family, tasks[0], trace, ecfg.num_episodes, title)
        if draws_paths(family):
            title = f"{run.split.family}, {run.label}: paths on {where}"
            write_paths(out_dir, family, tasks[0], trace, ecfg.num_episodes, title)
    print(format_summary(main))
    return main
