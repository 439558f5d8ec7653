"""Config loading: defaults, YAML, overrides, and one-line errors for bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ad.config import (
    CollectConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    help_text,
    load_config,
)
from ad.errors import UserError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = config_from_dict({})
    assert cfg == ExperimentConfig()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg


def test_overrides_parse_yaml_values():
    cfg = config_from_dict(
        {"train": {"optim": {"lr": 1e-3}}},
        [
            "train.num_steps=7",
            "env.family_kwargs={size: 5}",
            "collect.seeds=[1, 2]",
            "eval.device=cpu",
        ],
    )
    assert cfg.train.num_steps == 7
    assert cfg.train.optim.lr == 1e-3
    assert cfg.env.family_kwargs == {"size": 5}
    assert cfg.collect.seeds == [1, 2]


def test_yaml_1_1_quirks_are_read_as_meant():
    assert config_from_dict({"train": {"optim": {"lr": 1}}}).train.optim.lr == 1.0
    assert (
        config_from_dict({}, ["train.optim.lr=1e-3"]).train.optim.lr == 1e-3
    )  # YAML 1.1: a string
    assert (
        config_from_dict({}, ["train.data.in_memory=yes"]).train.data.in_memory == "yes"
    )  # a bool
    assert config_from_dict({}, ["train.data.in_memory=no"]).train.data.in_memory == "no"


@pytest.mark.parametrize(
    ("data", "overrides", "needle"),
    [
        ({"train": {"optim": {"lr": "fast"}}}, [], "train.optim.lr: expected a number"),
        ({}, ["train.lr=0.1"], "unknown config key train.lr (did you mean train.optim.lr?)"),
        ({"train": {"num_stepz": 3}}, [], "unknown config key train.num_stepz"),
        ({"bogus": {}}, [], "unknown config key bogus"),
        ({"train": {"mode": "bc"}}, [], "train.mode: 'bc' is not one of"),
        ({"eval": {"num_episodes": 0}}, [], "eval.num_episodes must be >= 1, got 0"),
        ({}, ["eval.num_episodes=-3"], "eval.num_episodes must be >= 1, got -3"),
        ({"model": {"embed_dim": 30, "num_heads": 4}}, [], "embed_dim must divide"),
        ({}, ["train.optim.lr"], "not of the form section.key=value"),
        ({"collect": {"splits": ["tests"]}}, [], "collect.splits"),
        ({"env": {"num_heldout_tasks": 4}}, [], "unknown config key env.num_heldout_tasks"),
        ({}, ["collect.splits=[train, heldout]"], "[train, validation, test]"),
        ({"eval": {"tasks": "heldout"}}, [], "eval.tasks: 'heldout' is not one of"),
        ({"train": {"batch_size": True}}, [], "expected an integer"),
        ({"env": {"num_train_tasks": "all"}}, [], "env.num_train_tasks"),
        ({}, ["train.log_every=0"], "train.log_every must be >= 1"),
        ({}, ["train.data.num_workers=-1"], "train.data.num_workers must be >= 0"),
        ({}, ["train.optim.betas=[0.9, fast]"], "train.optim.betas must be two numbers"),
        ({}, ["train.optim.min_lr=1"], "train.optim.min_lr must be in [0, train.optim.lr]"),
        ({"eval": {"normalise_at": ["x"]}}, [], "eval.normalise_at"),
        ({"eval": {"normalise_at": [0]}}, [], "eval.normalise_at"),
        ({}, ["model.vector_encoder=mlp"], "model.vector_encoder: 'mlp' is not one of"),
        ({}, ["model.token_bins=1"], "model.token_bins must be >= 2, got 1"),
        ({}, ["model.token_bins=8.5"], "model.token_bins"),
        ({}, ["model.token_mu=0"], "model.token_mu must be a finite number > 0, got 0"),
        ({}, ["model.token_max=-256"], "model.token_max must be a finite number > 0"),
        ({}, ["model.token_max=.inf"], "model.token_max must be a finite number > 0, got inf"),
        ({}, ["model.token_mu=.nan"], "model.token_mu must be a finite number > 0, got nan"),
    ],
)
def test_bad_values_give_one_line_errors(data, overrides, needle):
    with pytest.raises(UserError) as info:
        config_from_dict(data, overrides)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            None,
            "config file {path} not found; pass an existing YAML file (see configs/)",
            id="missing",
        ),
        pytest.param(
            b"train: [unclosed\n",
            "config file {path} is not valid YAML at line 2; fix its syntax",
            id="not-yaml",
        ),
        pytest.param(
            "train: {optim: {lr: 0.001}}\n".encode("utf-16"),  # starts with 0xff 0xfe
            "config file {path} is not UTF-8 text (byte 0xff at offset 0); save it as UTF-8",
            id="utf-16",
        ),
    ],
)
def test_missing_and_malformed_files_are_named(tmp_path, content, expected):
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == expected.format(path=path)


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("train: {optim: {lr: 0.002}}\n".encode("utf-8-sig"))
    assert load_config(bom).train.optim.lr == 0.002


def test_run_and_dataset_folders_follow_the_name():
    cfg = config_from_dict({"name": "x"})
    assert cfg.dataset_dir == Path("learning_histories/x")
    assert cfg.run_dir == Path("runs/x")
    assert config_from_dict({"name": "x", "train": {"mode": "ed"}}).run_dir == Path("runs/x-ed")


def test_help_lists_every_section_and_field():
    text = help_text()
    for needle in (
        "[train]",
        "train.optim.lr",
        "model.context_steps",
        "env.family",
        "eval.num_episodes",
    ):
        assert needle in text
    # Gato's tokens for observations, and what the bins head does for Box actions
    for needle in ("model.vector_encoder", "model.token_bins", "model.token_mu", "model.token_max"):
        assert needle in text, needle
    assert "mu-law" in text and "bins for Box" in text


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    from ad.generalist import load_any_config

    cfg = load_any_config(path)  # an experiment, or a generalist of several
    assert cfg.name


def test_quick_config_file_is_the_builtin_default():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "darkroom_quick.yaml")
    assert cfg == ExperimentConfig()


def test_setting_the_algorithm_drops_the_default_ppo_kwargs():
    assert config_from_dict({}).collect.algorithm_kwargs["n_steps"] == 64
    assert config_from_dict({"collect": {"algorithm": "UCB"}}).collect.algorithm_kwargs == {}
    kept = config_from_dict({"collect": {"algorithm": "A2C", "algorithm_kwargs": {"n_steps": 8}}})
    assert kept.collect.algorithm_kwargs == {"n_steps": 8}


def test_overriding_the_algorithm_keeps_the_files_kwargs():
    """--set collect.algorithm=X never drops the algorithm_kwargs written in the file."""
    data = {"collect": {"algorithm": "PPO", "algorithm_kwargs": {"learning_rate": 0.01}}}
    cfg = config_from_dict(data, ["collect.algorithm=A2C"])
    assert (cfg.collect.algorithm, cfg.collect.algorithm_kwargs) == ("A2C", {"learning_rate": 0.01})
    assert config_from_dict({}, ["collect.algorithm=DQN"]).collect.algorithm_kwargs == {}


@pytest.mark.parametrize(
    ("section", "kwargs", "needle"),
    [
        (CollectConfig, {"n_envs": 0}, "collect.n_envs must be >= 1, got 0"),
        (ModelConfig, {"dropout": 1.5}, "model.dropout must be in [0, 1), got 1.5"),
        (TrainConfig, {"batch_size": -2}, "train.batch_size must be >= 1, got -2"),
        (EvalConfig, {"num_seeds": -1}, "eval.num_seeds must be >= 1, got -1"),
    ],
    ids=["collect", "model", "train", "eval"],
)
def test_every_section_checks_its_own_values_on_construction(section, kwargs, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        section(**kwargs)
