"""Paper-scale runs that fit one call on a lent GPU machine (one GPU, 16 cores, 10 minutes).

Usage, on the device machine (the device tool runs it in the repository root; scripts/device_wheels.sh
first downloads, here, the wheels its image lacks into .whl/, which the call carries):

  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \\
    && PYTHONPATH=/tmp/site python3 scripts/device_run.py "$OUT"

and on a CPU at a reduced size (what tests/test_device_run.py runs):

  python scripts/device_run.py OUT --reduced --device cpu --workers 2

Each experiment of ``PLAN`` is one ``ad-run`` (collect with every core, train on the GPU,
evaluate on test tasks); an experiment whose estimate no longer fits the time left is skipped and
says so. ``OUT/results.json`` holds, per experiment, the config and overrides, AD's, ED's and the
source's normalised last-10 scores on test tasks, the stage timings, and the machine (GPU name,
single-thread matmul GFLOP/s); ``OUT/log.txt`` the commands' output; ``OUT/<name>.png`` each return
curve figure: at most 8 files, as the device tool brings back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name, config, overrides, estimated seconds on the device (the full size)
PLAN: list[tuple[str, str, list[str], float]] = [
    # the model-size ablation (issue 29): the same Key-to-Door data, our width, then the paper's
    # feed-forward of 2048
    ("keytodoor_ff256", "configs/keytodoor_quick.yaml", [], 150.0),
    (
        "keytodoor_ff2048",
        "configs/keytodoor_quick.yaml",
        ["model.ff_dim=2048", "train.run_dir=runs/keytodoor_quick_ff2048"],
        120.0,
    ),
    ("bandit_paper", "configs/bandit.yaml", ["--no-ed"], 240.0),
]
# a reduced size for a CPU: small tasks counts, streams and steps, same code paths
REDUCED = {
    "configs/keytodoor_quick.yaml": [
        "env.family_kwargs.size=5",
        "env.family_kwargs.episode_length=20",
        "env.num_train_tasks=4",
        "env.num_validation_tasks=1",
        "env.num_test_tasks=2",
        "collect.total_steps=1600",
        "collect.splits=[train, test]",
        "model.context_steps=80",
        "train.num_steps=20",
        "train.ed.num_steps=10",
        "train.optim.warmup_steps=2",
        "train.batch_size=4",
        "eval.num_episodes=6",
        "eval.num_seeds=2",
    ],
    "configs/bandit.yaml": [
        "env.num_train_tasks=8",
        "env.num_validation_tasks=1",
        "env.num_test_tasks=2",
        "collect.splits=[train, test]",
        "model.ff_dim=64",
        "train.num_steps=20",
        "train.optim.warmup_steps=2",
        "train.batch_size=4",
        "eval.num_episodes=120",
        "eval.num_seeds=2",
    ],
}
REDUCED_SECONDS = 60.0


def _machine() -> dict:
    import torch

    from ad.utils import matmul_gflops

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "machine_matmul_gflops": matmul_gflops(), "torch": torch.__version__}


def _scores(report: Path) -> dict:
    """AD's, ED's and the source's numbers from an ad-run report folder."""
    summary = json.loads((report / "summary.json").read_text())
    timings = json.loads((report / "timings.json").read_text())

    def row(stats: dict | None) -> dict | None:
        if not stats:
            return None
        keys = ("last10_normalised", "last10_return", "first_episode_return", "episode_to_80")
        return {k: stats.get(k) for k in keys}

    return {
        "split": summary["split"],
        "ad": row(summary),
        "ed": row(summary["compare"][0]) if summary.get("compare") else None,
        "source": row(summary.get("source")),
        "timings": timings,
    }


def _command(name: str, config: str, extra: list[str], args: argparse.Namespace, work: Path):
    """The ad-run command of one experiment, and its overrides as recorded."""
    flags = [a for a in extra if a.startswith("--")]
    sets = [a for a in extra if not a.startswith("--")]
    if args.reduced:
        sets = REDUCED[config] + sets
    sets += [f"train.device={args.device}", f"eval.device={args.device}"]
    cmd = [sys.executable, "-m", "ad.cli", "run", str(ROOT / config), "--no-progress"]
    cmd += ["--workers", str(args.workers), "--report", str(work / name), *flags]
    return cmd + [a for s in sets for a in ("--set", s)], sets + flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder brought back ($OUT on the device)")
    parser.add_argument("--device", default="cuda", help="train and eval device")
    parser.add_argument("--workers", type=int, default=16, help="collection processes")
    parser.add_argument("--budget-s", type=float, default=540.0, help="seconds for all runs")
    parser.add_argument("--reduced", action="store_true", help="a CPU-sized version")
    parser.add_argument("--only", action="append", default=None, metavar="NAME", help="run these")
    args = parser.parse_args(argv)
    names = [name for name, *_ in PLAN]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        sys.exit(
            f"error: --only {', '.join(unknown)} is not in PLAN; choose from {', '.join(names)}"
        )
    out = args.out.resolve()
    work = out.parent / f"{out.name}-work"  # histories and runs: not brought back
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    # the runs import this checkout, wherever they run
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    start = time.perf_counter()
    results: dict = {"machine": _machine(), "reduced": args.reduced, "experiments": []}
    with open(out / "log.txt", "a") as log:
        for name, config, extra, seconds in PLAN:
            if args.only and name not in args.only:
                continue
            cmd, overrides = _command(name, config, extra, args, work)
            entry = {"name": name, "config": config, "overrides": overrides}
            results["experiments"].append(entry)
            left = args.budget_s - (time.perf_counter() - start)
            seconds = REDUCED_SECONDS if args.reduced else seconds
            if seconds > left:
                entry["skipped"] = f"estimated {seconds:.0f} s, {left:.0f} s left"
                continue
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            t0 = time.perf_counter()
            done = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
            entry["seconds"] = time.perf_counter() - t0
            if done.returncode == 0:
                entry.update(_scores(work / name))
                if (work / name / "return_curves.png").is_file():
                    shutil.copy(work / name / "return_curves.png", out / f"{name}.png")
            else:
                entry["failed"] = f"exit code {done.returncode}; see log.txt"
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    failed = [e["name"] for e in results["experiments"] if "failed" in e]
    print(f"results: {out / 'results.json'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
