"""A generalist's config (issue 14): one trunk trained on a mixture of task families.

A mixture config names its members, each an ordinary experiment config with a sampling weight,
and gives the one model and training loop they share::

    name: generalist_quick
    mixture:
      - {config: configs/darkroom_quick.yaml, weight: 1.0}
      - {config: configs/bandit_generalist.yaml, weight: 1.0, set: [collect.output_dir=...]}
    model: {...}   # one trunk: embed_dim, num_layers, num_heads, context_steps (all members)
    train: {...}   # one loop: batch_size (split among members by weight), num_steps, lr, ...

Each member keeps its own family, task split, dataset folder (its ``collect`` output), windowing
(``train.subsample_every``, when the mixture's is null) and ``eval`` section, so each member's
data keeps its own split and leak checks. A member is keyed by its family's name.
"""

from __future__ import annotations

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
)
from ad.errors import UserError
from ad.fields import build, is_number

MIXTURE_KEYS = ("name", "mixture", "model", "train")
MEMBER_KEYS = ("config", "weight", "set")


@dataclass(frozen=True)
class MixtureMember:
    """One family of the mixture: its config file, sampling weight and resolved experiment."""

    config: str
    weight: float
    overrides: tuple[str, ...]
    experiment: ExperimentConfig  # the member's config with the mixture's model and train

    @property
    def name(self) -> str:
        """The member's key: its family's name."""
        return self.experiment.env.family


@dataclass(frozen=True)
class MixtureConfig:
    """A generalist experiment: members, and the model and training loop they share."""

    name: str
    members: tuple[MixtureMember, ...]
    model: ModelConfig
    train: TrainConfig

    @property
    def run_dir(self) -> Path:
        """Where ``ad-train`` writes: train.run_dir, or runs/<name> (runs/<name>-ed for ED)."""
        if self.train.run_dir is not None:
            return Path(self.train.run_dir)
        return Path("runs") / (self.name + ("-ed" if self.train.mode == "ed" else ""))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]


def is_mixture(data: Any) -> bool:
    """Whether a config mapping describes a mixture (it has a ``mixture`` list)."""
    return isinstance(data, dict) and "mixture" in data


def _member_experiment(
    base: ExperimentConfig, model: ModelConfig, train: TrainConfig, run_dir: Path
) -> ExperimentConfig:
    """The member's config as the generalist trains it: the mixture's model and loop, the
    member's own dataset, windowing (when the mixture leaves it null) and eval section."""
    subsample = train.subsample_every or base.train.subsample_every
    member_train = dataclasses.replace(
        train, dataset=str(base.dataset_dir), run_dir=str(run_dir), subsample_every=subsample
    )
    return dataclasses.replace(base, model=model, train=member_train)


def _load_member(index: int, entry: Any, here: Path | None) -> tuple[str, float, list, Any]:
    where = f"mixture member {index + 1}"
    if not isinstance(entry, dict) or "config" not in entry:
        raise UserError(f"{where} must be a mapping with a config path, e.g. {{config: X.yaml}}")
    unknown = sorted(set(entry) - set(MEMBER_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]}; valid keys: {', '.join(MEMBER_KEYS)}")
    weight = entry.get("weight", 1.0)
    if not is_number(weight) or not weight > 0:
        raise UserError(f"{where} ({entry['config']}): weight must be a number > 0, got {weight!r}")
    overrides = entry.get("set") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{where}: set must be a list of section.key=value strings")
    path = Path(str(entry["config"]))
    if here is not None and not path.is_absolute() and (here / path).is_file():
        path = here / path  # relative to the mixture file's folder first, as an include is
    if not path.is_file():
        raise UserError(
            f"{where}: config file {path} not found; give a path from the mixture file's folder "
            "or the working directory"
        )
    try:
        base = config_from_dict(read_config_file(path), overrides)
    except UserError as e:
        raise UserError(f"{where} ({path}): {e}") from None
    return str(path), float(weight), overrides, base


def mixture_from_dict(
    data: dict, overrides: list[str] | tuple[str, ...] = (), here: Path | None = None
) -> MixtureConfig:
    """Build and validate a mixture config from its mapping plus ``model.*``/``train.*``/``name``
    overrides; ``here``: the mixture file's folder (member paths are looked up there first).

    Raises:
        UserError: a missing or bad member config, a family given twice, a weight <= 0, a
            mixture of one member, unknown keys, a train.dataset.
    """
    unknown = sorted(set(data) - set(MIXTURE_KEYS))
    if unknown:
        raise UserError(
            f"unknown mixture config key {unknown[0]}; valid keys: {', '.join(MIXTURE_KEYS)} "
            "(env, collect and eval belong in each member's config)"
        )
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for text in overrides:
        path, value = parse_override(text)
        if path == ["name"]:
            data["name"] = value
        elif len(path) == 2 and path[0] in ("model", "train"):
            data.setdefault(path[0], {})
            data[path[0]][path[1]] = value
        else:
            raise UserError(
                f"override {text!r}: a mixture takes name, model.* and train.* overrides; "
                "change a member in its own config (or the member's set list)"
            )
    entries = data.get("mixture")
    if not isinstance(entries, list) or not entries:
        raise UserError("mixture must be a non-empty list of {config: FILE, weight: W} entries")
    loaded = [_load_member(i, entry, here) for i, entry in enumerate(entries)]
    families = [base.env.family for *_, base in loaded]
    for i, family in enumerate(families):
        if family in families[:i]:
            raise UserError(
                f"mixture members {families.index(family) + 1} and {i + 1} are both {family}; "
                "give each family once (one member per family, with its weight)"
            )
    if len(loaded) == 1:
        raise UserError(
            f"a mixture of one member ({families[0]}) is a specialist; train "
            f"{loaded[0][0]} itself (ad-train --config), or add another family"
        )
    name = data.get("name", "generalist")
    if not isinstance(name, str) or not name:
        raise UserError(f"mixture name must be a non-empty string, got {name!r}")
    model = build(ModelConfig, data.get("model"), "model")
    train = build(TrainConfig, data.get("train"), "train")
    if train.dataset is not None:
        raise UserError(
            "a mixture's train.dataset is per member: each member reads its own dataset (its "
            "collect output or train.dataset); remove it"
        )
    run_dir = MixtureConfig(name, (), model, train).run_dir
    members = tuple(
        MixtureMember(path, weight, tuple(sets), _member_experiment(base, model, train, run_dir))
        for path, weight, sets, base in loaded
    )
    return MixtureConfig(name, members, model, train)


def load_any_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig | MixtureConfig:
    """A YAML experiment config, or a mixture config when the file has a ``mixture`` list."""
    from ad.config import load_config

    if path is None:
        return load_config(None, overrides)
    data = read_config_file(path)
    if is_mixture(data):
        return mixture_from_dict(data, overrides, Path(path).parent)
    return config_from_dict(data, overrides)


def mixture_to_dict(cfg: MixtureConfig) -> dict:
    """Plain types: the file's shape, each member with its resolved experiment config."""
    return {
        "name": cfg.name,
        "mixture": [
            {
                "config": m.config,
                "weight": m.weight,
                "set": list(m.overrides),
                "resolved": config_to_dict(m.experiment),
            }
            for m in cfg.members
        ],
        "model": config_to_dict(cfg.model),
        "train": config_to_dict(cfg.train),
    }


def members_of(cfg: ExperimentConfig | MixtureConfig) -> tuple[MixtureMember, ...]:
    """The families a config trains: a mixture's members, or a specialist's one family."""
    if isinstance(cfg, MixtureConfig):
        return cfg.members
    return (MixtureMember("", 1.0, (), cfg),)


def with_members(
    cfg: ExperimentConfig | MixtureConfig, experiments: list[ExperimentConfig]
) -> ExperimentConfig | MixtureConfig:
    """``cfg`` with its families' experiments replaced (by their resolved configs), and the
    shared model section taken from the first (all members share one)."""
    if isinstance(cfg, ExperimentConfig):
        (experiment,) = experiments
        return experiment
    members = tuple(
        dataclasses.replace(m, experiment=e) for m, e in zip(cfg.members, experiments, strict=True)
    )
    return dataclasses.replace(cfg, members=members, model=experiments[0].model)


def replace_train(
    cfg: ExperimentConfig | MixtureConfig, **changes: Any
) -> ExperimentConfig | MixtureConfig:
    """``cfg`` with train settings changed, in each member's experiment too."""
    if isinstance(cfg, ExperimentConfig):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
    run_dir = str(cfg.run_dir)  # a member records the generalist's run folder as its own
    members = tuple(
        dataclasses.replace(
            m,
            experiment=dataclasses.replace(
                m.experiment,
                train=dataclasses.replace(m.experiment.train, **{**changes, "run_dir": run_dir}),
            ),
        )
        for m in cfg.members
    )
    return dataclasses.replace(cfg, members=members)


def config_record(cfg: ExperimentConfig | MixtureConfig) -> dict:
    """Plain types, as a run's config.yaml and its checkpoints hold the config."""
    return mixture_to_dict(cfg) if isinstance(cfg, MixtureConfig) else config_to_dict(cfg)


def member_rows(batch_size: int, weights: list[float]) -> list[int]:
    """Rows of each member in a batch of ``batch_size``: proportional to the weights (largest
    remainders), at least one each, so that every member's head learns at every step.

    Raises:
        UserError: fewer rows than members.
    """
    if batch_size < len(weights):
        raise UserError(
            f"train.batch_size={batch_size} is smaller than the {len(weights)} mixture members; "
            "give every member at least one row"
        )
    total = sum(weights)
    spare = batch_size - len(weights)  # one row each first
    exact = [spare * w / total for w in weights]
    rows = [1 + int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in by_remainder[: batch_size - sum(rows)]:
        rows[i] += 1
    return rows


def specialists(cfg: MixtureConfig) -> list[ExperimentConfig]:
    """The specialist to compare with each member: that member's experiment with the mixture's
    model and loop, trained on the member's rows of each batch alone (as many windows per step,
    for as many steps, as the member gets in the generalist), in its own run folder."""
    out = []
    for member, rows in zip(
        cfg.members, member_rows(cfg.train.batch_size, cfg.weights), strict=True
    ):
        exp = member.experiment
        train = dataclasses.replace(exp.train, batch_size=rows, run_dir=None)
        out.append(dataclasses.replace(exp, name=f"{cfg.name}-{member.name}", train=train))
    return out
