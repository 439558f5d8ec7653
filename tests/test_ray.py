"""Collection and evaluation on Ray (issue 15), on a local Ray instance started by the tests:
the same arrays and returns as the local pool and the local batch, a killed worker's run retried
without loss or duplicates, resume, one-line errors. Skipped when the ``ray`` extra is missing."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ad.cli import collect_main
from ad.config import config_from_dict, config_to_dict
from ad.data.collect import collect
from ad.data.histories import read_history, validate_history
from ad.data.manifest import load_manifest
from ad.data.runs import plan_runs
from ad.data.sources import UCB
from ad.errors import UserError
from ad.evaluation.evaluate import evaluate
from ad.evaluation.ray_rollout import plan_batches, rollout_on_ray
from ad.evaluation.rollout import rollout
from ad.learn.checkpoint import load_model
from tests.factories import TINY_PPO, bandit_config, collect_config

ROOT = Path(__file__).resolve().parent.parent
ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason='the ray extra is not installed (pip install -e ".[ray]"); CI installs it',
)
RAY_NICENESS = "RAY_worker_niceness"  # Ray's own spelling of the raylet setting


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module's tests. Its workers inherit
    PYTHONPATH, so they import this checkout and this test module's source classes.

    Its workers run at the tests' priority: at Ray's default niceness of 15 the other xdist
    worker's learning test starves them."""
    import ray

    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", RAY_NICENESS)}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ[RAY_NICENESS] = "0"
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def _with(cfg, **collect_fields):
    """``cfg`` with other collect fields (e.g. backend, output_dir)."""
    data = config_to_dict(cfg)
    data["collect"].update(collect_fields)
    return config_from_dict(data)


def _assert_same_histories(a_dir: Path, b_dir: Path) -> None:
    """Identical arrays and metadata (except the resolved config, whose backend/folder differ)."""
    names = sorted(p.name for p in a_dir.glob("*.h5"))
    assert names and names == sorted(p.name for p in b_dir.glob("*.h5"))
    for name in names:
        a, b = read_history(a_dir / name), read_history(b_dir / name)
        for array in ARRAYS:
            np.testing.assert_array_equal(getattr(a, array), getattr(b, array), err_msg=name)
        a.metadata.pop("config"), b.metadata.pop("config")
        assert a.metadata == b.metadata, name


def _assert_complete(out: Path, cfg) -> None:
    """Every planned run once in the folder and the manifest, each valid; no temporary files."""
    expected = sorted(job["file"] for job in plan_runs(cfg, cfg.env.task_split()))
    assert sorted(p.name for p in out.glob("*.h5")) == expected
    assert sorted(r["file"] for r in load_manifest(out)["runs"]) == expected  # each run once
    assert not list(out.glob(".*.tmp"))
    for path in out.glob("*.h5"):
        validate_history(path)


# --------------------------------------------------------------------------- collection


@needs_ray
@pytest.mark.parametrize("storage", ["driver", "shared"])
def test_ray_collection_equals_the_pools(tmp_path, ray_instance, storage):
    pool_cfg = collect_config(tmp_path / "pool", kwargs=TINY_PPO, total_steps=1000, seeds=[3])
    ray_cfg = _with(pool_cfg, output_dir=str(tmp_path / "ray"), backend="ray", ray_storage=storage)
    collect(pool_cfg, workers=2, progress=False)
    summary = collect(ray_cfg, progress=False)
    assert (summary["runs_done"], summary["runs_failed"]) == (3, 0)
    assert summary["bytes_written"] == sum(
        p.stat().st_size for p in (tmp_path / "ray").glob("*.h5")
    )
    _assert_same_histories(tmp_path / "pool", tmp_path / "ray")
    _assert_complete(tmp_path / "ray", ray_cfg)
    meta = read_history(tmp_path / "ray" / "train-task0000-seed3.h5").metadata
    assert meta["config"]["collect"]["backend"] == "ray"  # the resolved config says how


@needs_ray
def test_ray_collection_resumes_and_skips_complete_runs(tmp_path, ray_instance):
    out = tmp_path / "ds"
    cfg = bandit_config(out, seeds=[0, 1], backend="ray")
    # half of it collected by the local pool: the backends share the dataset folder
    collect(_with(cfg, backend="local"), workers=1, shard=(0, 2), progress=False)
    before = {p.name: p.read_bytes() for p in out.glob("*.h5")}
    assert len(before) == 3
    summary = collect(cfg, progress=False)
    assert (summary["runs_skipped"], summary["runs_done"]) == (3, 3)
    for name, data in before.items():
        assert (out / name).read_bytes() == data  # kept, not rewritten
    (out / "train-task0002-seed1.h5").unlink()
    summary = collect(cfg, progress=False)
    assert (summary["runs_skipped"], summary["runs_done"]) == (5, 1)
    _assert_complete(out, cfg)
    reference = tmp_path / "pool"
    collect(_with(cfg, backend="local", output_dir=str(reference)), workers=1, progress=False)
    _assert_same_histories(reference, out)


class KillOnceUCB(UCB):
    """UCB whose first run anywhere SIGKILLs its own process halfway (a flag file marks it)."""

    def __init__(self, venv, seed, kill_flag: str, **kwargs):
        super().__init__(venv, seed, **kwargs)
        self.kill_flag = Path(kill_flag)

    def learn(self, total_steps: int) -> None:
        if not self.kill_flag.exists():
            self.venv.reset()
            for _ in range(total_steps // self.venv.num_envs // 2):
                self.venv.step(np.zeros(self.venv.num_envs, np.int64))
            self.kill_flag.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-run
        super().learn(total_steps)


@needs_ray
@pytest.mark.parametrize("storage", ["driver", "shared"])
def test_a_killed_worker_is_retried_and_nothing_is_lost_or_duplicated(
    tmp_path, ray_instance, storage
):
    flag = tmp_path / "killed"
    kwargs = {"kill_flag": str(flag)}
    algorithm = f"{__name__}:KillOnceUCB"
    cfg = bandit_config(
        tmp_path / "ray", seeds=[0, 1], algorithm=algorithm, algorithm_kwargs=kwargs
    )
    cfg = _with(cfg, backend="ray", ray_storage=storage)
    summary = collect(cfg, progress=False)
    assert flag.is_file() and int(flag.read_text()) != os.getpid()  # a worker was killed
    assert (summary["runs_done"], summary["runs_failed"]) == (6, 0)
    _assert_complete(tmp_path / "ray", cfg)
    pool_cfg = _with(cfg, backend="local", output_dir=str(tmp_path / "pool"))
    collect(pool_cfg, workers=1, progress=False)  # the flag exists: nobody is killed here
    _assert_same_histories(tmp_path / "pool", tmp_path / "ray")


# --------------------------------------------------------------------------- evaluation


def test_batches_cover_every_row_once():
    for num_tasks, num_seeds, rows in [(5, 2, 3), (3, 4, 3), (4, 16, 64), (1, 7, 2), (2, 1, 1)]:
        seen = np.zeros((num_tasks, num_seeds), int)
        for t0, t1, s0, s1 in plan_batches(num_tasks, num_seeds, rows):
            assert 1 <= (t1 - t0) * (s1 - s0) <= rows
            seen[t0:t1, s0:s1] += 1
        assert (seen == 1).all(), (num_tasks, num_seeds, rows)


def test_split_rows_seed_as_one_batch(project):  # noqa: F811
    """Why Ray batches can be gathered: rows seeded by their index in the whole evaluation."""
    import torch

    model = load_model(next((project["root"] / "run" / "checkpoints").iterdir()), "cpu")[0].policy()
    family, tasks = project["family"], list(project["split"].test[:3])
    kwargs = {"num_episodes": 2, "action_mode": "sample", "seed": 5}
    torch.manual_seed(0)
    whole = rollout(model, family, tasks, 4, **kwargs)
    parts = np.concatenate(
        [
            rollout(model, family, tasks[:1], 4, **kwargs),
            rollout(model, family, tasks[1:], 4, task_offset=1, **kwargs),
        ]
    )
    np.testing.assert_array_equal(whole, parts)
    seeds = [rollout(model, family, tasks, 1, seed_offset=j, **kwargs) for j in range(4)]
    np.testing.assert_array_equal(whole, np.concatenate(seeds, axis=1))
    assert not np.array_equal(whole[0], whole[1])  # rows differ: the offsets matter


@needs_ray
@pytest.mark.parametrize("batch_rows", [3, 8])
def test_ray_evaluation_equals_the_local_one(project, ray_instance, batch_rows):  # noqa: F811
    root = project["root"]
    settings = ["eval.action_mode=sample", "eval.num_seeds=4", "eval.seed=2"]
    (local,) = evaluate(root / "run", settings, out_dir=root / f"local{batch_rows}", progress=False)
    on_ray = settings + ["eval.backend=ray", f"eval.ray_batch_rows={batch_rows}"]
    (remote,) = evaluate(root / "run", on_ray, out_dir=root / f"ray{batch_rows}", progress=False)
    a = np.load(root / f"local{batch_rows}" / "returns.npz")["returns"]
    b = np.load(root / f"ray{batch_rows}" / "returns.npz")["returns"]
    assert a.shape == (3, 4, 3)
    np.testing.assert_array_equal(a, b)
    assert remote.config["eval"]["backend"] == "ray"
    assert local.config["eval"]["backend"] == "local"
    assert dataclasses.replace(remote, config={}) == dataclasses.replace(local, config={})


# --------------------------------------------------------------------------- errors


@needs_ray
def test_a_gpu_evaluation_on_a_cluster_without_gpus_is_refused(project, ray_instance):  # noqa: F811
    if ray_instance.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray instance has a GPU")
    cfg = config_from_dict({"eval": {"device": "cuda", "backend": "ray", "num_episodes": 2}})
    model = load_model(next((project["root"] / "run" / "checkpoints").iterdir()), "cpu")[0].policy()
    tasks = list(project["split"].test[:2])
    with pytest.raises(UserError, match="the Ray cluster has no GPU") as excinfo:
        rollout_on_ray(model, project["family"], tasks, cfg.eval)
    assert "\n" not in str(excinfo.value)


def test_missing_ray_is_a_one_line_error_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UserError) as excinfo:
        collect(bandit_config(tmp_path, backend="ray"), progress=False)
    message = str(excinfo.value)
    assert '".[ray]"' in message and "\n" not in message
    # nothing was collected, and the folder has no half-written runs
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*.tmp"))


def test_cli_backend_flags(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(bandit_config(tmp_path / "ds"))))
    code = collect_main(["--config", str(path), "--backend", "ray", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--workers sizes the local pool" in err and err.count("\n") == 1
    assert not (tmp_path / "ds").exists()


def test_cli_address_becomes_the_config_field():
    import argparse

    from ad.cli import _ray_overrides
    from ad.config import parse_override

    args = argparse.Namespace(backend="ray", address="10.0.0.1:6379")
    overrides = _ray_overrides(args, "eval")
    assert [parse_override(o) for o in overrides] == [
        (["eval", "backend"], "ray"),
        (["ray", "address"], "10.0.0.1:6379"),
    ]
    cfg = config_from_dict({}, [o.replace("eval.", "collect.") for o in overrides])
    assert (cfg.collect.backend, cfg.ray.address) == ("ray", "10.0.0.1:6379")
