"""Experiment configuration: frozen dataclasses, YAML loading, CLI overrides, validation.

One YAML file describes one experiment. Its top-level sections are the fields of
:class:`ExperimentConfig` (``env``, ``collect``, ``model``, ``train``, ``eval``) and every key
inside a section is a field of that section's dataclass. Each field carries a ``help`` text,
printed by ``ad-<command> --help-config``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from ad.errors import UserError

if TYPE_CHECKING:
    from envs.base import TaskFamily, TaskSplit


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help text (mutable defaults are copied)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class EnvConfig:
    family: str = _f(
        "DarkRoom",
        "Task family: a registered name (DarkRoom, DarkRoomHard, DarkKeyToDoor, Bandit, "
        "MiniGridEmpty) or 'module:ClassOrFactory' for a family in your own module.",
    )
    family_kwargs: dict = _f({}, "Keyword arguments of the family's constructor (e.g. size).")
    split_seed: int = _f(0, "Seed of the deterministic train / held-out task split.")
    num_train_tasks: int | None = _f(None, "Number of training tasks (None: family default).")
    num_heldout_tasks: int | None = _f(None, "Number of held-out tasks (None: family default).")

    def make_family(self) -> TaskFamily:
        """The task family this section describes."""
        from envs.base import make_family

        return make_family(self.family, **self.family_kwargs)

    def task_split(self, family: TaskFamily | None = None) -> TaskSplit:
        """The deterministic split of the family's tasks that this section describes."""
        family = self.make_family() if family is None else family
        return family.split(self.split_seed, self.num_train_tasks, self.num_heldout_tasks)


@dataclass(frozen=True)
class CollectConfig:
    algorithm: str = _f(
        "PPO",
        "Source algorithm: PPO, DQN, A2C, UCB or 'module:Class' implementing SourceAlgorithm.",
    )
    algorithm_kwargs: dict = _f(
        # PPO that learns a Dark Room goal in ~50 episodes per stream (measured; SB3's default
        # n_steps=2048 barely updates within the quick budget).
        {"learning_rate": 1e-3, "n_steps": 64, "batch_size": 64, "n_epochs": 10, "ent_coef": 0.01},
        "Keyword arguments of the source algorithm (learning_rate, n_steps, policy_kwargs, ...); "
        "the default is the quick PPO recipe, and {} when collect.algorithm is set.",
    )
    n_envs: int = _f(4, "Parallel env streams per run (the S axis of a learning history).")
    total_steps: int = _f(8000, "Environment steps per run, summed over all streams.")
    seeds: list = _f([0], "Seeds; one run per (task, seed).")
    splits: list = _f(["train", "heldout"], "Which splits' tasks to collect.")
    output_dir: str | None = _f(None, "Dataset folder (None: learning_histories/<name>).")
    chunk_steps: int = _f(256, "HDF5 chunk length along T; about the training context length.")
    compression: str | None = _f("gzip", "HDF5 compression filter (gzip, lzf or None).")


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = _f(64, "Token width.")
    num_layers: int = _f(4, "Transformer blocks.")
    num_heads: int = _f(4, "Attention heads.")
    ff_dim: int = _f(256, "Feed-forward hidden width (the paper uses 2048).")
    dropout: float = _f(0.1, "Residual and embedding dropout.")
    attn_dropout: float = _f(
        0.0, "Attention-probability dropout (the paper: 0.5, 0 on DarkRoomHard)."
    )
    input_mask_prob: float = _f(
        0.3,
        "Probability of replacing an input token by a learned mask token in training (the "
        "paper's 0.3; without it the quick Dark Room model stops exploring on many goals).",
    )
    context_steps: int = _f(200, "Context length c in environment steps (one token per step).")
    norm: Literal["pre", "post"] = _f(
        "pre", "Pre-norm (default, trains more stably) or post-norm (paper)."
    )


@dataclass(frozen=True)
class TrainConfig:
    dataset: str | None = _f(None, "History dataset folder (None: the collect output_dir).")
    run_dir: str | None = _f(None, "Run folder (None: runs/<name>, or runs/<name>-ed for ED).")
    mode: Literal["ad", "ed"] = _f(
        "ad", "ad: whole learning histories; ed: expert distillation on the last episodes only."
    )
    subsample_every: int = _f(5, "Keep every k-th episode of each stream before windowing.")
    subsample_offsets: Literal["first", "all"] = _f(
        "all",
        "all: one subsampled stream per offset o < k (episodes o, o + k, ...), k times the "
        "windows from the same histories; first: only episodes 0, k, 2k, ... (the paper).",
    )
    ed_last_episodes: int = _f(10, "ED: how many final (converged) episodes of each stream to use.")
    ed_num_steps: int | None = _f(
        1000, "ad-run: optimiser steps of the ED control (None: num_steps); its data is small."
    )
    batch_size: int = _f(32, "Global batch size (windows per optimiser step).")
    num_steps: int = _f(2000, "Optimiser steps.")
    lr: float = _f(1e-3, "Peak learning rate (the paper: 3e-4 over far more steps).")
    min_lr: float = _f(2e-6, "Learning rate at the ends of warm-up and cosine decay.")
    warmup_steps: int = _f(200, "Linear warm-up steps.")
    betas: list = _f([0.9, 0.99], "Adam betas.")
    weight_decay: float = _f(0.0, "AdamW weight decay (0: plain Adam).")
    grad_clip: float = _f(1.0, "Gradient-norm clip.")
    label_smoothing: float = _f(
        0.0, "Cross-entropy label smoothing (the paper: 0.2 on DarkRoomHard)."
    )
    seed: int = _f(0, "Seed of initialisation, data order and dropout.")
    device: str = _f("cpu", "cpu, cuda, cuda:N or auto.")
    bf16: bool = _f(True, "bf16 autocast where supported (CUDA with bf16); ignored on CPU.")
    compile: bool = _f(False, "torch.compile the model.")
    in_memory: Literal["auto", "yes", "no"] = _f(
        "auto", "Decompress the dataset into memory (auto: if it fits in max_memory_gb)."
    )
    max_memory_gb: float = _f(4.0, "Memory budget for in_memory=auto.")
    num_workers: int = _f(0, "DataLoader workers for streamed datasets.")
    log_every: int = _f(100, "Steps between metric rows.")
    checkpoint_every: int = _f(1000, "Steps between checkpoints.")
    keep_checkpoints: int = _f(2, "How many recent checkpoints to keep.")
    eval_every: int = _f(0, "Steps between in-context evaluations during training (0: never).")
    eval_tasks: int = _f(4, "Held-out tasks used by the periodic evaluation.")
    eval_episodes: int = _f(10, "Episodes per periodic evaluation.")


@dataclass(frozen=True)
class EvalConfig:
    num_episodes: int = _f(120, "Consecutive episodes per (task, seed).")
    num_seeds: int = _f(16, "Evaluation seeds per task.")
    seed: int = _f(0, "Base evaluation seed.")
    action_mode: Literal["sample", "argmax"] = _f(
        "sample", "Sample from the policy or take argmax."
    )
    temperature: float = _f(1.0, "Softmax temperature when sampling.")
    tasks: Literal["heldout", "train"] = _f(
        "heldout", "Which split to evaluate on; 'train' is labelled as such in every output."
    )
    max_tasks: int | None = _f(None, "Evaluate at most this many tasks of the split (None: all).")
    device: str = _f("cpu", "cpu, cuda or auto.")
    normalise_at: list = _f(
        [1, 10, 50, 100], "Episodes at which summary.json reports normalised scores."
    )


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = _f("darkroom_quick", "Experiment name; names the dataset and run folders.")
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "Task family and split."})
    collect: CollectConfig = field(
        default_factory=CollectConfig, metadata={"help": "Source algorithm runs."}
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The transformer."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training loop."})
    eval: EvalConfig = field(
        default_factory=EvalConfig, metadata={"help": "In-context evaluation."}
    )

    @property
    def dataset_dir(self) -> Path:
        """Where ``ad-train`` (and ``ad-eval``'s source curve) reads the learning histories."""
        if self.train.dataset is not None:
            return Path(self.train.dataset)
        return self.collect_dir

    @property
    def collect_dir(self) -> Path:
        """Where ``ad-collect`` writes: ``collect.output_dir``, else ``learning_histories/<name>``
        (unlike :attr:`dataset_dir`, ``train.dataset`` plays no part)."""
        if self.collect.output_dir is not None:
            return Path(self.collect.output_dir)
        return Path("learning_histories") / self.name

    @property
    def run_dir(self) -> Path:
        """Where ``ad-train`` writes checkpoints and metrics."""
        if self.train.run_dir is not None:
            return Path(self.train.run_dir)
        suffix = "-ed" if self.train.mode == "ed" else ""
        return Path("runs") / f"{self.name}{suffix}"


# --------------------------------------------------------------------------- loading


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check (and lightly coerce) one value against a field annotation."""
    if isinstance(annotation, str):  # from __future__ annotations
        annotation = eval(annotation, {**globals(), **typing.__dict__})  # noqa: S307
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: may not be null")
    if origin is Literal:
        if isinstance(value, bool) and {"yes", "no"} <= set(args):
            value = "yes" if value else "no"  # YAML 1.1 reads yes/no as booleans
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping of {cls.__name__} fields")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise UserError(
            f"unknown config key {prefix}{unknown[0]}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(cfg: ExperimentConfig) -> None:
    """Range checks that types alone do not catch."""
    checks = [
        (cfg.collect.n_envs >= 1, "collect.n_envs must be >= 1"),
        (cfg.collect.total_steps >= cfg.collect.n_envs, "collect.total_steps must be >= n_envs"),
        (len(cfg.collect.seeds) >= 1, "collect.seeds must list at least one seed"),
        (
            set(cfg.collect.splits) <= {"train", "heldout"} and cfg.collect.splits,
            "collect.splits must be a non-empty subset of [train, heldout]",
        ),
        (cfg.collect.chunk_steps >= 1, "collect.chunk_steps must be >= 1"),
        (
            cfg.collect.compression in (None, "gzip", "lzf"),
            "collect.compression: gzip, lzf or null",
        ),
        (
            cfg.model.embed_dim % cfg.model.num_heads == 0,
            "model.embed_dim must divide by num_heads",
        ),
        (cfg.model.context_steps >= 2, "model.context_steps must be >= 2"),
        (0 <= cfg.model.dropout < 1, "model.dropout must be in [0, 1)"),
        (0 <= cfg.model.attn_dropout < 1, "model.attn_dropout must be in [0, 1)"),
        (0 <= cfg.model.input_mask_prob < 1, "model.input_mask_prob must be in [0, 1)"),
        (cfg.train.subsample_every >= 1, "train.subsample_every must be >= 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.num_steps >= 1, "train.num_steps must be >= 1"),
        (cfg.train.lr > 0, "train.lr must be > 0"),
        (
            len(cfg.train.betas) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in cfg.train.betas),
            "train.betas must be two numbers in [0, 1)",
        ),
        (cfg.train.num_workers >= 0, "train.num_workers must be >= 0"),
        (cfg.train.log_every >= 1, "train.log_every must be >= 1"),
        (cfg.train.eval_every >= 0, "train.eval_every must be >= 0 (0: never)"),
        (cfg.train.eval_tasks >= 1, "train.eval_tasks must be >= 1"),
        (cfg.train.eval_episodes >= 1, "train.eval_episodes must be >= 1"),
        (cfg.train.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (0 <= cfg.train.min_lr <= cfg.train.lr, "train.min_lr must be in [0, train.lr]"),
        (cfg.train.grad_clip >= 0, "train.grad_clip must be >= 0 (0: no clipping)"),
        (cfg.train.ed_last_episodes >= 1, "train.ed_last_episodes must be >= 1"),
        (
            cfg.train.ed_num_steps is None or cfg.train.ed_num_steps >= 1,
            "train.ed_num_steps must be >= 1 or null",
        ),
        (
            all(_is_int(k) and k >= 1 for k in cfg.eval.normalise_at),
            "eval.normalise_at must list episode numbers >= 1",
        ),
        (0 <= cfg.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (cfg.train.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (cfg.train.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (cfg.eval.num_episodes >= 1, "eval.num_episodes must be >= 1 (got zero episodes)"),
        (cfg.eval.num_seeds >= 1, "eval.num_seeds must be >= 1"),
        (cfg.eval.temperature > 0, "eval.temperature must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"{message}; fix the config file or its --set override")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def config_from_dict(data: dict, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Build and validate a config from a plain mapping plus ``section.key=value`` overrides."""
    data = yaml.safe_load(yaml.safe_dump(data or {}))  # deep copy, plain types only
    if not isinstance(data, dict):
        raise UserError("the config must be a YAML mapping of sections (env, collect, ...)")
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    collect = data.get("collect")
    if isinstance(collect, dict) and "algorithm" in collect and "algorithm_kwargs" not in collect:
        # The default kwargs are the quick PPO recipe; another algorithm starts from its own.
        collect["algorithm_kwargs"] = {}
    cfg = _build(ExperimentConfig, data, "")
    _validate(cfg)
    return cfg


def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Load a YAML experiment config (None: all defaults) and apply overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"config file {path} not found; pass an existing YAML file (see configs/)"
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" at line {line + 1}" if line is not None else ""
            raise UserError(
                f"config file {path} is not valid YAML{where}; fix its syntax"
            ) from None
    return config_from_dict(data, overrides)


def config_to_dict(cfg: Any) -> dict:
    """A dataclass config as plain, YAML/JSON-serialisable types."""
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from ad.utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def help_text(cls: type = ExperimentConfig, prefix: str = "") -> str:
    """Every config field with its default and help, for ``--help-config``."""
    lines = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            lines.append(f"\n[{f.name}]  {f.metadata.get('help', '')}")
            lines.append(help_text(hint, f"{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {prefix}{f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
