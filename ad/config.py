"""Experiment configuration: frozen dataclasses, YAML loading, CLI overrides, validation.

One YAML file describes one experiment. Its top-level sections are the fields of
:class:`ExperimentConfig` (``env``, ``collect``, ``model``, ``train``, ``eval``) and every key
inside a section is a field of that section's dataclass. Each field carries a ``help`` text,
printed by ``ad-<command> --help-config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from ad.errors import UserError
from ad.fields import (
    build,
    check,
    check_fraction,
    check_min,
    describe_fields,
    is_number,
    section,
    setting,
)
from envs.base import is_int
from envs.split import SPLITS

if TYPE_CHECKING:
    from envs.base import TaskFamily
    from envs.split import TaskSplit


@dataclass(frozen=True)
class EnvConfig:
    family: str = setting(
        "DarkRoom",
        "Task family: a registered name (DarkRoom, DarkRoomHard, DarkRoomPixels, DarkKeyToDoor, "
        "Bandit, MiniGridEmpty, PointRobot, HalfCheetahVel with the mujoco extra) or "
        "'module:ClassOrFactory' for a family in your own module.",
    )
    family_kwargs: dict = setting({}, "Keyword arguments of the family's constructor (e.g. size).")
    split_seed: int = setting(0, "Seed of the deterministic train / validation / test task split.")
    num_train_tasks: int | None = setting(None, "Number of training tasks (None: family default).")
    num_validation_tasks: int | None = setting(
        None,
        "Number of validation tasks: settings are chosen and training's periodic evaluation "
        "runs on them (None: family default).",
    )
    num_test_tasks: int | None = setting(
        None, "Number of test tasks: reported numbers come from them (None: family default)."
    )

    def make_family(self) -> TaskFamily:
        """The task family this section describes."""
        from envs.base import make_family

        return make_family(self.family, **self.family_kwargs)

    def task_split(self, family: TaskFamily | None = None) -> TaskSplit:
        """The deterministic split of the family's tasks that this section describes."""
        family = self.make_family() if family is None else family
        return family.split(
            self.split_seed,
            self.num_train_tasks,
            num_validation=self.num_validation_tasks,
            num_test=self.num_test_tasks,
        )


# PPO that learns a Dark Room goal in ~50 episodes per stream (measured; SB3's default
# n_steps=2048 barely updates within the quick budget).
QUICK_PPO_KWARGS = {
    "learning_rate": 1e-3,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 10,
    "ent_coef": 0.01,
}


@dataclass(frozen=True)
class CollectConfig:
    algorithm: str = setting(
        "PPO",
        "Source algorithm: PPO, A2C (Discrete or Box actions), DQN, UCB (Discrete), SAC, TD3 "
        "(Box) or 'module:Class' (a SourceAlgorithm or SB3 algorithm).",
    )
    algorithm_kwargs: dict | None = setting(
        None, "Source algorithm's keyword arguments (None: quick PPO recipe for PPO, else {})."
    )
    n_envs: int = setting(4, "Parallel env streams per run (the S axis of a learning history).")
    total_steps: int = setting(8000, "Environment steps per run, summed over all streams.")
    seeds: list = setting(
        [0, 1, 2], "Seeds; one run per (task, seed): more learning histories per training task."
    )
    splits: list = setting(
        ["train", "validation", "test"],
        "Splits whose tasks to collect (validation and test: the source curves evaluation shows).",
    )
    output_dir: str | None = setting(None, "Dataset folder (None: learning_histories/<name>).")
    chunk_steps: int = setting(256, "HDF5 chunk length along T; about the training context length.")
    compression: str | None = setting("gzip", "HDF5 compression filter (gzip, lzf or None).")
    backend: Literal["local", "ray"] = setting(
        "local", "Where the runs execute: local (a process pool) or ray (one Ray task per run)."
    )
    ray_storage: Literal["driver", "shared"] = setting(
        "driver", "With backend ray: driver (this process writes files) or shared (workers do)."
    )

    def __post_init__(self) -> None:
        if self.algorithm_kwargs is None:
            default = dict(QUICK_PPO_KWARGS) if self.algorithm == "PPO" else {}
            object.__setattr__(self, "algorithm_kwargs", default)
        check_min("collect", "n_envs", self.n_envs, 1)
        check_min("collect", "total_steps", self.total_steps, self.n_envs)
        check(len(self.seeds) >= 1, "collect.seeds must list at least one seed")
        check(
            bool(self.splits) and set(self.splits) <= set(SPLITS),
            "collect.splits must be a non-empty subset of [train, validation, test], got "
            f"{self.splits}",
        )
        check_min("collect", "chunk_steps", self.chunk_steps, 1)
        check(
            self.compression in (None, "gzip", "lzf"),
            f"collect.compression must be gzip, lzf or null, got {self.compression!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = setting(64, "Token width.")
    num_layers: int = setting(4, "Transformer blocks.")
    num_heads: int = setting(4, "Attention heads.")
    ff_dim: int = setting(256, "Feed-forward hidden width (the paper uses 2048).")
    dropout: float = setting(0.1, "Residual and embedding dropout.")
    attn_dropout: float = setting(0.0, "Attention dropout (the paper: 0.5, 0 on DarkRoomHard).")
    input_mask_prob: float = setting(
        0.3, "Training: chance an input token is replaced by a learned mask token (the paper)."
    )
    context_steps: int | None = setting(
        None, "Context length in environment steps, one token each; None: derived (the rule)."
    )
    norm: Literal["pre", "post"] = setting("pre", "Pre-norm (stabler) or post-norm (the paper).")
    action_head: Literal["auto", "categorical", "bins", "gaussian"] = setting(
        "auto", "Action head; auto: categorical for Discrete, bins for Box (ad/learn/action_heads)."
    )
    action_bins: int = setting(256, "Bins per action dimension of the bins head.")
    vector_encoder: Literal["linear", "tokens"] = setting(
        "linear", "1-D Box observations: an MLP, or Gato's mu-law tokens (ad/learn/tokens)."
    )
    token_bins: int = setting(1024, "vector_encoder=tokens: uniform bins on [-1, 1] (Gato: 1024).")
    token_mu: float = setting(100.0, "vector_encoder=tokens: mu-law strength mu (Gato: 100).")
    token_max: float = setting(
        256.0, "vector_encoder=tokens: the magnitude that compands to 1 (Gato: 256)."
    )
    image_encoder: Literal["cnn", "codes", "patches"] = setting(
        "cnn", "(H, W, C) observations: a small CNN, codes per cell, or Gato's 16x16 patches."
    )

    def __post_init__(self) -> None:
        for name in ("embed_dim", "num_layers", "num_heads", "ff_dim"):
            check_min("model", name, getattr(self, name), 1)
        check(
            self.embed_dim % self.num_heads == 0,
            f"model.embed_dim must divide by num_heads ({self.embed_dim} by {self.num_heads})",
        )
        if self.context_steps is not None:
            check_min("model", "context_steps", self.context_steps, 2)
        check_min("model", "action_bins", self.action_bins, 2)
        check_min("model", "token_bins", self.token_bins, 2)
        for name in ("token_mu", "token_max"):
            value = getattr(self, name)
            check(
                0 < value < float("inf"), f"model.{name} must be a finite number > 0, got {value!r}"
            )
        for name in ("dropout", "attn_dropout", "input_mask_prob"):
            check_fraction("model", name, getattr(self, name))


@dataclass(frozen=True)
class OptimConfig:
    lr: float = setting(1e-3, "Peak learning rate (the paper: 3e-4 over far more steps).")
    min_lr: float = setting(2e-6, "Learning rate at the ends of warm-up and cosine decay.")
    warmup_steps: int = setting(200, "Linear warm-up steps.")
    betas: list = setting([0.9, 0.99], "Adam betas.")
    weight_decay: float = setting(0.0, "AdamW weight decay (0: plain Adam).")
    grad_clip: float = setting(1.0, "Gradient-norm clip (0: none).")

    def __post_init__(self) -> None:
        check_min("train.optim", "warmup_steps", self.warmup_steps, 0)
        check(self.lr > 0, f"train.optim.lr must be > 0, got {self.lr!r}")
        check(
            0 <= self.min_lr <= self.lr,
            f"train.optim.min_lr must be in [0, train.optim.lr], got {self.min_lr!r}",
        )
        check(
            len(self.betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in self.betas),
            f"train.optim.betas must be two numbers in [0, 1), got {self.betas!r}",
        )
        check_min("train.optim", "weight_decay", self.weight_decay, 0)
        check_min("train.optim", "grad_clip (0: no clipping)", self.grad_clip, 0)


@dataclass(frozen=True)
class DataConfig:
    subsample_every: int | None = setting(
        None, "Keep every k-th episode of each stream before windowing (None: derived)."
    )
    subsample_offsets: Literal["first", "all"] = setting(
        "all", "all: one kept stream per offset o < k; first: episodes 0, k, 2k, ... (the paper)."
    )
    window_steps: int | None = setting(
        None, "Steps per training window (None: model.context_steps; longer: see the manual)."
    )
    in_memory: Literal["auto", "yes", "no"] = setting(
        "auto", "Decompress the dataset into memory (auto: if it fits in max_memory_gb)."
    )
    max_memory_gb: float = setting(4.0, "Memory budget for in_memory=auto.")
    num_workers: int = setting(0, "DataLoader workers for streamed datasets.")
    num_tasks: int | None = setting(
        None,
        "Train on the split's first N training tasks only (None: all); the tasks ablation "
        "trains on prefixes of one dataset.",
    )

    def __post_init__(self) -> None:
        if self.subsample_every is not None:
            check_min("train.data", "subsample_every", self.subsample_every, 1)
        if self.window_steps is not None:
            check_min("train.data", "window_steps", self.window_steps, 2)
        check_min("train.data", "num_workers", self.num_workers, 0)
        if self.num_tasks is not None:
            check_min("train.data", "num_tasks", self.num_tasks, 1)
        check(self.max_memory_gb > 0, "train.data.max_memory_gb must be > 0")


@dataclass(frozen=True)
class EDConfig:
    last_episodes: int = setting(10, "How many final (converged) episodes of each stream to use.")
    context_steps: int | None = setting(
        None, "ED's context steps (None: model.context_steps); when its episodes are fewer steps."
    )
    num_steps: int | None = setting(
        1000, "ad-run: optimiser steps of the ED control (None: train.num_steps)."
    )

    def __post_init__(self) -> None:
        check_min("train.ed", "last_episodes", self.last_episodes, 1)
        for name in ("num_steps", "context_steps"):
            if getattr(self, name) is not None:
                check_min("train.ed", name, getattr(self, name), 1)


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = setting(1000, "Steps between checkpoints.")
    keep: int = setting(2, "How many recent checkpoints to keep.")

    def __post_init__(self) -> None:
        check_min("train.checkpoint", "every", self.every, 1)
        check_min("train.checkpoint", "keep", self.keep, 1)


@dataclass(frozen=True)
class ValidationConfig:
    every: int = setting(0, "Steps between in-context evaluations during training (0: never).")
    tasks: int = setting(4, "Validation tasks each of them rolls out.")
    episodes: int = setting(10, "Episodes each of them rolls out.")

    def __post_init__(self) -> None:
        check_min("train.validation", "every", self.every, 0)
        check_min("train.validation", "tasks", self.tasks, 1)
        check_min("train.validation", "episodes", self.episodes, 1)


@dataclass(frozen=True)
class TrainConfig:
    dataset: str | None = setting(None, "History dataset folder (None: the collect output_dir).")
    run_dir: str | None = setting(
        None, "Run folder (None: runs/<name>, or runs/<name>-<mode> for ED and DPT)."
    )
    mode: Literal["ad", "ed", "dpt"] = setting(
        "ad",
        "ad: predict the action taken; ed: on the last episodes only; dpt: predict the oracle's.",
    )
    batch_size: int = setting(32, "Global batch size (windows per optimiser step).")
    num_steps: int = setting(2000, "Optimiser steps.")
    label_smoothing: float = setting(
        0.0, "Cross-entropy label smoothing (the paper: 0.2 on DarkRoomHard)."
    )
    seed: int = setting(0, "Seed of initialisation, data order and dropout.")
    device: str = setting("cpu", "cpu, cuda, cuda:N or auto.")
    bf16: bool = setting(True, "bf16 autocast where supported (CUDA with bf16); ignored on CPU.")
    compile: bool = setting(False, "torch.compile the model.")
    log_every: int = setting(100, "Steps between metric rows.")
    optim: OptimConfig = section(OptimConfig, "Optimiser and learning-rate schedule.")
    data: DataConfig = section(DataConfig, "Which windows of the histories training sees.")
    ed: EDConfig = section(EDConfig, "Expert distillation (mode ed, and ad-run's ED control).")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "Checkpoints in the run folder.")
    validation: ValidationConfig = section(
        ValidationConfig, "In-context evaluation on validation tasks during training."
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_steps", "log_every"):
            check_min("train", name, getattr(self, name), 1)
        check_fraction("train", "label_smoothing", self.label_smoothing)


@dataclass(frozen=True)
class EvalConfig:
    num_episodes: int | None = setting(
        None, "Consecutive episodes per (task, seed) (None: derived from the histories)."
    )
    num_seeds: int = setting(16, "Evaluation seeds per task.")
    seed: int = setting(0, "Base evaluation seed.")
    action_mode: Literal["sample", "argmax"] = setting(
        "sample", "Sample from the policy, or argmax: its most likely action (deterministic)."
    )
    temperature: float = setting(
        1.0, "Softmax temperature when sampling (gaussian head: scales the std)."
    )
    decoding: Literal["kv_cache", "reencode"] = setting(
        "kv_cache", "kv_cache: one token's compute a step; reencode: the whole band every step."
    )
    tasks: Literal["test", "validation", "train"] = setting(
        "test", "Split to evaluate on: test (reports), validation (choosing settings) or train."
    )
    max_tasks: int | None = setting(
        None, "Evaluate at most this many tasks of the split (None: all)."
    )
    device: str = setting("cpu", "cpu, cuda or auto.")
    backend: Literal["local", "ray"] = setting(
        "local", "Where rollouts run: local (one batch here) or ray (batches of rows as Ray tasks)."
    )
    ray_batch_rows: int = setting(64, "With backend ray: (task, seed) rows per Ray task.")
    normalise_at: list = setting(
        [1, 10, 50, 100], "Episodes at which summary.json reports normalised scores."
    )

    def __post_init__(self) -> None:
        if self.num_episodes is not None:
            check_min("eval", "num_episodes", self.num_episodes, 1)
        check_min("eval", "num_seeds", self.num_seeds, 1)
        check_min("eval", "ray_batch_rows", self.ray_batch_rows, 1)
        check_min("eval", "seed", self.seed, 0)
        check(self.temperature > 0, f"eval.temperature must be > 0, got {self.temperature!r}")
        if self.max_tasks is not None:
            check_min("eval", "max_tasks (null: all tasks)", self.max_tasks, 1)
        check(
            all(is_int(k) and k >= 1 for k in self.normalise_at),
            f"eval.normalise_at must list episode numbers >= 1, got {self.normalise_at!r}",
        )


@dataclass(frozen=True)
class RayConfig:
    address: str | None = setting(
        None, "Cluster for backend ray: auto, HOST:6379, ray://HOST:10001 (None: Ray's lookup)."
    )


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = setting("darkroom_quick", "Experiment name; names the dataset and run folders.")
    env: EnvConfig = section(EnvConfig, "Task family and split.")
    collect: CollectConfig = section(CollectConfig, "Source algorithm runs.")
    model: ModelConfig = section(ModelConfig, "The transformer.")
    train: TrainConfig = section(TrainConfig, "Training loop.")
    eval: EvalConfig = section(EvalConfig, "In-context evaluation.")
    ray: RayConfig = section(
        RayConfig, "The Ray cluster of collect.backend=ray and eval.backend=ray."
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
        return run_dir_of(self.name, self.train)


def run_dir_of(name: str, train: TrainConfig) -> Path:
    """train.run_dir, or runs/<name> for AD and runs/<name>-<mode> for the other modes."""
    if train.run_dir is not None:
        return Path(train.run_dir)
    return Path("runs") / (name if train.mode == "ad" else f"{name}-{train.mode}")


# --------------------------------------------------------------------------- loading


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
        set_override(data, text)
    return build(ExperimentConfig, data, "")


def set_override(data: dict, text: str) -> None:
    """Apply one ``section.key=value`` override to a config mapping, in place."""
    path, value = parse_override(text)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {text!r}: {part} is not a section")
    node[path[-1]] = value


def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Load a YAML experiment config (None: all defaults) and apply overrides."""
    return config_from_dict(read_config_file(path) if path is not None else {}, overrides)


def read_config_file(path: str | Path) -> dict:
    """A config file's YAML as a plain mapping (UserError: missing, not UTF-8, not YAML)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found; pass an existing YAML file (see configs/)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as e:
        raise UserError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
            f"{e.start}); save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    return data


def config_to_dict(cfg: Any) -> dict:
    """A dataclass config as plain, YAML/JSON-serialisable types."""
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from ad.utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def help_text() -> str:
    """Every config field with its default and help, then the rule of the derived defaults, for
    ``--help-config``."""
    from ad.defaults import RULE

    return describe_fields(ExperimentConfig) + "\n\nDerived defaults: " + RULE
