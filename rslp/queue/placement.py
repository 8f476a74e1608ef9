"""Where the embedded queue's SQLite file may live: on this machine's own disk.

SQLite's WAL mode keeps its index in shared memory next to the file and relies on
POSIX locks; on network file systems (NFS, CIFS, Weka and other FUSE mounts, Lustre)
those are not shared correctly between hosts, or at all, and the queue can be
corrupted or lose messages. Job roots usually live on exactly such mounts, so the
default queue file goes under ``$RSLP_QUEUE_DIR`` or ``~/.cache/rslp/queues`` instead,
named after the job root so a rerun finds it again; a queue file on a network mount
is warned about with this reason.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

#: File system types (as /proc/mounts names them) whose locking SQLite's WAL cannot trust.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "wekafs", "lustre", "gpfs", "ceph", "glusterfs", "9p", "afs", "beegfs"}
)
MOUNTS = Path("/proc/mounts")
QUEUE_DIR_ENV = "RSLP_QUEUE_DIR"


class NetworkFileSystemWarning(UserWarning):
    """The embedded queue's file is on a network file system, where SQLite's WAL is unsafe."""


def default_queue_url(job_root: str) -> str:
    """``local://`` URL of the job's queue file on local disk, the same for every run of one job root."""
    base = Path(os.environ.get(QUEUE_DIR_ENV) or Path.home() / ".cache" / "rslp" / "queues")
    digest = hashlib.sha256(job_root.encode()).hexdigest()[:12]
    name = Path(job_root.rstrip("/")).name or "job"
    return f"local://{base / f'{name}-{digest}.db'}"


def filesystem_of(path: Path) -> tuple[str, str] | None:
    """(mount point, file system type) of the mount holding ``path``, from /proc/mounts; None if unknown."""
    try:
        lines = MOUNTS.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > len(best[0])):
            best = (mount, fields[2])
    return best


def is_network(fstype: str) -> bool:
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse") or fstype.split(".")[0] in NETWORK_FILESYSTEMS


def warn_if_network(path: Path) -> None:
    """Warn, with the reason, when the queue file ``path`` is on a network file system."""
    found = filesystem_of(path.parent)
    if found is not None and is_network(found[1]):
        mount, fstype = found
        warnings.warn(
            f"embedded queue {path} is on a network file system ({fstype} at {mount}): SQLite's WAL needs"
            " locks and shared memory on one machine and can corrupt the queue or lose messages there;"
            f" put it on local disk (the default is under ~/.cache/rslp/queues, or ${QUEUE_DIR_ENV})",
            NetworkFileSystemWarning,
            stacklevel=3,
        )
