"""A generalist's config: one model trained on several task families.

A generalist config lists its families, each an ordinary experiment config with a sampling
weight, and gives the one model and training loop they share::

    name: generalist_quick
    families:
      - {config: configs/darkroom_quick.yaml, weight: 1.0}
      - {config: configs/bandit_generalist.yaml, weight: 1.0, set: [collect.output_dir=...]}
    model: {...}   # one trunk: embed_dim, num_layers, num_heads, context_steps (every family)
    train: {...}   # one loop: batch_size (split among the families by weight), num_steps, ...

Each family keeps its own task split, dataset folder (its ``collect`` output), windowing
(``train.data.subsample_every``, when the generalist's is null) and ``eval`` section, so each
family's data keeps its own split and leak checks. A family is keyed by its name.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ad.config import (
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    parse_override,
    read_config_file,
    run_dir_of,
    set_override,
)
from ad.errors import UserError
from ad.fields import build, is_number, replace_section

GENERALIST_KEYS = ("name", "families", "model", "train")
ENTRY_KEYS = ("config", "weight", "set")


@dataclass(frozen=True)
class FamilyEntry:
    """One family of a generalist: its config file, sampling weight and resolved experiment."""

    config: str
    weight: float
    overrides: tuple[str, ...]
    experiment: ExperimentConfig  # the family's config with the generalist's model and train

    @property
    def name(self) -> str:
        """The family's name, its key."""
        return self.experiment.env.family


@dataclass(frozen=True)
class GeneralistConfig:
    """A generalist experiment: its families, and the model and training loop they share."""

    name: str
    families: tuple[FamilyEntry, ...]
    model: ModelConfig
    train: TrainConfig

    @property
    def run_dir(self) -> Path:
        """Where ``ad-train`` writes (see :func:`ad.config.run_dir_of`)."""
        return run_dir_of(self.name, self.train)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.families]

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.families]


def is_generalist(data: Any) -> bool:
    """Whether a config mapping describes a generalist (it has a ``families`` list)."""
    return isinstance(data, dict) and "families" in data


def _family_experiment(
    base: ExperimentConfig, model: ModelConfig, train: TrainConfig, run_dir: Path
) -> ExperimentConfig:
    """The family's config as the generalist trains it: the generalist's model and loop, the
    family's own dataset, windowing (when the generalist leaves it null) and eval section."""
    subsample = train.data.subsample_every or base.train.data.subsample_every
    family_train = dataclasses.replace(
        replace_section(train, "data", subsample_every=subsample),
        dataset=str(base.dataset_dir),
        run_dir=str(run_dir),
    )
    return dataclasses.replace(base, model=model, train=family_train)


def _load_entry(index: int, entry: Any, here: Path | None) -> tuple[str, float, list, Any]:
    where = f"generalist family {index + 1}"
    if not isinstance(entry, dict) or "config" not in entry:
        raise UserError(f"{where} must be a mapping with a config path, e.g. {{config: X.yaml}}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]}; valid keys: {', '.join(ENTRY_KEYS)}")
    weight = entry.get("weight", 1.0)
    if not is_number(weight) or not weight > 0:
        raise UserError(f"{where} ({entry['config']}): weight must be a number > 0, got {weight!r}")
    overrides = entry.get("set") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{where}: set must be a list of section.key=value strings")
    path = Path(str(entry["config"]))
    if here is not None and not path.is_absolute() and (here / path).is_file():
        path = here / path  # relative to the generalist file's folder first, as an include is
    if not path.is_file():
        raise UserError(
            f"{where}: config file {path} not found; give a path from the generalist file's folder "
            "or the working directory"
        )
    try:
        base = config_from_dict(read_config_file(path), overrides)
    except UserError as e:
        raise UserError(f"{where} ({path}): {e}") from None
    return str(path), float(weight), overrides, base


def generalist_from_dict(
    data: dict, overrides: list[str] | tuple[str, ...] = (), here: Path | None = None
) -> GeneralistConfig:
    """Build and validate a generalist config from its mapping plus ``model.*``/``train.*``/
    ``name`` overrides; ``here``: the config file's folder (family configs are looked up there
    first).

    Raises:
        UserError: a missing or bad family config, a family given twice, a weight <= 0, one
            family only, unknown keys, a train.dataset.
    """
    unknown = sorted(set(data) - set(GENERALIST_KEYS))
    if unknown:
        raise UserError(
            f"unknown generalist config key {unknown[0]}; valid keys: "
            f"{', '.join(GENERALIST_KEYS)} (env, collect and eval belong in each family's config)"
        )
    data = copy.deepcopy(data)
    for text in overrides:
        path, _ = parse_override(text)
        if path == ["name"] or (len(path) >= 2 and path[0] in ("model", "train")):
            set_override(data, text)
        else:
            raise UserError(
                f"override {text!r}: a generalist takes name, model.* and train.* overrides; "
                "change a family in its own config (or its set list)"
            )
    entries = data.get("families")
    if not isinstance(entries, list) or not entries:
        raise UserError("families must be a non-empty list of {config: FILE, weight: W} entries")
    loaded = [_load_entry(i, entry, here) for i, entry in enumerate(entries)]
    families = [base.env.family for *_, base in loaded]
    for i, family in enumerate(families):
        if family in families[:i]:
            raise UserError(
                f"generalist families {families.index(family) + 1} and {i + 1} are both "
                f"{family}; give each family once, with its weight"
            )
    if len(loaded) == 1:
        raise UserError(
            f"a generalist of one family ({families[0]}) is a specialist; train "
            f"{loaded[0][0]} itself (ad-train --config), or add another family"
        )
    name = data.get("name", "generalist")
    if not isinstance(name, str) or not name:
        raise UserError(f"the generalist's name must be a non-empty string, got {name!r}")
    model = build(ModelConfig, data.get("model"), "model")
    train = build(TrainConfig, data.get("train"), "train")
    if train.dataset is not None:
        raise UserError(
            "a generalist's train.dataset is per family: each family reads its own dataset "
            "(its collect output or train.dataset); remove it"
        )
    run_dir = GeneralistConfig(name, (), model, train).run_dir
    entries = tuple(
        FamilyEntry(path, weight, tuple(sets), _family_experiment(base, model, train, run_dir))
        for path, weight, sets, base in loaded
    )
    return GeneralistConfig(name, entries, model, train)


def load_any_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig | GeneralistConfig:
    """A YAML experiment config, or a generalist config when the file has a ``families`` list."""
    from ad.config import load_config

    if path is None:
        return load_config(None, overrides)
    data = read_config_file(path)
    if is_generalist(data):
        return generalist_from_dict(data, overrides, Path(path).parent)
    return config_from_dict(data, overrides)


def generalist_to_dict(cfg: GeneralistConfig) -> dict:
    """Plain types: the file's shape, each family with its resolved experiment config."""
    return {
        "name": cfg.name,
        "families": [
            {
                "config": m.config,
                "weight": m.weight,
                "set": list(m.overrides),
                "resolved": config_to_dict(m.experiment),
            }
            for m in cfg.families
        ],
        "model": config_to_dict(cfg.model),
        "train": config_to_dict(cfg.train),
    }


def family_entries(cfg: ExperimentConfig | GeneralistConfig) -> tuple[FamilyEntry, ...]:
    """The families a config trains: a generalist's, or a specialist's one."""
    if isinstance(cfg, GeneralistConfig):
        return cfg.families
    return (FamilyEntry("", 1.0, (), cfg),)


def with_experiments(
    cfg: ExperimentConfig | GeneralistConfig, experiments: list[ExperimentConfig]
) -> ExperimentConfig | GeneralistConfig:
    """``cfg`` with its families' experiments replaced (by their resolved configs), and the
    shared model section taken from the first (all families share one)."""
    if isinstance(cfg, ExperimentConfig):
        (experiment,) = experiments
        return experiment
    entries = tuple(
        dataclasses.replace(m, experiment=e) for m, e in zip(cfg.families, experiments, strict=True)
    )
    return dataclasses.replace(cfg, families=entries, model=experiments[0].model)


def replace_train(
    cfg: ExperimentConfig | GeneralistConfig, **changes: Any
) -> ExperimentConfig | GeneralistConfig:
    """``cfg`` with train settings changed, in each family's experiment too."""
    if isinstance(cfg, ExperimentConfig):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
    run_dir = str(cfg.run_dir)  # a family records the generalist's run folder as its own
    entries = tuple(
        dataclasses.replace(
            m,
            experiment=dataclasses.replace(
                m.experiment,
                train=dataclasses.replace(m.experiment.train, **{**changes, "run_dir": run_dir}),
            ),
        )
        for m in cfg.families
    )
    return dataclasses.replace(cfg, families=entries)


def config_record(cfg: ExperimentConfig | GeneralistConfig) -> dict:
    """Plain types, as a run's config.yaml and its checkpoints hold the config."""
    return generalist_to_dict(cfg) if isinstance(cfg, GeneralistConfig) else config_to_dict(cfg)


def family_rows(batch_size: int, weights: list[float]) -> list[int]:
    """Rows of each family in a batch of ``batch_size``: proportional to the weights (largest
    remainders), at least one each, so that every family's head learns at every step.

    Raises:
        UserError: fewer rows than families.
    """
    if batch_size < len(weights):
        raise UserError(
            f"train.batch_size={batch_size} is smaller than the {len(weights)} families; give "
            "every family at least one row"
        )
    total = sum(weights)
    spare = batch_size - len(weights)  # one row each first
    exact = [spare * w / total for w in weights]
    rows = [1 + int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in by_remainder[: batch_size - sum(rows)]:
        rows[i] += 1
    return rows


def specialists(cfg: GeneralistConfig) -> list[ExperimentConfig]:
    """The specialist to compare with each family: that family's experiment with the
    generalist's model and loop, trained on the family's rows of each batch alone (as many
    windows per step, for as many steps, as the family gets in the generalist), in its own run
    folder."""
    out = []
    for entry, rows in zip(
        cfg.families, family_rows(cfg.train.batch_size, cfg.weights), strict=True
    ):
        exp = entry.experiment
        train = dataclasses.replace(exp.train, batch_size=rows, run_dir=None)
        out.append(dataclasses.replace(exp, name=f"{cfg.name}-{entry.name}", train=train))
    return out
