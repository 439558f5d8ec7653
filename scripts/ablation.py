"""A paper ablation: one setting swept on one collected dataset, each value trained and scored on
test tasks; one JSON, one figure, one table.

Usage:
  python scripts/ablation.py --config configs/keytodoor_quick.yaml \
      --axis train.data.num_tasks=9,37,151,600,1200 --out OUT \
      --json docs/results/ablations/keytodoor_tasks.json [--seeds 0 1] [--set KEY=VALUE ...] \
      [--page docs/results/ablations.md]
  python scripts/ablation.py --table docs/results/ablations/keytodoor_tasks.json [--page PAGE]

Every value trains with the config as it is apart from the swept setting (``--set`` changes the
rest for all values, e.g. the dataset folder), in this process, one after another; a run whose
``eval-test/summary.json`` exists is reused, one with checkpoints resumed. The dataset must hold
what the largest value needs (the tasks ablation collects ``env.num_train_tasks`` of the largest
count once and trains on prefixes of it: ``train.data.num_tasks``). Scores are the last-10
normalised returns on the test tasks; the interval is over runs (training seeds) where a value
has two or more, else over the test tasks of its one run, and the JSON says which. ``--table``
redraws the figure (beside the JSON) and the page's block from the kept JSON alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

from ad.config import load_config, parse_override
from ad.errors import UserError
from ad.evaluation.metrics import bootstrap_ci, normalise
from ad.evaluation.summary import load_summary
from ad.utils import (
    atomic_write_text,
    matmul_gflops,
    package_versions,
    replace_marked_block,
    to_json,
)

LAST = 10  # the headline's last-10 episodes


def parse_axis(text: str) -> tuple[str, list]:
    """``section.key=v1,v2,...`` -> the dotted key and its values (parsed as YAML scalars)."""
    key, sep, values = text.partition("=")
    if not sep or "." not in key or not values:
        raise UserError(f"--axis {text} is not SECTION.KEY=V1,V2,...")
    return key, [parse_override(f"{key}={v}")[1] for v in values.split(",")]


def _task_interval(folder: Path, seed: int) -> tuple[float, float]:
    """95% bootstrap interval over the test tasks of one run's last-10 normalised score."""
    with np.load(folder / "returns.npz") as f:
        scores = normalise(f["returns"], f["optimal"], f["random"])  # (tasks, seeds, episodes)
    per_task = np.nanmean(scores[:, :, -LAST:], axis=(1, 2))
    low, high = bootstrap_ci(per_task[:, None], seed)
    return float(low[0]), float(high[0])


def row_of(value, folders: list[Path], seconds: list[dict], seed: int = 0) -> dict:
    """One value's score over its runs (eval folders) with its interval, curve and costs."""
    summaries = [load_summary(f / "summary.json") for f in folders]
    scores = np.array([s.last10_normalised for s in summaries], dtype=float)
    if len(scores) >= 2:
        low, high = (float(x[0]) for x in bootstrap_ci(scores[:, None], seed))
        over = f"{len(scores)} runs (training seeds)"
    else:
        low, high = _task_interval(folders[0], seed)
        over = f"{summaries[0].num_tasks} test tasks of one run"
    curves = np.array([s.per_episode.normalised_mean for s in summaries], dtype=float)
    sources = [s.source.last10_normalised for s in summaries if s.source is not None]
    return {
        "value": value,
        "last10_normalised": {
            "mean": float(scores.mean()),
            "ci_low": low,
            "ci_high": high,
            "interval_over": over,
            "runs": scores,
        },
        "first_episode_normalised": float(curves[:, 0].mean()),
        "curve": curves.mean(0),
        "source_last10_normalised": float(np.mean(sources)) if sources else None,
        "train_seconds": [s.get("train") for s in seconds],
        "eval_seconds": [s.get("eval") for s in seconds],
    }


def run_value(cfg_path: str, overrides: list[str], run_dir: Path) -> dict:
    """Train (or resume) and evaluate one run on test tasks; its seconds (empty if reused)."""
    from ad.evaluation.evaluate import evaluate
    from ad.pipeline import has_checkpoints, train_run

    out = run_dir / "eval-test"
    timings = run_dir / "ablation_timings.json"
    if (out / "summary.json").exists():
        return json.loads(timings.read_text()) if timings.exists() else {}
    cfg = load_config(cfg_path, [*overrides, f"train.run_dir={run_dir}"])
    t0 = time.perf_counter()
    train_run(cfg, resume=has_checkpoints(run_dir), progress=False)
    t1 = time.perf_counter()
    evaluate(run_dir, ["eval.tasks=test"], out_dir=out, progress=False)
    seconds = {"train": t1 - t0, "eval": time.perf_counter() - t1}
    atomic_write_text(timings, json.dumps(seconds) + "\n")
    return seconds


def measure(args: argparse.Namespace) -> dict:
    key, values = parse_axis(args.axis)
    base = load_config(args.config, args.set)
    for value in values:  # a bad value is refused before any training
        load_config(args.config, [*args.set, f"{key}={json.dumps(value)}"])
    gflops = matmul_gflops()
    rows = []
    for value in values:
        folders, seconds = [], []
        for seed in args.seeds:
            run_dir = Path(args.out) / "runs" / f"{key}={value}-t{seed}"
            overrides = [*args.set, f"{key}={json.dumps(value)}", f"train.seed={seed}"]
            print(f"ablation: {key}={value}, training seed {seed} -> {run_dir}", flush=True)
            seconds.append(run_value(args.config, overrides, run_dir))
            folders.append(run_dir / "eval-test")
        rows.append(row_of(value, folders, seconds))
        r = rows[-1]["last10_normalised"]
        print(f"ablation: {key}={value}: {r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
    return {
        "recipe": base.name,
        "config": args.config,
        "axis": key,
        "overrides": args.set,
        "training_seeds": args.seeds,
        "split_seed": base.env.split_seed,
        "family": base.env.family,
        "num_test_tasks": len(base.env.task_split().test),
        "eval_seeds": base.eval.num_seeds,
        "rows": rows,
        "machine_matmul_gflops": gflops,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "versions": package_versions(),
    }


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.2f} [{stat['ci_low']:.2f}, {stat['ci_high']:.2f}]"


def table(result: dict) -> str:
    """The markdown block: one row per value."""
    rows = result["rows"]
    head = (
        f"`{result['recipe']}`, {result['family']}, split seed {result['split_seed']}, "
        f"training seeds {result['training_seeds']}, {result['num_test_tasks']} test tasks x "
        f"{result['eval_seeds']} evaluation seeds; last-{LAST} normalised score on test tasks, "
        f"mean [95% CI over {rows[0]['last10_normalised']['interval_over']}] "
        f"(`{result['json']}`, made {result['date']} on a machine of "
        f"{result['machine_matmul_gflops']:.0f} GFLOP/s single-thread matmul):"
    )
    lines = [
        head,
        "",
        f"| `{result['axis']}` | AD, last {LAST} | AD, episode 1 | source, last {LAST} "
        "(per stream) | training (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        source = r["source_last10_normalised"]
        train = [s for s in r["train_seconds"] if s is not None]
        lines.append(
            f"| {r['value']} | {_fmt(r['last10_normalised'])} | "
            f"{r['first_episode_normalised']:.2f} | "
            f"{'-' if source is None else f'{source:.2f}'} | "
            f"{f'{np.mean(train):.0f}' if train else '-'} |"
        )
    return "\n".join(lines)


def draw(result: dict, path: Path) -> None:
    """Score against the swept value (left) and each value's curve over episodes (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    values = [r["value"] for r in rows]
    numeric = all(isinstance(v, (int, float)) and v > 0 for v in values)
    x = values if numeric else list(range(len(values)))
    mean = [r["last10_normalised"]["mean"] for r in rows]
    low = [r["last10_normalised"]["ci_low"] for r in rows]
    high = [r["last10_normalised"]["ci_high"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(x, mean, "o-", color="C0", label="AD")
    left.fill_between(x, low, high, color="C0", alpha=0.2)
    sources = [r["source_last10_normalised"] for r in rows]
    if all(s is not None for s in sources):
        left.plot(x, sources, "--", color="C2", label="source (per stream)")
    if numeric and max(values) / min(values) >= 10:
        left.set_xscale("log")
    if not numeric:
        left.set_xticks(x, [str(v) for v in values])
    left.set_xlabel(result["axis"])
    left.set_ylabel(f"normalised return, last {LAST} episodes")
    left.legend()
    for i, r in enumerate(rows):
        right.plot(np.arange(1, len(r["curve"]) + 1), r["curve"], color=f"C{i}", label=r["value"])
    right.set_xlabel("episode in context")
    right.set_ylabel("normalised return")
    right.legend(title=result["axis"].rsplit(".", 1)[-1], fontsize=8)
    fig.suptitle(f"{result['recipe']}: {result['axis']} on test tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="the experiment YAML (default: all defaults)")
    parser.add_argument("--axis", help="SECTION.KEY=V1,V2,... the setting swept")
    parser.add_argument("--out", help="folder of the runs")
    parser.add_argument("--json", help="where the result is kept (docs/results/ablations/...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--table", metavar="JSON", help="redraw from a kept result; no training")
    parser.add_argument("--page", help="page whose <!-- ablation NAME --> block gets the table")
    args = parser.parse_args(argv)
    try:
        if args.table:
            path = Path(args.table)
            result = json.loads(path.read_text())
        else:
            if not (args.axis and args.out and args.json):
                raise UserError("give --axis, --out and --json (or --table JSON)")
            path = Path(args.json)
            result = {**measure(args), "json": str(path)}
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(to_json(result), indent=2) + "\n")
        draw(result, path.with_suffix(".png"))
        text = table(result)
        if args.page:
            mark = f"ablation {path.stem}"
            replace_marked_block(Path(args.page), f"<!-- {mark} -->", f"<!-- /{mark} -->", text)
        print(text)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
