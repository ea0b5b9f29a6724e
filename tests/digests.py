"""Digests of what a few standard runs compute, to show that a restructuring changed nothing:
the quickstart, addition and classify smoke runs and a 4-trial vmapped sweep, each trained in a
fresh directory; for each run, a digest of its metrics.jsonl lines (timings aside) and one of
its final checkpoint's arrays.

    python tests/digests.py [--out=DIR]

Run it before and after a change on the same machine: equal lines mean bitwise equal runs.
(Not a test: the values depend on the machine's CPU and XLA build.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMINGS = ("steps_per_sec", "chars_per_sec", "examples_per_sec")
RUNS = {
    "quickstart": ["configs/quickstart.py:smoke"],
    "addition": ["configs/addition.py:smoke"],
    "classify": ["configs/classify_text.py:smoke"],
}
SWEEP = """
from launch import dsl

def get_sweep(arg=None):
    return dsl.product(dsl.sweep("seed", [0, 1]), dsl.sweep("optim.lr", [0.003, 0.01]),
                       dsl.fixed("train.steps", 20), dsl.fixed("data.max_chars", 12000),
                       dsl.fixed("model.hidden_size", 16))
"""


def digest(workdir: pathlib.Path) -> tuple[str, str]:
    """(metrics digest, final checkpoint digest) of a run directory."""
    sys.path.insert(0, str(ROOT))
    from rnnlab import checkpoint, layout, optim, sample, tasks
    from rnnlab.train import state as state_lib

    lines = [{k: v for k, v in m.items() if k not in TIMINGS}
             for m in layout.read_metrics(workdir)]
    metrics = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:16]
    config, record = sample.load_run(workdir)
    like = state_lib.init_state(config, tasks.model(config, record), optim.make_optimizer(
        config.optim, config.train.steps), tasks.metric_names(config))
    ckpt = checkpoint.Checkpointer(workdir, 3, read_only=True)
    restored = ckpt.restore(like)
    ckpt.close()
    import jax

    arrays = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(restored.state):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arrays.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return metrics, f"step {restored.step} {arrays.hexdigest()[:16]}"


def main():
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # (orbax: "Given directory is read only")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="Where the runs go (default: a temp dir).")
    out = pathlib.Path(parser.parse_args().out or tempfile.mkdtemp(prefix="digests-"))
    for name, args in RUNS.items():
        subprocess.run([sys.executable, "-m", "rnnlab.main", f"--config={args[0]}",
                        f"--workdir={out / name}"], cwd=ROOT, check=True,
                       capture_output=True)
    (out / "sweep.py").write_text(SWEEP)
    subprocess.run([sys.executable, "-m", "launch.sweep", "--config=configs/quickstart.py:smoke",
                    f"--sweep={out / 'sweep.py'}", f"--workdir={out / 'sweep'}",
                    "--executor=vmap"], cwd=ROOT, check=True, capture_output=True)
    runs = {name: out / name for name in RUNS}
    runs.update({f"sweep/{p.name}": p for p in sorted((out / "sweep" / "trials").iterdir())})
    for name, workdir in runs.items():
        metrics, state = digest(workdir)
        print(f"{name:40s} metrics {metrics}  checkpoint {state}")


if __name__ == "__main__":
    main()
