"""Checkpoint files: atomic save, weights-only load, schema checks, lookup, model loading, RNG."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ad.config import ModelConfig, config_to_dict
from ad.errors import UserError
from ad.learn.checkpoint import (
    CHECKPOINT_SCHEMA,
    Checkpoint,
    FamilyRecord,
    checkpoint_name,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ad.learn.model import ADTransformer
from tests.factories import tiny_config

SPACE = {"type": "MultiDiscrete", "nvec": [9, 9]}


def _state(model: ADTransformer, step: int = 3) -> Checkpoint:
    cfg = tiny_config(Path("data"), None, "model.dropout=0.0")
    record = FamilyRecord(
        config=config_to_dict(cfg),
        observation_space=SPACE,
        action_space={"type": "Discrete", "n": 5},
        split={
            "family": "DarkRoom",
            "family_kwargs": {},
            "seed": 0,
            **{"train": [], "validation": [], "test": []},
        },  # fmt: skip
        dataset_fingerprint="abc",
        dataset_dir={"from_run": "../data", "absolute": "/data"},
    )
    return Checkpoint(
        model=model.state_dict(),
        optimizer=torch.optim.AdamW(model.parameters()).state_dict(),
        step=step,
        rng=[rng_state()],
        config=config_to_dict(cfg),
        model_config=config_to_dict(cfg.model),
        families={"DarkRoom": record},
        dataset_fingerprint="abc",
        versions={"torch": str(torch.__version__)},
    )


def _model() -> ADTransformer:
    torch.manual_seed(0)
    cfg = tiny_config(Path("data"), None, "model.dropout=0.0").model
    return ADTransformer(cfg, {"DarkRoom": (SPACE, {"type": "Discrete", "n": 5})})


def _inputs() -> tuple:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randint(0, 9, (3, 40, 2), generator=g),
        torch.randint(0, 6, (3, 40), generator=g),
        torch.rand(3, 40, generator=g),
        torch.rand(3, 40, generator=g) < 0.05,
    )


def test_save_then_load_model_gives_identical_logits(tmp_path):
    model = _model().eval()
    path = tmp_path / "run" / "checkpoints" / checkpoint_name(3)
    save_checkpoint(path, _state(model))
    assert [p.name for p in path.parent.iterdir()] == ["step-000003.pt"]  # no temp file left
    assert torch.load(path, weights_only=True)["step"] == 3
    loaded, ckpt = load_model(tmp_path / "run")
    assert not loaded.training and ckpt.dataset_fingerprint == "abc"
    expected = _state(model)  # the typed record round-trips
    assert ckpt.families == expected.families and ckpt.config == expected.config
    with torch.no_grad():
        assert torch.equal(loaded.policy()(*_inputs())[0], model.policy()(*_inputs())[0])


def test_find_checkpoint_picks_the_latest_step(tmp_path):
    state = _state(_model())
    for step in (20, 5, 100):
        save_checkpoint(
            tmp_path / "checkpoints" / checkpoint_name(step), dataclasses.replace(state, step=step)
        )
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000005.pt",
        "step-000020.pt",
        "step-000100.pt",
    ]
    assert find_checkpoint(tmp_path).name == "step-000100.pt"
    assert find_checkpoint(tmp_path / "checkpoints").name == "step-000100.pt"
    single = tmp_path / "checkpoints" / "step-000005.pt"
    assert find_checkpoint(single) == single


def _one_line(fn, *words: str) -> None:
    with pytest.raises(UserError) as info:
        fn()
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_bad_checkpoints_are_one_line_user_errors(tmp_path):
    _one_line(lambda: load_checkpoint(tmp_path / "none.pt"), "not found")
    _one_line(lambda: find_checkpoint(tmp_path / "nowhere"), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line(lambda: find_checkpoint(tmp_path / "empty"), "no checkpoint")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a zip file")
    _one_line(lambda: load_checkpoint(garbage), "corrupt")
    good = tmp_path / "good.pt"
    save_checkpoint(good, _state(_model()))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    _one_line(lambda: load_checkpoint(truncated), "corrupt")
    state = _state(_model()).to_state()
    for name, changes, words in [
        ("future", {"schema_version": CHECKPOINT_SCHEMA + 1}, ["schema version", "retrain"]),
        ("old", {"schema_version": 2}, ["schema version 2", "reads 3", "retrain"]),
        ("no_families", {"families": None}, ["damaged family records"]),
        ("bad_family", {"families": {"DarkRoom": {"split": {}}}}, ["damaged family records"]),
    ]:
        torch.save({**state, **changes}, tmp_path / f"{name}.pt")
        _one_line(lambda n=name: load_checkpoint(tmp_path / f"{n}.pt"), *words)
    del state["step"]
    torch.save(state, tmp_path / "no_step.pt")
    _one_line(lambda: load_checkpoint(tmp_path / "no_step.pt"), "lacks step", "damaged")


def test_objects_that_weights_only_refuses_are_reported(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"schema_version": CHECKPOINT_SCHEMA, "config": ModelConfig()}, path)
    _one_line(lambda: load_checkpoint(path), "corrupt or not a checkpoint")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
