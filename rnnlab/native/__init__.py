r"""The native CPU library: oneDNN's RNN primitives (the kernels PyTorch's `nn.LSTM`, `nn.GRU` and
`nn.RNN` run on a CPU) as XLA FFI targets, built from `onednn_rnn.cc` on first use.

It needs a C++ compiler (`c++`, or `$CXX`) and oneDNN's headers and library: the optional extra
`pip install -e ".[native]"` installs them from PyPI (`onednn-devel-cpu-gomp`), or set
`RNNLAB_ONEDNN_ROOT` to a prefix with `include/oneapi/dnnl/dnnl.hpp` and `lib/libdnnl.so` (Debian's
`libdnnl-dev`: `/usr`). The library is compiled once into `$RNNLAB_NATIVE_CACHE` (default
`~/.cache/rnnlab/native`), named by a digest of the source, the flags, the compiler's version and
the oneDNN and jaxlib it was built for, written atomically so that processes building at once
do not see a half-written file. `RNNLAB_NATIVE=0` turns the path off.

`status()` says whether it is in use and, if not, why (`python -m rnnlab.native` prints it).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

SOURCE = pathlib.Path(__file__).with_name("onednn_rnn.cc")
TARGETS = ("rnnlab_rnn_forward", "rnnlab_rnn_backward")
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-Wno-attributes", "-Wno-return-type")


class Unavailable(RuntimeError):
    """The native library cannot be built or loaded here (the message says why)."""


def _onednn_root() -> pathlib.Path:
    candidates = [os.environ.get("RNNLAB_ONEDNN_ROOT"), sys.prefix, "/usr/local", "/usr"]
    for root in filter(None, candidates):
        root = pathlib.Path(root)
        if (root / "include/oneapi/dnnl/dnnl.hpp").exists() and _libdir(root) is not None:
            return root
    raise Unavailable("oneDNN's headers and library were not found: pip install -e \".[native]\" "
                      "(or set RNNLAB_ONEDNN_ROOT to a prefix with include/oneapi/dnnl and "
                      "lib/libdnnl.so)")


def _libdir(root: pathlib.Path) -> pathlib.Path | None:
    for sub in ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
        if (root / sub / "libdnnl.so").exists():
            return root / sub
    return None


def _compiler() -> str:
    if os.environ.get("CXX"):
        if shutil.which(os.environ["CXX"]) is None:
            raise Unavailable(f"the C++ compiler {os.environ['CXX']} (CXX) was not found")
        return os.environ["CXX"]
    cxx = shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise Unavailable("no C++ compiler (c++, g++ or $CXX) to build the native path")
    return cxx


def _command(cxx: str, root: pathlib.Path, out: pathlib.Path) -> list[str]:
    import jax

    lib = _libdir(root)
    return [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", f"-I{root / 'include'}", str(SOURCE),
            f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}", "-o", str(out)]


def _cache_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "rnnlab" / "native"
    return pathlib.Path(os.environ.get("RNNLAB_NATIVE_CACHE") or default)


def library_path() -> pathlib.Path:
    """Where the library for this source, compiler, oneDNN and jaxlib is (built or not)."""
    import jaxlib

    cxx, root = _compiler(), _onednn_root()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(_command(cxx, root, pathlib.Path("x"))).encode(),
                 version.encode(), jaxlib.__version__.encode(),
                 (root / "include/oneapi/dnnl/dnnl_version.h").read_bytes()):
        digest.update(part)
    return _cache_dir() / f"librnnlab_onednn-{digest.hexdigest()[:16]}.so"


def build() -> pathlib.Path:
    """The compiled library, compiled now if the cache has none (atomically; processes that
    start at once, the trials of a sweep, wait for one build rather than each compiling)."""
    path = library_path()
    if path.exists():
        return path
    try:
        import fcntl  # (here, not at the top: rnnlab itself imports on Windows too)
    except ImportError:
        raise Unavailable("the native path builds on Linux and macOS only") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if path.exists():  # built while this process waited
            return path
        _compile(path)
    return path


def _compile(path: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        done = subprocess.run(_command(_compiler(), _onednn_root(), pathlib.Path(tmp)),
                              capture_output=True, text=True)
        if done.returncode:
            raise Unavailable("building the native path failed: "
                              + (done.stderr.strip().splitlines() or ["(no output)"])[-1])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _keep_freed_memory() -> None:
    """glibc hands each freed block over 32 MB back to the system, so the workspace of a
    training forward (40 MB for an LSTM at T = B = 64, H = 128) page-faults afresh at every step:
    that measured 11 ms of a 78 ms forward and backward there. Freed memory is kept for reuse
    instead (thresholds of 1 GiB; the process's peak memory is unchanged)."""
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    for option in (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD):
        libc.mallopt(option, 1 << 30)


def _check_wanted() -> None:
    if os.environ.get("RNNLAB_NATIVE", "1") == "0":
        raise Unavailable("RNNLAB_NATIVE=0 turns the native path off")


@functools.cache
def load() -> ctypes.CDLL:
    """The library, built if needed, its targets registered with XLA (once per process)."""
    _check_wanted()
    import jax

    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise Unavailable(f"the native library does not load ({e}): delete {path} to rebuild "
                          "it") from None
    _keep_freed_memory()
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    lib.rnnlab_workspace_bytes.restype = ctypes.c_int64
    lib.rnnlab_workspace_bytes.argtypes = [ctypes.c_int64] * 7
    return lib


@functools.cache
def status() -> tuple[bool, str]:
    """`(in use, what)`: whether the native path runs in this process (built and loaded on
    first call), and which library or why not."""
    try:
        return True, f"oneDNN through XLA's FFI ({load()._name})"
    except (Unavailable, OSError) as e:
        return False, str(e)


def available() -> bool:
    """The native path can run in this process (building and loading it on first call)."""
    return status()[0]


def workspace_bytes(cell: int, direction: int, L: int, T: int, N: int, C: int, H: int) -> int:
    """The bytes of the workspace a training forward leaves for its backward (`direction`: 0
    left to right, 1 right to left, 2 both concatenated, 3 both summed; `L` layers)."""
    n = load().rnnlab_workspace_bytes(cell, direction, L, T, N, C, H)
    if n < 0:
        raise Unavailable(f"oneDNN has no RNN primitive for cell {cell}, direction {direction} "
                          f"at L={L}, T={T}, N={N}, C={C}, H={H}")
    return n
