"""scripts/ablation.py: one setting swept on one dataset, each value trained and scored on test
tasks, kept as JSON that redraws its table without training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ad.config import load_config
from ad.data.collect import collect
from tests.factories import refused_in_one_line
from tests.test_pipeline import TINY

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ablation", ROOT / "scripts" / "ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


def test_a_tasks_ablation_trains_each_prefix_and_keeps_a_table(tmp_path, capsys):
    data = [*TINY, f"collect.output_dir={tmp_path / 'h'}"]
    collect(load_config(None, data), workers=1, progress=False)
    capsys.readouterr()
    kept = tmp_path / "kept" / "tasks.json"
    page = tmp_path / "page.md"
    page.write_text("# Ablations\n<!-- ablation tasks -->\nold\n<!-- /ablation tasks -->\nend\n")
    args = ["--axis", "train.data.num_tasks=1,3", "--out", str(tmp_path / "out")]
    args += ["--json", str(kept), "--page", str(page)]
    args += [a for o in data for a in ("--set", o)]
    ablation.main(args)
    printed = capsys.readouterr().out
    result = json.loads(kept.read_text())
    text = ablation.table(result)
    assert [r["value"] for r in result["rows"]] == [1, 3]
    for row in result["rows"]:
        run = tmp_path / "out" / "runs" / f"train.data.num_tasks={row['value']}-t0"
        trained = load_config(run / "config.yaml")
        assert trained.train.data.num_tasks == row["value"]
        summary = json.loads((run / "eval-test" / "summary.json").read_text())
        assert summary["split"] == "test"
        score = row["last10_normalised"]
        assert score["mean"] == pytest.approx(summary["last10_normalised"])
        assert score["ci_low"] <= score["mean"] <= score["ci_high"]
        assert score["interval_over"] == "2 test tasks of one run"
        assert row["train_seconds"][0] > 0
    assert (kept.with_suffix(".png")).stat().st_size > 0
    assert "\n| 1 | " in text and "\n| 3 | " in text and printed.endswith(text + "\n")
    assert f"-->\n{text}\n<!--" in page.read_text() and page.read_text().endswith("end\n")
    # a second call reuses the runs; --table redraws the same table from the kept JSON alone
    ablation.main(args)
    again = json.loads(kept.read_text())
    assert again["rows"] == result["rows"]
    capsys.readouterr()
    ablation.main(["--table", str(kept)])
    assert capsys.readouterr().out == ablation.table(again) + "\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--axis", "num_tasks=1,2", "--out", "o", "--json", "j.json"], "SECTION.KEY=V1"),
        (["--axis", "train.data.num_tasks=1"], "give --axis, --out and --json"),
        (["--axis", "train.data.num_tasks=2,0", "--out", "o", "--json", "j.json"], "num_tasks"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(args, words):
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(["--config", "configs/darkroom_quick.yaml", *args])
    assert words in str(exit_info.value) and "\n" not in str(exit_info.value)


@pytest.mark.parametrize(
    "kept", sorted((ROOT / "docs/results/ablations").glob("*.json")), ids=lambda p: p.stem
)
def test_the_page_quotes_the_table_its_kept_json_gives(kept):
    page = (ROOT / "docs/results/ablations.md").read_text()
    text = ablation.table(json.loads(kept.read_text()))
    assert f"<!-- ablation {kept.stem} -->\n{text}\n<!-- /ablation {kept.stem} -->" in page


def test_a_block_is_replaced_up_to_its_own_end_marker_and_a_page_without_markers_is_refused(
    tmp_path,
):
    from ad.utils import replace_marked_block

    page = tmp_path / "page.md"
    page.write_text("<!-- a -->\nold\n<!-- /x -->\nkept\n<!-- b -->\nother\n<!-- /x -->\n")
    replace_marked_block(page, "<!-- b -->", "<!-- /x -->", "new")
    assert page.read_text() == "<!-- a -->\nold\n<!-- /x -->\nkept\n<!-- b -->\nnew\n<!-- /x -->\n"
    refused_in_one_line(
        lambda: replace_marked_block(page, "<!-- c -->", "<!-- /x -->", "new"), "no <!-- c -->"
    )
