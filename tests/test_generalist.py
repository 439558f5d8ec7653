"""Tests of the generalist: ad/generalist.py and the several-family case of the one model, trainer
and evaluator, end to end through the CLI on three tiny families (Dark Room, the Bandit and
the point robot: discrete and continuous spaces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from ad.cli import collect_main, eval_main, run_main, train_main
from ad.config import ModelConfig
from ad.errors import UserError
from ad.generalist import family_rows, load_any_config, specialists
from ad.learn.checkpoint import find_checkpoint, load_checkpoint, load_model
from ad.learn.model import ADTransformer

TINY_PPO = {"n_steps": 32, "batch_size": 64, "n_epochs": 1}
CONTEXT = 40  # two Dark Room or point robot episodes; a whole 40-pull Bandit learning run
FAMILIES = ["DarkRoom", "Bandit", "PointRobot"]


def _ppo_family(tmp: Path, family: str) -> dict:
    """A tiny PPO-collected family: Dark Room or the point robot."""
    folder = family.lower()
    return {
        "name": f"g_{folder}",
        "env": {"family": family, "num_train_tasks": 2, "num_validation_tasks": 1,
                "num_test_tasks": 1},
        "collect": {"algorithm": "PPO", "algorithm_kwargs": TINY_PPO, "n_envs": 2,
                    "total_steps": 400, "seeds": [0], "output_dir": str(tmp / folder)},
        "eval": {"num_episodes": 3, "num_seeds": 1, "normalise_at": [1, 3]},
    }  # fmt: skip


def _bandit(tmp: Path) -> dict:
    return {
        "name": "g_bandit",
        "env": {"family": "Bandit", "num_train_tasks": 2, "num_validation_tasks": 1,
                "num_test_tasks": 1},
        "collect": {"algorithm": "UCB", "n_envs": 2, "total_steps": 2 * CONTEXT,
                    "seeds": [0], "output_dir": str(tmp / "bandit")},
        "train": {"data": {"subsample_every": 1}},
        "eval": {"num_episodes": CONTEXT, "num_seeds": 1, "normalise_at": [1, CONTEXT]},
    }  # fmt: skip


def _generalist(tmp: Path, entries: list[dict], **model) -> dict:
    return {
        "name": "g_mix",
        "families": entries,
        "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32,
                  "context_steps": CONTEXT, **model},
        "train": {"run_dir": str(tmp / "run"), "num_steps": 10, "batch_size": 7, "log_every": 5,
                  "optim": {"warmup_steps": 2}, "checkpoint": {"every": 10},
                  "validation": {"every": 10, "tasks": 1, "episodes": 2}},
    }  # fmt: skip


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    """Every family collected, a generalist trained (ad-train) and evaluated (ad-eval) through
    the CLI; shared by the tests, which must not modify it."""
    tmp = tmp_path_factory.mktemp("generalist")
    darkroom = _write(tmp / "darkroom.yaml", _ppo_family(tmp, "DarkRoom"))
    bandit = _write(tmp / "bandit.yaml", _bandit(tmp))
    robot = _write(tmp / "pointrobot.yaml", _ppo_family(tmp, "PointRobot"))
    entries = [
        {"config": "darkroom.yaml", "weight": 2.0},
        {"config": str(bandit)},
        {"config": "pointrobot.yaml"},
    ]
    generalist = _write(tmp / "mix.yaml", _generalist(tmp, entries, action_bins=8))
    codes = [
        *(
            collect_main(["--config", str(path), "--workers", "1", "--no-progress"])
            for path in (darkroom, bandit, robot)
        ),
        train_main(["--config", str(generalist), "--no-progress"]),
        eval_main(["--run", str(tmp / "run"), "--no-progress"]),
    ]
    assert codes == [0] * 5
    return {"tmp": tmp, "config": generalist, "run": tmp / "run", "bandit": bandit}


def test_checkpoint_records_every_family(mixed) -> None:
    ckpt = load_checkpoint(find_checkpoint(mixed["run"]))
    assert ckpt.step == 10
    assert list(ckpt.families) == FAMILIES
    spaces = ckpt.spaces()  # restored from the records' JSON
    for name, record in ckpt.families.items():
        assert record.split["family"] == name
        box = name == "PointRobot"
        observation_space, action_space = spaces[name]
        assert isinstance(observation_space, Box if box else (MultiDiscrete, Discrete))
        assert isinstance(action_space, Box if box else Discrete)
        assert len(record.dataset_fingerprint) > 8
        assert record.config["model"]["context_steps"] == CONTEXT
    assert [m["weight"] for m in ckpt.config["families"]] == [2.0, 1.0, 1.0]
    model, _ = load_model(mixed["run"])
    assert isinstance(model, ADTransformer) and not model.training
    assert model.family_emb.shape == (3, 16)  # several families: each has its embedding
    assert model.head("PointRobot").num_bins == 8  # the continuous family's binned head


def test_periodic_evaluation_and_losses_per_family(mixed) -> None:
    lines = (mixed["run"] / "metrics.csv").read_text().splitlines()
    header, last = (
        lines[0].split(","),
        dict(zip(lines[0].split(","), lines[-1].split(","), strict=True)),
    )
    assert all(f"train/loss/{name}" in header for name in FAMILIES)
    assert last["step"] == "10"
    for name in FAMILIES:
        assert float(last[f"train/loss/{name}"]) > 0
        assert last[f"validation/{name}/return_first"] != ""  # each family on its validation tasks


def test_eval_writes_a_summary_per_family_and_one_figure(mixed) -> None:
    out = mixed["run"] / "eval-test"
    for name in FAMILIES:
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["family"] == name and summary["split"] == "test"
        assert summary["source"] is not None  # the family's own dataset gave the source curve
        assert (out / name / "return_curves.png").is_file()
    figure = json.loads((out / "figure.json").read_text())
    assert [f["family"] for f in figure["families"]] == FAMILIES
    assert (out / "figure.png").stat().st_size > 0


def test_compare_runs_family_by_family(mixed, capsys) -> None:
    run, out = str(mixed["run"]), mixed["tmp"] / "compared"
    argv = ["--run", run, "--compare", run, "--out", str(out), "--set", "eval.num_episodes=2"]
    assert eval_main([*argv, "--no-progress"]) == 0
    for name in FAMILIES:
        summary = json.loads((out / name / "summary.json").read_text())
        assert [c["run"] for c in summary["compare"]] == [run]
        assert len(list((out / name).glob("compare-1-*/summary.json"))) == 1


def test_ad_run_on_a_generalist_skips_collected_families(mixed) -> None:
    run_dir = mixed["tmp"] / "run2"
    files = sorted(mixed["tmp"].glob("*/*.h5"))
    written = [f.stat().st_mtime_ns for f in files]
    argv = [str(mixed["config"]), "--set", f"train.run_dir={run_dir}", "--no-progress"]
    # the ED control keeps the last episodes: the Bandit's 1-step ones fill a context at 40
    assert run_main([*argv, "--set", "train.ed.last_episodes=40"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == written  # nothing collected again
    report = run_dir / "report"
    summary = json.loads((report / "DarkRoom" / "summary.json").read_text())
    assert summary["compare"][0]["label"] == "ED (run2-ed)"  # the generalist's ED control
    assert (report / "figure.png").is_file()
    text = (report / "REPORT.md").read_text()
    assert all(f"## {name}" in text for name in FAMILIES)
    assert "(PointRobot/return_curves.png)" in text
    # the same seed and data: the same weights as ad-train's run
    ours, theirs = (
        load_checkpoint(find_checkpoint(run_dir)),
        load_checkpoint(find_checkpoint(mixed["run"])),
    )
    for key, value in theirs.model.items():
        assert torch.equal(ours.model[key], value), key


def test_a_generalist_resumes_and_refuses_another_model(mixed, tmp_path, capsys) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(mixed["run"], run_dir)
    argv = ["--config", str(mixed["config"]), "--set", f"train.run_dir={run_dir}", "--no-progress"]
    assert train_main(argv) == 2  # no --resume: the run folder is not overwritten
    assert "already has checkpoints" in capsys.readouterr().err
    assert train_main([*argv, "--set", "model.embed_dim=8", "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert train_main([*argv, "--set", "train.num_steps=12", "--resume"]) == 0
    assert load_checkpoint(find_checkpoint(run_dir)).step == 12


def test_mismatched_context_steps_is_one_line(mixed, capsys) -> None:
    tmp = mixed["tmp"]
    entries = [{"config": "darkroom.yaml"}, {"config": "bandit.yaml"}]
    data = _generalist(tmp, entries, context_steps=None)
    data["train"]["run_dir"] = str(tmp / "run3")
    path = _write(tmp / "mix_null.yaml", data)
    assert train_main(["--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: the families' model.context_steps / window steps differ (DarkRoom "
    )
    assert "\n" not in err and "set model.context_steps (and train.data.window_steps) in the" in err


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"config": "darkroom.yaml"}, {"config": "nowhere.yaml"}], "family 2: config file"),
        ([{"config": "darkroom.yaml"}, {"config": "darkroom.yaml"}], "are both DarkRoom"),
        ([{"config": "darkroom.yaml"}, {"config": "bandit.yaml", "weight": 0}], "weight must"),
        ([{"config": "darkroom.yaml"}, {"config": "bandit.yaml", "weight": -1}], "weight must"),
        ([{"config": "bandit.yaml"}], "a generalist of one family (Bandit) is a specialist"),
        ([{"weight": 1}, {"config": "bandit.yaml"}], "family 1 must be a mapping"),
    ],
)
def test_bad_generalist_configs_are_one_line(mixed, capsys, entries: list, message: str) -> None:
    path = _write(mixed["tmp"] / "bad.yaml", _generalist(mixed["tmp"], entries))
    assert train_main(["--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_generalist_overrides_and_keys(mixed) -> None:
    sets = ["train.num_steps=3", "model.embed_dim=8", "train.optim.lr=0.01"]
    cfg = load_any_config(mixed["config"], sets)
    assert cfg.train.num_steps == 3 and cfg.model.embed_dim == 8
    assert [m.experiment.model.embed_dim for m in cfg.families] == [8, 8, 8]
    assert [m.experiment.train.optim.lr for m in cfg.families] == [0.01] * 3  # a nested section
    assert cfg.families[1].experiment.train.data.subsample_every == 1  # the family's own windowing
    with pytest.raises(UserError, match="a generalist takes name, model"):
        load_any_config(mixed["config"], ["env.split_seed=1"])
    ed = load_any_config(mixed["config"], ["train.mode=ed", "train.validation.every=100"])
    assert [m.experiment.train.mode for m in ed.families] == ["ed"] * 3
    assert [m.experiment.train.validation.every for m in ed.families] == [100] * 3


def test_specialists_share_the_model_and_steps_and_take_each_familys_rows(mixed) -> None:
    cfg = load_any_config(mixed["config"])
    specs = specialists(cfg)
    assert [s.env.family for s in specs] == FAMILIES
    assert [s.train.batch_size for s in specs] == family_rows(7, [2.0, 1.0, 1.0]) == [3, 2, 2]
    for spec, family in zip(specs, cfg.families, strict=True):
        assert spec.model == cfg.model and spec.train.num_steps == cfg.train.num_steps
        assert spec.train.dataset == family.experiment.train.dataset  # its own data and windows
        assert spec.train.data.subsample_every == family.experiment.train.data.subsample_every
        assert spec.eval == family.experiment.eval
        assert spec.run_dir == Path("runs") / f"g_mix-{spec.env.family}"


# --------------------------------------------------------------------------- model and batches


def test_family_rows_follow_weights_deterministically() -> None:
    assert family_rows(10, [1, 1]) == [5, 5]
    assert family_rows(10, [3, 1]) == [7, 3]
    assert family_rows(3, [100, 1, 1]) == [1, 1, 1]  # every family gets a row
    for batch, weights in [(7, [1, 2, 3]), (64, [0.5, 1.5]), (33, [1, 1, 1])]:
        rows = family_rows(batch, weights)
        assert sum(rows) == batch and min(rows) >= 1
        assert rows == family_rows(batch, weights)
    with pytest.raises(UserError, match="smaller than the 3 families"):
        family_rows(2, [1, 1, 1])


SPACES = {
    "A": (MultiDiscrete([5, 5]), Discrete(4)),
    "B": (Discrete(1), Discrete(3)),
}


def _batch(name: str, rows: int, steps: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    obs_space, act_space = SPACES[name]
    n = int(act_space.n)
    if isinstance(obs_space, MultiDiscrete):
        obs = torch.randint(0, 5, (rows, steps, 2), generator=gen)
    else:
        obs = torch.zeros(rows, steps, dtype=torch.long)
    return {
        "observations": obs,
        "prev_actions": torch.randint(0, n + 1, (rows, steps), generator=gen),
        "prev_rewards": torch.rand(rows, steps, generator=gen),
        "prev_dones": torch.rand(rows, steps, generator=gen) < 0.2,
        "targets": torch.randint(0, n, (rows, steps), generator=gen),
    }


def _two_family_model(layers: int = 1, context: int = 8) -> ADTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=16, num_layers=layers, num_heads=2, ff_dim=32,
                      context_steps=context, dropout=0.0, input_mask_prob=0.0)  # fmt: skip
    return ADTransformer(cfg, SPACES)


def test_each_family_has_its_own_encoders_and_head_around_one_trunk() -> None:
    model = _two_family_model()
    assert model.head("A") is not model.head("B")
    assert model.encoder("A") is not model.encoder("B")
    batches = {"A": _batch("A", 3, 8, 0), "B": _batch("B", 2, 8, 1)}
    with torch.no_grad():
        _, total, losses = model(batches)
        # the trunk run once on both families' rows equals each family alone
        _, alone = model.policy("B")(**batches["B"])
        torch.testing.assert_close(losses["B"], alone)
        torch.testing.assert_close(total, (3 * losses["A"] + 2 * losses["B"]) / 5)
        model.head("A").proj.weight.mul_(2.0)
        model.encoder("A").obs_encoder.embedding.weight.mul_(2.0)
        _, _, after = model(batches)
    assert torch.equal(after["B"], losses["B"])  # B's rows never pass A's encoder or head
    assert not torch.equal(after["A"], losses["A"])
    with pytest.raises(UserError, match="no family 'C'"):
        model.policy("C")
    with pytest.raises(UserError, match="name the one to act in"):
        model.policy()


def test_kv_cache_step_equals_forward_for_each_family() -> None:
    model = _two_family_model(layers=1, context=8).eval()
    for name, seed in (("A", 2), ("B", 3)):
        policy = model.policy(name)
        inputs = _batch(name, 2, 20, seed)
        inputs.pop("targets")
        with torch.no_grad():
            full, _ = policy(**inputs)
        cache = policy.init_cache(2)
        keys = ("observations", "prev_actions", "prev_rewards", "prev_dones")
        stepped = torch.stack(
            [policy.step(cache, *(inputs[k][:, t] for k in keys)) for t in range(20)], 1
        )
        torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def test_a_generalist_under_ddp_matches_one_process(mixed, tmp_path) -> None:
    """Two ranks, each a contiguous slice of the families' rows (rank 0 holds Dark Room's only,
    rank 1 the Bandit's and the point robot's), train the weights one process trains."""
    import os
    import subprocess
    import sys

    common = ["model.dropout=0.0", "model.input_mask_prob=0.0", "train.batch_size=8",
              "train.validation.every=0"]  # fmt: skip
    runs = {}
    for name in ("single", "ddp"):
        runs[name] = tmp_path / name
        sets = [*common, f"train.run_dir={runs[name]}"]
        argv = ["--config", str(mixed["config"]), *(a for s in sets for a in ("--set", s))]
        if name == "single":
            assert train_main([*argv, "--no-progress"]) == 0
            continue
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", "2", "-m", "ad.cli", "train", *argv, "--no-progress"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = (load_checkpoint(find_checkpoint(runs[n])) for n in ("single", "ddp"))
    assert len(ddp.rng) == 2 and ddp.step == single.step == 10
    for key, value in single.model.items():
        torch.testing.assert_close(ddp.model[key], value, rtol=1e-4, atol=1e-5, msg=key)
    lines = {n: (runs[n] / "metrics.csv").read_text().splitlines() for n in runs}
    header = lines["single"][0].split(",")
    for column in ("train/loss", "train/loss/Bandit", "train/loss/PointRobot"):
        i = header.index(column)
        values = {n: float(lines[n][-1].split(",")[i]) for n in runs}
        assert values["ddp"] == pytest.approx(values["single"], rel=1e-4), column
