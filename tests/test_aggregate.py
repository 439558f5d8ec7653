"""ad-eval --aggregate: runs over split and training seeds as a mean with a CI over runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ad.cli import eval_main
from ad.errors import UserError
from ad.evaluation.aggregate import aggregate, format_aggregate
from ad.evaluation.summary import load_summary
from tests.factories import EPISODES, summary, write_json


def test_mean_and_interval_over_runs():
    levels = {(0, 0): 0.8, (0, 1): 0.9, (1, 0): 1.0, (1, 1): 1.1}
    result = aggregate([summary(s, t, v) for (s, t), v in levels.items()])
    assert result["num_runs"] == 4 and result["split_seeds"] == [0, 1]
    assert result["train_seeds"] == [0, 1]
    last10 = result["ad"]["last10_normalised"]
    expected = np.mean([np.linspace(0, v, EPISODES)[-10:].mean() for v in levels.values()])
    assert last10["mean"] == pytest.approx(expected)
    assert last10["ci_low"] < last10["mean"] < last10["ci_high"]  # the runs disagree
    assert result["compare_label"] == "ED"
    assert result["compare"]["last10_normalised"]["mean"] == pytest.approx(0.1)
    assert result["compare"]["last10_normalised"]["ci_low"] == pytest.approx(0.1)  # they agree
    assert len(result["source"]["last10_normalised"]["runs"]) == 2  # one per split seed
    # the mean curve reaches 50% (its 5-episode trailing mean) before 80%, the source's later
    assert result["ad"]["episode_to_50"] < result["ad"]["episode_to_80"]
    ratio = result["ad"]["episode_to_80"] / result["source"]["episode_to_80"]
    assert result["data_efficiency_ratio"] == pytest.approx(ratio)


def test_runs_evaluated_for_different_numbers_of_episodes_are_scored_over_the_shared_ones():
    # each split derives its own evaluation episodes where episodes end at the goal (MiniGrid)
    short, long = summary(0, 0, 1.0), summary(1, 0, 1.0, episodes=2 * EPISODES)
    result = aggregate([short, long])
    assert result["num_episodes"] == EPISODES and result["episodes_evaluated"] == [20, 40]
    cut = np.linspace(0.0, 1.0, 2 * EPISODES)[:EPISODES]  # the long run's first 20 episodes
    runs = result["ad"]["last10_normalised"]["runs"]
    np.testing.assert_allclose(runs, [short.last10_normalised, cut[-10:].mean()])
    assert result["ad"]["last10_return"]["runs"][1] == pytest.approx(10 * cut[-10:].mean())
    assert len(result["ad"]["normalised_curve"]["mean"]) == EPISODES
    assert len(result["source"]["normalised_curve"]["mean"]) == EPISODES
    assert "all are scored over their first 20" in format_aggregate(result)


@pytest.mark.parametrize(
    ("runs", "match"),
    [
        pytest.param(
            [summary(0, 0, 0.5), summary(1, 0, 0.5, family="KeyToDoor")],
            r"differ in \['family'\]",
            id="two-families",
        ),
        pytest.param([summary(0, 0, 0.5)], "at least two", id="one-run"),
    ],
)
def test_runs_of_different_families_or_too_few_are_refused(runs, match):
    with pytest.raises(UserError, match=match):
        aggregate(runs)


def test_cli_writes_json_and_figure_and_refuses_bad_files(tmp_path, capsys):
    paths = []
    for s in (0, 1, 2):
        folder = tmp_path / f"s{s}" / "eval-test"
        write_json(folder / "summary.json", summary(s, 0, 0.5 + 0.1 * s))
        paths.append(str(folder))
    out = tmp_path / "agg"
    assert eval_main(["--aggregate", *paths, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 runs (3 split seeds [0, 1, 2] x 1 training seeds [0])" in printed
    written = json.loads((out / "aggregate.json").read_text())
    assert written["ad"]["last10_normalised"]["mean"] == pytest.approx(
        np.mean([np.linspace(0, v, EPISODES)[-10:].mean() for v in (0.5, 0.6, 0.7)])
    )
    assert (out / "aggregate.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.json").write_text("{not json")
    assert eval_main(["--aggregate", paths[0], str(tmp_path / "bad.json")]) != 0
    assert "is not valid JSON" in capsys.readouterr().err
    with pytest.raises(UserError, match="does not exist"):
        load_summary(tmp_path / "missing")


def test_seeds_phrase_says_when_the_runs_are_not_a_full_grid():
    from ad.evaluation.aggregate import seeds_phrase

    runs = [summary(0, 0, 0.6), summary(0, 1, 0.6), summary(1, 0, 0.6), summary(2, 0, 0.6)]
    assert seeds_phrase(aggregate(runs)) == "4 runs over 3 split seeds and 2 training seeds"
    assert seeds_phrase(aggregate(runs[:2])) == "2 runs (1 split x 2 training seeds)"


def test_each_curve_keeps_its_colour_when_a_run_lacks_the_compared_one():
    """The paper's figure puts panels side by side: the source must not take ED's colour in a
    panel without ED."""
    from ad.evaluation.aggregate import aggregate_curves

    with_ed = aggregate([summary(s, 0, 0.8) for s in (0, 1)])
    without = aggregate([dataclasses.replace(summary(s, 0, 0.8), compare=[]) for s in (0, 1)])
    assert without["compare"] is None
    colours = {c["label"]: c["color"] for c in aggregate_curves(with_ed)}
    assert len(set(colours.values())) == 3
    assert {c["label"]: c["color"] for c in aggregate_curves(without)} == {
        label: colour for label, colour in colours.items() if label != "ED"
    }
