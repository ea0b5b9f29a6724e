"""What went wrong opening or writing a run directory, said in one line: an unusable
directory, or a full disk (with what was being written, the room there was, and what is kept).

The cause is read from the exception's type (an OSError's errno; `checkpoint.WriteError` for a
checkpoint save that failed on a full disk), never from a dependency's message text.
"""

from __future__ import annotations

import errno
import shutil

from rnnlab.run import checkpoint, layout, storage

RunDirError = layout.RunDirError


def os_problem(path, e: OSError) -> RunDirError:
    """The error to raise when `path` cannot be opened as a run directory."""
    if storage.is_disk_full(e):
        return RunDirError(f"the disk is full: cannot write in {path}; free some space and rerun")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return RunDirError(f"cannot write to {path} ({e.strerror}): give this process write "
                           "access, or copy the run to a writable --workdir to resume it there")
    return RunDirError(f"cannot use {path} as a run directory: {e.strerror or e}")


def disk_full(runs: list, error: BaseException, checkpoint_size: int, keep: int) -> str:
    """After a write found the disk full: drops the failed saves' leftovers, marks the runs
    (`rundir.RunDir`s) interrupted (with the space held in reserve), and returns the one
    message to show."""
    free = storage.free_bytes(runs[0].path) if runs else None
    kept = []
    for run in runs:
        if run.ckpt is not None:
            try:
                run.ckpt.wait()
            except Exception:  # noqa: BLE001 - the same full disk, reported here
                pass
            for name in (layout.CKPT_DIR, layout.BEST_DIR):
                for p in (run.path / name).glob("*.orbax-checkpoint-tmp*"):
                    shutil.rmtree(p, ignore_errors=True)
        steps = layout.checkpoint_steps(run.path)
        kept.append(f"step {steps[-1]} in {run.path / layout.CKPT_DIR}" if steps else
                    f"none yet in {run.path}")
        try:
            run.release_reserve()
            run.set_status(layout.INTERRUPTED, steps[-1] if steps else 0, message="disk full")
        except OSError:
            kept[-1] += " (status.json could not be updated)"
    return (f"disk full: {failed_write(error)}. "
            + (f"{free / 2**20:.1f} MiB were free; " if free is not None else "")
            + f"a checkpoint of this run takes about {checkpoint_size / 2**20:.1f} MiB and "
            f"{keep} + 1 are kept. The last checkpoint is intact (" + "; ".join(kept)
            + "). Free some space and rerun the same command to resume.")


def failed_write(error: BaseException) -> str:
    """What a disk-full error was writing, in a few words."""
    cause = storage.full_disk_error(error)
    if cause is None or cause.filename is None:
        return checkpoint.first_line(error)
    if isinstance(cause, checkpoint.WriteError):
        return f"saving the checkpoint {cause.filename} failed"
    return f"writing {cause.filename} failed"
