"""ad-eval --figure: the paper's figure, one panel per family, from aggregates or summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ad.cli import eval_main
from ad.errors import UserError
from ad.evaluation.aggregate import aggregate
from ad.evaluation.figure import figure_table, load_result, write_figure
from tests.factories import summary, write_json


def test_one_panel_per_family_from_an_aggregate_and_a_single_run(tmp_path, capsys):
    runs = [write_json(tmp_path / f"dr{s}{t}/summary.json", summary(s, t, 0.7 + 0.1 * s))
            for s in (0, 1) for t in (0, 1)]  # fmt: skip
    assert eval_main(["--aggregate", *runs, "--out", str(tmp_path / "agg")]) == 0
    bandit = write_json(tmp_path / "bandit/summary.json", summary(0, 0, 0.5, family="Bandit"))
    capsys.readouterr()
    out = tmp_path / "fig"
    assert eval_main(["--figure", str(tmp_path / "agg"), bandit, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "figure.png").stat().st_size > 10_000
    table = json.loads((out / "figure.json").read_text())
    assert [f["family"] for f in table["families"]] == ["DarkRoom", "Bandit"]
    rows = printed.splitlines()
    dark_room = next(r for r in rows if r.startswith("| DarkRoom"))
    assert "4 runs (2 split x 2 training seeds)" in dark_room
    expected = np.mean([np.linspace(0, 0.7 + 0.1 * s, 20)[-10:].mean() for s in (0, 1)])
    assert f"{expected:.2f} [" in dark_room  # AD's mean over runs with its CI
    assert "| 0.10 [0.10, 0.10] |" in dark_room  # ED, flat at 0.1 in every run
    bandit_row = next(r for r in rows if r.startswith("| Bandit"))
    level = np.linspace(0, 0.5, 20)[-10:].mean()
    assert f"| 1 run | {level:.2f} [{level:.2f}, {level:.2f}] |" in bandit_row  # no width


def test_a_family_twice_is_refused(tmp_path):
    a = write_json(tmp_path / "a/summary.json", summary(0, 0, 0.7))
    b = write_json(tmp_path / "b/summary.json", summary(1, 0, 0.8))
    with pytest.raises(UserError, match="two results are of DarkRoom; pass one aggregate"):
        write_figure([a, b], tmp_path / "fig")
    assert not (tmp_path / "fig" / "figure.png").exists()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        pytest.param(
            "aggregate.json", {"family": "DarkRoom"}, "not an ad-eval --aggregate result",
            id="not-an-aggregate",
        ),
        pytest.param("summary.json", None, "does not exist", id="missing-summary"),
        pytest.param(
            "aggregate.json", None, "does not exist; run ad-eval --aggregate first",
            id="missing-aggregate",
        ),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_result_is_refused(tmp_path, name, content, match):
    path = tmp_path / "result" / name
    if content is not None:
        write_json(path, content)
    with pytest.raises(UserError, match=match) as info:
        load_result(path)
    assert "\n" not in str(info.value)


def test_table_says_never_when_a_curve_does_not_reach_80_percent():
    result = aggregate([summary(0, 0, 0.5)], min_runs=1)  # one run, as load_result reads it
    row = figure_table([result]).splitlines()[-1]
    assert "| never / " in row and row.endswith("| n/a |")


def test_paper_figure_script_draws_existing_aggregates_without_rerunning_them(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "paper"
    for name, family, level in (
        ("darkroom_quick", "DarkRoom", 0.8),
        ("bandit_quick", "Bandit", 0.6),
    ):
        runs = [write_json(tmp_path / name / f"s{s}/summary.json", summary(s, 0, level, family))
                for s in (0, 1)]  # fmt: skip
        assert eval_main(["--aggregate", *runs, "--out", str(out / name / "aggregate")]) == 0
    env = {**os.environ, "PY": sys.executable, "PYTHONPATH": str(repo)}
    configs = [str(repo / "configs" / f"{n}.yaml") for n in ("darkroom_quick", "bandit_quick")]
    done = subprocess.run(["bash", str(repo / "scripts/paper_figure.sh"), str(out), *configs],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "seed grid" not in done.stdout  # both aggregates existed: nothing was collected
    table = (out / "table.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| DarkRoom", "| Bandit"]
    assert (out / "figure.png").stat().st_size > 10_000


def test_long_curves_are_drawn_as_trailing_means_and_short_ones_as_they_are():
    from ad.evaluation import figure
    from ad.evaluation.metrics import trailing_mean

    short = aggregate([summary(0, 0, 0.5)], min_runs=1)
    assert figure._panel(short)["curves"][0]["mean"] is short["ad"]["normalised_curve"]["mean"]
    noisy = np.tile([0.0, 1.0], 250)  # 500 one-pull episodes alternating 0 and 1
    long = {**short, "ad": {"normalised_curve": {"mean": noisy, "ci_low": noisy, "ci_high": noisy}},
            "compare": None, "source": None}  # fmt: skip
    panel = figure._panel(long)
    assert "trailing mean of 10 episodes" in panel["title"]
    np.testing.assert_allclose(panel["curves"][0]["mean"], trailing_mean(noisy, 10))
    assert panel["curves"][0]["mean"][-1] == pytest.approx(0.5)
