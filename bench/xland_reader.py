"""Training windows streamed from an XLand-100B file against the same data as native histories.

One synthetic file of the published layout (groups of 32 histories, uint8 packed states, gzip 6,
chunks of (1, 4096, ...)) and the same steps written as this project's history files (gzip,
4096-step chunks) are opened as ``ad-train`` opens them, both streamed from disk
(``StreamedWindows``): the XLand reader unpacks the states of its slices, the native reader
serves stored (5, 5, 2) views. Rounds alternate between the two in one process, each reading
the same random windows; the median windows/s of each and their ratio are printed.

Usage: python bench/xland_reader.py [--quick] [--groups G] [--steps T] [--windows N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ad.config import config_from_dict
from ad.data.histories import write_history
from ad.data.manifest import merge_manifest
from ad.data.spaces import space_to_json
from ad.data.xland import unpack_states
from ad.learn.training_data import load_training_runs
from ad.learn.windows import open_windows
from ad.utils import matmul_gflops
from envs import make_family
from envs.xland import NUM_COLORS

CONTEXT = 243  # one 9x9 episode's step limit: a window of the AD baseline's length order


def synthetic_groups(groups: int, steps: int, seed: int = 0):
    """Per group: packed states, actions, rewards, dones and expert actions of 32 histories."""
    rng = np.random.default_rng(seed)
    for _ in range(groups):
        states = rng.integers(0, 15 * NUM_COLORS, (32, steps, 5, 5), dtype=np.uint8)
        states[:, :, 2:, :] = 3 * NUM_COLORS  # floor below the agent: compressible like real views
        actions = rng.integers(0, 6, (32, steps), dtype=np.uint8)
        dones = rng.random((32, steps)) < 0.01
        yield {
            "states": states,
            "actions": actions,
            "rewards": (rng.random((32, steps)) * dones).astype(np.float16),
            "dones": dones,
            "expert_actions": rng.integers(0, 6, (32, steps), dtype=np.uint8),
        }


def write_both(folder: Path, groups: int, steps: int) -> tuple[Path, Path]:
    """The XLand file and a native dataset folder of the same steps, with one family split."""
    family = make_family("envs.xland:XLandMiniGrid", num_tasks=groups, grid_size=9)
    split = family.split(0, num_validation=1, num_test=1)
    xland, native = folder / "xland.hdf5", folder / "native"
    native.mkdir()
    obs_space, act_space = family.spaces
    with h5py.File(xland, "w") as f:
        for g, arrays in enumerate(synthetic_groups(groups, steps)):
            group = f.create_group(str(g))
            group.attrs.update(
                {"env-id": "XLand-MiniGrid-R1-9x9", "benchmark-id": "bench", "ruleset-id": g}
            )
            for name, data in arrays.items():
                chunks = (1, 4096, *data.shape[2:])
                group.create_dataset(
                    name, data=data, compression="gzip", compression_opts=6, chunks=chunks
                )
            label = split.split_of({"group": g})
            index = [t["group"] for t in split.tasks(label)].index(g)
            metadata = {
                "env_id": None,
                "family": family.name,
                "family_kwargs": family.kwargs,
                "split_info": split.to_json(),
                "algorithm": "xland",
                "algorithm_kwargs": {},
                "task": {"group": g},
                "task_index": index,
                "split": label,
                "seed": 0,
                "observation_space": space_to_json(obs_space),
                "action_space": space_to_json(act_space),
                "num_actions": 6,
                "episode_length": family.episode_length,
                "optimal_return": None,
                "random_return": 0.0,
            }
            write_history(
                native / f"{label}-task{index:04d}-seed0.h5",
                metadata,
                observations=unpack_states(arrays["states"]),
                actions=arrays["actions"],
                rewards=arrays["rewards"],
                terminations=arrays["dones"],
                truncations=np.zeros_like(arrays["dones"]),
                optimal_actions=arrays["expert_actions"],
                chunk_steps=4096,
            )
    merge_manifest(native)
    return xland, native


def windows_of(dataset: Path, groups: int):
    cfg = config_from_dict(
        {
            "name": "bench",
            "env": {
                "family": "envs.xland:XLandMiniGrid",
                "family_kwargs": {"num_tasks": groups, "grid_size": 9},
                "num_validation_tasks": 1,
                "num_test_tasks": 1,
            },
            "model": {"context_steps": CONTEXT},
            "train": {"dataset": str(dataset), "data": {"subsample_every": 1, "in_memory": "no"}},
            "eval": {"num_episodes": 10},
        }
    )
    return open_windows(cfg, load_training_runs(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long check")
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--steps", type=int, default=16384)
    parser.add_argument("--windows", type=int, default=400, help="windows per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.groups, args.steps, args.windows, args.rounds = 4, 4096, 50, 2
    print(f"single-thread matmul: {matmul_gflops():.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        xland_path, native_path = write_both(Path(tmp), args.groups, args.steps)
        stores = {
            "xland": windows_of(xland_path, args.groups),
            "native": windows_of(native_path, args.groups),
        }
        assert stores["xland"].num_windows == stores["native"].num_windows
        rng = np.random.default_rng(0)
        probe = int(rng.integers(stores["xland"].num_windows))
        for key in ("observations", "prev_actions", "targets"):  # the same windows, either way
            np.testing.assert_array_equal(stores["xland"][probe][key], stores["native"][probe][key])
        rates: dict[str, list[float]] = {name: [] for name in stores}
        for _ in range(args.rounds):
            indices = rng.integers(stores["xland"].num_windows, size=args.windows)
            for name, store in stores.items():
                start = time.perf_counter()
                for i in indices:
                    store[int(i)]
                rates[name].append(args.windows / (time.perf_counter() - start))
        for store in stores.values():
            store.close()
    xland, native = (statistics.median(rates[n]) for n in ("xland", "native"))
    print(
        f"{args.groups} groups x 32 histories x {args.steps} steps, windows of {CONTEXT} steps, "
        f"{args.rounds} rounds of {args.windows} random windows"
    )
    print(f"xland reader  {xland:8.1f} windows/s")
    print(f"native reader {native:8.1f} windows/s")
    print(f"xland / native: {xland / native:.3f}")


if __name__ == "__main__":
    main()
