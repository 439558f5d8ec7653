"""The generalist's training loop (issue 14): one trunk, a batch split among member families.

Each optimiser step draws ``train.batch_size`` windows, split among the members by weight
(:func:`ad.mixture.member_rows`: fixed counts, at least one each); member ``i``'s windows of step
``s`` come from ``np.random.default_rng([train.seed, s, i])``, so the batch is a pure function of
(seed, step) and a resumed run continues exactly. Every member's data is loaded and checked as a
specialist's is (``load_training_runs``: its own split and leak checks; ``open_windows``), and
all members must share one window length. Single process (no DDP).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ad.config import ExperimentConfig, config_to_dict
from ad.errors import UserError
from ad.learn.checkpoint import (
    CHECKPOINT_SCHEMA,
    checkpoint_name,
    find_resume_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ad.learn.generalist import GeneralistTransformer
from ad.learn.train import (
    METRICS,
    MetricsLog,
    _progress_bar,
    _to_device,
    dataset_paths,
    lr_at,
    make_optimizer,
)
from ad.learn.training_data import load_training_runs, resolve_config
from ad.learn.windows import WindowStore, open_windows
from ad.mixture import MixtureConfig, member_rows, mixture_to_dict
from ad.utils import package_versions, resolve_device, seed_everything, write_versions


def _log(message: str) -> None:
    print(f"ad-train: {message}", file=sys.stderr, flush=True)


def open_members(cfg: MixtureConfig) -> tuple[dict[str, ExperimentConfig], dict[str, WindowStore]]:
    """Each member's resolved config (null settings derived from its data) and windows.

    Raises:
        UserError: a member's data fails its checks, or the members' context or window lengths
            differ (one trunk, one ``context_steps``).
    """
    configs, windows = {}, {}
    try:
        for m in cfg.members:
            try:
                training = load_training_runs(m.experiment)
                configs[m.name] = resolve_config(m.experiment, training)
                windows[m.name] = open_windows(configs[m.name], training)
            except UserError as e:
                raise UserError(f"mixture member {m.name} ({m.config}): {e}") from None
        for key, of in (("model.context_steps", _context), ("window steps", _window)):
            values = {name: of(configs[name], windows[name]) for name in configs}
            if len(set(values.values())) > 1:
                listed = ", ".join(f"{n} {v}" for n, v in values.items())
                raise UserError(
                    f"the members' {key} differ ({listed}); one trunk needs one value: set "
                    "model.context_steps (and train.window_steps) in the mixture config"
                )
    except UserError:
        for store in windows.values():
            store.close()
        raise
    return configs, windows


def _context(cfg: ExperimentConfig, _: WindowStore) -> int:
    return cfg.model.context_steps


def _window(_: ExperimentConfig, store: WindowStore) -> int:
    return store.window_steps


def member_indices(seed: int, step: int, member: int, num_windows: int, rows: int) -> np.ndarray:
    """Member ``member``'s window indices at optimiser step ``step``: (rows,) int64, a pure
    function of (seed, step, member)."""
    return np.random.default_rng([seed, step, member]).integers(0, num_windows, size=rows)


def mixture_fingerprint(windows: dict[str, WindowStore]) -> str:
    """One fingerprint of all members' data (checked on resume)."""
    text = ";".join(f"{name}={w.fingerprint}" for name, w in windows.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_generalist(cfg: MixtureConfig, windows: dict[str, WindowStore]) -> GeneralistTransformer:
    """A fresh generalist initialised from train.seed, with the members' resolved context."""
    import dataclasses

    context = next(iter(windows.values())).window_steps
    model_cfg = cfg.model
    if model_cfg.context_steps is None:
        model_cfg = dataclasses.replace(model_cfg, context_steps=context)
    seed_everything(cfg.train.seed)
    spaces = {n: (w.observation_space, w.action_space) for n, w in windows.items()}
    return GeneralistTransformer(model_cfg, spaces)


def train_mixture(cfg: MixtureConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a generalist on its members' training splits; returns the run folder.

    The checkpoints record every member's spaces, resolved config, split, dataset fingerprint
    and dataset folder (``members``), and ``mixture`` (the config with resolved members).

    Raises:
        UserError: bad member data or config, mismatched context lengths, a run folder that
            would be overwritten, a refused resume, a non-finite loss.
    """
    tc = cfg.train
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("a generalist trains in one process for now; run ad-train without torchrun")
    device = resolve_device(tc.device, "train.device")
    run_dir = cfg.run_dir
    resume_path = find_resume_checkpoint(run_dir, resume)
    configs, windows = open_members(cfg)
    try:
        return _loop(cfg, configs, windows, device, run_dir, resume_path, progress)
    finally:
        for store in windows.values():
            store.close()


def _loop(
    cfg: MixtureConfig, configs: dict, windows: dict[str, WindowStore], device: torch.device,
    run_dir: Path, resume_path: Path | None, progress: bool,
) -> Path:  # fmt: skip
    tc, names = cfg.train, list(windows)
    fingerprint = mixture_fingerprint(windows)
    model = build_generalist(cfg, windows).to(device)
    optimizer = make_optimizer(model, tc)
    start_step = 0
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path)
        if ckpt.get("dataset_fingerprint") != fingerprint or ckpt["config"]["model"] != (
            config_to_dict(cfg.model)
        ):
            raise UserError(
                f"cannot resume {resume_path}: its members' data or model section differ from "
                "this config's; resume with the run's config and data or choose another "
                "train.run_dir"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        set_rng_state(ckpt["rng"][0])
    else:
        seed_everything(tc.seed)
    use_bf16 = tc.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    rows = member_rows(tc.batch_size, cfg.weights)
    fields = METRICS + tuple(f"train/loss/{n}" for n in names)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(_yaml(mixture_to_dict(cfg)))
    write_versions(run_dir)
    shares = ", ".join(f"{n} {r} rows" for n, r in zip(names, rows, strict=True))
    _log(f"generalist over {shares} per step; {model.num_parameters():,} parameters on {device}")
    for name, store in windows.items():
        _log(f"{name}: {store.describe()}")
    log = MetricsLog(run_dir, start_step, True, fields)
    bar = _progress_bar(tc.num_steps, start_step, progress)
    tokens_per_step = tc.batch_size * next(iter(windows.values())).window_steps
    sums = {k: 0.0 for k in ("all", *names)}
    count, timer, timed_steps = 0, time.perf_counter(), 0
    model.train()
    try:
        for step in range(start_step, tc.num_steps):
            batches = {}
            for i, name in enumerate(names):
                store = windows[name]
                indices = member_indices(tc.seed, step, i, store.num_windows, rows[i])
                discrete = store.observation_space["type"] in ("Discrete", "MultiDiscrete")
                batches[name] = _to_device(store.get_batch(indices), device, discrete)
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                loss, losses = model(batches, label_smoothing=tc.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            loss_value = float(loss.detach())
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
                raise UserError(
                    f"non-finite loss ({loss_value}) or gradient norm ({grad_norm}) at step "
                    f"{step + 1}; lower train.lr or raise train.warmup_steps, and train into a "
                    "new train.run_dir"
                )
            optimizer.step()
            done, count, timed_steps = step + 1, count + 1, timed_steps + 1
            sums["all"] += loss_value
            for name in names:
                sums[name] += float(losses[name].detach())
            bar.update(1)
            last = done == tc.num_steps
            if done % tc.log_every == 0 or last:
                tokens_per_s = tokens_per_step * timed_steps / (time.perf_counter() - timer)
                row = {"train/loss": sums["all"] / count, "train/lr": lr,
                       "train/grad_norm": grad_norm, "train/tokens_per_s": tokens_per_s}  # fmt: skip
                row.update({f"train/loss/{n}": sums[n] / count for n in names})
                log.log(done, row)
                bar.set_postfix(loss=f"{row['train/loss']:.4f}", tok_s=f"{tokens_per_s:,.0f}")
                sums, count = dict.fromkeys(sums, 0.0), 0
                timer, timed_steps = time.perf_counter(), 0
            if done % tc.checkpoint_every == 0 or last:
                state = _state(model, optimizer, done, cfg, configs, windows, fingerprint)
                save_checkpoint(run_dir / "checkpoints" / checkpoint_name(done), state)
                for old in list_checkpoints(run_dir)[: -tc.keep_checkpoints]:
                    old.unlink()
                timer, timed_steps = time.perf_counter(), 0
    finally:
        bar.close()
        log.close()
    return run_dir


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _state(
    model: GeneralistTransformer, optimizer, step: int, cfg: MixtureConfig,
    configs: dict[str, ExperimentConfig], windows: dict[str, WindowStore], fingerprint: str,
) -> dict:  # fmt: skip
    members = {
        name: {
            "config": config_to_dict(configs[name]),
            "observation_space": store.observation_space,
            "action_space": store.action_space,
            "split": store.split.to_json(),
            "dataset_fingerprint": store.fingerprint,
            "dataset_dir": dataset_paths(configs[name]),
        }
        for name, store in windows.items()
    }
    return {
        "schema_version": CHECKPOINT_SCHEMA,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": [rng_state()],
        "config": mixture_to_dict(cfg),
        "model_args": {
            "context_steps": model.cfg.context_steps,
            "members": {n: [m["observation_space"], m["action_space"]] for n, m in members.items()},
        },
        "members": members,
        "dataset_fingerprint": fingerprint,
        "versions": package_versions(),
    }
