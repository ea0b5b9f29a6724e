"""Test-wide settings: a persistent JAX compilation cache shared by the test process and the
runs it starts (they inherit the environment), so that a program compiled once is loaded, not
compiled again, by the many small runs the tests make."""

import os
import pathlib

CACHE = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
