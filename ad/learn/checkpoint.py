"""Checkpoints: atomic save, validated load, latest-in-run lookup, load-for-eval, RNG states.

A checkpoint is one ``torch.save`` file holding plain types and tensors only, so that
``torch.load(weights_only=True)`` reads it without unpickling arbitrary objects. Keys:
schema_version, model (state dict of the uncompiled, unwrapped module), optimizer, step, rng,
config (``config_to_dict``), model_args ({"observation_space", "action_space"}; checkpoints from
before Box actions hold "num_actions" instead of "action_space"),
dataset_fingerprint, dataset_dir ({"from_run", "absolute"}: where the training data lies), split
(``TaskSplit.to_json()``: train / validation / test), versions.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ad.config import ExperimentConfig, config_to_dict
from ad.errors import UserError
from ad.utils import atomic_write_bytes, seed_everything

# 2: the stored split is train / validation / test (1: train / heldout).
CHECKPOINT_SCHEMA = 2
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")
REQUIRED_KEYS = ("schema_version", "model", "step", "config", "model_args")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after ``step`` optimiser steps."""
    return f"step-{step:06d}.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: a temporary file beside ``path``, fsync, then rename.

    A crash mid-write leaves at most a hidden ``.tmp`` file, never a truncated checkpoint.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
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
    version = state.get("schema_version")
    if version != CHECKPOINT_SCHEMA:
        why = " (made before the train / validation / test split)" if version == 1 else ""
        raise UserError(
            f"checkpoint {path} has schema version {version!r}{why}, this version of ad reads "
            f"{CHECKPOINT_SCHEMA}; retrain (on a re-collected dataset) or use the ad version that "
            "wrote it"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it is damaged, retrain")
    return state


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


def load_model(run_or_file: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """The model of a run folder's latest checkpoint (or of a checkpoint file), in eval mode.

    Returns:
        (ADTransformer on ``device`` in eval mode, the checkpoint dict).
    """
    from ad.config import config_from_dict
    from ad.learn.model import ADTransformer

    ckpt = load_checkpoint(find_checkpoint(run_or_file))
    args = ckpt["model_args"]
    if "members" in args:  # a generalist (ad.learn.mixture_train)
        from ad.learn.generalist import load_generalist

        return load_generalist(ckpt).to(device).eval(), ckpt
    cfg = config_from_dict(ckpt["config"])
    action_space = args["action_space"] if "action_space" in args else int(args["num_actions"])
    model = ADTransformer(cfg.model, args["observation_space"], action_space)
    model.load_state_dict(ckpt["model"])
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
    "train.ed_num_steps",
    "train.num_workers",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every",
    # Moved folders are fine: the dataset fingerprint is checked instead.
    "train.dataset",
    "train.run_dir",
    "collect.output_dir",
}


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "family_kwargs" and key != "algorithm_kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(ckpt: dict, cfg: ExperimentConfig, fingerprint: str, path: Path) -> None:
    """Refuse to resume with another config (eval.* and RESUMABLE_KEYS aside) or dataset."""
    theirs, ours = _flatten(ckpt["config"]), _flatten(config_to_dict(cfg))
    for key in sorted(set(theirs) | set(ours)):
        if key in RESUMABLE_KEYS or key.startswith("eval."):
            continue
        if theirs.get(key) != ours.get(key):
            raise UserError(
                f"cannot resume {path}: {key} is {ours.get(key)!r} but the run used "
                f"{theirs.get(key)!r}; resume with the run's config (only train.num_steps may "
                "grow) or choose another train.run_dir"
            )
    if ckpt.get("dataset_fingerprint") != fingerprint:
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
