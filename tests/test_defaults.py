"""Derived defaults (issue 11, point 3): null context length, subsampling and evaluation episodes
follow the family's episode length and its source histories, not Dark Room's numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from ad.config import ExperimentConfig, help_text, load_config
from ad.defaults import SourceShape, derive
from ad.errors import UserError
from ad.evaluation.summary import RunSummary
from ad.learn.training_data import TrainingRuns, resolve_config, source_shape

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DERIVE = ["model.context_steps=null", "train.data.subsample_every=null", "eval.num_episodes=null"]


def _runs(episode_length: int, steps: int, streams: int, episodes: list[int]) -> TrainingRuns:
    """Training runs as the manifest describes them (one entry per run; no file is read)."""
    entries = [{"num_steps": steps, "num_streams": streams, "num_episodes": e} for e in episodes]
    metadata = [{"episode_length": episode_length}] * len(entries)
    return TrainingRuns(Path("."), {}, None, entries, metadata)


def _derived(cfg: ExperimentConfig) -> tuple[int, int, int]:
    return cfg.model.context_steps, cfg.train.data.subsample_every, cfg.eval.num_episodes


def test_dark_room_quick_derives_its_measured_values():
    """The quick recipe leaves the three null; the rule gives back 200, 5 and 120."""
    cfg = load_config(CONFIGS / "darkroom_quick.yaml")
    assert _derived(cfg) == (None, None, None)
    # 4 streams x 2000 steps = 100 episodes of 20 steps per stream, on every training run
    resolved = resolve_config(cfg, _runs(20, 2000, 4, [400] * 57))
    assert _derived(resolved) == (200, 5, 120)
    assert resolved.model == dataclasses.replace(cfg.model, context_steps=200)  # nothing else
    assert resolved.env == cfg.env and resolved.collect == cfg.collect


def test_ed_derives_a_context_that_fits_its_last_episodes():
    """ED keeps the last 10 episodes of a stream: a derived context of 16 twelve-step episodes
    (192 steps) would leave ED no window, so it is capped at the 120 steps ED keeps."""
    cfg = load_config(CONFIGS / "darkroom_quick.yaml", ["train.mode=ed"])
    runs = _runs(12, 2000, 4, [664] * 8)
    assert _derived(resolve_config(cfg, runs)) == (120, 5, 199)
    ad_cfg = load_config(CONFIGS / "darkroom_quick.yaml")
    assert _derived(resolve_config(ad_cfg, runs))[0] == 192
    given = load_config(
        CONFIGS / "darkroom_quick.yaml", ["train.mode=ed", "model.context_steps=60"]
    )
    assert _derived(resolve_config(given, runs))[0] == 60


def test_the_rule_on_other_shapes():
    # Bandit (bandit_ci): 1-step episodes, 100 pulls per stream: the whole run is the context.
    assert derive(SourceShape(1, 100, 100)) == (100, 1, 200)
    # Key-to-Door (keytodoor_ci): 50-step episodes, 1280 steps (25 whole episodes) per stream:
    # 4 episodes of context, every 3rd episode (kept streams of 426 steps: 2 contexts).
    assert derive(SourceShape(50, 1280, 25)) == (200, 3, 33)
    # Long episodes: at least 4 per context, even past 200 steps.
    assert derive(SourceShape(100, 10_000, 100)) == (400, 12, 108)
    # Short histories: at least 20 evaluation episodes.
    assert derive(SourceShape(20, 100, 5)) == (100, 1, 20)
    # Given values are kept; the others follow them.
    assert derive(SourceShape(20, 2000, 100), context_steps=100) == (100, 10, 110)
    assert derive(SourceShape(20, 2000, 100), subsample_every=20) == (100, 20, 105)
    assert derive(SourceShape(20, 2000, 100), num_episodes=7) == (200, 5, 7)


def test_the_shortest_runs_decide():
    runs = _runs(20, 2000, 4, [400, 400, 360])  # one run with fewer complete episodes
    assert source_shape(runs) == SourceShape(20, 2000, 90)


@pytest.mark.parametrize(
    ("shape", "kwargs", "needle"),
    [
        (SourceShape(50, 40, 0), {}, "less than one episode (50 steps)"),
        (SourceShape(20, 2000, 100), {"subsample_every": 200}, "lower train.data.subsample_every"),
    ],
)
def test_underivable_settings_give_one_line_errors(shape, kwargs, needle):
    with pytest.raises(UserError) as info:
        derive(shape, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_help_config_states_the_rule():
    text = help_text()
    assert "None: derived" in text
    assert "max(1, T // (2 * context_steps))" in text and "max(20, E + E // k)" in text


# --------------------------------------------------------------------------- end to end


def _tiny_run(name: str, overrides: list[str], tmp_path: Path) -> tuple[ExperimentConfig, dict]:
    """Collect, train and evaluate ``configs/<name>.yaml`` with the three settings derived."""
    from ad.data.collect import collect
    from ad.evaluation.evaluate import evaluate
    from ad.pipeline import train_run

    outputs = [f"collect.output_dir={tmp_path / 'data'}", f"train.run_dir={tmp_path / 'run'}"]
    cfg = load_config(CONFIGS / f"{name}.yaml", [*outputs, *DERIVE, *overrides])
    collect(cfg, workers=1, progress=False)
    run_dir = train_run(cfg, progress=False)
    (summary,) = evaluate(run_dir, progress=False)
    return cfg, summary


def _check_recorded(
    cfg: ExperimentConfig, summary: RunSummary, expected: tuple[int, int, int]
) -> None:
    run_dir = cfg.run_dir
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (
        saved["model"]["context_steps"],
        saved["train"]["data"]["subsample_every"],
        saved["eval"]["num_episodes"],
    ) == expected
    checkpoint = sorted((run_dir / "checkpoints").glob("*.pt"))[-1]
    stored = torch.load(checkpoint, weights_only=True)["config"]
    assert stored["model"]["context_steps"] == expected[0]
    assert stored["eval"]["num_episodes"] == expected[2]
    # Evaluation ran the recorded number of episodes.
    assert summary.num_episodes == expected[2]
    assert len(summary.per_episode.mean) == expected[2]


def test_bandit_derives_the_whole_run_as_context_and_runs(tmp_path):
    """1-step episodes: 100 pulls per stream give a 100-step context (the whole run), k 1, and
    200 evaluation pulls."""
    cfg, summary = _tiny_run(
        "bandit_ci",
        [
            "env.num_train_tasks=3",
            "env.num_validation_tasks=1",
            "env.num_test_tasks=2",
            "collect.n_envs=4",
            "collect.total_steps=400",
            "train.num_steps=4",
            "train.checkpoint.every=4",
            "eval.num_seeds=1",
        ],
        tmp_path,
    )
    assert derive(SourceShape(1, 100, 100)) == (100, 1, 200)  # the rule, on this data's shape
    _check_recorded(cfg, summary, (100, 1, 200))


def test_key_to_door_derives_four_episodes_of_context_and_runs(tmp_path):
    """50-step episodes, 1280 steps per stream (25 whole episodes): a context of 4 episodes
    (200 steps), every 3rd episode kept, 25 + 8 = 33 evaluation episodes."""
    cfg, summary = _tiny_run(
        "keytodoor_ci",
        [
            "env.num_train_tasks=2",
            "env.num_test_tasks=1",
            "train.num_steps=4",
            "train.checkpoint.every=4",
            "eval.num_seeds=1",
        ],
        tmp_path,
    )
    assert derive(SourceShape(50, 1280, 25)) == (200, 3, 33)
    _check_recorded(cfg, summary, (200, 3, 33))
