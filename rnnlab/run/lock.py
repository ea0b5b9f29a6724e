"""The lock a training process holds on its run directory, and the reserve it keeps there.

The lock (`.lock`, an exclusive flock with the holder's pid inside) means two processes never
write one run; it dies with the process, even on SIGKILL. The reserve (`.reserve`, a few KiB)
is freed when the disk is full, so that status.json can still say so. A bucket has neither:
one run per gs:// workdir.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from rnnlab.run import layout, storage

# Bytes held back in .reserve, freed on a full disk so that status.json can still be written.
RESERVE_BYTES = 64 * 1024


def take(workdir) -> IO:
    """Locks the local run directory `workdir` for this process; returns the open lock file
    (closing it releases the lock).

    Raises:
      RunDirError: another process holds it (the message names its pid).
    """
    path = storage.path(workdir)
    lock = open(path / layout.LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = layout.lock_holder(path)
        lock.close()
        raise layout.RunDirError(f"{path} is in use by another rnnlab process"
                                 + (f" (pid {holder})" if holder else "")
                                 + ": wait for it to end, or stop it first") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def release(lock: IO) -> None:
    """Releases a lock from `take`."""
    lock.truncate(0)  # the pid goes with the lock
    lock.close()


def reserve(workdir) -> None:
    """Holds RESERVE_BYTES back in the local run directory `workdir` (unless the disk is
    already full: then there is nothing to hold back)."""
    path = storage.path(workdir) / layout.RESERVE_FILE
    if not path.exists():
        try:
            storage.write_atomic(path, "\0" * RESERVE_BYTES)
        except OSError:
            pass


def free_reserve(workdir) -> None:
    """Frees the reserve: room for a last status.json on a full disk."""
    (storage.path(workdir) / layout.RESERVE_FILE).unlink(missing_ok=True)
