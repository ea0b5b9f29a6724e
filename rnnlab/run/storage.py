"""Where run directories live (a local path, or a bucket: `gs://BUCKET/...`), and how their
files are written.

Paths are `etils.epath.Path` (what orbax uses), so one code path writes both. Reading a
gs:// path needs a GCS backend: `pip install "rnnlab[tpu]"` brings gcsfs (or have TensorFlow).

Every file of a run directory is written so that a crash at any moment leaves either the old
content or the new, never a mix: `write_atomic` writes a temporary file, fsyncs it and renames it
over the old one (an object write in a bucket is atomic by itself); `append` adds whole lines
with one write. Objects in a bucket cannot be appended to, so `append` rewrites them whole there;
the files it serves (metrics.jsonl, samples.txt) stay small.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil

from etils import epath


class StorageError(RuntimeError):
    """A bucket URL without the package that reaches it."""


def path(workdir: str | os.PathLike) -> epath.Path:
    """`workdir` as a path; `gs://b/x` stays a URL (pathlib would make it `gs:/b/x`)."""
    p = epath.Path(workdir)
    if str(p).startswith("gs://") and not any(
            importlib.util.find_spec(m) for m in ("gcsfs", "tensorflow")):
        raise StorageError(f"{workdir}: a gs:// workdir needs gcsfs; pip install "
                           "'rnnlab[gcs]' (the [tpu] extra has it too)")
    return p


def is_local(p: epath.Path) -> bool:
    return not str(p).startswith(tuple(f"{s}://" for s in ("gs", "s3", "az", "hf")))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(p: epath.Path, text: str | bytes) -> None:
    """Replaces the file `p` by `text` (str or bytes) in one step: a crash leaves the old file
    or the new one."""
    data = text.encode() if isinstance(text, str) else text
    if not is_local(p):
        p.write_bytes(data)
        return
    tmp = f"{p.parent}/.{p.name}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, str(p))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)


def _fsync_dir(directory) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(str(directory), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append(p: epath.Path, text: str) -> None:
    """Adds `text` (whole lines) at the end of the file `p`, creating it, in one write."""
    if not is_local(p):
        p.write_text((p.read_text() if p.exists() else "") + text)
        return
    fd = os.open(str(p), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def full_disk_error(error: BaseException) -> OSError | None:
    """The OSError of a full file system (ENOSPC, or EDQUOT for a full quota) that `error` is
    or was raised from; None when there is none. Orbax and TensorStore report a failed write as
    a plain ValueError: `rnnlab.run.checkpoint` raises it again as ENOSPC when the disk it
    wrote on has less room left than the checkpoint takes."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from, says the file system is full."""
    return full_disk_error(error) is not None


def free_bytes(p: epath.Path) -> int | None:
    """Free bytes on the file system of the local path `p` (or its nearest existing parent)."""
    if not is_local(p):
        return None
    p = os.path.abspath(str(p))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None
