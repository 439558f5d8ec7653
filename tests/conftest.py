"""Project-wide test settings."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_collection_modifyitems(items):
    """The files of the longest learning tests run first (`@pytest.mark.slow(minutes=...)`, as
    measured on one core), so that under `-n auto --dist loadfile` no worker is left alone with
    a long test at the end while the other idles. Needs `--no-loadscope-reorder` (pyproject's
    addopts): xdist otherwise puts the files with the most tests first."""
    minutes: dict = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        cost = marker.kwargs.get("minutes", 0) if marker else 0
        minutes[item.path] = max(minutes.get(item.path, 0), cost)
    items.sort(key=lambda item: -minutes[item.path])  # stable: the rest keep their order


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The models under test are tiny: on a 2-core machine intra-op threading costs more than it
    # saves (measured: a model test went from ~10 s to 0.3 s). Learning tests that want more
    # take the `cores` fixture.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def cores():
    """This test's share of the machine's cores: all of them alone, one each under `-n auto`.

    Learning tests use it for torch threads and collection workers. Two xdist workers that each
    ran 2 threads and 2 collection processes on 2 cores ran a learning test 2.6x slower than it
    ran alone (oversubscription), and pushed CI past its time.
    """
    share = (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = max(1, share)
    previous = torch.get_num_threads()
    torch.set_num_threads(share)
    yield share
    torch.set_num_threads(previous)


@pytest.fixture
def run_reduced(tmp_path, cores):
    """``run(config, overrides, with_ed)``: the whole pipeline (collect -> train -> evaluate ->
    report) on a config file (None: the built-in default) with overrides, writing histories to
    ``tmp_path/h`` and the run to ``tmp_path/r``, on this test's share of the cores."""
    from ad.config import load_config
    from ad.pipeline import run_pipeline

    def run(config, overrides: list[str], with_ed: bool):  # -> RunSummary
        dirs = [f"collect.output_dir={tmp_path / 'h'}", f"train.run_dir={tmp_path / 'r'}"]
        cfg = load_config(config, [*overrides, *dirs])
        (summary,) = run_pipeline(cfg, workers=cores, with_ed=with_ed, progress=False)
        return summary

    return run


@pytest.fixture
def in_context_margins(tmp_path, run_reduced):
    """``measure(config, overrides) -> (first, last10, ed)``: a reduced recipe run with its ED
    control, evaluated on 4 test tasks x 16 seeds; AD's mean return over the first 5 episodes and
    the last 10, and ED's over its last 10 (the control: converged episodes only)."""
    import numpy as np

    def measure(config, overrides: list[str]) -> tuple[float, float, float]:
        summary = run_reduced(config, overrides, with_ed=True)
        returns = np.load(tmp_path / "r" / "report" / "returns.npz")["returns"]
        assert returns.shape[:2] == (4, 16) and summary.split == "test"  # (tasks, seeds, eps)
        first, last10 = returns[..., :5].mean(), returns[..., -10:].mean()
        return first, last10, summary.compare[0].last10_return

    return measure


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An AD run, an ED run (another seed) and a dataset with test, validation and train
    histories."""
    import envs
    from ad.config import config_from_dict, config_to_dict
    from tests.factories import make_config, random_model, save_run, write_dataset

    root = tmp_path_factory.mktemp("eval")
    family = envs.make_family("DarkRoom")
    split = family.split(0)
    cfg = make_config(root)
    save_run(root / "run", cfg, random_model(cfg, family, seed=0), split)
    ed_cfg = config_from_dict(
        {
            **config_to_dict(cfg),
            "train": {
                **config_to_dict(cfg)["train"],
                "mode": "ed",
                "run_dir": str(root / "run-ed"),
            },
        }
    )
    save_run(root / "run-ed", ed_cfg, random_model(ed_cfg, family, seed=1), split)
    # test tasks 0-2 are evaluated (max_tasks=3); test 5, validation 0, train 0 must be ignored
    write_dataset(
        root / "data",
        family,
        split,
        [("test", 0), ("test", 1), ("test", 2), ("test", 5), ("validation", 0), ("train", 0)],
    )
    return {"root": root, "family": family, "split": split, "cfg": cfg}
