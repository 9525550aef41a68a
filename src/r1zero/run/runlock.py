"""One live run per run directory: an exclusive OS lock on ``<run_dir>/.lock``.

Two processes writing one run directory (a job submitted twice, a requeue racing a job still running, a second
terminal) would interleave ``metrics.jsonl`` and overwrite each other's checkpoints. :func:`hold_run_dir` takes an
exclusive ``flock`` on ``<run_dir>/.lock`` before anything in the directory is written and records the holder
(host, pid, start time, SLURM job id) in that file; a second process is refused with one line naming them. The
kernel drops the lock when the holder's process ends however it ends (exit, ``kill -9``, a preempted node's job
killed), so a resumed or requeued run takes it back at once; the file itself stays (removing it would let two
processes lock two different files). Within one process the lock is re-entrant: the Hydra callback
(:class:`r1zero.run.cli.RunDirLockCallback`) and the run it starts share it.

Where it holds: local disks, NFS (Linux turns ``flock`` into NFS byte-range locks: NFSv4, or v3 with lockd),
Lustre mounted with ``-o flock``, GPFS. A filesystem that refuses locks (Lustre ``-o noflock``, NFS without lockd)
is one error line saying so. Lustre ``-o localflock``, NFS mounted ``nolock`` or ``local_lock=flock`` and BeeGFS
without global file locks grant a lock per node only: two runs on different nodes then both get it (docs/design.md).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..schema.errors import RunDirInUseError

__all__ = ["LOCK_NAME", "RunDirLock", "hold_run_dir", "lock_holder"]

LOCK_NAME = ".lock"
#: errnos of a filesystem that cannot lock at all (as opposed to a lock held by another process)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}

_held: dict[str, list] = {}  # resolved run dir -> [fd, holders in this process]


class RunDirLock:
    """This process's hold on a run directory's lock (:func:`hold_run_dir`); :meth:`release` gives it up (once)."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir  # None: locking turned off (paths.lock_run_dir=false)
        self._released = run_dir is None

    def release(self) -> None:
        """Drop this hold; the OS lock goes with the last hold of the process (or when the process ends)."""
        if self._released:
            return
        self._released = True
        entry = _held.get(str(self.run_dir))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[str(self.run_dir)]
            os.close(entry[0])  # closing the last descriptor of the open file releases the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir: str | Path) -> str:
    """The holder recorded in ``<run_dir>/.lock`` as ``pid P on host H, started T[, SLURM job J]``; what the
    file holds if it is not that, or ``not yet recorded`` while the holder is starting."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return "not recorded"
    try:
        info = json.loads(text)
        slurm = f", SLURM job {info['slurm_job_id']}" if info.get("slurm_job_id") else ""
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}{slurm}"
    except (ValueError, KeyError, TypeError):
        return text[:200] or "not yet recorded"


def hold_run_dir(run_dir: str | Path, key: str = "paths.run_dir", enabled: bool = True) -> RunDirLock:
    """Lock ``run_dir`` for this process (creating it), or join the hold this process already has.

    Non-blocking: a directory another live process holds is refused at once. The holder's host, pid, start time
    and SLURM job id are written into ``<run_dir>/.lock`` (read by the refused process, never trusted for the
    decision: only the OS lock decides).

    Args:
        run_dir: the run directory (relative to the current directory when not absolute).
        key: the config key that named it, for the error line (``hydra.run.dir``, ``paths.run_dir``).
        enabled: False (``paths.lock_run_dir=false``): take no lock, return a hold that does nothing.

    Raises:
        RunDirInUseError: another live process holds the lock (one line naming the directory, the holder and what
            to do), or the filesystem refuses locks (one line saying so and how to go on).
        OSError: the directory or the lock file cannot be created (a read-only or full filesystem).
    """
    if not enabled:
        return RunDirLock(None)
    path = Path(run_dir).expanduser().resolve()
    entry = _held.get(str(path))
    if entry is not None:
        entry[1] += 1
        return RunDirLock(path)
    path.mkdir(parents=True, exist_ok=True)
    # no O_TRUNC: a refused process must not wipe the holder's record
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirInUseError(
                f"{key}={path}: in use by another run ({lock_holder(path)}); two runs in one directory overwrite each "
                f"other's metrics and checkpoints; valid: wait for it to end (or stop it), then the same command "
                f"continues the run (resume=auto), or another {key}") from None
        if err.errno in _NO_LOCKS:
            raise RunDirInUseError(
                f"{key}={path}: its filesystem cannot lock {LOCK_NAME} ({err.strerror}), so a second run into it "
                f"could not be refused; valid: a run directory on a filesystem with file locks (local disk, NFSv4 or "
                f"NFSv3 with lockd, Lustre mounted with -o flock), or paths.lock_run_dir=false (then never start two "
                f"runs into one directory)") from None
        raise
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": started,
              "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "argv": sys.argv}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:
        os.close(fd)
        raise
    _held[str(path)] = [fd, 1]
    return RunDirLock(path)

