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
import re
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import checkpoint, data, layout, metrics as metrics_lib, optim, parallel, rundir
from rnnlab import sample, steps, stopping, storage, validation
from rnnlab import model as model_lib
from rnnlab import state as state_lib

PRIME_CHARS = 32  # samples start from this much of the validation split by default


class DivergenceError(RuntimeError):
    """The loss or a gradient became non-finite."""


class DiskFullError(RuntimeError):
    """The file system of the run directory is full; the last committed checkpoint is intact."""


def train(config: ml_collections.ConfigDict, workdir) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final valid and test metrics.

    Raises:
      validation.ConfigError: a bad config; rundir.RunDirError: a workdir that holds another
        experiment or corpus, or is in use.
      data.DataError: the corpus is missing or corrupt.
      DivergenceError: the loss or a gradient became non-finite (the run directory keeps the
        last good checkpoint).
      DiskFullError: the disk filled up (the last committed checkpoint is intact; status
        "interrupted").
      stopping.Interrupted: SIGTERM or Ctrl-C before training began.
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
        try:
            corpus = data.load_corpus(c.data)
        except ValueError as e:  # too short for its splits, bad fractions
            raise validation.ConfigError(str(e)) from e
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
        self.state_bytes = 0  # of one trial's checkpoint

    def close(self):
        for run in self.runs:
            run.close()

    def _fresh_state(self, i):
        """Trial i's state at step 0 (its seed, init and hyperparameters), sharded."""
        config = self.configs[i]
        model = model_lib.build_model(config.model, len(self.vocab.chars))
        state = state_lib.init_state(config, model,
                                     optim.make_optimizer(config.optim, self.t.steps))
        # Restoring onto a sharded state restores sharded (also onto another device count).
        return parallel.put(state, parallel.state_shardings(state, self.mesh, 0))

    def _align(self, todo, fresh, found):
        """Moves trials back to one step that all of them can resume from (a vmapped group
        trains in step); None for a trial that starts from scratch."""
        while len({found[i].step if found[i] else 0 for i in todo}) > 1:
            bound = min(found[i].step if found[i] else 0 for i in todo)
            if bound == 0:
                logging.warning("a trial of the group has no checkpoint: starting every trial "
                                "from step 0 (a replay: the results do not change)")
                return {i: None for i in todo}
            logging.warning("trials saved at different steps; resuming all from %d", bound)
            found = {i: found[i] if found[i].step == bound else
                     self.runs[i].restore(fresh[i], at_most=bound) for i in todo}
        return found

    def _done(self, i, found) -> dict | None:
        """Trial i's result if its newest checkpoint is its final one (status.json rewritten
        from it when that disagrees), else None; warns when status.json claims more."""
        run, status = self.runs[i], self.runs[i].status() or {}
        final = found.meta.get("final") if found else None
        if final is not None and found.step >= self.t.steps:
            record = {"status": layout.FINISHED, "step": found.step, **final}
            if {k: v for k, v in status.items() if k != "committed_step"} != record:
                logging.warning("%s: status.json is missing or disagrees with the final "
                                "checkpoint; rewritten from it", run.path)
                run.set_status(**record)
            return record
        if status.get("status") == layout.FINISHED and status["step"] >= self.t.steps:
            logging.warning("%s: status.json says finished at step %d, but that checkpoint is "
                            "missing or corrupt: resuming from %s to rebuild it", run.path,
                            status["step"], f"step {found.step}" if found else "the start")
        return None

    def run(self) -> list[dict]:
        try:
            return self._run()
        except Exception as e:
            if storage.is_disk_full(e):
                raise self._disk_full(e) from None
            raise
        finally:
            self.close()

    def _disk_full(self, error) -> DiskFullError:
        """Cleans up after a write that found the disk full; the one message to show."""
        free = storage.free_bytes(self.runs[0].path)
        kept = []
        for i in getattr(self, "todo", range(len(self.runs))):
            run = self.runs[i]
            if run.ckpt is not None:
                try:
                    run.ckpt.wait()
                except Exception:  # noqa: BLE001 - the same full disk, reported below
                    pass
                for name in (layout.CKPT_DIR, layout.BEST_DIR):  # the failed saves' leftovers
                    for p in (run.path / name).glob("*.orbax-checkpoint-tmp*"):
                        shutil.rmtree(p, ignore_errors=True)
            steps = layout.checkpoint_steps(run.path)
            kept.append(f"step {steps[-1]} in {run.path / layout.CKPT_DIR}" if steps else
                        f"none yet in {run.path}")
            try:
                run.release_reserve()
                run.set_status(layout.INTERRUPTED, steps[-1] if steps else 0, message="disk full")
            except OSError:
                kept[-1] += " (status.json could not be updated)"
        return DiskFullError(
            f"disk full: {_failed_write(error)}. "
            + (f"{free / 2**20:.1f} MiB were free; " if free is not None else "")
            + f"a checkpoint of this run takes about "
            f"{(self.state_bytes + rundir.CHECKPOINT_OVERHEAD) / 2**20:.1f} MiB and "
            f"{self.t.keep_checkpoints} + 1 are kept. The last checkpoint is intact ("
            + "; ".join(kept) + "). Free some space and rerun the same command to resume.")

    def _run(self):
        t, runs = self.t, self.runs
        results: list[dict | None] = [None] * len(runs)
        todo = []
        for i, run in enumerate(runs):
            status = run.status() or {}
            if status.get("status") == layout.DIVERGED:  # a result: rerunning would re-diverge
                results[i] = status
            else:
                todo.append(i)
        fresh = {i: self._fresh_state(i) for i in todo}
        self.state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(fresh[todo[0]])) \
            if todo else 0
        found = {i: self.runs[i].restore(fresh[i]) for i in todo}
        for i in list(todo):
            if (done := self._done(i, found[i])) is not None:
                results[i] = done
                todo.remove(i)
        if not todo:
            return results
        found = self._align(todo, fresh, found)
        states = [found[i].state if found[i] else fresh[i] for i in todo]
        metas = [found[i].meta if found[i] else {"best_valid_bpc": None, "best_step": None}
                 for i in todo]
        step = int(states[0].step)
        self.stop.arm()  # from here a signal means: save a checkpoint, then stop
        if step:
            logging.info("resuming %d trial(s) from step %d", len(todo), step)
        for i in todo:
            runs[i].open_logs(step)
            runs[i].set_status(layout.RUNNING, step, num_params=self._num_params(states[0]))
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
            self._commit_all()
            for i in self.active:
                runs[i].set_status(layout.INTERRUPTED, step)
                results[i] = {"status": layout.INTERRUPTED, "step": step}
            logging.warning("stopped at step %d; rerun the same command to resume", step)
        elif self.active:
            final = self._evaluate(state, final=True)
            for i in self.active:  # what status.json will say, kept in the final checkpoint too
                final[i] = {"num_params": self._num_params(states[0]), **self.metas[i],
                            **final[i]}
            self._save_all(state, final=final)
            self._commit_all()  # "finished" only once everything it reports is on disk
            for i in self.active:
                results[i] = {"status": layout.FINISHED, "step": step, **final[i]}
                runs[i].set_status(**results[i])
        for i in todo:
            if results[i] is None:
                results[i] = runs[i].status()
        return results

    def _commit_all(self):
        for i in self.todo:
            self.runs[i].commit()

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
            run.commit()
            last = run.ckpt.latest_step()
            kept = (f"the last good checkpoint (step {last}) is kept in {run.path / 'ckpt'}"
                    if last is not None else "no checkpoint had been saved yet")
            message = (f"{self._tag(i)}training diverged: non-finite loss or gradient at step "
                       f"{int(first[k]) + 1} ({n} such updates so far); {kept}. Lower optim.lr, "
                       "clip gradients (optim.clip_norm), or set train.skip_nonfinite=True to "
                       "skip such updates.")
            logging.error("%s", message)
            run.set_status(layout.DIVERGED, int(first[k]) + 1, nonfinite=n, message=message)
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
                # The lines just written: a report can trust them even if metrics.jsonl is cut.
                out[i]["records"] = {"valid": valid[k], **{s: v[k] for s, v in extra.items()}}
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

    def _save_all(self, state, final=None):
        for k, i in enumerate(self.todo):
            if i in self.active:
                meta = {**self.metas[i], **({"final": final[i]} if final else {})}
                self.runs[i].save(self.step, self._of(state, k), meta)


def _failed_write(error: BaseException) -> str:
    """What a disk-full error was writing, in a few words."""
    path = getattr(error, "filename", None)
    if path is None and (match := re.search(r'(?:Failed writing|local file):? "([^"]+)"',
                                            str(error))):
        path = match.group(1)
    if path is None:
        return checkpoint.first_line(error)
    if match := re.search(r"(.*)/(\d+)\.orbax-checkpoint-tmp", str(path)):
        return f"saving the checkpoint {match.group(1)}/{match.group(2)} failed"
    return f"writing {path} failed"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
