"""Settings chosen on validation tasks, built in: ``ad-run --select``.

For a user's config, a budgeted set of candidates is trained, each differing from the config
(its null settings derived by the rule of :mod:`ad.defaults`) in the settings that moved
validation scores most on the shipped families: the subsampling of the source streams
(Key-to-Door's recipe) and the context length (Dark Room Hard's); then, with a larger budget,
both, and a wider model. Each candidate is rolled out in context on the **validation** tasks with
the same evaluator, seeds and episodes; the best one's config is written with a table of what was
tried, and the usual pipeline then runs on it, reusing its trained model, so the test tasks are
touched once.

Outputs, in ``<train.run_dir>-select/``: one run folder per candidate (with its
``eval-validation/``), ``selection.json`` (settings, scores, times, the machine's speed),
``selection.md`` (the table), ``chosen.yaml`` (the chosen config) and ``versions.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ad.config import ExperimentConfig, config_from_dict, config_to_dict
from ad.errors import UserError
from ad.utils import atomic_write_text, matmul_gflops, write_versions

DEFAULT_BUDGET = 3  # trainings: the "at most 3x one training run"
# Achieved training FLOP/s over the single-thread matmul GFLOP/s of the machine (2-core CPU,
# default model); only the up-front estimate uses it.
TRAIN_EFFICIENCY = 0.5
DENSER = 4  # the denser candidate keeps every (k // DENSER)-th episode of the rule's k
LONGER = 2  # the longer candidate's context holds LONGER times the episodes


@dataclass(frozen=True)
class Candidate:
    """One configuration tried: a name and the settings it changes."""

    name: str
    settings: dict[str, Any]  # dotted key -> value, e.g. {"train.data.subsample_every": 3}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "as configured"


def candidates(resolved: ExperimentConfig, steps_per_stream: int, budget: int) -> list[Candidate]:
    """The first ``budget`` candidates for a config whose derived settings are resolved.

    The config itself comes first; a candidate that would equal it or not fit the data (a
    context longer than a kept stream) is left out, and the next one takes its place.
    """
    k, context = resolved.train.data.subsample_every, resolved.model.context_steps
    window = resolved.train.data.window_steps
    denser = max(1, k // DENSER)
    longer = context * LONGER
    fits_longer = longer <= steps_per_stream // k and (window is None or window >= longer)
    fits_both = longer <= steps_per_stream // denser and (window is None or window >= longer)
    model = resolved.model
    options = [
        Candidate("as configured", {}),
        Candidate("denser subsampling", {"train.data.subsample_every": denser})
        if denser != k
        else None,
        Candidate("longer context", {"model.context_steps": longer}) if fits_longer else None,
        Candidate(
            "both",
            {"train.data.subsample_every": denser, "model.context_steps": longer},
        )
        if denser != k and fits_both
        else None,
        Candidate(
            "wider model",
            {"model.embed_dim": 2 * model.embed_dim, "model.ff_dim": 2 * model.ff_dim},
        ),
    ]
    return [c for c in options if c is not None][:budget]


def with_settings(cfg: ExperimentConfig, settings: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with dotted-key settings changed, validated as a config file would be."""
    return config_from_dict(
        config_to_dict(cfg), [f"{k}={json.dumps(v)}" for k, v in settings.items()]
    )


def training_flops(cfg: ExperimentConfig) -> float:
    """Rough FLOPs of one training: 6 x parameters x tokens for the weights, plus attention's
    12 x layers x context x width per token (forward and backward)."""
    m, tc = cfg.model, cfg.train
    context = tc.data.window_steps or m.context_steps
    params = m.num_layers * (4 * m.embed_dim**2 + 2 * m.embed_dim * m.ff_dim)
    per_token = 6 * params + 12 * m.num_layers * context * m.embed_dim
    return per_token * tc.num_steps * tc.batch_size * context


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def select(
    cfg: ExperimentConfig,
    budget: int = DEFAULT_BUDGET,
    workers: int | None = None,
    progress: bool = True,
) -> ExperimentConfig:
    """Collect, train and score the candidates on validation tasks; return the chosen config
    (its ``train.run_dir`` the chosen candidate's trained run).

    Raises:
        UserError: a budget below 1, a config whose split has no validation tasks.
    """
    from ad.data.collect import collect
    from ad.evaluation.evaluate import evaluate
    from ad.learn.training_data import load_training_runs, resolve_config, source_shape
    from ad.pipeline import has_checkpoints, train_run

    if budget < 1:
        raise UserError(f"--select-budget {budget}: give at least 1 training")
    if cfg.train.mode == "ed":
        raise UserError("ad-run --select chooses the settings of AD or DPT; set train.mode ad")
    if not cfg.env.task_split().tasks("validation"):
        raise UserError(
            "ad-run --select scores candidates on validation tasks, but the split has none; set "
            "env.num_validation_tasks >= 1"
        )
    print("\n=== select: collect ===", flush=True)
    collect(cfg, workers=workers, progress=progress)
    training = load_training_runs(cfg)
    resolved = resolve_config(cfg, training)
    shape = source_shape(training)
    tried = candidates(resolved, shape.steps_per_stream, budget)
    gflops = matmul_gflops()
    configs = []
    for i, cand in enumerate(tried):
        run_dir = Path(f"{cfg.run_dir}-select") / f"{i}-{cand.name.replace(' ', '-')}"
        settings = {**cand.settings, "train.run_dir": str(run_dir)}
        configs.append(with_settings(resolved, settings))
    flops = [training_flops(c) for c in configs]
    estimate = sum(flops) / (TRAIN_EFFICIENCY * gflops * 1e9)
    print(
        f"select: {len(tried)} candidates on {len(cfg.env.task_split().tasks('validation'))} "
        f"validation tasks (budget {budget} trainings): "
        + "; ".join(c.name for c in tried)
        + f". Estimate ~{_minutes(estimate)} of training at this machine's single-thread "
        f"matmul {gflops:.0f} GFLOP/s (within ~2x), plus their evaluations",
        flush=True,
    )
    # every candidate is scored over the episodes of the configured one, so scores compare
    episodes = ["eval.tasks=validation", f"eval.num_episodes={resolved.eval.num_episodes}"]
    rows, start = [], time.perf_counter()
    for i, (cand, ccfg) in enumerate(zip(tried, configs, strict=True)):
        print(f"\n=== select: {i + 1}/{len(tried)} {cand.name} ({cand.describe()}) ===", flush=True)
        t0 = time.perf_counter()
        train_run(ccfg, resume=has_checkpoints(ccfg.run_dir), progress=progress)
        t1 = time.perf_counter()
        (summary,) = evaluate(
            ccfg.run_dir, episodes, out_dir=ccfg.run_dir / "eval-validation", progress=progress
        )
        t2 = time.perf_counter()
        rows.append(
            {
                "name": cand.name,
                "settings": cand.settings,
                "run_dir": str(ccfg.run_dir),
                "validation_last10_normalised": summary.last10_normalised,
                "validation_last10_return": summary.last10_return,
                "validation_episode_to_80": summary.episode_to_80,
                "train_seconds": t1 - t0,
                "eval_seconds": t2 - t1,
            }
        )
        done = time.perf_counter() - start
        left = done / (i + 1) * (len(tried) - i - 1)
        print(
            f"select: {cand.name}: validation last-10 {_score_text(rows[-1])}; "
            f"{_minutes(done)} so far, ~{_minutes(left)} left",
            flush=True,
        )
    best = max(range(len(rows)), key=lambda i: _score(rows[i]))
    chosen = configs[best]
    _write(Path(f"{cfg.run_dir}-select"), cfg, rows, best, chosen, budget, estimate, gflops)
    return chosen


def _score(row: dict) -> float:
    """What is maximised: the normalised last-10 score, or the return where a family has none."""
    value = row["validation_last10_normalised"]
    return value if value is not None else row["validation_last10_return"]


def _score_text(row: dict) -> str:
    value = row["validation_last10_normalised"]
    if value is None:
        return f"return {row['validation_last10_return']:.2f}"
    return f"{value:.2f} normalised"


def selection_table(rows: list[dict], best: int) -> str:
    """The Markdown table of the candidates, the chosen one marked."""
    lines = [
        "| candidate | settings | validation last 10 (normalised) | last-10 return "
        "| episode to 80% | training (s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        name = f"**{r['name']}** (chosen)" if i == best else r["name"]
        norm = r["validation_last10_normalised"]
        settings = Candidate(r["name"], r["settings"]).describe()
        lines.append(
            f"| {name} | {settings} | {'n/a' if norm is None else f'{norm:.2f}'} | "
            f"{r['validation_last10_return']:.2f} | {r['validation_episode_to_80'] or 'never'} | "
            f"{r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def _write(
    folder: Path,
    cfg: ExperimentConfig,
    rows: list[dict],
    best: int,
    chosen: ExperimentConfig,
    budget: int,
    estimate: float,
    gflops: float,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table = selection_table(rows, best)
    record = {
        "name": cfg.name,
        "split": "validation",
        "budget_trainings": budget,
        "estimated_training_seconds": estimate,
        "machine_matmul_gflops": gflops,
        "candidates": rows,
        "chosen": rows[best]["name"],
        "table": table,
    }
    atomic_write_text(folder / "selection.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(
        folder / "selection.md",
        f"# {cfg.name}: settings chosen on validation tasks\n\n{table}\n",
    )
    text = yaml.safe_dump(config_to_dict(chosen), sort_keys=False)
    atomic_write_text(folder / "chosen.yaml", text)
    write_versions(folder)
    print(f"\n{table}\n\nselect: chose {rows[best]['name']}; {folder / 'chosen.yaml'}", flush=True)
