"""Character language modelling with truncated BPTT: the train loop of `rnnlab.main`.

Each step takes the next `bptt_len` window of every stream; the carry flows from window to
window inside the train state, through `jax.lax.stop_gradient` (the jit step boundary is the
truncation point). A batch is a pure function of the step, and the state (carry included) is
checkpointed, so a killed run resumes to bitwise the same result.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import re
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import data, metrics as metrics_lib, optim, sample
from rnnlab import model as model_lib
from rnnlab import state as state_lib

# Keys that may differ when a run is resumed: they change bookkeeping, not the computation.
RESUMABLE_KEYS = {
    "train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
    "train.ckpt_every", "train.keep_checkpoints", "train.sample_length",
    "train.sample_temperature", "train.sample_prime", "train.max_nonfinite",
}
SAMPLES_FILE = "samples.txt"
STATUS_FILE = "status.json"
PRIME_CHARS = 32  # samples start from this much of the validation split by default


class DivergenceError(RuntimeError):
    """The loss or a gradient became non-finite."""


def check_train_config(t: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a bad `config.train`, before any compute."""
    for key in ("steps", "batch_size", "bptt_len", "log_every", "eval_every", "ckpt_every",
                "keep_checkpoints", "max_nonfinite"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ValueError(f"train.{key} must be a positive integer, got {t[key]!r}")
    for key in ("eval_batches", "eval_batch_size", "sample_length"):
        if t[key] < 0:
            raise ValueError(f"train.{key} must be >= 0 (0: the default), got {t[key]!r}")
    if t.sample_temperature < 0:
        raise ValueError(f"train.sample_temperature must be >= 0, got {t.sample_temperature}")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Every config error that needs no data or compute, each with what to do."""
    if not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed!r}")
    check_train_config(config.train)
    model_lib.check_model_config(config.model, causal=True)
    optim.check_optim_config(config.optim, config.train.steps)


def _reset(batch_reset, carry_state):
    # Without carry_state every window starts from the initial carry (the stateless baseline).
    return batch_reset if carry_state else batch_reset.at[..., 0].set(True)


def make_train_step(model, tx, bptt_len, num_windows, carry_state):
    """`(state, streams) -> (state, metrics)`, jitted; non-finite updates are not applied."""

    def train_step(state, streams):
        batch = data.get_batch(streams, state.step, bptt_len, num_windows=num_windows)
        reset = _reset(batch["reset"], carry_state)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

        def loss_fn(params):
            carry, logits = model.apply(params, state.carry, batch["inputs"], reset=reset, key=key)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
            return ce.mean(), (carry, logits)

        (loss, (carry, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # Skip the whole update, carry included: a NaN carry would poison every later window.
        # (optax.apply_if_finite guards only the params and optimizer state.)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)

        new_state = state_lib.TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            carry=keep(jax.lax.stop_gradient(carry), state.carry),
            key=state.key,
            nonfinite=state.nonfinite + (~ok).astype(jnp.int32),
            first_nonfinite=jnp.where(
                ok | (state.first_nonfinite >= 0), state.first_nonfinite, state.step
            ),
        )
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["targets"]),
            "grad_norm": grad_norm,
            "lr": optim.current_lr(opt_state),
        }
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=0)


def make_evaluate(model, bptt_len, carry_state):
    """`(params, streams, num_windows, count) -> (loss_sum, correct)` over the first `count`
    windows, carrying the state from window to window, in one compiled scan."""

    @functools.partial(jax.jit, static_argnums=(2, 3))
    def evaluate(params, streams, num_windows, count):
        def body(acc, index):
            carry, loss_sum, correct = acc
            batch = data.get_batch(streams, index, bptt_len, num_windows=num_windows)
            reset = _reset(batch["reset"], carry_state)
            carry, logits = model.apply(params, carry, batch["inputs"], reset=reset)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
            hits = jnp.sum(jnp.argmax(logits, -1) == batch["targets"])
            return (carry, loss_sum + ce.sum(), correct + hits), None

        carry = model.initial_carry(params, (streams.shape[0],))
        init = (carry, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        (_, loss_sum, correct), _ = jax.lax.scan(body, init, jnp.arange(count))
        return loss_sum, correct

    return evaluate


def _streams(ids, batch_size, bptt_len, split):
    try:
        streams = data.make_streams(ids, batch_size)
        return streams, data.num_windows(streams.shape[1], bptt_len)
    except ValueError as e:
        raise ValueError(f"the {split} split: {e}") from e


def _config_diff(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _prepare_workdir(workdir: pathlib.Path, config) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    resolved = json.loads(config.to_json_best_effort())
    path = workdir / "config.json"
    if path.exists():
        changed = [k for k in _config_diff(json.loads(path.read_text()), resolved)
                   if k not in RESUMABLE_KEYS]
        if changed:
            raise ValueError(
                f"{workdir} holds a run with a different config (differs in: "
                f"{', '.join(changed)}); resuming it would mix two experiments. Use a new "
                "--workdir, or rerun with the same config to resume."
            )
    path.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")


def _truncate_samples(path: pathlib.Path, step: int) -> None:
    if not path.exists():
        return
    text = path.read_text()
    for match in re.finditer(r"^=== step (\d+) ", text, flags=re.M):
        if int(match.group(1)) > step:
            path.write_text(text[: match.start()])
            return


def _write_status(workdir, status, step, **extra):
    record = {"status": status, "step": int(step), **extra}
    (workdir / STATUS_FILE).write_text(json.dumps(record) + "\n")


class _StopFlag:
    """Set by SIGTERM (e.g. a TPU VM preemption notice): save, then stop at the next step."""

    def __init__(self):
        self.set = False

    def __call__(self, signum, frame):
        del frame
        logging.warning("received signal %d: saving a checkpoint and stopping", signum)
        self.set = True


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final valid and test metrics."""
    check_config(config)
    workdir = pathlib.Path(workdir)
    t = config.train
    stop = _StopFlag()
    previous_handler = signal.signal(signal.SIGTERM, stop)
    try:
        return _train(config, workdir, stop)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _train(config, workdir, stop):
    t = config.train
    corpus = data.load_corpus(config.data)
    logging.info("data: %s", corpus.description)
    for split, count in corpus.unknown.items():
        if count:
            logging.warning("%s split: %d characters not in the training vocabulary -> <unk>",
                            split, count)
    eval_batch = t.eval_batch_size or t.batch_size
    train_streams, train_windows = _streams(corpus.splits["train"], t.batch_size, t.bptt_len,
                                            "train")
    eval_streams = {
        split: _streams(corpus.splits[split], eval_batch, t.bptt_len, split)
        for split in ("valid", "test")
    }
    _prepare_workdir(workdir, config)
    valid_ids = corpus.splits["valid"]
    default_prime = data.decode(corpus.vocab, valid_ids[:PRIME_CHARS])
    sample.save_vocab(workdir, corpus.vocab, default_prime)
    prime = sample.encode_prime(corpus.vocab, t.sample_prime or default_prime)

    model = model_lib.build_model(config.model, len(corpus.vocab.chars))
    tx = optim.make_optimizer(config.optim, t.steps)
    state = state_lib.init_state(config, model)
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
    ckpt = checkpoint_lib.Checkpointer(workdir, t.keep_checkpoints)
    restored = ckpt.restore(state)
    meta = {"best_valid_bpc": None, "best_step": None}
    if restored is not None:
        state, meta = restored
        logging.info("resuming %s from step %d", workdir, int(state.step))
    step = int(state.step)
    writer = metrics_lib.MetricsWriter(workdir, resume_step=step)
    _truncate_samples(workdir / SAMPLES_FILE, step)
    logging.info("model: %s x%d (%s), %d parameters; %d train windows per pass",
                 config.model.cell, config.model.num_layers, config.model.hidden_size,
                 n_params, train_windows)

    train_step = make_train_step(model, tx, t.bptt_len, train_windows, t.carry_state)
    evaluate = make_evaluate(model, t.bptt_len, t.carry_state)
    device_train = jax.device_put(train_streams)
    device_eval = {split: jax.device_put(s) for split, (s, _) in eval_streams.items()}

    def check_finite():
        nonfinite, first = int(state.nonfinite), int(state.first_nonfinite)
        if nonfinite and (not t.skip_nonfinite or nonfinite > t.max_nonfinite):
            last = ckpt.latest_step()
            kept = f"the last good checkpoint (step {last}) is kept in {workdir / 'ckpt'}" if (
                last is not None) else "no checkpoint had been saved yet"
            _write_status(workdir, "diverged", first, nonfinite=nonfinite)
            raise DivergenceError(
                f"training diverged: non-finite loss or gradient at step {first + 1} "
                f"({nonfinite} such updates so far); {kept}. Lower optim.lr, clip gradients "
                "(optim.clip_norm), or set train.skip_nonfinite=True to skip such updates."
            )

    def run_eval(split, count):
        streams, windows = eval_streams[split]
        loss_sum, correct = evaluate(state.params, device_eval[split], windows, count)
        chars = count * streams.shape[0] * t.bptt_len
        scalars = metrics_lib.lm_scalars(float(loss_sum), float(correct), chars)
        writer.write(step, split, scalars)
        return scalars

    def write_sample():
        if not t.sample_length:
            return
        key = jax.random.fold_in(jax.random.key(config.seed + 1), step)
        tokens = sample.generate(model, state.params, prime, t.sample_length,
                                 temperature=t.sample_temperature, key=key)
        text = data.decode(corpus.vocab, prime) + data.decode(corpus.vocab, np.asarray(tokens))
        with (workdir / SAMPLES_FILE).open("a") as f:
            f.write(f"=== step {step} (temperature {t.sample_temperature}) ===\n{text}\n\n")
        logging.info("sample at step %d: %r", step, text[:160])

    def save(best=False):
        ckpt.save(step, state, meta, best=best)

    pending, timer_start, timer_step, paused = [], time.perf_counter(), step, 0.0
    compiled = False
    try:
        while step < t.steps and not stop.set:
            state, step_metrics = train_step(state, device_train)
            step += 1
            pending.append(step_metrics)
            if not compiled:  # keep compile time out of the rates
                jax.block_until_ready(state.step)
                logging.info("compiled and ran the first step in %.1fs",
                             time.perf_counter() - timer_start)
                timer_start, timer_step, compiled = time.perf_counter(), step, True
            if step % t.log_every == 0 or step == t.steps:
                fetched = jax.device_get(pending)
                check_finite()
                elapsed = time.perf_counter() - timer_start - paused
                rate = (step - timer_step) / elapsed if elapsed > 0 else float("nan")
                scalars = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
                scalars["lr"] = float(fetched[-1]["lr"])
                scalars["bpc"] = scalars["loss"] / math.log(2.0)
                scalars["perplexity"] = math.exp(min(scalars["loss"], 700.0))
                scalars["steps_per_sec"] = rate
                scalars["chars_per_sec"] = rate * t.batch_size * t.bptt_len
                scalars["nonfinite"] = int(state.nonfinite)
                writer.write(step, "train", scalars)
                eta = (t.steps - step) / rate if rate > 0 else float("nan")
                logging.info("step %d/%d  loss %.4f  bpc %.3f  acc %.3f  |g| %.2f  lr %.2e  "
                             "%.1f steps/s  %.0f chars/s  ETA %s", step, t.steps,
                             scalars["loss"], scalars["bpc"], scalars["accuracy"],
                             scalars["grad_norm"], scalars["lr"], rate,
                             scalars["chars_per_sec"], _duration(eta))
                pending, timer_start, timer_step, paused = [], time.perf_counter(), step, 0.0
            if step % t.eval_every == 0 and step < t.steps:
                pause_start = time.perf_counter()
                windows = eval_streams["valid"][1]
                valid = run_eval("valid", min(t.eval_batches or windows, windows))
                check_finite()
                logging.info("step %d  valid bpc %.4f  (best %s)", step, valid["bpc"],
                             meta["best_valid_bpc"])
                if meta["best_valid_bpc"] is None or valid["bpc"] < meta["best_valid_bpc"]:
                    meta = {"best_valid_bpc": valid["bpc"], "best_step": step}
                    save(best=True)
                write_sample()
                paused += time.perf_counter() - pause_start
            if step % t.ckpt_every == 0 and step < t.steps:
                pause_start = time.perf_counter()
                check_finite()
                save()
                paused += time.perf_counter() - pause_start
        check_finite()
        if stop.set:
            save()
            ckpt.wait()
            _write_status(workdir, "interrupted", step)
            logging.warning("stopped at step %d; rerun the same command to resume", step)
            return {}
        results = {}
        for split in ("valid", "test"):
            results[split] = run_eval(split, eval_streams[split][1])
            logging.info("final %s: bpc %.4f  loss %.4f  accuracy %.3f  (%d characters)", split,
                         results[split]["bpc"], results[split]["loss"],
                         results[split]["accuracy"], eval_streams[split][1] * eval_batch
                         * t.bptt_len)
        if meta["best_valid_bpc"] is None or results["valid"]["bpc"] < meta["best_valid_bpc"]:
            meta = {"best_valid_bpc": results["valid"]["bpc"], "best_step": step}
            save(best=True)
        write_sample()
        save()
        ckpt.wait()
        _write_status(workdir, "finished", step, valid_bpc=results["valid"]["bpc"],
                      test_bpc=results["test"]["bpc"], best_valid_bpc=meta["best_valid_bpc"])
        return results
    finally:
        writer.close()
        ckpt.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
