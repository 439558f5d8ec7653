"""Thin entry points: parse arguments, call one library function, turn user errors into exit codes.

Every error a user can cause is a :class:`ad.errors.UserError` (or envs' ``TaskError``); it is
printed as one line (``error: ...``) with exit status 2, never a traceback.

``python -m ad.cli COMMAND ...`` (COMMAND: collect, train, eval, run) runs the same entry points;
it is how torchrun starts distributed training::

    torchrun --nproc-per-node 2 -m ad.cli train --config configs/darkroom.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ad.errors import UserError, user_errors

EXIT_USER_ERROR = 2


def _run(fn: Callable[[], int | None]) -> int:
    try:
        return fn() or 0
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # unreadable folder, full disk, ...: the OS says which file and why
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"error: {e.strerror or e}{where}; check the path's permissions and free space",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _add_set_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.num_steps=100 (repeatable)",
    )


def _add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", type=Path, required=required, help="experiment YAML (configs/)")
    _add_set_arg(parser)
    parser.add_argument(
        "--help-config", action="store_true", help="list every config field with its help and exit"
    )


def _help_config() -> int:
    from ad.config import help_text

    print(help_text())
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} is not of the form i/N (e.g. 0/4)") from None
    if not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < N")
    return index, count


def _add_ray_args(parser: argparse.ArgumentParser, section: str) -> None:
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default=None,
        help=f"where the work runs (sets {section}.backend): local, or ray for a Ray cluster",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (sets ray.address): auto, HOST:6379 or "
        "ray://HOST:10001; default: Ray's own lookup, else a local instance",
    )


def _ray_overrides(args: argparse.Namespace, section: str) -> list[str]:
    """--backend and --address as config overrides of ``section`` (collect or eval)."""
    overrides = []
    if args.backend is not None:
        overrides.append(f"{section}.backend={args.backend}")
    if args.address is not None:
        # quoted: YAML would read some HOST:PORT texts as numbers
        overrides.append(f"ray.address={json.dumps(args.address)}")
    return overrides


def collect_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ad-collect",
        description="Run a source RL algorithm from scratch on every task and record whole "
        "learning histories to HDF5; or --inspect an existing dataset, --merge the manifest "
        "of shards collected into one folder, or move a dataset out to or in from Minari.",
    )
    _add_config_args(parser, required=False)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--shard", default="0/1", help="run only shard i of N of the task list")
    parser.add_argument("--inspect", type=Path, metavar="DATASET", help="validate and summarise")
    parser.add_argument("--plot", action="store_true", help="with --inspect: draw learning curves")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="DATASET",
        help="rebuild DATASET/manifest.json from every valid history in the folder (after "
        "--shard runs wrote into it, or their files were moved into it)",
    )
    _add_minari_args(parser)
    _add_ray_args(parser, "collect")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    def go() -> int:
        if args.help_config:
            return _help_config()
        if args.inspect is not None:
            from ad.data.inspection import inspect

            print(inspect(args.inspect))
            if args.plot:
                from ad.evaluation.plots import plot_dataset_curves

                print(f"wrote {plot_dataset_curves(args.inspect)}")
            return 0
        if args.merge is not None:
            from ad.data.manifest import merge_manifest

            manifest = merge_manifest(args.merge)
            invalid = manifest["invalid_files"]
            line = f"merged {len(manifest['runs'])} runs into {args.merge / 'manifest.json'}"
            if invalid:
                line += f"; left out {len(invalid)} invalid files: {', '.join(invalid)}"
            print(line)
            return 0
        if args.config is None:
            raise UserError(
                "ad-collect needs --config FILE (or --inspect DATASET, --merge DATASET)"
            )
        if args.workers is not None and args.workers < 1:
            raise UserError("--workers must be >= 1")
        from ad.config import load_config

        cfg = load_config(args.config, args.overrides + _ray_overrides(args, "collect"))
        if args.export_minari or args.import_minari:
            return _minari_move(cfg, args)
        from ad.data.collect import collect

        if args.workers is not None and cfg.collect.backend == "ray":
            raise UserError(
                "--workers sizes the local pool; on Ray the cluster's CPUs decide (one per run): "
                "drop --workers, or start the Ray nodes with --num-cpus N"
            )
        collect(
            cfg,
            workers=args.workers,
            shard=_parse_shard(args.shard),
            progress=not args.no_progress,
        )
        return 0

    return _run(go)


def _add_minari_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export-minari",
        metavar="DATASET_ID",
        help="write the config's dataset as the Minari dataset DATASET_ID (lossless)",
    )
    parser.add_argument(
        "--import-minari",
        metavar="DATASET_ID",
        help="turn the Minari dataset DATASET_ID into histories in the config's dataset folder",
    )
    parser.add_argument(
        "--task-field",
        metavar="FIELD",
        help="with --import-minari: the episode metadata field that holds the task "
        "(e.g. options.goal); not needed for datasets that ad exported",
    )


def _minari_move(cfg, args: argparse.Namespace) -> int:
    """``ad-collect --export-minari`` / ``--import-minari``: one summary line."""
    from ad.data.minari_io import export_minari, import_minari

    if args.export_minari and args.import_minari:
        raise UserError("--export-minari and --import-minari go in separate calls")
    if args.export_minari:
        done = export_minari(cfg.collect_dir, args.export_minari)
        print(
            f"exported {done['runs']} runs ({done['episodes']} episodes, {done['steps']} steps) "
            f"of {cfg.collect_dir} to the Minari dataset {done['dataset_id']} at {done['path']}"
        )
        return 0
    done = import_minari(cfg, args.import_minari, args.task_field)
    line = f"imported {done['runs']} runs ({done['steps']} steps) into {done['dataset_dir']}"
    if done["dropped_steps"]:
        line += f"; cut {done['dropped_steps']} steps so every task's stream has one length"
    print(line)
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ad-train",
        description="Train the across-episode causal transformer on a history dataset, or a "
        "generalist on the datasets of its config's families.",
    )
    _add_config_args(parser, required=False)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def go() -> int:
        if args.help_config:
            return _help_config()
        if args.config is None:
            raise UserError("ad-train needs --config FILE")
        from ad.generalist import load_any_config
        from ad.pipeline import train_run

        cfg = load_any_config(args.config, args.overrides)
        run_dir = train_run(cfg, resume=args.resume, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks
            print(f"run folder: {run_dir}")
        return 0

    return _run(go)


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ad-eval",
        description="Roll the frozen model out on test tasks (eval.tasks); write returns, summary "
        "and figure (several families: one each, and one figure with a panel per family).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="run folder written by ad-train")
    source.add_argument("--checkpoint", type=Path, help="one checkpoint file")
    source.add_argument(
        "--aggregate",
        type=Path,
        nargs="+",
        metavar="SUMMARY",
        help="no rollout: the summary.json files (or eval folders) of one recipe's runs over "
        "several seeds -> their mean with a 95%% bootstrap CI over runs, in --out "
        "(default: aggregate/)",
    )
    source.add_argument(
        "--figure",
        type=Path,
        nargs="+",
        metavar="RESULT",
        help="no rollout: the paper's figure, one panel per family, from each family's "
        "aggregate.json (or one run's summary.json) -> figure.png, figure.json and a Markdown "
        "table, in --out (default: figure/)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="override an eval setting, e.g. --set eval.num_episodes=100 (repeatable)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=[],
        help="runs to overlay on the same tasks (without --run: the first is the main run)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: RUN/eval-SPLIT, e.g. eval-test)",
    )
    parser.add_argument(
        "--allow-train-tasks",
        action="store_true",
        help="permit --set eval.tasks=train (labelled as training tasks in every output)",
    )
    _add_ray_args(parser, "eval")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def eval_main(argv: Sequence[str] | None = None) -> int:
    args = _eval_parser().parse_args(argv)

    def go() -> int:
        if args.aggregate:
            from ad.evaluation.aggregate import format_aggregate, write_aggregate

            out_dir = args.out or Path("aggregate")
            print(format_aggregate(write_aggregate(args.aggregate, out_dir)))
            print(f"written: {out_dir / 'aggregate.json'}, {out_dir / 'aggregate.png'}")
            return 0
        if args.figure:
            from ad.evaluation.figure import figure_table, write_figure

            out_dir = args.out or Path("figure")
            print(figure_table(write_figure(args.figure, out_dir)))
            print(f"written: {out_dir / 'figure.png'}, {out_dir / 'figure.json'}")
            return 0
        source, compare = args.run or args.checkpoint, args.compare
        if source is None and compare:  # ad-eval --compare runA runB ...
            source, compare = compare[0], compare[1:]
        if source is None:
            raise UserError("ad-eval needs --run RUN_DIR, --checkpoint FILE or --compare RUN ...")
        from ad.evaluation.evaluate import evaluate

        evaluate(
            source,
            overrides=args.overrides + _ray_overrides(args, "eval"),
            out_dir=args.out,
            compare=compare,
            allow_train_tasks=args.allow_train_tasks,
            progress=not args.no_progress,
        )
        return 0

    return _run(go)


def _entry(main: Callable[[Sequence[str] | None], int]) -> Callable[[], None]:
    return lambda: sys.exit(main(None))


collect = _entry(collect_main)
train = _entry(train_main)
evaluate = _entry(eval_main)


def run_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ad-run",
        description="The whole pipeline on one config: collect -> train AD (DPT with train.mode "
        "dpt) and the ED control -> evaluate -> report (figure, summary.json, REPORT.md).",
    )
    parser.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="experiment YAML (default: the built-in quick DarkRoom experiment)",
    )
    _add_set_arg(parser)
    parser.add_argument("--workers", type=int, default=None, help="collection processes")
    parser.add_argument("--no-ed", action="store_true", help="skip the expert-distillation control")
    parser.add_argument("--report", type=Path, default=None, help="report folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--select",
        action="store_true",
        help="first choose the settings on validation tasks (subsampling, context, width: "
        "--select-budget trainings), then run the pipeline on the chosen config; writes "
        "<run_dir>-select/selection.md, selection.json and chosen.yaml",
    )
    parser.add_argument(
        "--select-budget",
        type=int,
        default=None,
        metavar="N",
        help="candidates trained by --select (default 3; the chosen one is reused)",
    )
    args = parser.parse_args(argv)

    def go() -> int:
        from ad.generalist import GeneralistConfig, load_any_config
        from ad.pipeline import run_pipeline
        from ad.selection import DEFAULT_BUDGET, select

        # No file: the built-in defaults, which are the quick DarkRoom experiment.
        cfg = load_any_config(args.config, args.overrides)
        if args.select_budget is not None and not args.select:
            raise UserError("--select-budget needs --select")
        if args.select:
            if isinstance(cfg, GeneralistConfig):
                raise UserError("ad-run --select takes one family's config, not a generalist's")
            budget = DEFAULT_BUDGET if args.select_budget is None else args.select_budget
            cfg = select(cfg, budget, workers=args.workers, progress=not args.no_progress)
        run_pipeline(
            cfg,
            workers=args.workers,
            with_ed=not args.no_ed,
            report_dir=args.report,
            progress=not args.no_progress,
        )
        return 0

    return _run(go)


run = _entry(run_main)


COMMANDS = {"collect": collect_main, "train": train_main, "eval": eval_main, "run": run_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ad.cli COMMAND [ARGS]``: one of the console scripts by name (torchrun's way in)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m ad.cli {{{names}}} [ARGS ...]", file=sys.stderr)
        return EXIT_USER_ERROR
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
