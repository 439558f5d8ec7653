"""Temporary files of learning histories: their names, which are stale, and the atomic commit.

A history is written under a hidden temporary name that carries its writer's host and pid, then
fsynced and renamed into place (:func:`commit_temp_file`), so a file with a final name is always
whole. Split from :mod:`ad.data.histories` (which alone imports h5py); nothing here reads HDF5.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from ad.utils import fsync_dir

log = logging.getLogger(__name__)


def temp_path_for(path: Path) -> Path:
    """The temporary name a history is written under (hidden, unique to host and process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a killed one awaiting its reaper does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # Linux: a zombie has state Z in /proc/<pid>/stat, after the ")" that ends the name
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files of ``path`` left by dead writers on this host, safe to delete.

    A temporary name carries its writer's host and pid (:func:`temp_path_for`). Temporary files
    of a live process, or of another host (which this one cannot check, e.g. a shard writing to
    a shared folder), are left alone with a warning.
    """
    path = Path(path)
    host, stale = socket.gethostname(), []
    for tmp in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        writer = tmp.name[len(path.name) + 2 : -len(".tmp")]  # "<host>-<pid>"
        writer_host, _, pid = writer.rpartition("-")
        if writer_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            stale.append(tmp)
        else:
            log.warning(
                "leaving %s alone: it may be written by a live process (host-pid %s); delete it "
                "by hand if no collect is running there",
                tmp,
                writer,
            )
    return stale


def commit_temp_file(tmp: Path, path: Path) -> None:
    """fsync a finished temporary file and rename it into place, durably."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
