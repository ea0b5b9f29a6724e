"""Character language modelling with truncated BPTT: the train loop of `rnnlab.main`.

Each step takes the next `bptt_len` window of every stream; the carry flows from window to
window inside the train state, through `jax.lax.stop_gradient` (the jit step boundary is the
truncation point). A batch is a pure function of the step, and the whole state (carry and the
metric sums included) is checkpointed, so a killed run resumes to bitwise the same result.

`train_group` trains several trials that differ only in values (seed, initialisation,
optimizer hyperparameters: `validation.VALUE_KEYS`) as ONE program: their states are stacked on
a leading trial axis and the step is `jax.vmap`ped. Each trial keeps its own run directory, and
a diverging trial stops alone.

Every step is data parallel over all devices (`rnnlab.parallel`): the streams and the carry are
split over them by rows, the rest is replicated. On one device that is the plain program; a
run on N devices (or N hosts after `jax.distributed.initialize()`) matches it to float rounding.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import data, metrics as metrics_lib, optim, parallel, rundir, sample, steps
from rnnlab import stopping, validation
from rnnlab import model as model_lib
from rnnlab import state as state_lib

PRIME_CHARS = 32  # samples start from this much of the validation split by default


class DivergenceError(RuntimeError):
    """The loss or a gradient became non-finite."""


def train(config: ml_collections.ConfigDict, workdir) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final valid and test metrics.

    Raises:
      validation.ConfigError: a bad config; rundir.RunDirError: a workdir that holds another
        experiment or corpus, or is in use.
      data.DataError: the corpus is missing or corrupt.
      DivergenceError: the loss or a gradient became non-finite (the run directory keeps the
        last good checkpoint).
    """
    results = train_group([config], [workdir])[0]
    if results.get("status") == "diverged":
        raise DivergenceError(results["message"])
    return results


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list) -> list[dict]:
    """Trains trials that share a `group_key` as one program; one result dict per trial.

    Each result is `{"valid": scalars, "test": scalars, "status": "finished"}`, or
    `{"status": "diverged" | "interrupted", ...}`.
    """
    for config in configs:
        validation.check_config(config)
    if len({validation.group_key(c) for c in configs}) > 1:
        raise validation.ConfigError(
            "these trials differ in more than seed, init and optimizer values; split them with "
            "split_groups"
        )
    with stopping.on_signals() as stop:
        return _Group(configs, workdirs, stop).run()


def _streams(ids, batch_size, bptt_len, split):
    try:
        streams = data.make_streams(ids, batch_size)
        return streams, data.num_windows(streams.shape[1], bptt_len)
    except ValueError as e:
        raise validation.ConfigError(f"the {split} split: {e}") from e


class _Group:
    """The loop over steps for K trials (K = 1: a plain run, not vmapped)."""

    def __init__(self, configs, workdirs, stop):
        self.configs, self.stop = configs, stop
        c = configs[0]
        self.t = t = c.train
        corpus = data.load_corpus(c.data)
        logging.info("data: %s", corpus.description)
        for split, n in corpus.unknown.items():
            if n:
                logging.warning("%s split: %d characters not in the vocabulary -> unknown", split, n)
        self.vocab = corpus.vocab
        self.eval_batch = t.eval_batch_size or t.batch_size
        for name, size in (("train.batch_size", t.batch_size),
                           ("train.eval_batch_size", self.eval_batch)):
            if (problem := parallel.check_batch(name, size)) is not None:
                raise validation.ConfigError(problem)
        train_streams, self.train_windows = _streams(corpus.splits["train"], t.batch_size,
                                                     t.bptt_len, "train")
        self.eval_streams = {s: _streams(corpus.splits[s], self.eval_batch, t.bptt_len, s)
                             for s in ("valid", "test")}
        default_prime = data.decode(corpus.vocab, corpus.splits["valid"][:PRIME_CHARS])
        self.prime = sample.encode_prime(corpus.vocab, t.sample_prime or default_prime)
        self.runs = []
        try:
            for config, workdir in zip(configs, workdirs):
                self.runs.append(rundir.RunDir(workdir, config, primary=parallel.is_primary()))
                self.runs[-1].check_corpus(corpus, default_prime)
                if (problem := parallel.check_shared(self.runs[-1].path)) is not None:
                    raise rundir.RunDirError(problem)
        except Exception:
            self.close()
            raise
        V = len(corpus.vocab.chars)
        self.model = model_lib.build_model(c.model, V)  # apply is the same for every trial
        self.tx = optim.make_optimizer(c.optim, t.steps)  # so is update: values are in states
        self.mesh = parallel.make_mesh()
        rows = parallel.split(self.mesh, 0)
        self.device_train = parallel.put(train_streams, rows)
        self.device_eval = {s: parallel.put(st, rows) for s, (st, _) in self.eval_streams.items()}
        self.evals = {}

    def close(self):
        for run in self.runs:
            run.close()

    def _initial_states(self, todo):
        """Each trial's own init (its seed, init and hyperparameters), restored where saved."""
        V = len(self.vocab.chars)
        fresh, restored = [], []
        for i in todo:
            config = self.configs[i]
            model = model_lib.build_model(config.model, V)
            state = state_lib.init_state(config, model,
                                         optim.make_optimizer(config.optim, self.t.steps))
            # Restoring onto a sharded state restores sharded (also onto another device count).
            fresh.append(parallel.put(state, parallel.state_shardings(state, self.mesh, 0)))
            restored.append(self.runs[i].restore(fresh[-1]))
        saved = [r is not None for r in restored]
        if all(saved) and len({int(r[0].step) for r in restored}) == 1:
            return [r[0] for r in restored], [r[1] for r in restored]
        if any(saved):  # killed at different moments: go back to a step all of them kept
            common = set.intersection(*(set(self.runs[i].saved_steps()) for i in todo))
            if common:
                step = max(common)
                logging.warning("trials saved at different steps; resuming all from %d", step)
                restored = [self.runs[i].restore(s, step=step) for i, s in zip(todo, fresh)]
                return [r[0] for r in restored], [r[1] for r in restored]
            logging.warning("trials share no checkpoint step: starting them all again")
        return fresh, [{"best_valid_bpc": None, "best_step": None} for _ in todo]

    def run(self) -> list[dict]:
        try:
            return self._run()
        finally:
            self.close()

    def _run(self):
        t, runs = self.t, self.runs
        results: list[dict | None] = [None] * len(runs)
        todo = []
        for i, run in enumerate(runs):
            status = run.status() or {}
            # A result already: rerunning must not write it twice (nor re-diverge; a finished
            # run whose train.steps grew goes on).
            if status.get("status") == "diverged" or (
                status.get("status") == "finished" and status["step"] >= t.steps
            ):
                results[i] = status
            else:
                todo.append(i)
        if not todo:
            return results
        states, metas = self._initial_states(todo)
        step = int(states[0].step)
        if step:
            logging.info("resuming %d trial(s) from step %d", len(todo), step)
        for i in todo:
            runs[i].open_logs(step)
            runs[i].set_status("running", step, num_params=self._num_params(states[0]))
        self.todo, self.metas, self.step = todo, dict(zip(todo, metas)), step
        self.active = set(todo)
        self.vmapped = vmapped = len(todo) > 1
        # Trials stack on a leading axis, so the carry's rows (streams) move to axis 1.
        self.shardings = parallel.state_shardings(states[0], self.mesh, 1 if vmapped else 0)
        state = jax.jit(lambda *s: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *s),
                        out_shardings=self.shardings)(*states) if vmapped else states[0]
        logging.info("model: %s x%d (%s), %d parameters, %d trial(s)%s; %d train windows/pass; "
                     "%d streams on each of %d devices", self.configs[0].model.cell,
                     self.configs[0].model.num_layers, self.configs[0].model.hidden_size,
                     self._num_params(states[0]), len(todo), " vmapped" if vmapped else "",
                     self.train_windows, t.batch_size // jax.device_count(), jax.device_count())
        step_fn = steps.make_train_step(self.model, self.tx, t.bptt_len, self.train_windows,
                                        t.carry_state)
        train_step = jax.jit(jax.vmap(step_fn, in_axes=(0, None)) if vmapped else step_fn,
                             in_shardings=(self.shardings, self.device_train.sharding),
                             out_shardings=self.shardings, donate_argnums=0)
        timer, timer_step, paused, compiled = time.perf_counter(), step, 0.0, False
        while step < t.steps and not self.stop.at(step) and self.active:
            state = train_step(state, self.device_train)
            step = self.step = step + 1
            if not compiled:  # keep compile time out of the rates
                jax.block_until_ready(state.step)
                logging.info("compiled and ran the first step in %.1fs", time.perf_counter() - timer)
                timer, timer_step, compiled = time.perf_counter(), step, True
            if step % t.log_every == 0 or step == t.steps:
                jax.block_until_ready(state)  # steps run asynchronously: wait, then time
                elapsed = time.perf_counter() - timer - paused
                rate = (step - timer_step) / elapsed if elapsed > 0 else float("nan")
                state = self._log_train(state, rate)
                timer, timer_step, paused = time.perf_counter(), step, 0.0
            if step % t.eval_every == 0 and step < t.steps and self.active:
                start = time.perf_counter()
                self._check_finite(state)
                self._evaluate(state, final=False)
                paused += time.perf_counter() - start
            if step % t.ckpt_every == 0 and step < t.steps and self.active:
                start = time.perf_counter()
                self._check_finite(state)
                self._save_all(state)
                paused += time.perf_counter() - start
        self._check_finite(state)
        if self.stop.set:
            self._save_all(state)
            for i in self.active:
                runs[i].set_status("interrupted", step)
                results[i] = {"status": "interrupted", "step": step}
            logging.warning("stopped at step %d; rerun the same command to resume", step)
        elif self.active:
            final = self._evaluate(state, final=True)
            self._save_all(state)
            for i in self.active:
                results[i] = {"status": "finished", "step": step, **final[i]}
                runs[i].set_status("finished", step, num_params=self._num_params(states[0]),
                                   best_valid_bpc=self.metas[i]["best_valid_bpc"], **final[i])
        for i in todo:
            if results[i] is None:
                results[i] = runs[i].status()
        return results

    def _num_params(self, state):
        return int(sum(p.size for p in jax.tree_util.tree_leaves(state.params)))

    def _of(self, tree, k):
        """Trial `todo[k]`'s slice of the (maybe stacked) state or params."""
        return jax.tree_util.tree_map(lambda a: a[k], tree) if self.vmapped else tree

    def _log_train(self, state, rate):
        sums, nonfinite = jax.device_get((state.sums, state.nonfinite))
        lr = np.asarray(jax.device_get(optim.current_lr(state.opt_state)))
        self._check_finite(state)
        t = self.t
        for k, i in enumerate(self.todo):
            if i not in self.active:
                continue
            trial_sums = self._of(sums, k)
            count = max(int(trial_sums["count"]), 1)
            scalars = {name: float(trial_sums[name]) / count for name in state_lib.SUMS}
            scalars.update(
                bpc=scalars["loss"] / math.log(2.0),
                perplexity=math.exp(min(scalars["loss"], 700.0)),
                lr=float(lr[k] if self.vmapped else lr),
                nonfinite=int(np.atleast_1d(nonfinite)[k]),
                steps_per_sec=rate,
                chars_per_sec=rate * t.batch_size * t.bptt_len,
            )
            self.runs[i].write(self.step, "train", scalars)
            if k == 0 or len(self.todo) <= 4:
                eta = (t.steps - self.step) / rate if rate > 0 else float("nan")
                logging.info("%sstep %d/%d  loss %.4f  bpc %.3f  acc %.3f  |g| %.2f  lr %.2e  "
                             "%.1f steps/s  %.0f chars/s  ETA %s", self._tag(i), self.step, t.steps,
                             scalars["loss"], scalars["bpc"], scalars["accuracy"],
                             scalars["grad_norm"], scalars["lr"], rate, scalars["chars_per_sec"],
                             _duration(eta))
        zeros = state_lib.zero_sums()
        if self.vmapped:
            zeros = jax.tree_util.tree_map(lambda z: jnp.zeros((len(self.todo),), z.dtype), zeros)
        return state._replace(sums=parallel.put(zeros, self.shardings.sums))

    def _tag(self, i):
        return f"[{self.runs[i].path.name}] " if self.vmapped else ""

    def _check_finite(self, state):
        """Stops each trial whose loss went non-finite (unless skipping), naming the step."""
        t = self.t
        nonfinite, first = (np.atleast_1d(a) for a in jax.device_get(
            (state.nonfinite, state.first_nonfinite)))
        for k, i in enumerate(self.todo):
            n = int(nonfinite[k])
            if i not in self.active or not n or (t.skip_nonfinite and n <= t.max_nonfinite):
                continue
            run = self.runs[i]
            last = run.ckpt.latest_step()
            kept = (f"the last good checkpoint (step {last}) is kept in {run.path / 'ckpt'}"
                    if last is not None else "no checkpoint had been saved yet")
            message = (f"{self._tag(i)}training diverged: non-finite loss or gradient at step "
                       f"{int(first[k]) + 1} ({n} such updates so far); {kept}. Lower optim.lr, "
                       "clip gradients (optim.clip_norm), or set train.skip_nonfinite=True to "
                       "skip such updates.")
            logging.error("%s", message)
            run.set_status("diverged", int(first[k]) + 1, nonfinite=n, message=message)
            self.active.discard(i)

    def _eval_fn(self, split, count):
        # One compile per (split, window count): a fresh closure each time would recompile.
        if (split, count) not in self.evals:
            windows = self.eval_streams[split][1]
            fn = steps.make_evaluate(self.model, self.t.bptt_len, self.t.carry_state, windows,
                                     count)
            self.evals[split, count] = jax.jit(
                jax.vmap(fn, in_axes=(0, None)) if self.vmapped else fn,
                out_shardings=parallel.replicated(self.mesh),
            )
        return self.evals[split, count]

    def _scores(self, state, split, count):
        loss_sum, correct = jax.device_get(self._eval_fn(split, count)(
            state.params, self.device_eval[split]))
        chars = count * self.eval_batch * self.t.bptt_len
        return [metrics_lib.lm_scalars(float(np.atleast_1d(loss_sum)[k]),
                                       float(np.atleast_1d(correct)[k]), chars)
                for k in range(len(self.todo))]

    def _evaluate(self, state, *, final):
        """Valid over `eval_batches` windows (best checkpoint, sample); at the end also the
        whole valid split (if that was capped) and the whole test split."""
        t, windows = self.t, self.eval_streams["valid"][1]
        capped = min(t.eval_batches or windows, windows)
        valid = self._scores(state, "valid", capped)
        extra = {}
        if final:
            extra["test"] = self._scores(state, "test", self.eval_streams["test"][1])
            if capped < windows:
                extra["valid_full"] = self._scores(state, "valid", windows)
        out = {}
        # Replicated, so every process holds them whole; sampling runs on the host's device.
        sampling = self.t.sample_length and parallel.is_primary()
        params = jax.device_get(state.params) if sampling else None
        for k, i in enumerate(self.todo):
            if i not in self.active:
                continue
            run, meta = self.runs[i], self.metas[i]
            run.write(self.step, "valid", valid[k])
            for split, scores in extra.items():
                run.write(self.step, split, scores[k])
            logging.info("%sstep %d  valid bpc %.4f  (best %s)", self._tag(i), self.step,
                         valid[k]["bpc"], meta["best_valid_bpc"])
            if meta["best_valid_bpc"] is None or valid[k]["bpc"] < meta["best_valid_bpc"]:
                self.metas[i] = {"best_valid_bpc": valid[k]["bpc"], "best_step": self.step}
                run.save(self.step, self._of(state, k), self.metas[i], best=True)
            self._sample(params, k, i)
            out[i] = {"valid": extra.get("valid_full", valid)[k]}
            if final:
                out[i]["test"] = extra["test"][k]
                logging.info("%sfinal: valid bpc %.4f, test bpc %.4f", self._tag(i),
                             out[i]["valid"]["bpc"], out[i]["test"]["bpc"])
        return out

    def _sample(self, params, k, i):
        t = self.t
        if params is None:  # no samples asked for, or not process 0 (which writes them)
            return
        key = jax.random.fold_in(jax.random.key(self.configs[i].seed + 1), self.step)
        tokens = sample.generate(self.model, self._of(params, k), self.prime,
                                 t.sample_length, temperature=t.sample_temperature, key=key)
        text = data.decode(self.vocab, self.prime) + data.decode(self.vocab, np.asarray(tokens))
        self.runs[i].write_sample(self.step, t.sample_temperature, text)
        if k == 0:
            logging.info("%ssample at step %d: %r", self._tag(i), self.step, text[:160])

    def _save_all(self, state):
        for k, i in enumerate(self.todo):
            if i in self.active:
                self.runs[i].save(self.step, self._of(state, k), self.metas[i])


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
