"""The training loop, nanoGPT style: one flat loop for one family (a specialist) or several (a
generalist), single process or DDP under torchrun.

Single process::

    ad-train --config configs/darkroom.yaml [--set train.num_steps=100] [--resume]

Distributed (DistributedDataParallel, gloo on CPU, nccl on GPU; logs and checkpoints on rank 0)::

    torchrun --nproc-per-node 2 -m ad.cli train --config configs/darkroom.yaml

The windows of step s are drawn from ``np.random.default_rng([train.seed, s])``, each family's
rows of the batch in turn (``ad.learn.batches``): every rank draws the same global batch and takes
its contiguous slice, and a resumed run continues exactly. Periodic evaluation is a hook passed
in (``evaluator``), so training never imports the evaluation stage.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from gymnasium.spaces import Space

from ad.config import ExperimentConfig, ModelConfig, TrainConfig, config_to_dict
from ad.data.spaces import has_integer_ids, space_to_json
from ad.errors import UserError
from ad.generalist import (
    GeneralistConfig,
    config_record,
    family_entries,
    family_rows,
    with_experiments,
)
from ad.learn.batches import iterate_batches
from ad.learn.checkpoint import (
    Checkpoint,
    FamilyRecord,
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
from ad.learn.model import ADTransformer, FamilyPolicy
from ad.learn.training_data import describe_derived, load_training_runs, resolve_config
from ad.learn.windows import WindowStore, open_windows
from ad.utils import (
    atomic_write_text,
    package_versions,
    progress_bar,
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
)


def _log(message: str) -> None:
    print(f"ad-train: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup helpers


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up from min_lr to lr, then cosine decay back to min_lr at num_steps."""
    o = tc.optim
    if step < o.warmup_steps:
        return o.min_lr + (o.lr - o.min_lr) * step / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, tc.num_steps - o.warmup_steps)
    return o.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (o.lr - o.min_lr)


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
        {"params": decay, "weight_decay": tc.optim.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.optim.lr, betas=tuple(tc.optim.betas))


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


# --------------------------------------------------------------------------- the families


@dataclass
class FamilyData:
    """One family of a training run: its config resolved from its data, and its windows."""

    name: str
    config: ExperimentConfig
    windows: WindowStore
    weight: float
    derived: str  # the log line of the settings derived from the data ("" if none)


def open_families(cfg: ExperimentConfig | GeneralistConfig) -> list[FamilyData]:
    """Each family's checked training data, resolved config (null settings derived from its
    data) and windows; a specialist has one family, a generalist several.

    Raises:
        UserError: a family's data fails its checks, or the families' context or window lengths
            differ (one trunk, one ``context_steps``).
    """
    entries = family_entries(cfg)
    families: list[FamilyData] = []
    try:
        for m in entries:
            where = f"generalist family {m.name} ({m.config}): " if len(entries) > 1 else ""
            try:
                training = load_training_runs(m.experiment)
                resolved = resolve_config(m.experiment, training)
                windows = open_windows(resolved, training)
            except UserError as e:
                raise UserError(f"{where}{e}") from None
            derived = ""
            if resolved != m.experiment:
                derived = where + describe_derived(m.experiment, resolved, training)
            families.append(FamilyData(m.name, resolved, windows, m.weight, derived))
        lengths = {f.name: (f.config.model.context_steps, f.windows.window_steps) for f in families}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{n} {c} / {w}" for n, (c, w) in lengths.items())
            raise UserError(
                f"the families' model.context_steps / window steps differ ({listed}); one trunk "
                "needs one value: set model.context_steps (and train.data.window_steps) in the "
                "generalist's config"
            )
    except UserError:
        for f in families:
            f.windows.close()
        raise
    return families


def data_fingerprint(families: list[FamilyData]) -> str:
    """One fingerprint of all families' data (checked on resume); a specialist's is its data's."""
    if len(families) == 1:
        return families[0].windows.fingerprint
    text = ";".join(f"{f.name}={f.windows.fingerprint}" for f in families)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the loop

# A periodic evaluation: (one family's policy, its resolved config, its split, device) ->
# metrics such as {"return_first": ..., "return_last": ...} on validation tasks, logged as
# validation/<key> (validation/<family>/<key> with several families).
Evaluator = Callable[[FamilyPolicy, ExperimentConfig, TaskSplit, torch.device], dict]
EVAL_KEYS = ("return_first", "return_last")


def metric_fields(names: list[str]) -> tuple[str, ...]:
    """metrics.csv's columns; with several families, each family's loss and periodic evaluation.
    The periodic evaluation runs on validation tasks and its keys say so (test numbers come from
    ad-eval only)."""
    if len(names) == 1:
        return METRICS + tuple(f"validation/{k}" for k in EVAL_KEYS)
    per_family = [f"train/loss/{n}" for n in names]
    per_family += [f"validation/{n}/{k}" for n in names for k in EVAL_KEYS]
    return METRICS + tuple(per_family)


def train(
    cfg: ExperimentConfig | GeneralistConfig,
    resume: bool = False,
    progress: bool = True,
    evaluator: Evaluator | None = None,
) -> Path:
    """Train a model on the training split of each family's dataset: a specialist on one, a
    generalist on several families' data, with one loop.

    Args:
        cfg: an experiment config (one family, AD or ED) or a generalist config.
        resume: continue from the latest checkpoint of the run folder (same config and data).
        progress: show a progress bar (rank 0).
        evaluator: called every ``train.validation.every`` steps on rank 0 for each family on its
            validation tasks; the RNG states are restored after it, so evaluating does not
            change training. None: no periodic evaluation.

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
    cfg: ExperimentConfig | GeneralistConfig,
    resume: bool,
    progress: bool,
    evaluator: Evaluator | None,
    device: torch.device,
    rank: int,
    world_size: int,
) -> Path:
    tc = cfg.train
    if tc.batch_size % world_size:
        raise UserError(
            f"train.batch_size={tc.batch_size} does not divide by {world_size} processes; "
            "choose a multiple of the number of processes"
        )
    if world_size > 1 and device.type == "cpu":  # share the cores instead of oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    run_dir = cfg.run_dir
    resume_path = find_resume_checkpoint(run_dir, resume)
    families = open_families(cfg)
    try:
        return _loop(cfg, families, resume_path, progress, evaluator, device, rank, world_size)
    finally:
        for f in families:
            f.windows.close()


def _loop(
    cfg: ExperimentConfig | GeneralistConfig,
    families: list[FamilyData],
    resume_path: Path | None,
    progress: bool,
    evaluator: Evaluator | None,
    device: torch.device,
    rank: int,
    world_size: int,
) -> Path:
    tc, master, run_dir = cfg.train, rank == 0, cfg.run_dir
    cfg = with_experiments(cfg, [f.config for f in families])
    checkpoints = Checkpoints(run_dir, config_record(cfg), cfg.model, families, tc)
    ckpt = load_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        check_resumable(ckpt, checkpoints.config, checkpoints.fingerprint, resume_path)
    if world_size > 1:  # no rank may see a checkpoint that rank 0 writes later
        dist.barrier()
    raw_model, model, optimizer, start_step = build_model(
        cfg.model, families, tc, device, ckpt, rank, world_size
    )
    names = [f.name for f in families]
    rows = family_rows(tc.batch_size, [f.weight for f in families])
    if master:
        _start_run(checkpoints, families, rows, raw_model, device, resume_path, ckpt, start_step)
    log = MetricsLog(run_dir, start_step, master, metric_fields(names))
    meter = LossMeter(names, tc.batch_size * families[0].windows.window_steps)
    bar = _progress_bar(tc.num_steps, start_step, progress and master)
    batches = iterate_batches(
        [f.windows for f in families],
        rows,
        tc.seed,
        start_step,
        tc.num_steps,
        rank,
        world_size,
        tc.data.num_workers,
    )
    raw_model.train()
    try:
        for step in range(start_step, tc.num_steps):
            batch = {
                f.name: _to_device(b, device, f.windows.observation_space)
                for f, b in zip(families, next(batches), strict=True)
                if b is not None  # a rank may hold no rows of a family
            }
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, norm, per_family = _forward_backward(
                model, raw_model, batch, names, tc, world_size
            )
            if not (math.isfinite(loss) and math.isfinite(norm)):
                good = checkpoints.set_aside(step) if master else None
                raise UserError(
                    f"non-finite loss ({loss}) or gradient norm ({norm}) at step {step + 1}; "
                    f"training stopped before the update, last good checkpoint: "
                    f"{good or 'none'}; lower train.optim.lr, raise train.optim.warmup_steps or "
                    "set train.optim.grad_clip, and train into a new train.run_dir"
                )
            optimizer.step()
            meter.add(loss, per_family)
            bar.update(1)

            # logging, evaluation, checkpoints (every rank takes the same branches)
            done = step + 1
            last = done == tc.num_steps
            log_now, ckpt_now = done % tc.log_every == 0 or last, done % tc.checkpoint.every == 0
            every = tc.validation.every
            eval_now = master and evaluator and every and (done % every == 0 or last)
            row = meter.row(lr, norm, bar) if log_now else {}
            if eval_now:
                row.update(_evaluate(evaluator, raw_model, families, device))
            if row:
                log.log(done, row)
            if ckpt_now or last:
                rng = gather_rng(world_size)  # a collective: all ranks
                if master:
                    checkpoints.save(raw_model, optimizer, done, rng)
            if log_now or eval_now or ckpt_now or last:  # tokens/s counts training time only
                meter.restart_clock()
    finally:
        bar.close()
        log.close()
        batches.close()
    return run_dir


def _start_run(
    checkpoints: Checkpoints,
    families: list[FamilyData],
    rows: list[int],
    model: ADTransformer,
    device: torch.device,
    resume_path: Path | None,
    ckpt: Checkpoint | None,
    start_step: int,
) -> None:
    """Rank 0: the run folder's config.yaml and versions.json, and the log's opening lines."""
    run_dir = checkpoints.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(checkpoints.config, sort_keys=False))
    write_versions(run_dir)
    several = len(families) > 1
    if several:
        shares = ", ".join(f"{f.name} {r} rows" for f, r in zip(families, rows, strict=True))
        _log(f"generalist over {shares} per step")
    from ad.data.inspection import source_rise_warning

    for f in families:
        prefix = f"{f.name}: " if several else ""
        _log(prefix + f.windows.describe())
        rise = source_rise_warning(f.windows.runs) if f.config.train.mode == "ad" else None
        for line in [*f.windows.diagnostics(), *([rise] if rise else [])]:
            _log(prefix + line)
    _log(f"{model.num_parameters():,} parameters on {device}")
    for f in families:
        if f.derived:
            _log(f.derived)
    if resume_path is not None:
        _log(
            f"resuming {resume_path} at step {start_step}"
            if ckpt
            else "no checkpoint yet: fresh start"
        )


def _forward_backward(
    model: torch.nn.Module,
    raw_model: ADTransformer,
    batch: dict,
    names: list[str],
    tc: TrainConfig,
    world_size: int,
) -> tuple[float, float, list[float]]:
    """Forward, backward and gradient clipping of one step; returns the loss and gradient norm
    (means over the ranks) and each family's loss over all ranks' rows."""
    device = next(raw_model.parameters()).device
    use_bf16 = tc.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    with torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext():
        _, loss, losses = model(batch, label_smoothing=tc.label_smoothing)
    model.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = tc.optim.grad_clip if tc.optim.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm)
    # the loss, the gradient norm, each family's loss x rows, and its rows on this rank
    here = [len(batch[n]["targets"]) if n in batch else 0 for n in names]
    zero = loss.new_zeros((), dtype=torch.float32)
    weighted = [
        losses[n].detach().float() * r if r else zero for n, r in zip(names, here, strict=True)
    ]
    stats = torch.stack(
        [loss.detach().float(), grad_norm.float(), *weighted] + [zero + r for r in here]
    )
    if world_size > 1:  # global means; a NaN on any rank stops all at this step
        dist.all_reduce(stats)
        stats[:2] /= world_size
    loss_value, norm_value, *rest = stats.tolist()
    k = len(names)
    return loss_value, norm_value, [s / r for s, r in zip(rest[:k], rest[k:], strict=True)]


class LossMeter:
    """Running means of the loss (and each family's) since the last metrics row, and training
    tokens/s since the clock last restarted (evaluation and checkpoints are not training)."""

    def __init__(self, names: list[str], tokens_per_step: int) -> None:
        self.names, self.tokens_per_step = names, tokens_per_step
        self.sums, self.count = np.zeros(1 + len(names)), 0
        self.restart_clock()

    def add(self, loss: float, per_family: list[float]) -> None:
        self.sums += [loss, *per_family]
        self.count += 1
        self.timed_steps += 1

    def restart_clock(self) -> None:
        self.timer, self.timed_steps = time.perf_counter(), 0

    def row(self, lr: float, grad_norm: float, bar) -> dict[str, float]:
        """The metrics row (train/*), shown on the progress bar; the means start over."""
        means = self.sums / self.count
        tokens_per_s = self.tokens_per_step * self.timed_steps / (time.perf_counter() - self.timer)
        row = {
            "train/loss": means[0],
            "train/lr": lr,
            "train/grad_norm": grad_norm,
            "train/tokens_per_s": tokens_per_s,
        }
        if len(self.names) > 1:
            row.update({f"train/loss/{n}": v for n, v in zip(self.names, means[1:], strict=True)})
        bar.set_postfix(loss=f"{means[0]:.4f}", tok_s=f"{tokens_per_s:,.0f}")
        self.sums, self.count = np.zeros_like(self.sums), 0
        return row


class Checkpoints:
    """A run's checkpoints (rank 0): each a :class:`Checkpoint` record, written atomically, the
    ``train.checkpoint.keep`` most recent kept, and one whose weights gave a non-finite loss set
    aside."""

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        model_cfg: ModelConfig,
        families: list[FamilyData],
        tc: TrainConfig,
    ) -> None:
        self.run_dir, self.config, self.keep = run_dir, config, tc.checkpoint.keep
        self.model_config = config_to_dict(model_cfg)
        self.families = {f.name: family_record(f) for f in families}
        self.fingerprint = data_fingerprint(families)

    def save(self, model: ADTransformer, optimizer, step: int, rng: list) -> None:
        ckpt = Checkpoint(
            model=model.state_dict(),  # the uncompiled, unwrapped module
            optimizer=optimizer.state_dict(),
            step=step,
            rng=rng,  # one state per rank
            config=self.config,
            model_config=self.model_config,
            families=self.families,
            dataset_fingerprint=self.fingerprint,
            versions=package_versions(),
        )
        save_checkpoint(self.run_dir / "checkpoints" / checkpoint_name(step), ckpt)
        for old in list_checkpoints(self.run_dir)[: -self.keep]:
            old.unlink()

    def set_aside(self, step: int) -> Path | None:
        """After a non-finite loss at ``step``: rename the checkpoint holding the weights that
        gave it (``step-<step>.pt.nonfinite``, so resuming skips it); return the latest good
        one."""
        bad = self.run_dir / "checkpoints" / checkpoint_name(step)
        if bad.is_file():
            bad.rename(bad.with_name(bad.name + ".nonfinite"))
        found = list_checkpoints(self.run_dir)
        return found[-1] if found else None


def _evaluate(
    evaluator: Evaluator, model: ADTransformer, families: list[FamilyData], device
) -> dict:
    """Each family's validation metrics; the RNG states are left as they were, so that
    evaluating does not shift the dropout and masking streams of training (a resumed run stays
    exact)."""
    state = rng_state()
    row = {}
    try:
        for f in families:
            prefix = "validation/" + (f"{f.name}/" if len(families) > 1 else "")
            metrics = evaluator(model.policy(f.name), f.config, f.windows.split, device)
            row.update({prefix + k: v for k, v in metrics.items()})
    finally:
        set_rng_state(state)
    return row


def build_model(
    model_cfg: ModelConfig,
    families: list[FamilyData],
    tc: TrainConfig,
    device: torch.device,
    ckpt: Checkpoint | None,
    rank: int,
    world_size: int,
) -> tuple[ADTransformer, torch.nn.Module, torch.optim.Optimizer, int]:
    """(raw model, model to call: compiled and/or DDP-wrapped, optimiser, start step).

    A fresh model is initialised from train.seed on every rank; a resumed one takes the
    checkpoint's weights, optimiser state, step and RNG states.
    """
    seed_everything(tc.seed)  # identical initial weights on every rank
    spaces = {f.name: (f.windows.observation_space, f.windows.action_space) for f in families}
    raw_model = ADTransformer(model_cfg, spaces)
    raw_model.to(device)
    optimizer = make_optimizer(raw_model, tc)
    start_step = 0
    if ckpt is not None:
        raw_model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        start_step = int(ckpt.step)
        restore_rng(ckpt.rng, tc.seed, rank, world_size, start_step)
    else:
        seed_everything(tc.seed + rank)  # dropout and masking differ across ranks
    model = torch.compile(raw_model) if tc.compile else raw_model
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        # static_graph: the same parameters take part every step, and some never do (the mask
        # token when input_mask_prob is 0; a family with no rows on this rank), which plain
        # DDP would wait for forever.
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


def family_record(family: FamilyData) -> FamilyRecord:
    """What a checkpoint keeps of one family."""
    windows = family.windows
    return FamilyRecord(
        config=config_to_dict(family.config),
        observation_space=space_to_json(windows.observation_space),
        action_space=space_to_json(windows.action_space),
        split=windows.split.to_json(),
        dataset_fingerprint=windows.fingerprint,
        dataset_dir=dataset_paths(family.config),
    )


def _to_device(batch: dict[str, np.ndarray], device: torch.device, space: Space) -> dict:
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    if has_integer_ids(space):
        tensors["observations"] = tensors["observations"].long()
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def _progress_bar(total: int, initial: int, enabled: bool):
    return progress_bar(
        total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True
    )
