"""Checkpoints: the typed record, atomic save, validated load, latest-in-run lookup, RNG states.

A checkpoint is one ``torch.save`` file of :meth:`Checkpoint.to_state`: plain types and tensors
only, so that ``torch.load(weights_only=True)`` reads it without unpickling arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from gymnasium.spaces import Space

from ad.config import ModelConfig
from ad.data.spaces import space_from_json
from ad.errors import UserError
from ad.fields import build
from ad.utils import atomic_write_bytes, seed_everything

# 3: one record per family the model was trained on (2: a specialist's model_args, or a
# generalist's families; 1: a train / heldout split).
CHECKPOINT_SCHEMA = 3
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


@dataclass(frozen=True)
class FamilyRecord:
    """What a checkpoint keeps of one family the model was trained on.

    Attributes:
        config: the family's resolved experiment config (``config_to_dict``): its env, eval
            settings and windowing; evaluation reads it.
        observation_space, action_space: the family's spaces as the file keeps them
            (``space_to_json``); :meth:`Checkpoint.spaces` restores them.
        split: its task split (``TaskSplit.to_json()``: train / validation / test).
        dataset_fingerprint: of its training data.
        dataset_dir: where its training data lies, {"from_run": relative to the run folder,
            "absolute": ...}, for ``ad-eval``'s source curve from any working directory.
    """

    config: dict
    observation_space: dict
    action_space: dict
    split: dict
    dataset_fingerprint: str
    dataset_dir: dict


@dataclass(frozen=True)
class Checkpoint:
    """One training checkpoint.

    Attributes:
        model: the state dict of the uncompiled, unwrapped ADTransformer.
        optimizer: the optimiser's state dict.
        step: optimiser steps done.
        rng: the RNG states of every rank (``rng_state``).
        config: the training config as written to the run's config.yaml (an experiment's, or a
            generalist's with its resolved families).
        model_config: the model section the trunk was built from (``context_steps`` resolved).
        families: family name -> its record, in the order of the model's families.
        dataset_fingerprint: of all families' data together (checked on resume).
        versions: package versions.
    """

    model: dict
    optimizer: dict
    step: int
    rng: list
    config: dict
    model_config: dict
    families: dict[str, FamilyRecord]
    dataset_fingerprint: str
    versions: dict

    def to_state(self) -> dict:
        """Plain types and tensors for ``torch.save``, with the schema version."""
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["families"] = {n: dataclasses.asdict(r) for n, r in self.families.items()}
        return {"schema_version": CHECKPOINT_SCHEMA, **state}

    @classmethod
    def from_state(cls, state: dict, path: Path) -> Checkpoint:
        """The record of a loaded state; refuses another schema version or missing keys."""
        version = state.get("schema_version")
        if version != CHECKPOINT_SCHEMA:
            raise UserError(
                f"checkpoint {path} has schema version {version!r}, this version of ad reads "
                f"{CHECKPOINT_SCHEMA}; retrain, or use the ad version that wrote it"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [key for key in names if key not in state]
        if missing:
            raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it is damaged, retrain")
        try:
            families = {n: FamilyRecord(**r) for n, r in state["families"].items()}
        except (AttributeError, TypeError):
            raise UserError(f"checkpoint {path} has damaged family records; retrain") from None
        return cls(**{**{k: state[k] for k in names}, "families": families})

    def model_cfg(self) -> ModelConfig:
        return build(ModelConfig, self.model_config, "model")

    def spaces(self) -> dict[str, tuple[Space, Space]]:
        """Family name -> (observation space, action space) as ``gymnasium.spaces``: the model's
        constructor argument."""
        return {
            n: (space_from_json(r.observation_space), space_from_json(r.action_space))
            for n, r in self.families.items()
        }


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after ``step`` optimiser steps."""
    return f"step-{step:06d}.pt"


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically: a temporary file beside ``path``, fsync, then rename.

    A crash mid-write leaves at most a hidden ``.tmp`` file, never a truncated checkpoint.
    """
    buffer = io.BytesIO()
    torch.save(ckpt.to_state(), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its schema.

    Raises:
        UserError: missing, corrupt or foreign file, or an unknown schema version.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass a file written by ad-train")
    # Opening is kept apart from parsing: an unreadable file raises OSError naming the file (the
    # command line reports it), while a truncated one fails inside torch.load, also with
    # OSError ("Invalid argument") but naming no file, so every failure there is damage.
    with open(path, "rb") as f:
        try:
            state = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:  # a damaged file fails anywhere in the unpickler (IndexError, ...)
            why = " ".join(str(e).split())[:200] or type(e).__name__
            raise UserError(
                f"checkpoint {path} is truncated, corrupt or not a checkpoint ({why}); use another "
                "checkpoint of the run or retrain"
            ) from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} does not hold a dict; it was not written by ad-train")
    return Checkpoint.from_state(state, path)


def list_checkpoints(folder: str | Path) -> list[Path]:
    """``step-*.pt`` files of a run folder (or of its checkpoints folder), oldest first."""
    folder = Path(folder)
    if (folder / CHECKPOINT_DIR).is_dir():
        folder = folder / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def find_checkpoint(run_or_file: str | Path) -> Path:
    """A checkpoint file as is; a run folder -> its latest checkpoint.

    Raises:
        UserError: the path does not exist or the folder holds no checkpoint.
    """
    path = Path(run_or_file)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{path} does not exist; pass a run folder (runs/<run>) or a checkpoint")
    found = list_checkpoints(path)
    if not found:
        raise UserError(
            f"no checkpoint in {path}; train first (ad-train) or pass a checkpoint file"
        )
    return found[-1]


def load_model(
    run_or_file: str | Path, device: str | torch.device = "cpu"
) -> tuple[Any, Checkpoint]:
    """The model of a run folder's latest checkpoint (or of a checkpoint file), in eval mode.

    Returns:
        (ADTransformer on ``device`` in eval mode, the checkpoint).
    """
    from ad.learn.model import ADTransformer

    ckpt = load_checkpoint(find_checkpoint(run_or_file))
    model = ADTransformer(ckpt.model_cfg(), ckpt.spaces())
    model.load_state_dict(ckpt.model)
    return model.to(device).eval(), ckpt


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """Python, NumPy, torch CPU (and CUDA, when initialised) RNG states as plain types/tensors."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore the states of :func:`rng_state` (CUDA only when it is in use here too)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# --------------------------------------------------------------------------- resuming

# Settings that may change on --resume: they do not change what the model learns.
RESUMABLE_KEYS = {
    "train.num_steps",
    "train.ed.num_steps",
    "train.data.num_workers",
    "train.log_every",
    "train.checkpoint.every",
    "train.checkpoint.keep",
    "train.validation.every",
    # Moved folders are fine: the dataset fingerprint is checked instead.
    "train.dataset",
    "train.run_dir",
    "collect.output_dir",
}


def _flatten(data: dict | list, prefix: str = "") -> dict:
    """section.key -> value; a generalist's list of families by index (families.0.resolved...)."""
    flat = {}
    for key, value in data.items() if isinstance(data, dict) else enumerate(data):
        nested = isinstance(value, dict) and key not in ("family_kwargs", "algorithm_kwargs")
        if nested or (isinstance(value, list) and value and isinstance(value[0], dict)):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resumable(key: str) -> bool:
    parts = key.split(".")
    return ".".join(parts[-2:]) in RESUMABLE_KEYS or "eval" in parts[:-1]


def check_resumable(ckpt: Checkpoint, config: dict, fingerprint: str, path: Path) -> None:
    """Refuse to resume with another config (eval.* and RESUMABLE_KEYS aside) or dataset.

    Args:
        ckpt: the checkpoint to resume from.
        config: the training config as the run writes it (``Checkpoint.config``).
        fingerprint: the dataset fingerprint of this config's data.
        path: the checkpoint's path, for the message.
    """
    theirs, ours = _flatten(ckpt.config), _flatten(config)
    for key in sorted(set(theirs) | set(ours)):
        if _resumable(key):
            continue
        if theirs.get(key) != ours.get(key):
            raise UserError(
                f"cannot resume {path}: {key} is {ours.get(key)!r} but the run used "
                f"{theirs.get(key)!r}; resume with the run's config (only train.num_steps may "
                "grow) or choose another train.run_dir"
            )
    if ckpt.dataset_fingerprint != fingerprint:
        raise UserError(
            f"cannot resume {path}: the training data changed since it was written (dataset "
            "fingerprint differs); resume on the original dataset or choose another train.run_dir"
        )


def find_resume_checkpoint(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, None for a fresh run; refuse to overwrite a run."""
    found = list_checkpoints(run_dir)
    if found and not resume:
        raise UserError(
            f"run folder {run_dir} already has checkpoints; pass --resume to continue it or "
            "choose another train.run_dir"
        )
    return found[-1] if resume and found else None


def restore_rng(states: list, seed: int, rank: int, world_size: int, step: int) -> None:
    """Each rank's RNG exactly as saved; with another world size, fresh seeded streams beyond 0."""
    if len(states) == world_size or rank == 0:
        set_rng_state(states[rank])
        return
    seed_everything(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def gather_rng(world_size: int) -> list:
    """RNG states of all ranks (a collective: every rank must call it)."""
    if world_size == 1:
        return [rng_state()]
    states: list = [None] * world_size
    dist.all_gather_object(states, rng_state())
    return states
