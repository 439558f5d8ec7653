"""In-context evaluation and its figures, on real checkpoints, real envs and real HDF5 histories.

The model is a small, randomly initialised ADTransformer (weights from a seed, scaled up so that its
actions depend on its inputs); checkpoints are written with ad.learn.checkpoint.save_checkpoint per the
checkpoint contract; held-out histories are real Dark Room episodes of a scripted learner whose
epsilon decays, written with ad.data.histories.write_history.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import envs
from ad.errors import UserError
from ad.evaluation import plots
from ad.evaluation.evaluate import data_efficiency_ratio, evaluate
from ad.evaluation.metrics import (
    bootstrap_ci,
    curve_stats,
    first_episode_reaching,
    iqm,
    normalise,
    summarise_returns,
    trailing_mean,
)
from ad.evaluation.plots import plot_return_curves, plot_source_curves
from ad.evaluation.summary import CurveStats, RunSummary, load_summary
from ad.learn.checkpoint import checkpoint_name
from envs.darkroom import DarkRoom
from tests.factories import PNG_MAGIC, curve, make_config, random_model, save_run

# --------------------------------------------------------------------------- test families


class RecordingDarkRoom(DarkRoom):
    """Dark Room that records every task it builds an env for (to prove what evaluation touches)."""

    made: list = []

    def make_env(self, task):
        RecordingDarkRoom.made.append(self.validate_task(task))
        return super().make_env(task)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_writes_returns_summary_figure_and_compares(project, capsys):
    root, split = project["root"], project["split"]
    out = root / "out"
    (summary,) = evaluate(root / "run", out_dir=out, compare=[root / "run-ed"], progress=False)
    data = np.load(out / "returns.npz", allow_pickle=False)
    assert data["returns"].shape == (3, 2, 3)
    assert json.loads(str(data["tasks"])) == list(split.test[:3])
    assert str(data["split"]) == "test"
    optimal = [DarkRoom().optimal_return(t) for t in split.test[:3]]
    np.testing.assert_allclose(data["optimal"], optimal)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary.to_json()
    assert isinstance(summary, RunSummary) and load_summary(out) == summary  # exact round trip
    assert summary.split == "test" and summary.num_tasks == 3 and summary.run == str(root / "run")
    per = summary.per_episode
    assert len(per.mean) == 3 and len(per.iqm) == 3
    np.testing.assert_allclose(per.mean, data["returns"].reshape(6, 3).mean(0))
    assert all(lo <= m <= hi for lo, m, hi in zip(per.ci_low, per.mean, per.ci_high, strict=True))
    assert set(summary.normalised_at) == {"1"}  # 10, 50 and 100 are past the 3 episodes
    # the source curve: test runs of the 3 evaluated tasks only, 2 streams each
    source = summary.source
    assert (source.num_runs, source.num_tasks, source.num_streams) == (3, 3, 6)
    assert source.episode_to_80 is not None  # the scripted learner gets there
    expected = summary.episode_to_80 and summary.episode_to_80 / source.episode_to_80
    assert summary.data_efficiency_ratio == (expected or None)
    assert "data efficiency" in capsys.readouterr().out
    # the compared ED run: same tasks, seeds, episodes; its own folder and summary
    (compared,) = summary.compare
    assert compared.label == "ED (run-ed)"
    ed_dir = next(out.glob("compare-*"))
    assert load_summary(ed_dir).compared() == compared
    ed = np.load(ed_dir / "returns.npz")
    assert ed["returns"].shape == (3, 2, 3) and str(ed["tasks"]) == str(data["tasks"])
    for folder in (out, ed_dir):
        assert (folder / "config.yaml").is_file() and (folder / "versions.json").is_file()
    png = (out / "return_curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(out / "return_curves.png")
    assert image.ndim == 3 and image.shape[0] > 100
    # deterministic: the same call twice gives identical numbers
    evaluate(
        root / "run", out_dir=root / "again", overrides=["eval.action_mode=sample"], progress=False
    )
    evaluate(
        root / "run", out_dir=root / "again2", overrides=["eval.action_mode=sample"], progress=False
    )
    first = np.load(root / "again" / "returns.npz")["returns"]
    np.testing.assert_array_equal(first, np.load(root / "again2" / "returns.npz")["returns"])


def test_evaluation_touches_only_test_tasks_unless_asked(tmp_path, monkeypatch):
    name = f"{__name__}:RecordingDarkRoom"
    family = envs.make_family(name)
    split = family.split(0, num_validation=3, num_test=4)
    cfg = make_config(tmp_path, family=name, max_tasks=None, num_episodes=1, num_seeds=1)
    run = save_run(tmp_path / "run", cfg, random_model(cfg, family), split)
    titles = []
    monkeypatch.setattr(plots, "plot_return_curves", lambda *args: titles.append(args[2]))
    RecordingDarkRoom.made.clear()
    (summary,) = evaluate(run, progress=False)  # the default: test tasks, into <run>/eval-test
    assert RecordingDarkRoom.made and all(
        split.split_of(t) == "test" for t in RecordingDarkRoom.made
    )
    assert summary.split == "test" and summary.tasks == list(split.test)
    assert json.loads((run / "eval-test" / "summary.json").read_text())["split"] == "test"
    assert "on 4 test tasks" in titles[-1]

    # Validation tasks (to choose settings on) are asked for by name and written apart.
    RecordingDarkRoom.made.clear()
    (summary,) = evaluate(run, overrides=["eval.tasks=validation"], progress=False)
    assert {json.dumps(t) for t in RecordingDarkRoom.made} == {
        json.dumps(t) for t in split.validation
    }
    assert summary.split == "validation" and summary.tasks == list(split.validation)
    assert str(np.load(run / "eval-validation" / "returns.npz")["split"]) == "validation"
    assert "on 3 validation tasks" in titles[-1]
    assert json.loads((run / "eval-test" / "summary.json").read_text())["split"] == "test"

    with pytest.raises(UserError, match="allow-train-tasks"):
        evaluate(run, overrides=["eval.tasks=train"], out_dir=tmp_path / "x", progress=False)
    RecordingDarkRoom.made.clear()
    (summary,) = evaluate(
        run,
        overrides=["eval.tasks=train", "eval.max_tasks=2"],
        out_dir=tmp_path / "train",
        allow_train_tasks=True,
        progress=False,
    )
    assert {json.dumps(t) for t in RecordingDarkRoom.made} == {
        json.dumps(t) for t in split.train[:2]
    }
    assert summary.split == "train"
    assert str(np.load(tmp_path / "train" / "returns.npz")["split"]) == "train"
    saved = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert saved["split"] == "train"


def _bad_source(kind: str, tmp_path: Path) -> tuple[Path, dict]:
    """A (source, evaluate kwargs) pair for each kind of bad input."""
    family = envs.make_family("DarkRoom")
    split = family.split(0)
    cfg = make_config(tmp_path)
    run = tmp_path / "run"
    if kind == "missing":
        return tmp_path / "nope", {}
    if kind == "empty":
        run.mkdir()
        return run, {}
    if kind == "corrupt":
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / checkpoint_name(1)).write_bytes(b"not a checkpoint")
        return run, {}
    if kind == "schema":
        return save_run(run, cfg, random_model(cfg, family), split, schema_version=999), {}
    if kind == "family":  # the config says another family than the split the model learned
        cfg = make_config(tmp_path, family="DarkRoomHard")
        return save_run(run, cfg, random_model(cfg, family), split), {}
    if kind == "spaces":  # a model built for 17x17 observations, a 9x9 family
        hard = envs.make_family("DarkRoomHard")
        return save_run(run, cfg, random_model(cfg, hard), split), {}
    save_run(run, cfg, random_model(cfg, family), split)
    if kind == "override":
        return run, {"overrides": ["env.family=DarkRoomHard"]}
    if kind == "zero":
        return run, {"overrides": ["eval.num_episodes=0"]}
    if kind == "compare":  # a run of another split trained on some of these test tasks
        other = save_run(tmp_path / "other", cfg, random_model(cfg, family), family.split(1))
        return run, {"compare": [other]}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("empty", "no checkpoint"),
        ("corrupt", "corrupt"),
        ("schema", "schema version 999"),
        ("family", "does not match"),
        ("spaces", "does not match"),
        ("override", "not an eval"),
        ("zero", "num_episodes"),
        ("compare", "trained on .* of the test tasks"),
    ],
)
def test_bad_input_is_a_one_line_user_error(kind, message, tmp_path):
    source, kwargs = _bad_source(kind, tmp_path)
    with pytest.raises(UserError, match=message) as info:
        evaluate(source, out_dir=tmp_path / "out", progress=False, **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "summary.json").exists()


# --------------------------------------------------------------------------- statistics, plots


def test_statistics():
    samples = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [100.0]])
    assert iqm(samples)[0] == pytest.approx(3.5)  # middle half: 2, 3, 4, 5
    low, high = bootstrap_ci(samples, seed=0)
    assert low[0] < samples.mean() < high[0]
    assert bootstrap_ci(samples, seed=0)[0][0] == low[0]
    scores = normalise(np.array([[5.0, 10.0], [1.0, 1.0]]), np.array([10.0, 1.0]), [0.0, 1.0])
    np.testing.assert_allclose(scores[0], [0.5, 1.0])
    assert np.isnan(scores[1]).all()  # optimal == random: no score, not a division by zero
    assert first_episode_reaching(np.array([0.1, 0.5, 0.9, 0.2]), 0.8) == 3
    assert first_episode_reaching(np.array([0.1, np.nan]), 0.8) is None
    # smoothed: one lucky episode does not count, a sustained level does
    curve = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert first_episode_reaching(curve, 0.8, window=5) == 10
    assert first_episode_reaching(curve, 0.8, window=1) == 2
    np.testing.assert_allclose(trailing_mean(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])
    # bands resample tasks: two tasks whose seeds agree give a band as wide as the tasks differ
    rows = np.array([[0.0], [0.0], [0.0], [10.0], [10.0], [10.0]])
    stats = curve_stats(rows, rows / 10, seed=0, groups=np.array([0, 0, 0, 1, 1, 1]))
    assert stats.per_episode.ci_low[0] == 0.0 and stats.per_episode.ci_high[0] == 10.0
    # unequal tasks: rows are resampled, so the band stays around the row mean
    uneven = curve_stats(rows[1:], rows[1:] / 10, seed=0, groups=np.array([0, 0, 1, 1, 1]))
    assert 0.0 < uneven.per_episode.ci_low[0] < 6.0 < uneven.per_episode.ci_high[0]
    stats, normalised_at = summarise_returns(
        np.ones((2, 3, 4)), np.full(2, 2.0), np.zeros(2), normalise_at=[1, 4, 100], seed=0
    )
    assert normalised_at == {"1": 0.5, "4": 0.5}  # episodes past E are left out
    assert type(stats.first_episode_return) is float  # plain Python, not numpy
    assert all(type(v) is float for v in stats.per_episode.mean)


def test_data_efficiency_ratio_is_model_over_source_episodes():
    def stats(episode_to_80: int | None) -> CurveStats:
        return CurveStats(**curve([0.0, 1.0], episode_to_80))

    assert data_efficiency_ratio(stats(20), stats(80)) == 0.25
    assert stats(None).episode_to_80 is None  # the curve never stays at 80% for 5 episodes
    assert data_efficiency_ratio(stats(None), stats(80)) is None
    assert data_efficiency_ratio(stats(20), stats(None)) is None
    assert data_efficiency_ratio(stats(20), None) is None


@pytest.mark.parametrize(
    "algorithm, n_envs, expected",
    [("PPO", 4, 4), ("A2C", 2, 2), ("UCB", 16, 1), ("NoisyDemonstrator", 2, 1), ("nope", 4, None)],
)
def test_streams_that_feed_one_learner_follow_the_source(algorithm, n_envs, expected):
    from ad.data.sources import streams_per_learner

    assert streams_per_learner(algorithm, n_envs) == expected


def test_ad_is_set_beside_its_source_by_both_counts(tmp_path):
    """Per stream, and by the learner's whole experience where the streams share one learner
    (issue 29: PPO's 4 streams reaching 80% at episode 53 used 212 of its own episodes)."""
    import dataclasses

    from ad.data.collect import collect
    from ad.evaluation.evaluate import efficiency_line
    from ad.evaluation.references import source_learner_streams
    from ad.evaluation.summary import SourceCurve
    from tests.factories import TINY_PPO, collect_config

    cfg = collect_config(tmp_path / "data", kwargs=TINY_PPO, n_envs=4, total_steps=256)
    collect(cfg, workers=1, progress=False)
    assert source_learner_streams(cfg.collect_dir) == 4
    counts = {"num_runs": 1, "num_streams": 4, "num_episodes": 60, "num_tasks": 1}
    source = SourceCurve(**curve([0.0, 1.0], 53), **counts, streams_per_learner=4)
    assert source.learner_episode_to_80 == 212
    line = efficiency_line(66, source)
    assert "1.245 per stream" in line and "0.311 by the source learner's whole experience" in line
    own = efficiency_line(66, dataclasses.replace(source, streams_per_learner=1))
    assert "the two counts agree" in own and "0.311" not in own
    assert "never reaches 80%" in efficiency_line(None, source)


def test_plots_write_valid_pngs(tmp_path):
    curves = [
        {"label": "AD", "mean": [1, 2, 3], "low": [0, 1, 2], "high": [2, 3, 4]},
        {"label": "source", "mean": [1, 1, 2], "linestyle": "--"},
    ]
    path = plot_return_curves(curves, tmp_path / "a.png", "t", optimal=4.0, random=0.5)
    by_task = {"goal (1, 2)": [np.arange(5.0), np.arange(4.0)], "goal (0, 0)": np.ones((3, 6))}
    path2 = plot_source_curves(by_task, tmp_path / "b.png")
    for p in (path, path2):
        assert p.read_bytes().startswith(PNG_MAGIC)
        assert matplotlib.image.imread(p).shape[2] in (3, 4)
