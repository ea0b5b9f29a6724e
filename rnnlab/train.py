"""The train loop of `rnnlab.main`: the same for every task (`rnnlab.tasks`).

Each step is one jitted update of the train state (`rnnlab.steps`); around it the loop logs,
evaluates (and samples) and checkpoints at their intervals, and stops cleanly on SIGTERM. A
batch is a pure function of the step and the whole state (the carry and the metric sums
included) is checkpointed, so a killed run resumes to bitwise the same result (`rnnlab.resume`).

`train_group` trains several trials that differ only in values (seed, initialisation,
optimizer hyperparameters: `validation.VALUE_KEYS`) as ONE program: their states are stacked on
a leading trial axis and the step is `jax.vmap`ped. Each trial keeps its own run directory, and
a diverging trial stops alone.

Every step is data parallel over all devices (`rnnlab.parallel`): the batch rows (and the carry)
are split over them, the rest is replicated. On one device that is the plain program; a run on
N devices (or N hosts after `jax.distributed.initialize()`) matches it to float rounding.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import diagnostics, layout, optim, parallel, resume, rundir, steps, stopping
from rnnlab import storage, tasks, validation
from rnnlab import state as state_lib


# The final evaluation scores each split in parts of this many windows (batches), so that a
# signal stops it within seconds, not after the whole of a long split.
PART_WINDOWS = 64


class DivergenceError(RuntimeError):
    """The loss or a gradient became non-finite."""


class DiskFullError(RuntimeError):
    """The file system of the run directory is full; the last committed checkpoint is intact."""


def train(config: ml_collections.ConfigDict, workdir) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final valid and test metrics.

    Raises:
      validation.ConfigError: a bad config; rundir.RunDirError: a workdir that holds another
        experiment or data, is in use or unusable.
      data.DataError: the data is missing or corrupt.
      DivergenceError: the loss or a gradient became non-finite (the run directory keeps the
        last good checkpoint).
      DiskFullError: the disk filled up (the last committed checkpoint is intact; status
        "interrupted").
      stopping.Interrupted: SIGTERM or Ctrl-C before training began.
    """
    results = train_group([config], [workdir])[0]
    if results.get("status") == layout.DIVERGED:
        raise DivergenceError(results["message"])
    return results


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list) -> list[dict]:
    """Trains trials that share a `group_key` as one program; one result dict per trial.

    Each result is `{"status": "finished", "step": N, "valid": scalars, "test": scalars, ...}`
    (what status.json says), or `{"status": "diverged" | "interrupted", ...}`.
    """
    for config in configs:
        validation.check_config(config)
    if len({validation.group_key(c) for c in configs}) > 1:
        raise validation.ConfigError(
            "these trials differ in more than seed, init and optimizer values; split them with "
            "split_groups"
        )
    with stopping.on_signals() as stop:
        loop = _Loop(configs, workdirs, stop)
        try:
            return loop.run()
        except Exception as e:
            if storage.is_disk_full(e):
                raise DiskFullError(rundir.disk_full(
                    [trial.run for trial in loop.trials], e, loop.checkpoint_bytes,
                    configs[0].train.keep_checkpoints)) from None
            raise
        finally:
            loop.close()


class _Trial:
    """One trial of the group: its config, run directory, best score so far and outcome."""

    def __init__(self, config, run):
        self.config, self.run = config, run
        self.meta: dict = {}  # {"best_valid_<metric>": value, "best_step": step}
        self.result: dict | None = None
        self.active = True  # training (not a result, not diverged)


class _Loop:
    """The loop over steps for K trials (K = 1: a plain run, not vmapped)."""

    def __init__(self, configs, workdirs, stop):
        self.stop, self.t, self.trials = stop, configs[0].train, []
        self.checkpoint_bytes = 0
        try:
            self._set_up(configs, workdirs)
        except BaseException:
            self.close()
            raise

    def _set_up(self, configs, workdirs):
        try:
            self.task = tasks.build(configs[0])
        except ValueError as e:  # data too short for its splits or windows, bad fractions
            raise validation.ConfigError(str(e)) from e
        for config in configs[1:]:  # the size model.param_budget chose, for every trial
            config.model.hidden_size = configs[0].model.hidden_size
        logging.info("%s", self.task.describe)
        for name, size in (("train.batch_size", self.t.batch_size),
                           ("train.eval_batch_size", self.t.eval_batch_size or self.t.batch_size)):
            if (problem := parallel.check_batch(name, size)) is not None:
                raise validation.ConfigError(problem)
        for config, workdir in zip(configs, workdirs):
            run = rundir.RunDir(workdir, config, primary=parallel.is_primary())
            self.trials.append(_Trial(config, run))
            run.check_data(self.task.fingerprint, self.task.record)
            if (problem := parallel.check_shared(run.path)) is not None:
                raise rundir.RunDirError(problem)
        self.tx = optim.make_optimizer(configs[0].optim, self.t.steps)  # values are in states
        self.mesh = parallel.make_mesh()
        self.rows = parallel.split(self.mesh, 0)
        self.data = {k: parallel.put(v, self.rows if k in self.task.row_sharded
                                     else parallel.replicated(self.mesh))
                     for k, v in self.task.data.items()}
        self.evals, self.flow = {}, None
        self.best_key = f"best_valid_{self.task.best[0]}"

    def close(self):
        for trial in self.trials:
            trial.run.close()

    # --------------------------------------------------------------------------- set-up

    def _start(self):
        """The stacked state of the trials to train (None when every trial is done)."""
        for trial in self.trials:  # a diverged run is a result: rerunning would re-diverge
            status = trial.run.status() or {}
            if status.get("status") == layout.DIVERGED:
                trial.result, trial.active = status, False
        runs = {i: tr.run for i, tr in enumerate(self.trials) if tr.active}
        fresh = {i: resume.fresh_state(self.trials[i].config, self.task, self.mesh) for i in runs}
        if fresh:
            self.checkpoint_bytes = rundir.checkpoint_bytes(next(iter(fresh.values())))
        done, starts = resume.starts(runs, fresh, self.t.steps,
                                     {self.best_key: None, "best_step": None})
        for i, result in done.items():
            self.trials[i].result, self.trials[i].active = result, False
            name = self.task.best[0]
            scores = ", ".join(f"{split} {name} {result[split][name]:.4f}"
                               for split in ("valid", "test") if name in result.get(split, {}))
            logging.info("%s is finished (step %d of %d%s): its results are in status.json and "
                         "metrics.jsonl there; to train it again, use another --workdir or "
                         "remove this one", runs[i].path, result.get("step", self.t.steps),
                         self.t.steps, f"; {scores}" if scores else "")
        self.todo = [self.trials[i] for i in starts]
        if not self.todo:
            return None
        for trial, start in zip(self.todo, starts.values()):
            trial.meta = start.meta
        states = [start.state for start in starts.values()]
        self.step = step = int(states[0].step)
        self.stop.arm()  # from here a signal means: save a checkpoint, then stop
        if step:
            logging.info("resuming %d trial(s) from step %d", len(self.todo), step)
        self.num_params = int(sum(p.size for p in jax.tree_util.tree_leaves(states[0].params)))
        for trial in self.todo:
            trial.run.open_logs(step)
            trial.run.set_status(layout.RUNNING, step, num_params=self.num_params)
        self.vmapped = len(self.todo) > 1
        if self.vmapped:
            self._record_group()
        # Trials stack on a leading axis, so the carry's rows (streams) move to axis 1.
        self.shardings = parallel.state_shardings(states[0], self.mesh, 1 if self.vmapped else 0)
        m = self.todo[0].config.model
        logging.info("model: %s x%d (%s), %d parameters, %d trial(s)%s; %d streams on each of %d "
                     "devices", m.cell, m.num_layers, m.hidden_size, self.num_params,
                     len(self.todo), " vmapped" if self.vmapped else "",
                     self.t.batch_size // jax.device_count(), jax.device_count())
        if not self.vmapped:
            return states[0]
        return jax.jit(lambda *s: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *s),
                       out_shardings=self.shardings)(*states)

    def _record_group(self):
        """Each vmapped trial's group.json: batched reductions round differently, so the
        trial alone matches it to float rounding only; the group's command reproduces it."""
        command = "python -m rnnlab.main " + shlex.join(sys.argv[1:])
        for trial in self.todo:
            trial.run.write_file(layout.GROUP_FILE, json.dumps({
                "trained_with": [str(other.run.path) for other in self.todo],
                "command": os.environ.get("RNNLAB_SWEEP_COMMAND", command),
                "note": "trained as one vmapped program with the trials listed: rerun this "
                        "command (the same trials together) to reproduce it bitwise; alone, "
                        "its own command reproduces it to float rounding"}, indent=1) + "\n")

    # ------------------------------------------------------------------------------ loop

    def run(self) -> list[dict]:
        state = self._start()
        if state is not None:
            state = self._train(state)
            self._check_finite(state)
            if self.stop.set:
                self._interrupt(state)
            elif self.active:
                self._finish(state)
        return [trial.result or trial.run.status() for trial in self.trials]

    @property
    def active(self):
        return [trial for trial in self.todo if trial.active]

    def _train(self, state):
        t, step = self.t, self.step
        step_fn = steps.make_train_step(
            self.task, self.tx, lambda batch: parallel.constrain_rows(batch, self.mesh))
        train_step = jax.jit(jax.vmap(step_fn, in_axes=(0, None)) if self.vmapped else step_fn,
                             in_shardings=(self.shardings, _shardings(self.data)),
                             out_shardings=self.shardings, donate_argnums=0)
        timer, timer_step, paused, compiled = time.perf_counter(), step, 0.0, False
        while step < t.steps and not self.stop.at(step) and self.active:
            state = train_step(state, self.data)
            step = self.step = step + 1
            if not compiled:  # keep compile time out of the rates
                jax.block_until_ready(state.step)
                logging.info("compiled and ran the first step in %.1fs",
                             time.perf_counter() - timer)
                timer, timer_step, compiled = time.perf_counter(), step, True
            if step % t.log_every == 0 or step == t.steps:
                jax.block_until_ready(state)  # steps run asynchronously: wait, then time
                elapsed = time.perf_counter() - timer - paused
                rate = (step - timer_step) / elapsed if elapsed > 0 else float("nan")
                state = self._log(state, rate)
                timer, timer_step, paused = time.perf_counter(), step, 0.0
            for every, action in ((t.eval_every, self._evaluate), (t.ckpt_every, self._save)):
                if step % every == 0 and step < t.steps and self.active:
                    start = time.perf_counter()
                    self._check_finite(state)
                    action(state)
                    paused += time.perf_counter() - start
        return state

    def _interrupt(self, state):
        self._save(state)
        self._commit()
        for trial in self.active:
            trial.run.set_status(layout.INTERRUPTED, self.step)
            trial.result = {"status": layout.INTERRUPTED, "step": self.step}
        logging.warning("stopped at step %d; rerun the same command to resume", self.step)

    def _finish(self, state):
        final = self._evaluate(state, final=True)
        if final is None:  # a signal during the final evaluation: a rerun does it
            self._interrupt(state)
            return
        for trial in self.active:  # what status.json will say, kept in the final checkpoint too
            trial.result = {"status": layout.FINISHED, "step": self.step,
                            "num_params": self.num_params, **trial.meta, **final[trial]}
        self._save(state, final=True)
        self._commit()  # "finished" only once everything it reports is on disk
        for trial in self.active:
            trial.run.set_status(**trial.result)

    def _commit(self):
        for trial in self.todo:
            trial.run.commit()

    # ---------------------------------------------------------------- periodic actions

    def _of(self, tree, trial):
        """The trial's slice of the (maybe stacked) state or params."""
        if not self.vmapped:
            return tree
        k = self.todo.index(trial)
        return jax.tree_util.tree_map(lambda a: a[k], tree)

    def _tag(self, trial):
        return f"[{trial.run.path.name}] " if self.vmapped else ""

    def _log(self, state, rate):
        sums, lr = jax.device_get((state.sums, optim.current_lr(state.opt_state)))
        nonfinite = np.atleast_1d(jax.device_get(state.nonfinite))
        self._check_finite(state)
        t, (unit, per_step) = self.t, self.task.throughput
        for k, trial in enumerate(self.todo):
            if not trial.active:
                continue
            # Averages over the updates applied; none when every one was skipped (a NaN
            # there would read as a diverged run).
            trial_sums = self._of(sums, trial)
            count = int(trial_sums["count"])
            scalars = self.task.derive({name: float(trial_sums[name]) / count
                                        for name in self.task.metrics}) if count else {}
            shown = [*self.task.metrics, *[n for n in scalars if n not in self.task.metrics][:1]]
            if count:
                scalars["grad_norm"] = float(trial_sums["grad_norm"]) / count
            scalars.update(lr=float(np.atleast_1d(lr)[k]), nonfinite=int(nonfinite[k]),
                           steps_per_sec=rate, **{unit: rate * per_step})
            trial.run.write(self.step, "train", scalars)
            if not count:
                logging.info("%sstep %d/%d  every update of the interval was skipped (non-finite; "
                             "%d so far)", self._tag(trial), self.step, t.steps, nonfinite[k])
            elif k == 0 or len(self.todo) <= 4:
                eta = (t.steps - self.step) / rate if rate > 0 else float("nan")
                logging.info("%sstep %d/%d  %s  |g| %.2f  lr %.2e  %.1f steps/s  %.0f %s  ETA %s",
                             self._tag(trial), self.step, t.steps, "  ".join(
                                 f"{n} {scalars[n]:.4g}" for n in shown), scalars["grad_norm"],
                             scalars["lr"], rate, scalars[unit], unit.replace("_per_sec", "/s"),
                             _duration(eta))
        zeros = state_lib.zero_sums(self.task.metrics)
        if self.vmapped:
            zeros = jax.tree_util.tree_map(lambda z: jnp.zeros((len(self.todo),), z.dtype), zeros)
        return state._replace(sums=parallel.put(zeros, self.shardings.sums))

    def _check_finite(self, state):
        """Stops each trial whose loss went non-finite (unless skipping), naming the step."""
        t = self.t
        nonfinite, first = (np.atleast_1d(a) for a in jax.device_get(
            (state.nonfinite, state.first_nonfinite)))
        for k, trial in enumerate(self.todo):
            n = int(nonfinite[k])
            if not trial.active or not n or (t.skip_nonfinite and n <= t.max_nonfinite):
                continue
            run = trial.run
            run.commit()
            last = run.ckpt.latest_step()
            kept = (f"the last good checkpoint (step {last}) is kept in {run.path / 'ckpt'}"
                    if last is not None else "no checkpoint had been saved yet")
            message = (f"{self._tag(trial)}training diverged: non-finite loss or gradient at "
                       f"step {int(first[k]) + 1} ({n} such updates so far); {kept}. Lower "
                       "optim.lr, clip gradients (optim.clip_norm), or set "
                       "train.skip_nonfinite=True to skip such updates.")
            if self.vmapped:  # (a single run raises DivergenceError with it: said once)
                logging.error("%s", message)
            run.set_status(layout.DIVERGED, int(first[k]) + 1, nonfinite=n, message=message)
            trial.active = False

    def _eval_fn(self, split, windows):
        # One compile per (split, window count): a fresh closure each time would recompile.
        if (split, windows) not in self.evals:
            fn = lambda params, data: self.task.evaluate(params, data, split, windows)  # noqa
            self.evals[split, windows] = jax.jit(
                jax.vmap(fn, in_axes=(0, None)) if self.vmapped else fn,
                out_shardings=parallel.replicated(self.mesh))
        return self.evals[split, windows]

    def _flow(self, state):
        """Each trial's gradient-flow scalars (`train.log_gradients`), or None."""
        if not self.t.log_gradients:
            return None
        if self.flow is None:
            fn = lambda state, data: diagnostics.flow_metrics(self.task, state, data)  # noqa
            self.flow = jax.jit(jax.vmap(fn, in_axes=(0, None)) if self.vmapped else fn,
                                out_shardings=parallel.replicated(self.mesh))
        flow = jax.device_get(self.flow(state, self.data))
        return [{k: float(v) for k, v in self._of(flow, trial).items()} for trial in self.todo]

    def _scores(self, state, split, windows):
        """Each trial's (scalars, sums) over `windows` evaluation batches of `split`."""
        sums = jax.device_get(self._eval_fn(split, windows)(state.params, self.data))
        return self._averages(sums)

    def _averages(self, sums):
        return [(tasks.base.averages(self.task, self._of(sums, trial)), self._of(sums, trial))
                for trial in self.todo]

    def _whole(self, state, split):
        """Each trial's (scalars, sums) over the whole split, computed in parts of
        PART_WINDOWS windows; None when a signal comes first."""
        total = (self.task.whole_windows or self.task.eval_windows)[split]
        fn = lambda params, data, first, so_far: self.task.evaluate(  # noqa
            params, data, split, tasks.base.Part(first, PART_WINDOWS, so_far))
        fn = jax.vmap(fn, in_axes=(0, None, None, 0)) if self.vmapped else fn
        # The sums start from zeros, so that every part runs one compiled program.
        sums = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            fn, state.params, self.data, 0, None))
        fn = jax.jit(fn, out_shardings=parallel.replicated(self.mesh))  # (once a run: no cache)
        for first in range(0, total, PART_WINDOWS):
            if self.stop.set:
                logging.warning("stopping the final evaluation (%s split, %d of %d windows "
                                "done)", split, first, total)
                return None
            # (waited for: parts queued ahead would each delay a stop)
            sums = jax.block_until_ready(fn(state.params, self.data, first, sums))
        sums = jax.device_get(sums)
        sums.pop("carry", None)
        return self._averages(sums)

    def _evaluate(self, state, final=False):
        """Valid over `eval_batches` batches (best checkpoint, sample); at the end also the
        whole valid and test splits (`task.evaluate(..., None)`: every example, every character
        of a text)."""
        windows = self.task.eval_windows["valid"]
        capped = min(self.t.eval_batches or windows, windows)
        valid = self._scores(state, "valid", capped)
        flow = self._flow(state)
        extra = {}
        for split, name in (("test", "test"), ("valid", "valid_full")) if final else ():
            extra[name] = self._whole(state, split)
            if extra[name] is None:
                return None
        name, mode = self.task.best
        # Replicated, so every process holds them whole; samples are drawn on process 0.
        sampling = self.task.sample is not None and parallel.is_primary()
        params = jax.device_get(state.params) if sampling else None
        out = {}
        for k, trial in enumerate(self.todo):
            if not trial.active:
                continue
            scalars = valid[k][0]
            trial.run.write(self.step, "valid", scalars)
            if flow is not None:
                trial.run.write(self.step, "gradients", flow[k])
            for split, scores in extra.items():
                split_scalars, split_sums = scores[k]
                trial.run.write(self.step, split,
                                {**split_scalars, "count": int(split_sums["count"])})
            best = trial.meta[self.best_key]
            if best is None or (scalars[name] < best if mode == "min" else scalars[name] > best):
                note = "new best"
                trial.meta = {self.best_key: scalars[name], "best_step": self.step}
                trial.run.save(self.step, self._of(state, trial), trial.meta, best=True)
            else:
                note = f"best {best:.4f} at step {trial.meta['best_step']}"
            logging.info("%sstep %d  valid %s %.4f on %s  (%s)", self._tag(trial), self.step,
                         name, scalars[name], f"all {windows} batches" if capped == windows else
                         f"{capped} of {windows} batches", note)
            if params is not None:
                self._sample(trial, self._of(params, trial), k == 0)
            if final:
                out[trial] = self._final(trial, {"valid": valid[k], **{
                    split: scores[k] for split, scores in extra.items()}})
        return out

    def _final(self, trial, scores):
        """The result of a trial's final evaluation; writes the task's files (confusion...)."""
        whole = {split: scores.get(f"{split}_full", scores[split]) for split in ("valid", "test")}
        if self.task.files is not None:
            for split, (_, sums) in whole.items():
                for name, text in self.task.files(split, sums).items():
                    trial.run.write_file(name, text)
        name = self.task.best[0]
        logging.info("%sfinal, on the whole splits: valid %s %.4f over %s, test %s %.4f over %s",
                     self._tag(trial), name, whole["valid"][0][name],
                     f"{int(whole['valid'][1]['count']):,}", name, whole["test"][0][name],
                     f"{int(whole['test'][1]['count']):,}")
        # The lines just written: a report can trust them even if metrics.jsonl is cut.
        return {**{split: s for split, (s, _) in whole.items()},
                "records": {split: s for split, (s, _) in scores.items()}}

    def _sample(self, trial, params, show):
        key = jax.random.fold_in(jax.random.key(trial.config.seed + 1), self.step)
        text = self.task.sample(params, key)
        trial.run.write_sample(self.step, self.t.sample_temperature, text)
        if show:
            logging.info("%ssample at step %d: %r", self._tag(trial), self.step, text[:160])

    def _save(self, state, final=False):
        for trial in self.active:
            meta = dict(trial.meta)
            if final:  # what status.json says, to rebuild it from
                meta["final"] = {k: v for k, v in trial.result.items()
                                 if k not in ("status", "step")}
            # (final: replacing the checkpoint a stopped final evaluation saved at this step)
            trial.run.save(self.step, self._of(state, trial), meta, replace=final)


def _shardings(tree):
    return jax.tree_util.tree_map(lambda a: a.sharding, tree)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
