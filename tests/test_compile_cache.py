"""The persistent compilation cache of rnnlab's commands (`rnnlab.compile_cache`)."""

import os
import subprocess
import sys

PROGRAM = """
import jax, jax.numpy as jnp
from rnnlab import compile_cache
print(compile_cache.enable())
jax.jit(lambda x: jnp.tanh(x) @ x)(jnp.ones((64, 64))).block_until_ready()
"""


def run(env, stderr=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "RNNLAB_"))} | env
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # (the tiny program compiles fast)
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                         text=True, check=True)
    if stderr is not None:
        stderr.append(out.stderr)
    return out.stdout.strip()


def test_commands_cache_compiled_programs_where_asked(tmp_path):
    # default place: under RNNLAB_CACHE_DIR (else ~/.cache/rnnlab), and the program lands there
    assert run({"RNNLAB_CACHE_DIR": str(tmp_path)}) == str(tmp_path / "jax")
    assert list((tmp_path / "jax").iterdir())
    # JAX's own variable wins; RNNLAB_COMPILATION_CACHE=0 turns caching off
    assert run({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "own")}) == str(tmp_path / "own")
    assert list((tmp_path / "own").iterdir())
    assert run({"RNNLAB_COMPILATION_CACHE": "0", "RNNLAB_CACHE_DIR": str(tmp_path / "off")}) \
        == "None"
    assert not (tmp_path / "off").exists()


def test_a_corrupt_or_unwritable_cache_costs_a_compile_not_the_run(tmp_path):
    assert run({"RNNLAB_CACHE_DIR": str(tmp_path)}) == str(tmp_path / "jax")
    entries = [p for p in (tmp_path / "jax").rglob("*") if p.is_file()]
    assert entries
    for p in entries:  # garbage where the compiled program was
        p.write_bytes(b"not an executable")
    warnings = []
    assert run({"RNNLAB_CACHE_DIR": str(tmp_path)}, warnings) == str(tmp_path / "jax")
    assert "Error reading persistent compilation cache entry" in warnings[-1]
    blocked = tmp_path / "file"  # the cache directory cannot be made: a file is in the way
    blocked.write_text("")
    assert run({"RNNLAB_CACHE_DIR": str(blocked)}, warnings) == str(blocked / "jax")
    assert "Error" in warnings[-1] and "persistent compilation cache" in warnings[-1]
