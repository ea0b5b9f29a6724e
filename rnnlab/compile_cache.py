"""A persistent compilation cache for everything rnnlab runs, so that a program compiled once on
a machine (a train step, an evaluation) is loaded, not compiled again, by the next run of the
same shapes: a resumed run, the trials of a sweep, a rerun with another seed.

`enable()` points JAX's cache at `$JAX_COMPILATION_CACHE_DIR` when set (JAX reads it itself),
else at `$RNNLAB_CACHE_DIR/jax`, else `~/.cache/rnnlab/jax`; `RNNLAB_COMPILATION_CACHE=0` turns
it off. Entries are keyed by the program, the backend and the JAX version, so a stale entry is
never used; the cache can be deleted at any time. A cache that cannot be read or written (a
corrupt entry, a full disk, no permission) costs a warning and a compile, not the run (JAX
goes on without it; tested).
"""

from __future__ import annotations

import os
import pathlib

import jax


def default_dir() -> pathlib.Path:
    root = os.environ.get("RNNLAB_CACHE_DIR") or "~/.cache/rnnlab"
    return pathlib.Path(root).expanduser() / "jax"


def enable() -> str | None:
    """Turns the cache on (unless switched off); returns its directory, or None."""
    if os.environ.get("RNNLAB_COMPILATION_CACHE", "1") == "0":
        return None
    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(default_dir())
    jax.config.update("jax_compilation_cache_dir", directory)
    # Small programs too (JAX's default caches only compiles over one second): a run's
    # evaluation and sampling programs take a fraction of a second each, and add up.
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return directory
