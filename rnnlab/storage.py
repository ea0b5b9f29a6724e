"""Where run directories live: a local path, or a bucket (`gs://BUCKET/...`).

Paths are `etils.epath.Path` (what orbax uses), so one code path writes both. Reading a
gs:// path needs a GCS backend: `pip install "rnnlab[tpu]"` brings gcsfs (or have TensorFlow).
Objects in a bucket cannot be appended to, so `append` rewrites them whole there; the files it
serves (metrics.jsonl, samples.txt) stay small (a line per log interval, a sample per
evaluation).
"""

from __future__ import annotations

import importlib.util
import os

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


def append(p: epath.Path, text: str) -> None:
    """Adds `text` at the end of the file `p` (creating it)."""
    if is_local(p):
        with p.open("a") as f:
            f.write(text)
    else:
        p.write_text((p.read_text() if p.exists() else "") + text)
