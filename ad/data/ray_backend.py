"""Collection on a Ray cluster: each (task, seed) run is one Ray task (``collect.backend: ray``).

The driver (the ``ad-collect`` process) plans the runs, skips complete ones and writes the
manifest once, exactly as with the local pool; only the execution of the remaining runs moves to
Ray: :func:`execute` is the Ray counterpart of :func:`ad.data.pool.execute`. Each task runs the
same :func:`ad.data.runs.run_one` a pool worker runs, single-threaded, so a run's arrays are
identical whichever backend ran it.

Where a finished history goes (``collect.ray_storage``):

- ``driver`` (default, works on any cluster): the worker writes the history into a private
  temporary folder of its node, returns the file's bytes, and the driver writes them atomically
  into the dataset folder. Only the driver's machine needs the folder; every file crosses the
  network once.
- ``shared``: the worker writes the history atomically straight into ``collect.output_dir``,
  which every node must mount at the same path (NFS, Lustre, ...). Nothing passes through the
  driver; a file the driver cannot see afterwards is reported as a failed run.

A worker process that dies (killed, out of memory, its node lost) makes Ray rerun its task, up to
:data:`MAX_RETRIES` times; a retried run starts from scratch and replaces nothing, because files
appear only under their final name once complete. ``ray`` is an optional extra
(``pip install -e ".[ray]"``) and is imported only here and in :mod:`ad.evaluation.ray_rollout`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ad.data.runs import run_one, single_thread
from ad.errors import UserError
from ad.utils import fsync_dir, progress_bar

__all__ = ["MAX_RETRIES", "execute", "import_ray", "ray_session"]

# Reruns of a task whose worker process died; a run that raises is not retried (run_one reports
# its error instead), so a retry always means a lost process, never a bug met twice.
MAX_RETRIES = 3

INSTALL_HINT = 'pip install -e ".[ray]"'


def import_ray() -> Any:
    """The ``ray`` module, or a one-line UserError with the install command when it is missing."""
    try:
        import ray
    except ImportError:
        raise UserError(
            f"the ray backend needs Ray, which is not installed; install it with {INSTALL_HINT} "
            "(or pip install ray), or use backend local"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, setting: str) -> Iterator[Any]:
    """Ray, connected: an instance already initialised in this process is used as it is;
    otherwise this joins the cluster at ``address`` (None: a new local instance) and leaves it
    again on exit.

    Args:
        address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; None for a local instance.
        setting: the config key of the address, for the error message.

    Yields:
        The ``ray`` module.

    Raises:
        UserError: Ray is missing, or the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():  # the caller's instance (a test's, a notebook's): not ours to stop
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
        detail = " ".join(str(e).split())[:200]
        raise UserError(
            f"cannot join the Ray cluster at {address!r} ({detail}); start it with "
            f"`ray start --head` or fix {setting} (--address)"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- on the worker


def _run_on_worker(job: dict, storage: str) -> dict:
    """One run on a Ray worker: ``run_one(job)`` with one torch thread, as a pool worker runs it
    (Ray also sets OMP_NUM_THREADS=1).

    With ``storage == "driver"`` the history is written into a private folder of this node and
    its bytes are returned under ``"data"``; the folder is removed either way.
    """
    node = socket.gethostname()
    if storage == "shared":
        with single_thread():
            return {**run_one(job), "node": node}
    folder = tempfile.mkdtemp(prefix="ad-collect-")
    try:
        with single_thread():
            result = run_one({**job, "dataset_dir": folder})
        if result["ok"]:
            result["data"] = (Path(folder) / job["file"]).read_bytes()
        return {**result, "node": node}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- on the driver


def _write_file(path: Path, data: bytes) -> None:
    """Write a history's bytes as ``write_history`` does: under its host-and-pid temporary name
    (so a crash leaves a temporary file that the next collect recognises and deletes), fsync,
    rename into place."""
    from ad.data.temp_files import temp_path_for

    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _finish(job: dict, result: dict, storage: str) -> dict:
    """The driver's part of one result: write a returned file, or check a shared one is here."""
    path = Path(job["dataset_dir"]) / job["file"]
    if not result["ok"]:
        return result
    if storage == "driver":
        data = result.pop("data")
        _write_file(path, data)
        return {**result, "bytes": len(data)}
    if not path.is_file():
        return {
            "file": job["file"],
            "ok": False,
            "error": f"Ray worker on {result.get('node')} wrote {path}, which this machine cannot "
            "see; put collect.output_dir on storage every node mounts, or set "
            "collect.ray_storage=driver",
        }
    return result


def _lost(job: dict, error: BaseException) -> dict:
    """The result of a task that Ray gave up on (its worker died MAX_RETRIES + 1 times)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return {"file": job["file"], "ok": False, "error": f"Ray task failed: {text}"}


def execute(
    jobs: list[dict],
    address: str | None,
    storage: str,
    progress: bool,
    max_retries: int = MAX_RETRIES,
) -> list[dict]:
    """Run the jobs as Ray tasks (one CPU each) and gather their results, in completion order.

    Args:
        jobs: the jobs that :func:`ad.data.runs.run_one` takes.
        address: the cluster (``ray.address``); None starts a local instance.
        storage: ``"driver"`` or ``"shared"`` (``collect.ray_storage``; see the module doc).
        progress: show a bar over runs (with the env steps of the finished ones).
        max_retries: reruns of a task whose worker process died.

    Returns:
        One result of :func:`ad.data.runs.run_one` per job, in the order they finished; a run
        whose worker kept dying (retries spent) gives a failed result for its job.
    """
    from ad.data.temp_files import stale_temp_files

    if not jobs:
        return []
    if storage not in ("driver", "shared"):
        raise UserError(f"collect.ray_storage must be driver or shared, got {storage!r}")
    results, steps = [], 0
    with (
        ray_session(address, "ray.address") as ray,
        progress_bar(
            total=len(jobs), desc="collect (ray)", unit="run", disable=not progress
        ) as bar,
    ):
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_run_on_worker)
        pending = {task.remote(job, storage): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        result = _finish(job, ray.get(ref), storage)
                    except ray.exceptions.RayError as e:  # retries spent: the worker kept dying
                        result = _lost(job, e)
                    result.pop("node", None)
                    results.append(result)
                    steps += result.get("steps", 0)
                    bar.set_postfix(env_steps=steps, refresh=False)
                    bar.update()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    # A worker killed mid-write on this host left its temporary file; every task is over, so no
    # live writer of ours remains (files of other hosts are left alone, with a warning).
    for job in jobs:
        for tmp in stale_temp_files(Path(job["dataset_dir"]) / job["file"]):
            tmp.unlink(missing_ok=True)
    return results
