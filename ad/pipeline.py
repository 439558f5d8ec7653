"""The whole pipeline on one config: collect -> train AD -> train ED -> evaluate -> report.

``ad-run configs/darkroom_quick.yaml`` is the project's main job. Every stage reruns on its own
(collection skips finished runs, training resumes finished runs as a no-op), so running the same
command twice gives the same numbers without redoing the work.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from ad.config import ExperimentConfig
from ad.errors import UserError
from ad.generalist import GeneralistConfig, family_entries, replace_train
from ad.utils import atomic_write_text, matmul_gflops, open_bars

if TYPE_CHECKING:
    from ad.evaluation.summary import RunSummary


def _stage(name: str, overall: OverallProgress) -> float:
    print(f"\n=== {name} ===", flush=True)
    overall.begin(name)
    return time.perf_counter()


def run_pipeline(
    cfg: ExperimentConfig | GeneralistConfig,
    workers: int | None = None,
    with_ed: bool = True,
    report_dir: Path | None = None,
    progress: bool = True,
) -> list[RunSummary]:
    """Run collect, AD training, ED training and evaluation; write ``REPORT.md``.

    Args:
        cfg: the experiment or generalist config; ``train.mode`` names the method trained (ad or
            dpt; ed trains AD), beside which the ED control is trained.
        workers: collection processes (None: one per core).
        with_ed: also train the expert-distillation control and overlay it.
        report_dir: where the report goes (default ``runs/<name>/report``).
        progress: show progress bars.

    Returns:
        The evaluation summary of the AD run in each family (with the ED comparison when
        trained).
    """
    for m in family_entries(cfg):
        mcfg = m.experiment
        if mcfg.dataset_dir.resolve() != mcfg.collect_dir.resolve():
            where = f" family {m.name}" if isinstance(cfg, GeneralistConfig) else ""
            raise UserError(
                f"ad-run collects{where} into {mcfg.collect_dir} but train.dataset is "
                f"{mcfg.dataset_dir}; unset train.dataset (or set collect.output_dir to the same "
                "folder)"
            )
    overall = OverallProgress(stage_weights(cfg, with_ed), enabled=progress)
    try:
        return _stages(cfg, workers, with_ed, report_dir, progress, overall)
    finally:
        overall.close()


def _stages(
    cfg: ExperimentConfig | GeneralistConfig,
    workers: int | None,
    with_ed: bool,
    report_dir: Path | None,
    progress: bool,
    overall: OverallProgress,
) -> list[RunSummary]:
    from ad.data.collect import collect
    from ad.evaluation.evaluate import evaluate

    timings: dict[str, float] = {}
    start = _stage("collect", overall)
    for m in family_entries(cfg):
        collect(m.experiment, workers=workers, progress=progress)
    timings["collect"] = time.perf_counter() - start

    method = trained_method(cfg)
    ad_cfg = replace_train(cfg, mode=method)
    start = _stage(f"train {method.upper()}", overall)
    ad_run = train_run(ad_cfg, resume=has_checkpoints(ad_cfg.run_dir), progress=progress)
    timings[f"train_{method}"] = time.perf_counter() - start

    compare = []
    if with_ed:
        ed_cfg = replace_train(
            cfg,
            mode="ed",
            run_dir=f"{ad_cfg.run_dir}-ed",
            num_steps=cfg.train.ed.num_steps or cfg.train.num_steps,
        )
        start = _stage("train ED", overall)
        compare.append(train_run(ed_cfg, resume=has_checkpoints(ed_cfg.run_dir), progress=progress))
        timings["train_ed"] = time.perf_counter() - start

    report_dir = Path(report_dir) if report_dir is not None else ad_run / "report"
    start = _stage("evaluate", overall)
    summaries = evaluate(ad_run, out_dir=report_dir, compare=compare, progress=progress)
    timings["evaluate"] = time.perf_counter() - start

    timings["machine_matmul_gflops"] = matmul_gflops()  # the speed these seconds were taken at
    write_report(report_dir, cfg.name, summaries, timings)
    overall.begin(None)
    print(f"\nreport: {report_dir / 'REPORT.md'}")
    for figure in sorted(report_dir.rglob("*.png")):
        print(f"figure: {figure}")
    return summaries


# Seconds per unit of work of each stage, measured on the default recipe on 2 cores (collect 106 s
# for 648k env steps; training ~39k tokens/s; evaluation ~10k env-steps/s). Only their ratios
# matter: they weigh the stages against each other; the machine's speed enters through the
# rate observed so far.
STAGE_COST = {"collect": 1.6e-4, "train": 2.6e-5, "evaluate": 1e-4}
# The progress bar of each stage whose fraction done is the stage's.
STAGE_BAR = {"collect": "env steps", "evaluate": "eval"} | {
    f"train {method}": "train" for method in ("AD", "DPT", "ED")
}


def trained_method(cfg: ExperimentConfig | GeneralistConfig) -> str:
    """The method ``ad-run`` trains beside the ED control: train.mode, AD for ed."""
    return "ad" if cfg.train.mode == "ed" else cfg.train.mode


def stage_weights(cfg: ExperimentConfig | GeneralistConfig, with_ed: bool) -> dict[str, float]:
    """Each stage's expected share of ``ad-run``'s time, from the config's amounts of work."""
    tc, collect, tokens, eval_steps = cfg.train, 0.0, 0.0, 0.0
    for m in family_entries(cfg):
        mcfg = m.experiment
        split, family = mcfg.env.task_split(), mcfg.env.make_family()
        num_tasks = sum(len(split.tasks(name)) for name in mcfg.collect.splits)
        collect += num_tasks * len(mcfg.collect.seeds) * mcfg.collect.total_steps
        # settings left null are derived at training; a rough stand-in is enough for a weight
        window = tc.data.window_steps or cfg.model.context_steps or 10 * family.episode_length
        tokens = max(tokens, tc.batch_size * window)
        eval_tasks = len(split.tasks(mcfg.eval.tasks))
        if mcfg.eval.max_tasks is not None:
            eval_tasks = min(eval_tasks, mcfg.eval.max_tasks)
        episodes = mcfg.eval.num_episodes or 100
        eval_steps += eval_tasks * mcfg.eval.num_seeds * episodes * family.episode_length
    weights = {
        "collect": STAGE_COST["collect"] * collect,
        f"train {trained_method(cfg).upper()}": STAGE_COST["train"] * tc.num_steps * tokens,
        "evaluate": STAGE_COST["evaluate"] * eval_steps * (2 if with_ed else 1),
    }
    if with_ed:
        weights["train ED"] = STAGE_COST["train"] * (tc.ed.num_steps or tc.num_steps) * tokens
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


class OverallProgress:
    """``ad-run``'s overall line: percent done across the stages, the running stage, the elapsed
    time and an estimate of what remains, printed above the stages' own bars every
    ``every`` seconds and at each stage start.

    Inside a stage, the fraction done is read from the stage's own bar (found among the open bars
    of :func:`ad.utils.progress_bar` by its description, ``STAGE_BAR``), so the stages need no
    hook of their own. The
    estimate of what remains is elapsed x (1 - done) / done.
    """

    def __init__(self, weights: dict[str, float], enabled: bool = True, every: float = 30.0):
        self.weights, self.enabled, self.every = weights, enabled, every
        self.start = time.perf_counter()
        self.done_before = 0.0  # share of the stages that have finished
        self.stage: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        if enabled:
            self._thread.start()

    def begin(self, stage: str | None) -> None:
        """Start ``stage`` (a key of the weights; None: all done), closing the previous one."""
        if self.stage is not None:
            self.done_before += self.weights[self.stage]
        self.stage = stage
        self.report()

    def fraction(self) -> float:
        """Share of the whole run done, in [0, 1]."""
        inside = 0.0
        if self.stage is not None:
            desc = STAGE_BAR[self.stage]
            bars = [b for b in open_bars() if (b.desc or "").startswith(desc) and b.total]
            if bars:
                inside = min(bars[-1].n / bars[-1].total, 1.0)
            inside *= self.weights[self.stage]
        return min(self.done_before + inside, 1.0)

    def line(self) -> str:
        """The overall line: percent, stage, elapsed and about how long remains."""
        done, elapsed = self.fraction(), time.perf_counter() - self.start
        eta = _minutes(elapsed * (1 - done) / done) if done > 0.01 else "?"
        return (
            f"ad-run {100 * done:3.0f}% | {self.stage or 'done'} | elapsed {_minutes(elapsed)} | "
            f"about {eta} left"
        )

    def report(self) -> None:
        if self.enabled:
            tqdm.write(self.line())

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.report()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def train_run(
    cfg: ExperimentConfig | GeneralistConfig, resume: bool = False, progress: bool = True
) -> Path:
    """``ad.learn.train.train`` with the periodic in-context evaluation of ``train.validation.every``
    wired in (training does not import the evaluation stage; this entry point joins them)."""
    from ad.evaluation.rollout import periodic_evaluation
    from ad.learn.train import train

    evaluator = periodic_evaluation if cfg.train.validation.every else None
    return train(cfg, resume=resume, progress=progress, evaluator=evaluator)


def has_checkpoints(run_dir: Path) -> bool:
    return any((Path(run_dir) / "checkpoints").glob("*.pt"))


def _fmt(value: object, digits: int = 2, missing: str = "never") -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_report(report_dir: Path, name: str, summaries: list[RunSummary], timings: dict) -> None:
    """A short REPORT.md stating the numbers behind the figures, a section per family."""
    stages = {name: seconds for name, seconds in timings.items() if name != "machine_matmul_gflops"}
    split = summaries[0].split
    families = [s.family for s in summaries]
    lines = [f"# {name}: in-context RL on {split} {', '.join(families)} tasks", ""]
    for summary in summaries:
        folder = f"{summary.family}/" if len(summaries) > 1 else ""
        if len(summaries) > 1:
            lines += [f"## {summary.family}", ""]
        lines += [f"![return curves]({folder}return_curves.png)", ""]
        # Warnings first: a missing source curve or a borrowed optimum changes what numbers mean.
        lines += [f"**Warning:** {line}" for line in summary.warnings]
        lines += [""] if summary.warnings else []
        lines += _report_table(summary) + [""]
    lines += [
        "Wall clock of this invocation (s; finished stages are skipped on a rerun): "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in stages.items())
        + f", total {sum(stages.values()):.0f}; this machine's single-thread matmul speed "
        f"{timings['machine_matmul_gflops']:.1f} GFLOP/s (machines of one kind differ "
        "several-fold; compare times at equal speed).",
        "",
        f"All numbers are means over {split} tasks x evaluation seeds (settings are",
        "chosen on validation tasks; the periodic evaluation during training runs on them);",
        "summary.json has the per-episode curves, 95% bootstrap intervals and IQMs.",
    ]
    atomic_write_text(Path(report_dir) / "REPORT.md", "\n".join(lines) + "\n")
    atomic_write_text(Path(report_dir) / "timings.json", json.dumps(timings, indent=2) + "\n")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator where both are known and the denominator is positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _report_table(summary: RunSummary) -> list[str]:
    from ad.evaluation.evaluate import efficiency_line

    rows = [(summary.label, summary), *((c.label, c) for c in summary.compare)]
    # The return ratio needs positive returns; the normalised one is the rise for any reward
    # sign (the point robot's dense rewards are negative).
    lines = [
        "| run | first-episode return | last-10 return | last-10 / first | normalised (episode 1) "
        "| normalised (last 10) | last-10 / first (normalised) | episode to 50% | episode to 80% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in rows:
        first, last = s.first_episode_return, s.last10_return
        first_norm = (s.per_episode.normalised_mean or [None])[0]
        last_norm = s.last10_normalised
        lines.append(
            f"| {label} | {_fmt(first)} | {_fmt(last)} | {_fmt(_ratio(last, first), 1, 'n/a')} | "
            f"{_fmt(first_norm, missing='n/a')} | {_fmt(last_norm)} | "
            f"{_fmt(_ratio(last_norm, first_norm), 1, 'n/a')} | "
            f"{_fmt(s.episode_to_50)} | {_fmt(s.episode_to_80)} |"
        )
    source = summary.source
    if source is not None:
        lines += [
            "",
            f"Source algorithm on the same {summary.split} tasks, learning from scratch: first "
            f"episode {_fmt(source.first_episode_return)}, reaches 80% normalised at episode "
            f"{_fmt(source.episode_to_80)} of each stream.",
            "",
            "D" + efficiency_line(summary.episode_to_80, source)[1:] + ".",
        ]
    reference = (
        "Best return of the source algorithm (the family has no optimal return; normalised "
        "scores use it)"
        if summary.optimal_from == "source_best"
        else "Optimal return"
    )
    lines += [
        "",
        f"{reference} {_fmt(summary.optimal_return, missing='n/a')}, random policy "
        f"{_fmt(summary.random_return)} (means over the evaluated tasks).",
    ]
    return lines
