"""Evaluating a generalist (issue 14): every member family's test tasks, in one command.

Each member is evaluated exactly as a specialist is (:func:`ad.evaluation.evaluate.
evaluate_loaded`: its test tasks, source curve, references, summary and figures), with the
generalist's view of that member (``GeneralistTransformer.member``), into ``OUT/<member>/``.
Then ``OUT/figure.png`` draws one panel per family (normalised: random 0, optimal 1) with the
generalist's curve and the source's, and ``OUT/figure.json`` holds their numbers.
"""

from __future__ import annotations

from pathlib import Path

from ad.config import config_from_dict
from ad.errors import UserError
from ad.evaluation.evaluate import (
    LoadedRun,
    check_eval_overrides,
    default_eval_dir,
    evaluate_loaded,
    select_tasks,
)
from envs.base import TaskError
from envs.split import TaskSplit


def is_generalist(source: str | Path) -> bool:
    """Whether a run folder's latest checkpoint (or a checkpoint file) holds a generalist."""
    from ad.learn.checkpoint import find_checkpoint, load_checkpoint

    ckpt = load_checkpoint(find_checkpoint(source))
    return "members" in ckpt["model_args"]


def evaluate_mixture(
    source: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: Path | None = None,
    allow_train_tasks: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate a generalist on the tasks of each member family; write one summary per member
    and one figure with a panel per family.

    Args:
        source: a generalist's run folder (its latest checkpoint) or checkpoint file.
        overrides: ``eval.key=value`` strings, applied to every member's eval section.
        out_dir: output folder (default ``<run>/eval-<split>``); member ``m`` in ``out_dir/m``.
        allow_train_tasks: permit ``eval.tasks=train``.
        progress: show progress bars.

    Returns:
        {"members": {name: summary}, "figure": path of figure.png}.
    """
    from ad.evaluation.figure import figure_table, write_figure
    from ad.learn.checkpoint import find_checkpoint, load_model

    check_eval_overrides(overrides)
    checkpoint_path = find_checkpoint(source)
    model, ckpt = load_model(checkpoint_path, device="cpu")
    parent = checkpoint_path.parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    runs = []
    for name, record in ckpt["members"].items():
        cfg = config_from_dict(record["config"], overrides)
        try:
            split = TaskSplit.from_json(record["split"])
        except TaskError as e:
            raise UserError(f"checkpoint {checkpoint_path}, member {name}: {e}") from None
        # the member's own record stands in for a specialist's checkpoint keys
        member_ckpt = {**ckpt, **{k: record[k] for k in ("config", "split", "dataset_dir")}}
        runs.append(
            LoadedRun(model.member(name), member_ckpt, cfg, split, checkpoint_path, run_dir)
        )
    chosen = [select_tasks(run, allow_train_tasks) for run in runs]  # all checked first
    labels = {label for _, label in chosen}
    out_dir = Path(out_dir) if out_dir is not None else default_eval_dir(run_dir, labels.pop())
    summaries = {}
    for run, (tasks, label) in zip(runs, chosen, strict=True):
        name = run.split.family
        print(f"\n--- {name} ---", flush=True)
        summaries[name] = evaluate_loaded(run, [], tasks, label, out_dir / name, progress)
    results = write_figure([out_dir / name / "summary.json" for name in summaries], out_dir)
    print(figure_table(results))
    print(f"written: {out_dir / 'figure.png'}, {out_dir / 'figure.json'}")
    return {"members": summaries, "figure": str(out_dir / "figure.png")}
