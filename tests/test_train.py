"""The training loop end to end on tiny real datasets: learning, exact resume, DDP, refusals."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ad.cli import main
from ad.config import save_config
from ad.errors import UserError
from ad.evaluation import rollout as rollout_module
from ad.evaluation.rollout import periodic_evaluation
from ad.learn.checkpoint import list_checkpoints, load_checkpoint, load_model
from ad.learn.model import ADTransformer
from ad.learn.train import lr_at, train
from tests.factories import make_dataset, tiny_config, windows_of


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "histories", test_tasks=(0, 1))


def _metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_state(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = tiny_config(Path("x"), None, "train.num_steps=100", "train.optim.warmup_steps=10")
    tc = cfg.train
    assert lr_at(0, tc) == pytest.approx(tc.optim.min_lr)
    assert lr_at(5, tc) == pytest.approx((tc.optim.min_lr + tc.optim.lr) / 2)
    assert lr_at(10, tc) == pytest.approx(tc.optim.lr)
    assert lr_at(55, tc) == pytest.approx((tc.optim.min_lr + tc.optim.lr) / 2)
    assert lr_at(100, tc) == pytest.approx(tc.optim.min_lr)
    assert all(lr_at(s, tc) >= lr_at(s + 1, tc) for s in range(10, 100))


@pytest.mark.slow
def test_overfits_one_tiny_history(tmp_path):
    data = make_dataset(tmp_path / "d", train_tasks=(0,), test_tasks=(), num_streams=1,
                        num_steps=200, epsilon=0.0, terminate_prob=0.0)  # fmt: skip
    cfg = tiny_config(data, tmp_path / "run", "train.num_steps=120", "train.optim.lr=0.003",
                      "train.optim.warmup_steps=10", "train.log_every=20", "train.checkpoint.every=120",
                      "model.embed_dim=32", "model.ff_dim=64")  # fmt: skip
    rows = _metrics(train(cfg, progress=False))
    assert float(rows[0]["train/loss"]) > 0.5  # it did not start out knowing the actions
    assert float(rows[-1]["train/loss"]) < 0.05


def test_periodic_evaluation_runs_on_validation_tasks_only(dataset_dir, tmp_path, monkeypatch):
    """What training looks at (and any choice made from it) never sees the test tasks."""
    cfg = tiny_config(
        dataset_dir, tmp_path / "run", "train.validation.tasks=3", "train.validation.episodes=2"
    )
    split = cfg.env.task_split()
    seen = []

    def recording_rollout(model, family, tasks, **kwargs):
        seen.extend(tasks)
        return np.zeros((len(tasks), 1, kwargs["num_episodes"]))

    monkeypatch.setattr(rollout_module, "rollout", recording_rollout)
    metrics = periodic_evaluation(None, cfg, split, torch.device("cpu"))
    assert seen == list(split.validation[:3])
    assert set(metrics) == {"return_first", "return_last"}


@pytest.mark.parametrize(
    "data",
    [(), ("train.data.in_memory=no", "train.data.num_workers=1")],
    ids=["in-memory", "streamed"],
)
def test_resume_continues_exactly_and_logs_run_folder(dataset_dir, tmp_path, data):
    # Dropout, input masking and periodic evaluation all draw random numbers: the RNG states
    # in the checkpoint must make the resumed run identical to the uninterrupted one, also
    # when a DataLoader worker process streams the windows from disk.
    overrides = (
        *data,
        *("model.dropout=0.1", "model.input_mask_prob=0.2", "train.checkpoint.keep=3"),
        *("train.validation.every=5", "train.validation.tasks=1", "train.validation.episodes=2"),
    )
    cfg = tiny_config(dataset_dir, tmp_path / "straight", *overrides)
    evaluator = periodic_evaluation
    straight = train(cfg, progress=False, evaluator=evaluator)
    assert [p.name for p in list_checkpoints(straight)] == ["step-000005.pt", "step-000010.pt"]
    for name in ("config.yaml", "versions.json", "metrics.csv"):
        assert (straight / name).is_file()
    if importlib.util.find_spec("tensorboard") is not None:  # an optional extra
        assert any((straight / "tb").iterdir())
    else:
        assert not (straight / "tb").exists()
    rows = _metrics(straight)
    assert [r["step"] for r in rows] == ["5", "10"] and rows[0]["validation/return_first"] != ""

    # "Interrupted" after step 5: the same folder with only the first checkpoint and metrics.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (resumed / "checkpoints" / "step-000010.pt").unlink()
    train(
        tiny_config(dataset_dir, resumed, *overrides),
        resume=True,
        progress=False,
        evaluator=evaluator,
    )
    a = load_checkpoint(straight / "checkpoints" / "step-000010.pt")
    b = load_checkpoint(resumed / "checkpoints" / "step-000010.pt")
    _assert_same_state(a.model, b.model)
    for x, y in zip(a.optimizer["state"].values(), b.optimizer["state"].values(), strict=True):
        _assert_same_state(x, y)
    assert [r["step"] for r in _metrics(resumed)] == ["5", "10"]  # rows past step 5 rewritten
    assert _metrics(resumed)[1]["train/loss"] == rows[1]["train/loss"]


def test_checkpoint_loads_with_weights_only_and_gives_identical_logits(dataset_dir, tmp_path):
    run = train(tiny_config(dataset_dir, tmp_path / "run", "train.num_steps=3"), progress=False)
    path = list_checkpoints(run)[-1]
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 3 and raw["dataset_fingerprint"]
    assert raw["families"]["DarkRoom"]["split"]["test"]
    model, ckpt = load_model(run)
    assert not model.training and ckpt.step == 3 and model.family_emb is None
    fresh = ADTransformer(model.cfg, ckpt.spaces())
    fresh.load_state_dict(raw["model"])
    model, fresh = model.policy(), fresh.policy().eval()
    obs = torch.randint(0, 9, (2, 40, 2))
    inputs = (obs, torch.randint(0, 6, (2, 40)), torch.rand(2, 40), torch.rand(2, 40) < 0.1)
    with torch.no_grad():
        assert torch.equal(model(*inputs)[0], fresh(*inputs)[0])


@pytest.fixture(scope="module")
def trained_run(dataset_dir, tmp_path_factory) -> Path:
    """A run trained for 5 steps; the tests that share it must leave it as it is."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config(dataset_dir, run, "train.num_steps=5"), progress=False)
    return run


def _changed_data(dataset_dir: Path, tmp_path: Path) -> Path:
    """The same dataset with another checksum for its first run."""
    changed = tmp_path / "changed"
    shutil.copytree(dataset_dir, changed)
    manifest = (changed / "manifest.json").read_text()
    first_sha = manifest.split('"sha256": "')[1][:64]
    (changed / "manifest.json").write_text(manifest.replace(first_sha, "0" * 64))
    return changed


@pytest.mark.parametrize(
    ("data", "overrides", "resume", "match"),
    [
        pytest.param(None, ["train.num_steps=5"], False, "--resume", id="overwrite"),
        pytest.param(
            None,
            ["train.num_steps=5", "train.optim.lr=0.01"],
            True,
            "train.optim.lr",
            id="resume-with-other-config",
        ),
        pytest.param(  # the same config over changed data (another run checksum)
            _changed_data, ["train.num_steps=9"], True, "fingerprint", id="resume-on-other-data"
        ),
    ],
)
def test_refuses_to_overwrite_a_run_and_to_resume_with_other_config_or_data(
    dataset_dir, trained_run, tmp_path, data, overrides, resume, match
):
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    cfg = tiny_config(data(dataset_dir, tmp_path) if data else dataset_dir, trained_run, *overrides)
    with pytest.raises(UserError, match=match):
        train(cfg, resume=resume, progress=False)
    assert {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()} == before


def test_growing_num_steps_is_what_resume_is_for(dataset_dir, trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    train(tiny_config(dataset_dir, run, "train.num_steps=7"), resume=True, progress=False)
    assert load_checkpoint(list_checkpoints(run)[-1]).step == 7


def test_non_finite_loss_stops_with_the_last_good_checkpoint(dataset_dir, tmp_path):
    # Warm-up from min_lr: step 1 updates with a tiny lr (a good checkpoint), later ones explode.
    overrides = ("train.optim.lr=1.0e+30", "train.optim.warmup_steps=1000000", "train.optim.grad_clip=0.0",
                 "train.checkpoint.every=1", "train.num_steps=50")  # fmt: skip
    cfg = tiny_config(dataset_dir, tmp_path / "run", *overrides)
    with pytest.raises(UserError, match="non-finite") as info:
        train(cfg, progress=False)
    assert "\n" not in str(info.value)
    saved = list_checkpoints(tmp_path / "run")
    assert saved and saved[-1].name in str(info.value)
    # The named checkpoint is good: its weights give a finite loss. The checkpoint whose weights
    # gave the non-finite loss is set aside, so --resume does not start from it.
    assert list((tmp_path / "run" / "checkpoints").glob("*.pt.nonfinite"))
    ckpt = load_checkpoint(saved[-1])
    model = ADTransformer(ckpt.model_cfg(), ckpt.spaces())
    model.load_state_dict(ckpt.model)
    model = model.policy()
    batch = windows_of(cfg).get_batch(np.arange(4))
    _, loss = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    assert torch.isfinite(loss)


def test_batch_must_divide_by_the_number_of_processes(dataset_dir, tmp_path):
    from ad.learn.train import _train

    cfg = tiny_config(dataset_dir, tmp_path / "run", "train.batch_size=8")
    with pytest.raises(UserError, match="does not divide by 3 processes"):
        _train(cfg, False, False, None, torch.device("cpu"), rank=0, world_size=3)


def test_module_entry_reports_user_errors(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "error: config file" in capsys.readouterr().err


def test_ddp_two_processes_match_single_process(dataset_dir, tmp_path):
    # Dropout and input masking off: their random streams differ between ranks.
    overrides = ("train.num_steps=20", "train.checkpoint.every=20", "train.log_every=10")
    single = train(tiny_config(dataset_dir, tmp_path / "single", *overrides), progress=False)
    config = tmp_path / "ddp.yaml"
    save_config(tiny_config(dataset_dir, tmp_path / "ddp", *overrides), config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "ad.cli", "train", "--config", str(config), "--no-progress"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = load_checkpoint(single / "checkpoints" / "step-000020.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-000020.pt")
    assert len(b.rng) == 2  # one RNG state per rank
    _assert_same_state(a.model, b.model, exact=False)
    losses = [float(r["train/loss"]) for r in _metrics(tmp_path / "ddp")]
    expected = [float(r["train/loss"]) for r in _metrics(single)]
    assert losses == pytest.approx(expected, rel=1e-4)


def test_an_evaluator_key_the_metrics_list_does_not_know_raises(dataset_dir, tmp_path):
    """metrics.csv has fixed columns: an unknown key must not vanish from the log silently."""
    cfg = tiny_config(
        dataset_dir, tmp_path / "run", "train.num_steps=2", "train.validation.every=1"
    )
    with pytest.raises(ValueError, match=r"metric keys \['validation/typo'\] are not in METRICS"):
        train(cfg, progress=False, evaluator=lambda *args: {"typo": 1.0})
