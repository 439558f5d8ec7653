"""Checkpoint files: atomic save, weights-only load, schema checks, lookup, model loading, RNG."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from ad.config import ModelConfig, config_to_dict
from ad.data.spaces import same_spaces, space_to_json
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
from tests.factories import refused_in_one_line, tiny_config

SPACES = (MultiDiscrete([9, 9]), Discrete(5))


def _state(model: ADTransformer, step: int = 3) -> Checkpoint:
    """A checkpoint of ``model``, each family's spaces kept as ad-train keeps them."""
    cfg = tiny_config(Path("data"), None, "model.dropout=0.0")

    def record(name: str) -> FamilyRecord:
        observation_space, action_space = model.spaces(name)
        return FamilyRecord(
            config=config_to_dict(cfg),
            observation_space=space_to_json(observation_space),
            action_space=space_to_json(action_space),
            split={
                "family": name,
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
        families={name: record(name) for name in model.names},
        dataset_fingerprint="abc",
        versions={"torch": str(torch.__version__)},
    )


def _model() -> ADTransformer:
    torch.manual_seed(0)
    cfg = tiny_config(Path("data"), None, "model.dropout=0.0").model
    return ADTransformer(cfg, {"DarkRoom": SPACES})


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


def test_a_model_built_from_a_checkpoints_restored_spaces_equals_the_original(tmp_path):
    """Spaces go to the file as JSON and come back as gymnasium spaces that build the same
    encoders and heads: uneven Box bounds, an image's dtype, a MultiDiscrete's nvec."""
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=16, num_layers=1, num_heads=2, ff_dim=32, context_steps=8)
    uneven = Box(np.float32([-1.0, 0.0, 2.0]), np.float32([1.0, 4.0, 3.0]))
    spaces = {
        "DarkRoom": SPACES,
        "Robot": (uneven, Box(np.float32([-1.0, 0.0]), np.float32([1.0, 0.5]))),
        "Grid": (Box(0, 10, (7, 7, 3), np.uint8), Discrete(3)),
    }
    model = ADTransformer(cfg, spaces).eval()
    path = tmp_path / "run" / "checkpoints" / checkpoint_name(3)
    save_checkpoint(path, _state(model))
    loaded, ckpt = load_model(tmp_path / "run")
    for name, (observation_space, action_space) in ckpt.spaces().items():
        assert same_spaces(observation_space, spaces[name][0])
        assert same_spaces(action_space, spaces[name][1])
    fresh = ADTransformer(cfg, ckpt.spaces())  # not loaded: the architecture alone
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    for a, b in zip(model.named_buffers(), loaded.named_buffers(), strict=True):
        assert a[0] == b[0] and torch.equal(a[1], b[1])  # Box scales are derived, not stored
    gen = torch.Generator().manual_seed(2)
    actions = torch.rand(2, 8, 2, generator=gen) * torch.tensor([2.0, 0.5]) - torch.tensor([1, 0])
    batch = {
        "observations": torch.rand(2, 8, 3, generator=gen),
        "prev_actions": actions,
        "prev_rewards": torch.rand(2, 8, generator=gen),
        "prev_dones": torch.rand(2, 8, generator=gen) < 0.2,
        "targets": actions,
    }
    with torch.no_grad():
        assert torch.equal(model({"Robot": batch})[1], loaded({"Robot": batch})[1])


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


# Bad checkpoints: each builder writes one under tmp_path and returns what to load.


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _not_a_zip_file(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a zip file")
    return path


def _truncated(tmp_path: Path) -> Path:
    good = tmp_path / "good.pt"
    save_checkpoint(good, _state(_model()))
    path = tmp_path / "truncated.pt"
    path.write_bytes(good.read_bytes()[:1000])
    return path


def _pickled_object(tmp_path: Path) -> Path:
    """An object that weights-only loading refuses."""
    path = tmp_path / "pickled.pt"
    torch.save({"schema_version": CHECKPOINT_SCHEMA, "config": ModelConfig()}, path)
    return path


def _saved(without: str | None = None, **changes):
    """A builder of a saved checkpoint with ``changes`` to its state, and ``without`` a key."""

    def build(tmp_path: Path) -> Path:
        state = {**_state(_model()).to_state(), **changes}
        if without:
            del state[without]
        path = tmp_path / "bad.pt"
        torch.save(state, path)
        return path

    return build


@pytest.mark.parametrize(
    ("load", "build", "words"),
    [
        pytest.param(load_checkpoint, lambda tmp_path: tmp_path / "none.pt", ["not found"],
                     id="missing-file"),
        pytest.param(find_checkpoint, lambda tmp_path: tmp_path / "nowhere", ["does not exist"],
                     id="missing-folder"),
        pytest.param(find_checkpoint, _empty_folder, ["no checkpoint"], id="empty-folder"),
        pytest.param(load_checkpoint, _not_a_zip_file, ["corrupt"], id="not-a-zip-file"),
        pytest.param(load_checkpoint, _truncated, ["corrupt"], id="truncated"),
        pytest.param(load_checkpoint, _pickled_object, ["corrupt or not a checkpoint"],
                     id="weights-only-refuses"),
        pytest.param(load_checkpoint, _saved(schema_version=CHECKPOINT_SCHEMA + 1),
                     ["schema version", "retrain"], id="future-schema"),
        pytest.param(load_checkpoint, _saved(schema_version=2),
                     ["schema version 2", "reads 3", "retrain"], id="old-schema"),
        pytest.param(load_checkpoint, _saved(families=None), ["damaged family records"],
                     id="no-families"),
        pytest.param(load_checkpoint, _saved(families={"DarkRoom": {"split": {}}}),
                     ["damaged family records"], id="bad-family"),
        pytest.param(load_checkpoint, _saved(without="step"), ["lacks step", "damaged"],
                     id="no-step"),
    ],
)  # fmt: skip
def test_bad_checkpoints_are_one_line_user_errors(tmp_path, load, build, words):
    path = build(tmp_path)
    refused_in_one_line(lambda: load(path), *words)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
