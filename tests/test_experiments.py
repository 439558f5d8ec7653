"""The paper's experiments as configs (configs/<family>.yaml) and their reduced-scale proofs.

Fast tests check that every paper-scale config loads, holds the paper's model and optimiser, and
states its cost; that each ``configs/<family>_ci.yaml`` is a reduced copy of it. Slow tests run
each reduced config through the real pipeline (collect -> train -> evaluate, into tmp_path), and
on the adversarial bandit assert in-context learning on the out-of-distribution test tasks.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from ad.config import ExperimentConfig, load_config
from ad.data.manifest import load_manifest
from ad.evaluation.summary import RunSummary
from envs.base import make_family

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILIES = {
    "darkroom_hard": "DarkRoomHard",
    "keytodoor": "DarkKeyToDoor",
    "bandit": "Bandit",
    "minigrid": "MiniGridEmpty",
}

# Bandit thresholds, from 7 runs of configs/bandit_ci.yaml (training seeds 0-4, split seeds 0-2):
# the test (then held-out) rise (mean return over the last 20 pulls minus the first 10) was 0.107-0.167
# (mean 0.140, sd 0.024); a model that does not learn in context rises by 0 +- 0.02 (the reward
# noise of 200 rows), and one that learned "pull odd arms" falls below random on these tasks.
# UCB-normalised scores were 0.77-0.99 on test tasks (mean 0.88, sd 0.09), 0.75-0.98 on seen tasks.
MIN_BANDIT_RISE = 0.06
MIN_BANDIT_UCB_SCORE = 0.5


def _load(name: str, tmp_path: Path | None = None) -> ExperimentConfig:
    overrides = []
    if tmp_path is not None:  # outputs into the test's folder, never into the repository
        overrides = [f"collect.output_dir={tmp_path / 'data'}", f"train.run_dir={tmp_path / 'run'}"]
    return load_config(CONFIGS / f"{name}.yaml", overrides)


def _header(name: str) -> str:
    lines = (CONFIGS / f"{name}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


# --------------------------------------------------------------------------- the configs


@pytest.mark.parametrize("name", FAMILIES)
def test_paper_scale_config_has_the_papers_model_and_states_its_cost(name):
    cfg = _load(name)
    assert cfg.name == name and cfg.env.family == FAMILIES[name]
    m, t = cfg.model, cfg.train
    assert (m.embed_dim, m.num_layers, m.num_heads, m.ff_dim, m.dropout) == (64, 4, 4, 2048, 0.1)
    o = t.optim
    assert (t.batch_size, o.lr, o.min_lr, o.betas, o.grad_clip) == (128, 3e-4, 2e-6, [0.9, 0.99], 1)
    assert o.weight_decay == 0.0 and t.mode == "ad" and t.device == "auto"
    hard = name == "darkroom_hard"
    assert (m.attn_dropout, m.input_mask_prob) == ((0.0, 0.5) if hard else (0.5, 0.3))
    assert t.label_smoothing == (0.2 if hard else 0.0)
    # The context spans several episodes (AD's premise); for the bandit, the whole 100-pull run.
    family = make_family(cfg.env.family, **cfg.env.family_kwargs)
    if name == "bandit":
        assert m.context_steps == cfg.collect.total_steps // cfg.collect.n_envs == 100
        assert cfg.collect.algorithm == "UCB" and cfg.eval.num_episodes == 100
    else:
        assert m.context_steps >= 2 * family.episode_length
        assert cfg.collect.algorithm == "PPO"
    split = cfg.env.task_split(family)  # the explicit sizes fit the family's tasks
    train = {str(task) for task in split.train}
    assert not train & {str(task) for task in split.test + split.validation}
    assert (len(split.train), len(split.test)) == (cfg.env.num_train_tasks, cfg.env.num_test_tasks)
    assert len(split.validation) == cfg.env.num_validation_tasks >= 1
    assert set(cfg.collect.splits) == {"train", "validation", "test"}
    header = _header(name)
    for words in ("What the paper reports", "CPU-hours", "GPU-hours", "how it was estimated"):
        assert words in header, f"configs/{name}.yaml must state {words!r} in its header"


@pytest.mark.parametrize("name", FAMILIES)
def test_ci_config_is_a_reduced_copy_of_the_paper_scale_one(name):
    full, ci = _load(name), _load(f"{name}_ci")
    assert ci.name == f"{name}_ci"
    assert (ci.env.family, ci.collect.algorithm) == (full.env.family, full.collect.algorithm)
    assert ci.env.family_kwargs == full.env.family_kwargs
    assert ci.train.device == "cpu" and ci.eval.num_episodes <= full.eval.num_episodes
    num_runs = {cfg.name: _num_runs(cfg) for cfg in (full, ci)}
    assert num_runs[ci.name] * ci.collect.total_steps < num_runs[name] * full.collect.total_steps
    assert ci.train.num_steps * ci.train.batch_size < full.train.num_steps * full.train.batch_size


# --------------------------------------------------------------------------- reduced-scale runs


def _finite(values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def ucb_score(summary: RunSummary) -> float:
    """The paper's bandit score (r - r_random) / (r_UCB - r_random), r = mean return over all
    pulls, r_UCB from the source curve of the same tasks in ``summary``."""
    random = summary.random_return
    model = np.mean(summary.per_episode.mean)
    ucb = np.mean(summary.source.per_episode.mean[: summary.num_episodes])
    return float((model - random) / (ucb - random))


def _num_runs(cfg: ExperimentConfig) -> int:
    """Runs a config collects: (task, seed) pairs of the splits in collect.splits."""
    split = cfg.env.task_split()
    return sum(len(split.tasks(s)) for s in cfg.collect.splits) * len(cfg.collect.seeds)


def _check_outputs(cfg: ExperimentConfig, summary: RunSummary, with_ed: bool) -> Path:
    """The files of every stage exist and hold finite numbers; returns the report folder."""
    runs = load_manifest(cfg.dataset_dir)["runs"]
    assert len(runs) == _num_runs(cfg)
    assert all((cfg.dataset_dir / r["file"]).is_file() for r in runs)
    assert {r["split"] for r in runs} == set(cfg.collect.splits)

    checkpoint = cfg.run_dir / "checkpoints" / f"step-{cfg.train.num_steps:06d}.pt"
    assert checkpoint.is_file() and (cfg.run_dir / "config.yaml").is_file()
    with (cfg.run_dir / "metrics.csv").open(newline="") as f:
        losses = [float(row["train/loss"]) for row in csv.DictReader(f)]
    assert losses and _finite(losses)
    if with_ed:  # ad-run's ED control: its own folder and step budget
        ed_steps = cfg.train.ed.num_steps or cfg.train.num_steps
        ed_dir = cfg.run_dir.parent / f"{cfg.run_dir.name}-ed"
        assert (ed_dir / "checkpoints" / f"step-{ed_steps:06d}.pt").is_file()

    report = cfg.run_dir / "report"
    for file in ("REPORT.md", "summary.json", "returns.npz", "return_curves.png", "config.yaml"):
        assert (report / file).is_file(), file
    returns = np.load(report / "returns.npz")["returns"]
    shape = (cfg.env.num_test_tasks, cfg.eval.num_seeds, cfg.eval.num_episodes)
    assert returns.shape == shape and np.isfinite(returns).all()
    assert summary.split == "test" and summary.num_episodes == cfg.eval.num_episodes
    assert _finite([summary.first_episode_return, summary.last10_return])
    assert _finite(summary.per_episode.mean)
    assert len(summary.per_episode.mean) == cfg.eval.num_episodes
    assert summary.source is not None and _finite(summary.source.per_episode.mean)
    assert len(summary.compare) == int(with_ed)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["darkroom_hard", "minigrid"])  # Key-to-Door: its recipe's test
def test_reduced_experiment_runs_end_to_end(name, tmp_path):
    from ad.pipeline import run_pipeline

    cfg = _load(f"{name}_ci", tmp_path)
    (summary,) = run_pipeline(cfg, workers=1, with_ed=True, progress=False)
    _check_outputs(cfg, summary, with_ed=True)


@pytest.mark.slow
def test_bandit_learns_in_context_on_even_arms(tmp_path):
    """AD distilled from UCB on odd-arm tasks learns in context on test even-arm tasks."""
    from ad.evaluation.evaluate import evaluate
    from ad.pipeline import run_pipeline
    from tests.factories import windows_of

    cfg = _load("bandit_ci", tmp_path)
    (summary,) = run_pipeline(cfg, workers=1, with_ed=False, progress=False)
    report = _check_outputs(cfg, summary, with_ed=False)

    # One-step episodes all the way: one window per stream (a whole 100-pull run), every
    # token starts an episode, and per-episode outputs have one entry per pull.
    dataset = windows_of(cfg)
    assert dataset.num_windows == cfg.env.num_train_tasks * cfg.collect.n_envs
    assert dataset.get_batch(np.arange(8))["prev_dones"].all()
    assert sorted(summary.normalised_at, key=int) == ["1", "10", "50", "100"]
    assert summary.source.num_episodes == 100

    # The test tasks are the adversarial ones: mostly an even best arm.
    best = [int(np.argmax(task["means"])) for task in summary.tasks]
    assert np.mean([arm % 2 == 0 for arm in best]) >= 0.8

    returns = np.load(report / "returns.npz")["returns"]  # (tasks, seeds, pulls)
    assert set(np.unique(returns)) <= {0.0, 1.0}
    curve = returns.mean(axis=(0, 1))  # (100,)
    rise = curve[-20:].mean() - curve[:10].mean()
    assert rise > MIN_BANDIT_RISE, f"no in-context rise on test tasks: {rise:.3f}"
    # The paper's normalisation: (r - r_random) / (r_UCB - r_random), r over the 100 pulls.
    assert ucb_score(summary) > MIN_BANDIT_UCB_SCORE, f"UCB-normalised {ucb_score(summary):.3f}"

    # Seen (odd-arm) training tasks, the paper's other column: labelled "train" everywhere.
    (seen,) = evaluate(
        cfg.run_dir,
        overrides=["eval.tasks=train", f"eval.max_tasks={cfg.env.num_test_tasks}"],
        out_dir=tmp_path / "seen",
        allow_train_tasks=True,
        progress=False,
    )
    assert seen.split == "train" and seen.source.num_runs == cfg.env.num_test_tasks
    assert ucb_score(seen) > MIN_BANDIT_UCB_SCORE, f"UCB-normalised {ucb_score(seen):.3f}"
