"""The console entry points end to end: collect -> train -> eval, and one-line errors (exit 2).

The commands run in process through ``ad.cli.*_main`` (fast); the installed scripts are checked
once through a subprocess. Every bad input must end in exactly one ``error: ...`` line on stderr,
exit status 2 and no traceback, and must not touch what earlier calls wrote.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from ad.cli import collect_main, eval_main, run_main, train_main
from ad.data.manifest import load_manifest
from tests.factories import SCRIPTS, TINY_PPO, checkout_env, one_error_line


def _config(tmp: Path) -> dict:
    """DarkRoom, 2 train + 1 validation + 1 test task, a tiny PPO budget, model and training."""
    return {
        "name": "cli",
        "env": {
            "family": "DarkRoom",
            "num_train_tasks": 2,
            "num_validation_tasks": 1,
            "num_test_tasks": 1,
        },
        "collect": {
            "algorithm": "PPO",
            "algorithm_kwargs": {**TINY_PPO, "n_epochs": 1},
            "n_envs": 2,
            "total_steps": 400,
            "seeds": [0],
            "output_dir": str(tmp / "data"),
        },
        "model": {
            "embed_dim": 16,
            "num_layers": 1,
            "num_heads": 2,
            "ff_dim": 32,
            "context_steps": 40,
        },
        "train": {
            "run_dir": str(tmp / "run"),
            "num_steps": 20,
            "batch_size": 4,
            "log_every": 10,
            "optim": {"warmup_steps": 2},
            "checkpoint": {"every": 10},
        },
        "eval": {"num_episodes": 3, "num_seeds": 1, "normalise_at": [1, 3]},
    }


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    """One real collect -> train -> eval through the CLI main functions, shared by the tests
    (which must not modify it)."""
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp)))
    codes = [
        collect_main(["--config", str(config), "--workers", "1", "--no-progress"]),
        train_main(["--config", str(config), "--no-progress"]),
        eval_main(["--run", str(tmp / "run"), "--no-progress"]),
    ]
    assert codes == [0, 0, 0]
    return {"config": config, "data": tmp / "data", "run": tmp / "run"}


def _user_error(main, argv: list[str], capsys) -> str:
    """Run a main function that must fail on user input; returns its one error line."""
    capsys.readouterr()  # drop what earlier calls printed
    assert main(argv) == 2
    return one_error_line(capsys.readouterr().err)


def test_collect_train_eval_write_every_output(pipeline, capsys):
    data, run = pipeline["data"], pipeline["run"]
    names = [  # collect.splits by default: all three
        "test-task0000-seed0.h5",
        "train-task0000-seed0.h5",
        "train-task0001-seed0.h5",
        "validation-task0000-seed0.h5",
    ]
    assert sorted(p.name for p in data.glob("*.h5")) == names
    manifest = load_manifest(data)
    assert manifest["schema_version"] == 2
    assert [r["file"] for r in manifest["runs"]] == [names[i] for i in (1, 2, 3, 0)]
    assert [len(manifest["split"][s]) for s in ("train", "validation", "test")] == [2, 1, 1]
    for folder in (data, run, run / "eval-test"):  # every stage records its config and versions
        assert yaml.safe_load((folder / "config.yaml").read_text())["name"] == "cli"
        assert "torch" in (folder / "versions.json").read_text()
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "step-000010.pt",
        "step-000020.pt",
    ]
    assert (run / "metrics.csv").is_file()
    returns = np.load(run / "eval-test" / "returns.npz")["returns"]
    assert returns.shape == (1, 1, 3)  # test tasks x seeds x episodes
    assert (run / "eval-test" / "summary.json").is_file()
    assert (run / "eval-test" / "return_curves.png").read_bytes().startswith(b"\x89PNG")
    # A second collect finds every run done and only reports it.
    capsys.readouterr()
    assert collect_main(["--config", str(pipeline["config"]), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("collect: 0 runs done, 4 skipped, 0 failed")
    assert collect_main(["--inspect", str(data)]) == 0
    assert "4 valid histories" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["collect.algorithm=SACX"], "unknown source algorithm 'SACX'"),
        (["collect.algorithm=SAC"], "SAC needs a Box action space"),
        (["env.family=NoSuchFamily"], "unknown task family 'NoSuchFamily'"),
        (["env.family_kwargs.size=1"], "size must be an integer >= 2"),
        (["env.family_kwargs.colour=red"], "bad env.family_kwargs for DarkRoom"),
        (["collect.nope=1"], "unknown config key collect.nope"),
        (["collect_total_steps"], "not of the form section.key=value"),
    ],
)
def test_collect_bad_config_values(tmp_path, capsys, overrides, expected):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path)))
    argv = ["--config", str(config), "--workers", "1", "--no-progress"]
    for text in overrides:
        argv += ["--set", text]
    assert expected in _user_error(collect_main, argv, capsys)
    assert not list((tmp_path / "data").glob("*.h5"))


@pytest.mark.parametrize(
    ("main", "argv", "expected"),
    [
        pytest.param(collect_main, ["--config", "{tmp}/missing.yaml"], "config file",
                     id="collect-missing-config"),
        pytest.param(train_main, ["--config", "{tmp}/missing.yaml"], "config file",
                     id="train-missing-config"),
        pytest.param(collect_main, [], "needs --config", id="collect-without-config"),
        pytest.param(train_main, ["--config", "{config}", "--set", "train.dataset={tmp}/nothing"],
                     "dataset folder", id="train-missing-dataset"),
        pytest.param(eval_main, ["--run", "{tmp}/run"], "does not exist", id="eval-missing-run"),
        pytest.param(eval_main, [], "needs --run", id="eval-without-run"),
        pytest.param(collect_main, ["--config", "{config}", "--shard", "3/2"], "--shard",
                     id="shard-out-of-range"),
        pytest.param(collect_main, ["--config", "{config}", "--shard", "x"], "--shard",
                     id="shard-not-a-fraction"),
        pytest.param(collect_main, ["--merge", "{tmp}/nowhere"], "not found",
                     id="merge-missing-folder"),
        pytest.param(collect_main, ["--merge", "{tmp}/empty"], "no learning histories",
                     id="merge-empty-folder"),
    ],
)  # fmt: skip
def test_missing_inputs(tmp_path, capsys, main, argv, expected):
    """{tmp} in argv is this test's folder (with an empty folder, empty/), {config} a good
    config file whose data and run would go to {tmp}/data and {tmp}/run."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path)))
    (tmp_path / "empty").mkdir()
    argv = [arg.format(tmp=tmp_path, config=config) for arg in argv]
    assert expected in _user_error(main, argv, capsys)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, where",
    [
        ("env.num_test_tasks=3", "test"),  # test: order[:3] takes the first training task
        ("env.num_validation_tasks=3", "validation"),  # validation: order[1:4] takes both
    ],
)
def test_train_refuses_test_or_validation_tasks_of_the_configured_split(
    pipeline, tmp_path, capsys, override, where
):
    argv = ["--config", str(pipeline["config"]), "--set", override]
    argv += ["--set", f"train.run_dir={tmp_path / 'run'}"]
    message = _user_error(train_main, argv, capsys)
    assert f"is a {where} task of the configured split" in message
    assert not (tmp_path / "run").exists()


def test_eval_refuses_zero_episodes(pipeline, tmp_path, capsys):
    argv = ["--run", str(pipeline["run"]), "--set", "eval.num_episodes=0"]
    argv += ["--out", str(tmp_path / "eval")]
    assert "eval.num_episodes must be >= 1" in _user_error(eval_main, argv, capsys)
    assert not (tmp_path / "eval").exists()


def test_eval_compare_overlays_runs_without_run_flag(pipeline, tmp_path, capsys):
    import json

    argv = ["--compare", str(pipeline["run"]), str(pipeline["run"]), "--no-progress"]
    assert eval_main([*argv, "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["run"] == str(pipeline["run"]) and len(summary["compare"]) == 1
    assert (tmp_path / "eval" / "return_curves.png").is_file()


def test_an_os_error_is_one_line(pipeline, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["--run", str(pipeline["run"]), "--no-progress", "--out", str(blocker / "eval")]
    message = _user_error(eval_main, argv, capsys)
    assert str(blocker) in message and "permissions" in message


def test_inspect_refuses_a_corrupt_file(pipeline, tmp_path, capsys):
    data = shutil.copytree(pipeline["data"], tmp_path / "data")
    path = data / "train-task0001-seed0.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _user_error(collect_main, ["--inspect", str(data)], capsys)
    assert "train-task0001-seed0.h5" in message and "re-run ad-collect" in message


def test_a_refused_collect_keeps_what_the_first_wrote(pipeline, tmp_path, capsys):
    data = shutil.copytree(pipeline["data"], tmp_path / "data")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    argv = ["--config", str(pipeline["config"]), "--set", f"collect.output_dir={data}"]
    argv += ["--set", "collect.total_steps=800", "--no-progress"]  # a changed config
    assert "different config" in _user_error(collect_main, argv, capsys)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_collect_merge_lists_the_runs_of_every_shard(tmp_path):
    config = tmp_path / "bandit.yaml"
    collect_section = {"algorithm": "UCB", "n_envs": 2, "total_steps": 100, "seeds": [0]}
    collect_section["output_dir"] = str(tmp_path / "data")
    env = {"family": "Bandit", "num_train_tasks": 3, "num_validation_tasks": 1}
    env["num_test_tasks"] = 1
    config.write_text(yaml.safe_dump({"name": "merge", "env": env, "collect": collect_section}))
    for shard in ("0/2", "1/2"):  # two machines writing into one shared folder
        argv = ["--config", str(config), "--shard", shard, "--workers", "1", "--no-progress"]
        assert collect_main(argv) == 0
    data = tmp_path / "data"
    names = sorted(p.name for p in data.glob("*.h5"))
    assert len(names) == 5  # 3 train, 1 validation, 1 test
    (data / "manifest.json").unlink()
    truncated = data / names[1]
    truncated.write_bytes(truncated.read_bytes()[:1000])
    result = subprocess.run(
        [str(SCRIPTS / "ad-collect"), "--merge", str(data)],
        capture_output=True,
        text=True,
        env=checkout_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"merged 4 runs into {data / 'manifest.json'}; left out 1 invalid files: {names[1]}\n"
    )
    manifest = load_manifest(data)
    assert sorted(r["file"] for r in manifest["runs"]) == names[:1] + names[2:]
    assert manifest["invalid_files"] == [names[1]] and manifest["name"] == "merge"


@pytest.mark.parametrize("script", ["ad-collect", "ad-train", "ad-eval", "ad-run"])
def test_installed_scripts_show_help(script):
    result = subprocess.run(
        [str(SCRIPTS / script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")


def test_installed_script_reports_a_user_error_in_one_line(tmp_path):
    result = subprocess.run(
        [str(SCRIPTS / "ad-train"), "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: config file") and result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- issue 12


def test_a_truncated_checkpoint_is_named_by_eval_and_resume(pipeline, tmp_path, capsys):
    run = shutil.copytree(pipeline["run"], tmp_path / "run")
    latest = run / "checkpoints" / "step-000020.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resume = ["--config", str(pipeline["config"]), "--set", f"train.run_dir={run}", "--resume"]
    resume += ["--set", "train.num_steps=30", "--no-progress"]
    for main, argv in ((eval_main, ["--run", str(run), "--no-progress"]), (train_main, resume)):
        message = _user_error(main, argv, capsys)
        assert str(latest) in message and "truncated" in message and "retrain" in message
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_train_refuses_a_history_whose_root_schema_version_differs(pipeline, tmp_path, capsys):
    import h5py  # only to forge the attribute

    data = shutil.copytree(pipeline["data"], tmp_path / "data")
    path = data / "train-task0001-seed0.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    argv = ["--config", str(pipeline["config"]), "--set", f"train.dataset={data}"]
    argv += ["--set", f"train.run_dir={tmp_path / 'run'}", "--no-progress"]
    message = _user_error(train_main, argv, capsys)
    assert str(path) in message and "schema version 99" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("main", [collect_main, train_main, eval_main, run_main])
def test_set_has_help_text_in_every_command(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    option = out[out.index("\n  --set") + 1 :].split("\n  -")[0]  # up to the next option
    assert "override" in option and "repeatable" in option


def test_eval_finds_the_source_curve_from_any_directory(pipeline, tmp_path, monkeypatch, capsys):
    """A run trained with relative folders, evaluated from another directory and after the
    project folder moved; without the data, the missing curve is a warning in the summary."""
    import json

    project = tmp_path / "project"
    shutil.copytree(pipeline["data"], project / "data")
    monkeypatch.chdir(project)
    argv = ["--config", str(pipeline["config"]), "--set", "collect.output_dir=data"]
    argv += ["--set", "train.run_dir=run", "--set", "train.num_steps=10", "--no-progress"]
    assert train_main(argv) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = tmp_path / "moved"
    for folder in (project, moved):  # first in place, then after the whole folder moved
        if folder == moved:
            project.rename(moved)
        out = tmp_path / f"eval-{folder.name}"
        assert eval_main(["--run", str(folder / "run"), "--out", str(out), "--no-progress"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["source"] is not None and summary["warnings"] == []
    shutil.rmtree(moved / "data")
    capsys.readouterr()
    out = tmp_path / "eval-nodata"
    assert eval_main(["--run", str(moved / "run"), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] is None and "no source-algorithm curve" in summary["warnings"][0]
    assert "warning: no source-algorithm curve" in printed.out + printed.err
