"""The train loop, the same for every task: `train_and_evaluate` runs the steps and, when their
intervals come, the periodic actions (`ACTIONS`: log, evaluate, checkpoint, early stop).

Each step is one jitted update of the train state (`rnnlab.train.step`). A batch is a pure
function of the step and the whole state (the carry and the metric sums included) is
checkpointed, so a killed run resumes to bitwise the same result (`rnnlab.run.resume`). A signal
(SIGTERM, Ctrl-C) saves a checkpoint and stops.

The loop and its actions are written for one run (`Program`). `rnnlab.train.trials.Group`
trains several trials as one vmapped program around the same loop and actions: it overrides
only how the computations are batched, how a trial's slice is taken and how its lines are
tagged.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rnnlab import diagnostics, optim, parallel, tasks
from rnnlab import model as model_lib
from rnnlab.run import layout
from rnnlab.train import clock as clock_lib
from rnnlab.train import setup as setup_lib
from rnnlab.train import state as state_lib
from rnnlab.train import step as step_lib

# The final evaluation scores each split in parts of this many windows (batches), so that a
# signal stops it within seconds, not after the whole of a long split.
PART_WINDOWS = 64


class Program:
    """The compiled computations of one run and its trial (`trials`, a list of one).

    Attributes: `s` the setup, `t` its train config, `task`, `trials`, `step` (updates made),
    `num_params`.
    """

    state_axis = 0  # the axis of a state's leaves that holds the carry's rows

    def __init__(self, s: setup_lib.Setup, trials: list[setup_lib.Trial], states: list):
        self.s, self.t, self.task, self.trials = s, s.t, s.task, trials
        self.step = int(states[0].step)
        s.stop.arm()  # from here a signal means: save a checkpoint, then stop
        if self.step:
            logging.info("resuming %d trial(s) from step %d", len(self.active), self.step)
        self.num_params = int(sum(p.size for p in jax.tree_util.tree_leaves(states[0].params)))
        for trial in self.active:
            trial.run.open_logs(self.step)
            trial.run.set_status(layout.RUNNING, self.step, num_params=self.num_params)
        self.shardings = parallel.state_shardings(states[0], s.mesh, self.state_axis)
        m = trials[0].config.model
        logging.info("model: %s x%d (%s), %d parameters, %d trial(s)%s; %d streams on each of %d "
                     "devices; layers run the %s", m.cell, m.num_layers, m.hidden_size,
                     self.num_params, len(trials), self.describe,
                     self.t.batch_size // jax.device_count(), jax.device_count(),
                     model_lib.path(m, self.t.batch_size))
        self._evals, self._flow = {}, None

    # What a vmapped group (`rnnlab.train.trials.Group`) does differently.
    describe = ""

    def stack(self, states: list):
        return states[0]

    def batched(self, fn: Callable, in_axes) -> Callable:
        return fn

    def of(self, tree, trial: setup_lib.Trial):
        """The trial's slice of the state, params or results."""
        return tree

    def tag(self, trial: setup_lib.Trial) -> str:
        return ""

    def per_trial(self, zeros):
        return zeros

    def announce(self, message: str):
        """A trial diverged (a single run raises DivergenceError with the message)."""

    # The computations, compiled once each.
    @property
    def active(self) -> list[setup_lib.Trial]:
        return [trial for trial in self.trials if trial.active]

    def train_step(self) -> Callable:
        mesh = self.s.mesh
        fn = step_lib.make_train_step(self.task, self.s.tx,
                                      lambda batch: parallel.constrain_rows(batch, mesh))
        return jax.jit(self.batched(fn, (0, None)),
                       in_shardings=(self.shardings, _shardings(self.s.data)),
                       out_shardings=self.shardings, donate_argnums=0)

    def scores(self, state, split: str, windows: int) -> list:
        """Each trial's (scalars, sums) over `windows` evaluation batches of `split`."""
        if (split, windows) not in self._evals:  # a fresh closure each time would recompile
            fn = lambda params, data: self.task.evaluate(params, data, split, windows)  # noqa
            self._evals[split, windows] = jax.jit(
                self.batched(fn, (0, None)), out_shardings=parallel.replicated(self.s.mesh))
        return self._averages(jax.device_get(self._evals[split, windows](state.params,
                                                                          self.s.data)))

    def whole(self, state, split: str) -> list | None:
        """Each trial's (scalars, sums) over the whole split, computed in parts of
        PART_WINDOWS windows; None when a signal comes first."""
        total = (self.task.whole_windows or self.task.eval_windows)[split]
        fn = lambda params, data, first, so_far: self.task.evaluate(  # noqa
            params, data, split, tasks.base.Part(first, PART_WINDOWS, so_far))
        fn = self.batched(fn, (0, None, None, 0))
        # The sums start from zeros, so that every part runs one compiled program.
        sums = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            fn, state.params, self.s.data, 0, None))
        fn = jax.jit(fn, out_shardings=parallel.replicated(self.s.mesh))  # (once a run)
        progress = clock_lib.Progress(f"final evaluation of the {split} split", total, "windows")
        for first in range(0, total, PART_WINDOWS):
            progress.done(first)
            if self.s.stop.set:
                logging.warning("stopping the final evaluation (%s split, %d of %d windows "
                                "done)", split, first, total)
                return None
            # (waited for: parts queued ahead would each delay a stop)
            sums = jax.block_until_ready(fn(state.params, self.s.data, first, sums))
        sums = jax.device_get(sums)
        sums.pop("carry", None)
        return self._averages(sums)

    def _averages(self, sums) -> list:
        return [(tasks.base.averages(self.task, self.of(sums, trial)), self.of(sums, trial))
                for trial in self.trials]

    def flow(self, state) -> list | None:
        """Each trial's gradient-flow scalars (`train.log_gradients`), or None."""
        if not self.t.log_gradients:
            return None
        if self._flow is None:
            fn = lambda state, data: diagnostics.flow_metrics(self.task, state, data)  # noqa
            self._flow = jax.jit(self.batched(fn, (0, None)),
                                 out_shardings=parallel.replicated(self.s.mesh))
        flow = jax.device_get(self._flow(state, self.s.data))
        return [{k: float(v) for k, v in self.of(flow, trial).items()} for trial in self.trials]


def train_and_evaluate(p: Program, state) -> None:
    """Trains from `state` to `train.steps` (or a signal, or divergence), then evaluates the
    whole valid and test splits and saves the final checkpoint; each trial's `result` and
    status.json say how it ended."""
    t, train_step, clock = p.t, p.train_step(), clock_lib.Clock(p.step)
    state = early_stop(p, state)  # (trials a signal stopped while they were ending)
    while p.step < t.steps and not p.s.stop.at(p.step) and p.active:
        state = train_step(state, p.s.data)
        p.step += 1
        clock.first_step(state, p.step)
        for action in ACTIONS:
            if action.due(t, p.step) and p.active:
                with clock.pause(state):
                    check_finite(p, state)
                    state = action.run(p, state, clock)
    check_finite(p, state)
    if p.s.stop.set:
        interrupt(p, state)
    elif p.active:
        finish(p, state)


class Action(NamedTuple):
    """A periodic action: `run(program, state, clock) -> state`, when `due(config.train, step)`
    (after that step's update)."""

    name: str
    due: Callable[..., bool]
    run: Callable


def log(p: Program, state, clock) -> state_lib.TrainState:
    """Each trial's train metrics averaged since the last log line; resets the sums."""
    rate = clock.rate(state, p.step)
    sums, lr = jax.device_get((state.sums, optim.current_lr(state.opt_state)))
    nonfinite = np.atleast_1d(jax.device_get(state.nonfinite))
    unit, per_step = p.task.throughput
    for k, trial in enumerate(p.trials):
        if not trial.active:
            continue
        # Averages over the updates applied; none when every one was skipped (a NaN there
        # would read as a diverged run).
        trial_sums = p.of(sums, trial)
        count = int(trial_sums["count"])
        scalars = p.task.derive({name: float(trial_sums[name]) / count
                                 for name in p.task.metrics}) if count else {}
        shown = [*p.task.metrics, *[n for n in scalars if n not in p.task.metrics][:1]]
        if count:
            scalars["grad_norm"] = float(trial_sums["grad_norm"]) / count
        scalars.update(lr=float(np.atleast_1d(lr)[k]), nonfinite=int(nonfinite[k]),
                       steps_per_sec=rate, **{unit: rate * per_step})
        trial.run.write(p.step, "train", scalars)
        if not count:
            logging.info("%sstep %d/%d  every update of the interval was skipped (non-finite; %d "
                         "so far)", p.tag(trial), p.step, p.t.steps, nonfinite[k])
        elif k == 0 or len(p.trials) <= 4:
            eta = (p.t.steps - p.step) / rate if rate > 0 else float("nan")
            logging.info("%sstep %d/%d  %s  |g| %.2f  lr %.2e  %.1f steps/s  %.0f %s  ETA %s",
                         p.tag(trial), p.step, p.t.steps, "  ".join(
                             f"{n} {scalars[n]:.4g}" for n in shown), scalars["grad_norm"],
                         scalars["lr"], rate, scalars[unit], unit.replace("_per_sec", "/s"),
                         clock_lib.duration(eta))
    zeros = p.per_trial(state_lib.zero_sums(p.task.metrics))
    return state._replace(sums=parallel.put(zeros, p.shardings.sums))


def check_finite(p: Program, state) -> None:
    """Stops each trial whose loss went non-finite (unless skipping), naming the step."""
    t = p.t
    nonfinite, first = (np.atleast_1d(a) for a in jax.device_get(
        (state.nonfinite, state.first_nonfinite)))
    for k, trial in enumerate(p.trials):
        n = int(nonfinite[k])
        if not trial.active or not n or (t.skip_nonfinite and n <= t.max_nonfinite):
            continue
        run = trial.run
        run.commit()
        last = run.ckpt.latest_step()
        kept = (f"the last good checkpoint (step {last}) is kept in {run.path / 'ckpt'}"
                if last is not None else "no checkpoint had been saved yet")
        message = (f"{p.tag(trial)}training diverged: non-finite loss or gradient at step "
                   f"{int(first[k]) + 1} ({n} such updates so far); {kept}. Lower optim.lr, clip "
                   "gradients (optim.clip_norm), or set train.skip_nonfinite=True to skip such "
                   "updates.")
        p.announce(message)
        run.set_status(layout.DIVERGED, int(first[k]) + 1, nonfinite=n, message=message)
        trial.active = False


def evaluate(p: Program, state, clock=None, final: bool = False) -> state_lib.TrainState:
    """Valid over `eval_batches` batches (the best checkpoint, a sample); when `final`, also the
    whole valid and test splits (every example, every character of a text), then each trial's
    `result` (None when a signal stopped it)."""
    windows = p.task.eval_windows["valid"]
    capped = min(p.t.eval_batches or windows, windows)
    valid, flow = p.scores(state, "valid", capped), p.flow(state)
    extra = _whole_splits(p, state) if final else {}
    if extra is None:
        return None
    # Replicated, so every process holds them whole; samples are drawn on process 0.
    sampling = p.task.sample is not None and parallel.is_primary()
    params = jax.device_get(state.params) if sampling else None
    for k, trial in enumerate(p.trials):
        if not trial.active:
            continue
        trial.run.write(p.step, "valid", valid[k][0])
        if flow is not None:
            trial.run.write(p.step, "gradients", flow[k])
        _write_whole(p, trial, k, extra)
        _keep_best(p, trial, state, valid[k][0], f"all {windows} batches" if capped == windows
                   else f"{capped} of {windows} batches")
        if params is not None:
            sample(p, trial, p.of(params, trial), show=k == 0)
        if final:
            trial.result = _final(p, trial, {"valid": valid[k], **{
                split: scores[k] for split, scores in extra.items()}})
    return state


def _whole_splits(p: Program, state) -> dict | None:
    """Every trial's scores on the whole test and valid splits; None when a signal stopped it."""
    extra = {}
    for split, name in (("test", "test"), ("valid", "valid_full")):
        extra[name] = p.whole(state, split)
        if extra[name] is None:
            return None
    return extra


def _write_whole(p: Program, trial, k: int, extra: dict) -> None:
    for split, scores in extra.items():
        scalars, sums = scores[k]
        trial.run.write(p.step, split, {**scalars, "count": int(sums["count"])})


def _keep_best(p: Program, trial, state, scalars, over):
    name, mode = p.task.best
    best, value = trial.meta[p.s.best_key], scalars[name]
    if best is None or (value < best if mode == "min" else value > best):
        note = "new best"
        trial.meta = {**trial.meta, p.s.best_key: value, "best_step": p.step}
        _count_patience(trial, value, mode)
        trial.run.save(p.step, p.of(state, trial), trial.meta, best=True)
    else:
        note = f"best {best:.4f} at step {trial.meta['best_step']}"
        _count_patience(trial, value, mode)
    if trial.config.train.patience:
        t = trial.config.train
        note += (f"; {trial.meta['stale']} of {t.patience} evaluations without improving on "
                 f"{trial.meta['ref']:.4f} by more than {t.min_delta:g}")
    logging.info("%sstep %d  valid %s %.4f on %s  (%s)", p.tag(trial), p.step, name,
                 value, over, note)


def _count_patience(trial, value: float, mode: str) -> None:
    """With `train.patience`: the evaluations in a row (`stale`) that have not improved on the
    reference value (`ref`, the last one that did) by more than `train.min_delta`, in the
    trial's meta (so in its checkpoints: a resume counts on)."""
    t = trial.config.train
    if not t.patience:
        return
    ref = trial.meta.get("ref")
    if ref is None or (value < ref - t.min_delta if mode == "min" else value > ref + t.min_delta):
        trial.meta = {**trial.meta, "ref": value, "stale": 0}
    else:
        trial.meta = {**trial.meta, "stale": trial.meta["stale"] + 1}


def early_stop(p: Program, state, clock=None) -> state_lib.TrainState:
    """Ends each trial whose validation metric ran out of patience (`train.patience`
    evaluations without improving by more than `train.min_delta`): the final evaluation of the
    whole splits, the final checkpoint, status "finished" saying why. The others train on."""
    tired = [trial for trial in p.active if trial.config.train.patience
             and trial.meta.get("stale", 0) >= trial.config.train.patience]
    if not tired:
        return state
    extra = _whole_splits(p, state)
    if extra is None:  # a signal: the loop saves and stops; the rerun ends these trials first
        return state
    windows = p.task.eval_windows["valid"]
    valid = p.scores(state, "valid", min(p.t.eval_batches or windows, windows))
    name = p.task.best[0]
    for trial in tired:
        k = p.trials.index(trial)
        _write_whole(p, trial, k, extra)
        t, best = trial.config.train, trial.meta[p.s.best_key]
        why = (f"stopped early at step {p.step}: in {t.patience} evaluations valid {name} has "
               f"not improved on {trial.meta['ref']:.4f} by more than {t.min_delta:g} (best "
               f"{best:.4f} at step {trial.meta['best_step']})")
        logging.info("%s%s", p.tag(trial), why)
        trial.result = {**_final(p, trial, {"valid": valid[k], **{
            split: scores[k] for split, scores in extra.items()}}),
            "stopped_early": True, "message": why}
    checkpoint(p, state, final=True, trials=tired)
    for trial in tired:
        trial.run.commit()
        trial.run.set_status(**trial.result)
        trial.active = False
    return state


def _final(p: Program, trial, scores) -> dict:
    """A trial's result after its final evaluation; writes the task's files (confusion...)."""
    whole = {split: scores.get(f"{split}_full", scores[split]) for split in ("valid", "test")}
    if p.task.files is not None:
        for split, (_, sums) in whole.items():
            for name, text in p.task.files(split, sums).items():
                trial.run.write_file(name, text)
    logging.info("%sfinal, on the whole splits: valid %s, test %s", p.tag(trial),
                 *(_headline(p, *whole[split]) for split in ("valid", "test")))
    # What status.json will say (kept in the final checkpoint too); with the lines just
    # written, so that a report can trust them even if metrics.jsonl is cut.
    return {"status": layout.FINISHED, "step": p.step, "num_params": p.num_params, **trial.meta,
            **{split: s for split, (s, _) in whole.items()},
            "records": {split: s for split, (s, _) in scores.items()}}


def _headline(p: Program, scalars: dict, sums: dict) -> str:
    """The metric the best checkpoint is picked by, the task's accuracy where that is another
    (the copy task's recall, a decoder's exact match) and the baseline a regression is scored
    against, over how many examples."""
    name = p.task.best[0]
    also = [k for k in ("recall_accuracy", "exact_match", "accuracy") if k in scalars
            and k != name][:1] + [k for k in ("baseline_mse",) if k in scalars]
    return " ".join(f"{k} {scalars[k]:.4f}" for k in (name, *also)) + \
        f" over {int(sums['count']):,}"


def sample(p: Program, trial, params, show: bool) -> None:
    """A sample from the model (tasks that generate), appended to samples.txt."""
    key = jax.random.fold_in(jax.random.key(trial.config.seed + 1), p.step)
    text = p.task.sample(params, key)
    trial.run.write_sample(p.step, p.t.sample_temperature, text)
    if show:
        logging.info("%ssample at step %d: %r", p.tag(trial), p.step, text[:160])


def checkpoint(p: Program, state, clock=None, final: bool = False,
               trials=None) -> state_lib.TrainState:
    """Saves the state of each of `trials` (default: the active ones), with its best score so
    far."""
    for trial in p.active if trials is None else trials:
        meta = dict(trial.meta)
        if final:  # what status.json says, to rebuild it from
            meta["final"] = {k: v for k, v in trial.result.items() if k not in ("status", "step")}
        # (final: replacing the checkpoint a stopped final evaluation saved at this step)
        trial.run.save(p.step, p.of(state, trial), meta, replace=final)
    return state


ACTIONS = (
    Action("log", lambda t, step: step % t.log_every == 0 or step == t.steps, log),
    Action("evaluate", lambda t, step: step % t.eval_every == 0 and step < t.steps, evaluate),
    Action("checkpoint", lambda t, step: step % t.ckpt_every == 0 and step < t.steps, checkpoint),
    Action("early_stop", lambda t, step: step % t.eval_every == 0 and step < t.steps, early_stop),
)


def interrupt(p: Program, state) -> None:
    """A signal came: save, commit, and say how to resume."""
    checkpoint(p, state)
    _commit(p)
    for trial in p.active:
        trial.run.set_status(layout.INTERRUPTED, p.step)
        trial.result = {"status": layout.INTERRUPTED, "step": p.step}
    logging.warning("stopped at step %d; rerun the same command to resume", p.step)


def finish(p: Program, state) -> None:
    """The final evaluation and checkpoint; "finished" only once everything it reports is on
    disk."""
    if evaluate(p, state, final=True) is None:  # a signal during it: a rerun does it
        interrupt(p, state)
        return
    checkpoint(p, state, final=True)
    _commit(p)
    for trial in p.active:
        trial.run.set_status(**trial.result)


def _commit(p: Program):
    for trial in p.trials:
        trial.run.commit()


def _shardings(tree):
    return jax.tree_util.tree_map(lambda a: a.sharding, tree)
