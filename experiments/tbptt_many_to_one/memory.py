"""The memory of one compiled train step of the tbptt_many_to_one config at each window
length, from XLA's own accounting (`compiled.memory_analysis()`: the temporary buffers the step
needs besides its arguments and outputs), and the step time (median of 20 after warm-up).

    python -m experiments.tbptt_many_to_one.memory [--lengths=200,1000]
"""

import statistics
import time

import jax
from absl import app, flags

from experiments.tbptt_many_to_one import config as experiment
from rnnlab import optim, overrides, state as state_lib, steps, tasks

_LENGTHS = flags.DEFINE_list("lengths", ["200", "1000"], "Sequence lengths T to measure.")


def measure(length: int, bptt_len: int) -> tuple[float, float]:
    config = overrides.apply(experiment.get_config(),
                             {"data.length": length, "train.bptt_len": bptt_len})
    task = tasks.build(config)
    tx = optim.make_optimizer(config.optim, config.train.steps)
    state = state_lib.init_state(config, task.model, tx, task.metrics)
    step = jax.jit(steps.make_train_step(task, tx))
    compiled = step.lower(state, task.data).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
    for _ in range(3):
        state = compiled(state, task.data)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        state = jax.block_until_ready(compiled(state, task.data))
        times.append(time.perf_counter() - start)
    return temp, 1000 * statistics.median(times)


def main(argv):
    del argv
    print("| T | train.bptt_len | temp memory (MiB) | step time (ms) |")
    print("|---:|---:|---:|---:|")
    for length in map(int, _LENGTHS.value):
        for bptt_len in experiment.WINDOWS:
            if bptt_len < length:
                temp, ms = measure(length, bptt_len)
                print(f"| {length} | {bptt_len or 'full'} | {temp:.1f} | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
