"""Test-wide settings, inherited by the runs the tests start (through the environment):

- a persistent JAX compilation cache, so that a program compiled once is loaded, not compiled
  again, by the many small runs the tests make;
- XLA:CPU's fast-compile settings (no backend optimisation, no expensive LLVM passes, the
  classic elemental emitters for fusions instead of the MLIR fusion emitters, and each program
  compiled as one LLVM module rather than split for parallel codegen): the suite's programs are
  tiny and compiling them is most of its time. The semantics are the same and every claim the
  tests make (equalities, bitwise reproducibility, memory bounds) holds for either setting.
  Measured cold (an empty cache): the first two cut 24% of tests/test_train.py's time; the last
  two took tests/test_fused.py from 98 to 42 s of CPU and the whole suite from 25.5 to 18.6
  minutes (2,890 -> 2,077 s of CPU, 2 cores). Set XLA_FLAGS yourself to test under other
  settings."""

import os
import pathlib
import threading

CACHE = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
FAST_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1")
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE)


def pytest_configure(config):
    # The native CPU path (rnnlab.native) is built on first use (10 s on a fresh machine): start
    # it here, while the xdist workers start and collect; a worker that needs it first waits for
    # this build (`native.build` takes a file lock) rather than compiling it again. A failed
    # build is reported by the tests that use the native path (each worker tries it again).
    if not hasattr(config, "workerinput"):
        from rnnlab import native

        threading.Thread(target=_build_quietly, args=(native,), daemon=True).start()


def _build_quietly(native):
    try:
        native.build()
    except (native.Unavailable, OSError):
        pass
