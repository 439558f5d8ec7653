"""The training loop, nanoGPT style: one flat loop, single process or DDP under torchrun.

Single process::

    python -m ad.learn.train --config configs/darkroom.yaml [--set train.num_steps=100] [--resume]

Distributed (DistributedDataParallel, gloo on CPU, nccl on GPU; logs and checkpoints on rank 0)::

    torchrun --nproc-per-node 2 -m ad.learn.train --config configs/darkroom.yaml

The windows of step s are drawn from ``np.random.default_rng([train.seed, s])``: every rank draws
the same global batch and takes its contiguous slice, and a resumed run continues exactly.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ad.config import ExperimentConfig, TrainConfig, config_to_dict, save_config
from ad.errors import UserError
from ad.learn.batches import iterate_batches
from ad.learn.checkpoint import (
    CHECKPOINT_SCHEMA,
    check_resumable,
    checkpoint_name,
    find_resume_checkpoint,
    gather_rng,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ad.learn.model import ADTransformer
from ad.learn.training_data import describe_derived, load_training_runs, resolve_config
from ad.learn.windows import WindowStore, open_windows
from ad.utils import (
    atomic_write_text,
    package_versions,
    resolve_device,
    seed_everything,
    write_versions,
)
from envs.split import TaskSplit

METRICS = (
    "step",
    "train/loss",
    "train/lr",
    "train/grad_norm",
    "train/tokens_per_s",
    # The periodic evaluation runs on validation tasks; the key says so (test numbers come from
    # ad-eval only).
    "validation/return_first",
    "validation/return_last",
)


def _log(message: str) -> None:
    print(f"ad-train: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup helpers


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up from min_lr to lr, then cosine decay back to min_lr at num_steps."""
    if step < tc.warmup_steps:
        return tc.min_lr + (tc.lr - tc.min_lr) * step / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.num_steps - tc.warmup_steps)
    return tc.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (tc.lr - tc.min_lr)


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world_size, whether this call created the process group) from torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, True


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay (0: plain Adam) on weight matrices and embeddings (dim >= 2) only,
    not on biases, LayerNorm gains or the mask token (nanoGPT's grouping)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.betas))


# --------------------------------------------------------------------------- logging


class MetricsLog:
    """metrics.csv (always), TensorBoard (when installed) on rank 0; a no-op on other ranks."""

    def __init__(
        self, run_dir: Path, start_step: int, enabled: bool, fields: tuple = METRICS
    ) -> None:
        self.enabled, self.fields = enabled, fields
        self.writer = None
        if not enabled:
            return
        path = run_dir / "metrics.csv"
        kept = []
        if path.is_file():  # keep the rows up to the checkpoint we continue from
            with path.open(newline="") as f:
                rows = csv.DictReader(f)
                kept = [
                    r for r in rows if str(r.get("step")).isdigit() and int(r["step"]) <= start_step
                ]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(path, text.getvalue())  # a crash here must not lose the old rows
        self.file = path.open("a", newline="")
        self.csv = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            return
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)

    def log(self, step: int, values: dict) -> None:
        unknown = sorted(set(values) - set(self.fields))
        if unknown:  # the CSV would drop them silently
            raise ValueError(f"metric keys {unknown} are not in METRICS; add them there")
        if not self.enabled:
            return
        self.csv.writerow({"step": step, **values})
        self.file.flush()
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()


# --------------------------------------------------------------------------- the loop


Evaluator = Callable[[ADTransformer, TaskSplit, torch.device], dict]


def train(
    cfg: ExperimentConfig,
    resume: bool = False,
    progress: bool = True,
    evaluator: Evaluator | None = None,
) -> Path:
    """Train the AD (or ED) model on the training split of the config's dataset.

    Args:
        cfg: the experiment config.
        resume: continue from the latest checkpoint of ``cfg.run_dir`` (same config and data).
        progress: show a progress bar (rank 0).
        evaluator: called every ``train.eval_every`` steps on rank 0 with (model, split,
            device); returns ``validation/*`` metrics (see ``METRICS``). The RNG states are
            restored after it, so evaluating does not change training. None: no periodic
            evaluation.

    Returns:
        The run folder (config.yaml, versions.json, metrics.csv, checkpoints/, tb/).

    Raises:
        UserError: bad data or config, a run folder that would be overwritten, a refused resume,
            or a non-finite loss or gradient (the last good checkpoint is kept).
    """
    device = resolve_device(cfg.train.device, "train.device")
    rank, world_size, owns_group = init_distributed(device)
    try:
        return _train(cfg, resume, progress, evaluator, device, rank, world_size)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(
    cfg: ExperimentConfig, resume: bool, progress: bool, evaluator: Evaluator | None,
    device: torch.device, rank: int, world_size: int,
) -> Path:  # fmt: skip
    tc, master = cfg.train, rank == 0
    if tc.batch_size % world_size:
        raise UserError(
            f"train.batch_size={tc.batch_size} does not divide by {world_size} processes; "
            "choose a multiple of the number of processes"
        )
    if world_size > 1 and device.type == "cpu":  # share the cores instead of oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    run_dir = cfg.run_dir
    resume_path = find_resume_checkpoint(run_dir, resume)
    training = load_training_runs(cfg)
    cfg, given = resolve_config(cfg, training), cfg  # null settings derived from the data
    windows = open_windows(cfg, training)
    ckpt = load_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        check_resumable(ckpt, cfg, windows.fingerprint, resume_path)
    if world_size > 1:  # no rank may see a checkpoint that rank 0 writes later
        dist.barrier()

    raw_model, model, optimizer, start_step = build_model(
        cfg, windows, device, ckpt, rank, world_size
    )
    use_bf16 = tc.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    discrete = windows.observation_space["type"] in ("Discrete", "MultiDiscrete")

    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_versions(run_dir)
        _log(f"{windows.describe()}; {raw_model.num_parameters():,} parameters on {device}")
        if cfg != given:
            _log(describe_derived(given, cfg, training))
        if resume:
            _log(
                f"resuming {resume_path} at step {start_step}"
                if ckpt
                else "no checkpoint yet: fresh start"
            )
    log = MetricsLog(run_dir, start_step, master)
    bar = _progress_bar(tc.num_steps, start_step, progress and master)
    batches = iterate_batches(
        windows, tc.seed, start_step, tc.num_steps, tc.batch_size, rank, world_size, tc.num_workers
    )
    tokens_per_step = tc.batch_size * windows.window_steps
    losses, timer, timed_steps = [], time.perf_counter(), 0
    raw_model.train()
    try:
        for step in range(start_step, tc.num_steps):
            batch = _to_device(next(batches), device, discrete)
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # forward, backward, clip, check, update
            with autocast:
                _, loss = model(**batch, label_smoothing=tc.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm)
            stats = torch.stack([loss.detach().float(), grad_norm.float()])
            if world_size > 1:  # global mean loss; a NaN on any rank stops all at this step
                dist.all_reduce(stats)
                stats /= world_size
            loss_value, norm_value = stats.tolist()
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                good = _set_aside_bad_checkpoint(run_dir, step) if master else None
                raise UserError(
                    f"non-finite loss ({loss_value}) or gradient norm ({norm_value}) at step "
                    f"{step + 1}; training stopped before the update, last good checkpoint: "
                    f"{good or 'none'}; lower train.lr, raise train.warmup_steps or "
                    "set train.grad_clip, and train into a new train.run_dir"
                )
            optimizer.step()
            done = step + 1
            losses.append(loss_value)
            timed_steps += 1
            bar.update(1)

            # logging, evaluation, checkpoints (every rank takes the same branches)
            last = done == tc.num_steps
            log_now, ckpt_now = done % tc.log_every == 0 or last, done % tc.checkpoint_every == 0
            eval_now = (
                master and evaluator and tc.eval_every and (done % tc.eval_every == 0 or last)
            )
            row = {}
            if log_now:
                mean_loss = float(np.mean(losses))
                tokens_per_s = tokens_per_step * timed_steps / (time.perf_counter() - timer)
                row = {"train/loss": mean_loss, "train/lr": lr, "train/grad_norm": norm_value,
                       "train/tokens_per_s": tokens_per_s}  # fmt: skip
                bar.set_postfix(loss=f"{mean_loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")
                losses = []
            if eval_now:
                row.update(_evaluate(evaluator, raw_model, windows.split, device))
            if row:
                log.log(done, row)
            if ckpt_now or last:
                rng = gather_rng(world_size)  # a collective: all ranks
                if master:
                    state = _checkpoint_state(raw_model, optimizer, done, rng, cfg, windows)
                    save_checkpoint(run_dir / "checkpoints" / checkpoint_name(done), state)
                    for old in list_checkpoints(run_dir)[: -tc.keep_checkpoints]:
                        old.unlink()
            if log_now or eval_now or ckpt_now or last:  # tokens/s counts training time only
                timer, timed_steps = time.perf_counter(), 0
    finally:
        bar.close()
        log.close()
        batches.close()
        windows.close()
    return run_dir


def _evaluate(evaluator: Evaluator, model: ADTransformer, split: TaskSplit, device) -> dict:
    """The evaluator's metrics; the RNG states are left as they were, so that evaluating does
    not shift the dropout and masking streams of training (a resumed run stays exact)."""
    state = rng_state()
    try:
        return evaluator(model, split, device)
    finally:
        set_rng_state(state)


def _set_aside_bad_checkpoint(run_dir: Path, step: int) -> Path | None:
    """After a non-finite loss at ``step``: rename the checkpoint holding the weights that gave
    it (``step-<step>.pt.nonfinite``, so resuming skips it); return the latest good one."""
    bad = run_dir / "checkpoints" / checkpoint_name(step)
    if bad.is_file():
        bad.rename(bad.with_name(bad.name + ".nonfinite"))
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def build_model(
    cfg: ExperimentConfig, windows: WindowStore, device: torch.device, ckpt: dict | None,
    rank: int, world_size: int,
) -> tuple[ADTransformer, torch.nn.Module, torch.optim.Optimizer, int]:  # fmt: skip
    """(raw model, model to call: compiled and/or DDP-wrapped, optimiser, start step).

    A fresh model is initialised from train.seed on every rank; a resumed one takes the
    checkpoint's weights, optimiser state, step and RNG states.
    """
    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    raw_model = ADTransformer(cfg.model, windows.observation_space, windows.action_space)
    raw_model.to(device)
    optimizer = make_optimizer(raw_model, cfg.train)
    start_step = 0
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        restore_rng(ckpt["rng"], cfg.train.seed, rank, world_size, start_step)
    else:
        seed_everything(cfg.train.seed + rank)  # dropout and masking differ across ranks
    model = torch.compile(raw_model) if cfg.train.compile else raw_model
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        # static_graph: the same parameters take part every step, and some never do (the mask
        # token when input_mask_prob is 0), which plain DDP would wait for forever.
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, static_graph=True)
    return raw_model, model, optimizer, start_step


def dataset_paths(cfg: ExperimentConfig) -> dict[str, str]:
    """Where the training data lies, for ``ad-eval``'s source curve from any working directory:
    relative to the run folder (survives moving run and data together) and absolute."""
    absolute = cfg.dataset_dir.resolve()
    return {
        "from_run": os.path.relpath(absolute, cfg.run_dir.resolve()),
        "absolute": str(absolute),
    }


def _checkpoint_state(
    model: ADTransformer,
    optimizer,
    step: int,
    rng: list,
    cfg: ExperimentConfig,
    windows: WindowStore,
) -> dict:
    return {
        "schema_version": CHECKPOINT_SCHEMA,
        "model": model.state_dict(),  # the uncompiled, unwrapped module: plain keys
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": rng,  # one state per rank
        "config": config_to_dict(cfg),
        "model_args": {  # ADTransformer's arguments after the config
            "observation_space": windows.observation_space,
            "action_space": windows.action_space,
        },
        "dataset_fingerprint": windows.fingerprint,
        "dataset_dir": dataset_paths(cfg),
        "split": windows.split.to_json(),
        "versions": package_versions(),
    }


def _to_device(batch: dict[str, np.ndarray], device: torch.device, discrete: bool) -> dict:
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    if discrete:  # the model embeds Discrete / MultiDiscrete observations as int64 ids
        tensors["observations"] = tensors["observations"].long()
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True)
