"""Small shared helpers: atomic file writes, package versions, seeding, devices."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import weakref
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ad.errors import UserError

if TYPE_CHECKING:
    import torch

_PACKAGES = ("torch", "numpy", "gymnasium", "stable-baselines3", "minigrid", "h5py")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour the outputs depend on."""
    versions = {"python": platform.python_version(), "algorithm-distillation": _own_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _own_version() -> str:
    from ad import __version__

    return __version__


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    if sys.platform.startswith("win"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it and set it back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    The file gets the mode a plain ``open(path, "w")`` would give it (0o666 minus the umask), not
    the owner-only 0o600 of :func:`tempfile.mkstemp`, so other users can read shared outputs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def replace_marked_block(path: Path, start: str, end: str, text: str) -> None:
    """Put ``text`` between the marker line ``start`` and the next ``end`` of page ``path``
    (generated tables quoted in docs pages).

    Raises:
        UserError: the page lacks the markers.
    """
    content = Path(path).read_text()
    if start not in content or end not in content.split(start, 1)[1]:
        raise UserError(f"{path} has no {start} ... {end} markers; add them where the table goes")
    before, rest = content.split(start, 1)
    atomic_write_text(path, f"{before}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


def to_json(value: Any) -> Any:
    """numpy values -> plain JSON types; NaN and inf -> null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_json(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_versions(folder: Path) -> None:
    """Write ``versions.json`` (package versions) into an output folder."""
    atomic_write_json(Path(folder) / "versions.json", package_versions())


def resolve_device(name: str, setting: str) -> torch.device:
    """The torch device of a ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` setting.

    ``auto`` is CUDA when available. Under torchrun (``WORLD_SIZE`` > 1), and for plain ``cuda``,
    a process takes GPU ``LOCAL_RANK``, so each rank has its own.

    Args:
        name: the setting's value.
        setting: its config key (``train.device``, ``eval.device``), for the message.

    Raises:
        UserError: CUDA is asked for but not available.
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{setting}={name} but CUDA is not available; use cpu or auto")
        if name == "cuda" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def matmul_gflops(n: int = 512, repeats: int = 5) -> float:
    """This machine's speed: the best single-thread float32 (n x n) @ (n x n) matmul, GFLOP/s.

    Machines of one kind differ several-fold from day to day, so every absolute time the
    project reports (``ad-run``'s timings, benchmarks) states this figure beside it.
    """
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
        a @ a  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * n**3 / best / 1e9


_BARS: weakref.WeakSet = weakref.WeakSet()  # the bars progress_bar made, while they live


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar (``tqdm(**kwargs)``) that :func:`open_bars` lists while it is open: ad-run's
    overall line reads the running stage's bar there."""
    from tqdm.auto import tqdm  # a notebook's widget bar where there is one

    bar = tqdm(**kwargs)
    _BARS.add(bar)
    return bar


def open_bars() -> list[Any]:
    """The shown bars made by :func:`progress_bar` that are not closed yet (tqdm disables a bar
    when it closes)."""
    return [bar for bar in list(_BARS) if not bar.disable]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
