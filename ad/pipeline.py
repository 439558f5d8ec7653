"""The whole pipeline on one config: collect -> train AD -> train ED -> evaluate -> report.

``ad-run configs/darkroom_quick.yaml`` is the project's main job. Every stage reruns on its own
(collection skips finished runs, training resumes finished runs as a no-op), so running the same
command twice gives the same numbers without redoing the work.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from ad.config import ExperimentConfig
from ad.errors import UserError
from ad.utils import atomic_write_text, matmul_gflops


def _stage(name: str) -> float:
    print(f"\n=== {name} ===", flush=True)
    return time.perf_counter()


def run_pipeline(
    cfg: ExperimentConfig,
    workers: int | None = None,
    with_ed: bool = True,
    report_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Run collect, AD training, ED training and evaluation; write ``REPORT.md``.

    Args:
        cfg: the experiment config (its ``train.mode`` is ignored: AD and ED are both trained).
        workers: collection processes (None: one per core).
        with_ed: also train the expert-distillation control and overlay it.
        report_dir: where the report goes (default ``runs/<name>/report``).
        progress: show progress bars.

    Returns:
        The evaluation summary of the AD run (with the ED comparison when trained).
    """
    from ad.data.collect import collect
    from ad.evaluation.evaluate import evaluate

    if cfg.dataset_dir.resolve() != cfg.collect_dir.resolve():
        raise UserError(
            f"ad-run collects into {cfg.collect_dir} but train.dataset is {cfg.train.dataset}; "
            "unset train.dataset (or set collect.output_dir to the same folder)"
        )
    timings: dict[str, float] = {}
    start = _stage("collect")
    collect(cfg, workers=workers, progress=progress)
    timings["collect"] = time.perf_counter() - start

    ad_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode="ad"))
    start = _stage("train AD")
    ad_run = train_run(ad_cfg, resume=_has_checkpoints(ad_cfg.run_dir), progress=progress)
    timings["train_ad"] = time.perf_counter() - start

    compare = []
    if with_ed:
        ed_train = dataclasses.replace(
            cfg.train,
            mode="ed",
            run_dir=f"{ad_cfg.run_dir}-ed",
            num_steps=cfg.train.ed_num_steps or cfg.train.num_steps,
        )
        ed_cfg = dataclasses.replace(cfg, train=ed_train)
        start = _stage("train ED")
        compare.append(
            train_run(ed_cfg, resume=_has_checkpoints(ed_cfg.run_dir), progress=progress)
        )
        timings["train_ed"] = time.perf_counter() - start

    report_dir = Path(report_dir) if report_dir is not None else ad_run / "report"
    start = _stage("evaluate")
    summary = evaluate(ad_run, out_dir=report_dir, compare=compare, progress=progress)
    timings["evaluate"] = time.perf_counter() - start

    timings["machine_matmul_gflops"] = matmul_gflops()  # the speed these seconds were taken at
    write_report(report_dir, cfg, summary, timings)
    print(f"\nreport: {report_dir / 'REPORT.md'}")
    return summary


def train_run(cfg: ExperimentConfig, resume: bool = False, progress: bool = True) -> Path:
    """``ad.learn.train.train`` with the periodic in-context evaluation of ``train.eval_every``
    wired in (training does not import the evaluation stage; this entry point joins them)."""
    from ad.evaluation.rollout import periodic_evaluator
    from ad.learn.train import train

    evaluator = periodic_evaluator(cfg) if cfg.train.eval_every else None
    return train(cfg, resume=resume, progress=progress, evaluator=evaluator)


def _has_checkpoints(run_dir: Path) -> bool:
    return any((Path(run_dir) / "checkpoints").glob("*.pt"))


def _fmt(value: object, digits: int = 2, missing: str = "never") -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_report(report_dir: Path, cfg: ExperimentConfig, summary: dict, timings: dict) -> None:
    """A short REPORT.md stating the numbers behind the figure."""
    stages = {name: seconds for name, seconds in timings.items() if name != "machine_matmul_gflops"}
    lines = [
        f"# {cfg.name}: in-context RL on {summary['split']} {cfg.env.family} tasks",
        "",
        "![return curves](return_curves.png)",
        "",
    ]
    # Warnings first: a missing source curve or a borrowed optimum changes what numbers mean.
    lines += [f"**Warning:** {line}" for line in summary.get("warnings", [])]
    lines += [""] if summary.get("warnings") else []
    lines += _report_table(summary)
    lines += [
        "",
        "Wall clock of this invocation (s; finished stages are skipped on a rerun): "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in stages.items())
        + f", total {sum(stages.values()):.0f}; this machine's single-thread matmul speed "
        f"{timings['machine_matmul_gflops']:.1f} GFLOP/s (machines of one kind differ "
        "several-fold; compare times at equal speed).",
        "",
        f"All numbers are means over {summary['split']} tasks x evaluation seeds (settings are",
        "chosen on validation tasks; the periodic evaluation during training runs on them);",
        "summary.json has the per-episode curves, 95% bootstrap intervals and IQMs.",
    ]
    atomic_write_text(Path(report_dir) / "REPORT.md", "\n".join(lines) + "\n")
    atomic_write_text(Path(report_dir) / "timings.json", json.dumps(timings, indent=2) + "\n")


def _report_table(summary: dict) -> list[str]:
    rows = [("AD", summary)] + [
        (c.get("label", "compare"), c) for c in summary.get("compare", []) if isinstance(c, dict)
    ]
    # The return ratio needs positive returns; the normalised one is the rise for any reward
    # sign (the point robot's dense rewards are negative).
    lines = [
        "| run | first-episode return | last-10 return | last-10 / first | normalised (episode 1) "
        "| normalised (last 10) | last-10 / first (normalised) | episode to 50% | episode to 80% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in rows:
        first = s.get("first_episode_return")
        last = s.get("last10_return")
        ratio = (last / first) if first and last is not None and first > 0 else None
        curve = (s.get("per_episode") or {}).get("normalised_mean") or [None]
        first_norm, last_norm = curve[0], s.get("last10_normalised")
        rise = (
            last_norm / first_norm
            if first_norm and last_norm is not None and first_norm > 0
            else None
        )
        lines.append(
            f"| {label} | {_fmt(first)} | {_fmt(last)} | {_fmt(ratio, 1, 'n/a')} | "
            f"{_fmt(first_norm, missing='n/a')} | {_fmt(last_norm)} | {_fmt(rise, 1, 'n/a')} | "
            f"{_fmt(s.get('episode_to_50'))} | {_fmt(s.get('episode_to_80'))} |"
        )
    source = summary.get("source")
    if isinstance(source, dict):
        lines += [
            "",
            f"Source algorithm on the same {summary.get('split')} tasks, learning from scratch: first episode "
            f"{_fmt(source.get('first_episode_return'))}, reaches 80% normalised at episode "
            f"{_fmt(source.get('episode_to_80'))}. Data-efficiency ratio (AD / source episodes to "
            f"80%): {_fmt(summary.get('data_efficiency_ratio'), missing='n/a')}.",
        ]
    reference = (
        "Best return of the source algorithm (the family has no optimal return; normalised "
        "scores use it)"
        if summary.get("optimal_from") == "source_best"
        else "Optimal return"
    )
    lines += [
        "",
        f"{reference} {_fmt(summary.get('optimal_return'), missing='n/a')}, random policy "
        f"{_fmt(summary.get('random_return'))} (means over the evaluated tasks).",
    ]
    return lines
