"""The Task noun: what the batches are, what the model's outputs mean, how they are scored.

A task module (`rnnlab.tasks.lm`, `.synthetic`, ...) has

    check(config)          every error of its config keys, before any data or compute
    build(config) -> Task  loads or generates its data and builds its model
    model(config, record) -> Model   the model alone, from the record a run saved in
                                      vocab.json (for sampling and diagnostics)

and the train loop (`rnnlab.train`) runs any Task the same way: jit the step, log, evaluate,
checkpoint, resume. Everything a Task computes on devices is a pure function of its arguments,
so a batch depends only on (seed, split, index) and a resumed run is bitwise the same.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import data as data_lib
from rnnlab import models


class Task(NamedTuple):
    """A sequence regime built for one config (see the module docstring).

    Attributes:
      model: `init(key)`, `initial_carry(params, batch_shape)` (the carry handed from one train
        step to the next: the LM's streams; `None` where every batch starts afresh), `apply`
        (`rnnlab.models`: one signature for every task).
      data: a dict of host arrays the batches are cut from (train material, the fixed
        valid/test examples). The loop puts it on the devices once and passes it to `batch`
        and `evaluate` as a jit argument.
      row_sharded: the `data` entries whose rows are the batch rows (the LM's B streams): split
        over the devices; the others are replicated.
      batch: `(data, index, key) -> batch`, a pytree of `[B, ...]` arrays: train batch `index`.
        `key` is the trial's own (from its seed), so vmapped trials draw their own batches.
      loss: `(params, carry, batch, key, tap=None) -> (loss, (carry, metrics))`; `metrics` are
        scalar means over the batch, averaged by the loop over each log interval. `key` turns
        on dropout (and sampled feedback).
      evaluate: `(params, data, split, windows, tap=None) -> sums` over the first `windows`
        evaluation batches of `split`: scalar sums and `count` (what each is averaged by);
        other arrays (a confusion matrix) go to `files`. `windows=None`: the whole split
        (every example, every character of a text), which `windows=Part(...)` computes in
        parts.
        `tap` (of both): a diagnostics `rnnlab.layers.Tap`, passed to every `model.apply` (and
        `model.start`) the function makes, so that it watches the model's recurrent layers;
        tapped layers run the sequential path and record it in `tap.paths`. The train loop
        passes none.
      eval_windows: split -> the evaluation batches of a whole pass.
      derive: `(scalars) -> scalars`, adds derived metrics (bpc, perplexity, ...).
      metrics: the names of `loss`'s metrics (the train state sums them).
      best: (metric, "min" | "max"): the validation scalar that picks the best checkpoint.
      record: what vocab.json keeps (the vocabulary, labels), `model(config, record)`'s input.
      fingerprint: a digest of the data: resuming on other data is refused.
      describe: one line for the log.
      throughput: (name, units per train step), e.g. ("chars_per_sec", B * T).
      sample: `(params, key) -> str`, a sample for samples.txt at each evaluation, or None.
      files: `(split, sums) -> {file name: text}` written at the final evaluation, or None.
      whole_windows: split -> the windows of `evaluate(..., None)` where they are not
        `eval_windows` (a language model's whole split, read from other streams).
    """

    model: models.Model
    data: dict[str, Any]
    row_sharded: tuple[str, ...]
    batch: Callable[..., Any]
    loss: Callable[..., Any]
    evaluate: Callable[..., dict[str, jax.Array]]
    eval_windows: dict[str, int]
    derive: Callable[[dict[str, float]], dict[str, float]]
    metrics: tuple[str, ...]
    best: tuple[str, str]
    record: dict[str, Any]
    fingerprint: str
    describe: str
    throughput: tuple[str, int]
    sample: Callable[..., str] | None = None
    files: Callable[..., dict[str, str]] | None = None
    whole_windows: dict[str, int] | None = None


class Part(NamedTuple):
    """Windows `[first, first + count)` of the whole-split evaluation (`Task.evaluate`'s
    `windows`), so that a long one runs in pieces that a signal can stop between. `so_far`:
    the sums the previous part returned (None for the first part); they carry on accumulating,
    so the last part's sums are bitwise those of `evaluate(..., None)`. Windows past the end
    add nothing."""

    first: Any  # an int or a traced scalar: one compiled program serves every part
    count: int
    so_far: Any = None


def fingerprint(arrays: dict[str, np.ndarray], record: dict) -> str:
    """A digest of named arrays and a JSON record."""
    digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode())
    for name in sorted(arrays):
        digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def no_derived(scalars: dict[str, float]) -> dict[str, float]:
    return scalars


def averages(task: Task, sums: dict) -> dict[str, float]:
    """The metrics of evaluation sums (host values): each scalar sum over `count`, derived."""
    count = float(sums["count"])
    return task.derive({k: float(v) / count for k, v in sums.items()
                        if k != "count" and np.ndim(v) == 0})


# ----------------------------------------------------------------------------- datasets


def split_examples(examples: list, d, unit: str) -> dict[str, list]:
    """A seeded split of a list of examples into train, valid and test by
    `data.valid_fraction` / `data.test_fraction`; `data.split_seed` fixes it (the same split for
    every training seed)."""
    order = np.random.default_rng(d.split_seed).permutation(len(examples))
    n_train, n_valid, _ = data_lib.split_sizes(len(examples), d.valid_fraction,
                                               d.test_fraction, unit=unit)
    return {split: [examples[i] for i in rows] for split, rows in
            zip(data_lib.SPLITS, np.split(order, [n_train, n_train + n_valid]))}


def pad_rows(arrays: dict[str, np.ndarray], multiple: int) -> tuple[dict[str, np.ndarray], int]:
    """Pads every array's first axis to a multiple of `multiple` (rows of zeros); also returns
    the number of real rows (the evaluation weights them 1, the padding 0)."""
    n = len(next(iter(arrays.values())))
    total = -(-n // multiple) * multiple
    padded = {k: np.concatenate([v, np.zeros((total - n, *v.shape[1:]), v.dtype)])
              for k, v in arrays.items()}
    padded["weight"] = (np.arange(total) < n).astype(np.float32)
    return padded, n


def shuffled_batch(examples: dict[str, jax.Array], index, key, batch_size: int):
    """Batch `index` of a dataset: epochs of a fresh permutation each (from `key`), in order.

    Pure: the same (index, key) gives the same rows; an epoch's last partial batch is dropped.
    """
    n = next(iter(examples.values())).shape[0]
    per_epoch = n // batch_size
    epoch, position = jnp.divmod(index, per_epoch)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    rows = jax.lax.dynamic_slice(order, (position * batch_size,), (batch_size,))
    return {k: v[rows] for k, v in examples.items()}


def part_windows(windows, total: int):
    """The window indices `windows` (None: all `total`, a count: the first ones, a `Part`) asks
    for, whether each is one (a Part's windows past the end are not), and the sums so far."""
    if isinstance(windows, Part):
        indices = windows.first + jnp.arange(windows.count)
        return indices, indices < total, windows.so_far
    indices = jnp.arange(total if windows is None else windows)
    return indices, jnp.ones(indices.shape, bool), None


def scan_batches(fn, examples: dict[str, jax.Array], batch_size: int, windows):
    """Sums `fn(batch) -> sums` over batches of fixed, padded examples: the first `windows`,
    all of them (None), or a `Part` of them."""
    n = next(iter(examples.values())).shape[0]
    indices, valid, so_far = part_windows(windows, n // batch_size)

    def body(acc, i_valid):
        i, ok = i_valid
        batch = {k: jax.lax.dynamic_slice_in_dim(v, i * batch_size, batch_size)
                 for k, v in examples.items()}
        sums = fn(batch)
        return jax.tree_util.tree_map(lambda a, s: jnp.where(ok, a + s, a), acc, sums), None

    if so_far is None:
        first = jax.eval_shape(fn, {k: v[:batch_size] for k, v in examples.items()})
        so_far = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
    sums, _ = jax.lax.scan(body, so_far, (indices, valid))
    return sums
