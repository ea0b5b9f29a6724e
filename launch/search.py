r"""Adaptive search: a sampler proposes each trial from the results so far, and a pruner stops
the trials whose validation curves fall behind (Optuna).

    python -m launch.sweep --config=experiments/search_vs_grid/config.py \
        --sweep=experiments/search_vs_grid/config.py --search=tpe --trials=16 --pruner=asha \
        --workdir=runs/search

The sweep file defines the space in Optuna's define-by-run idiom, so conditionals come free:

    def suggest(trial):
        cell = trial.suggest_categorical("model.cell", ["lstm", "gru"])
        return {"model.cell": cell,
                "optim.lr": trial.suggest_float("optim.lr", 1e-4, 3e-2, log=True)}

It returns the trial's dotted config overrides (a value need not be suggested: a fixed override
is fine). Each trial is an ordinary rnnlab run directory, SWEEP_DIR/trials/NNN (NNN: the trial's
number in the study), trained by `python -m rnnlab.main` as in a grid sweep.

--search: `tpe` (Optuna's TPESampler; its first --startup_trials, 10 by default, are random),
`random`, `qmc` (scrambled Sobol). With a fixed --search_seed, a sequential search (--max_parallel=1) proposes
the same trials, also when it was stopped and rerun: trial N's proposal is drawn with a sampler
seeded by (seed, N) from the trials completed before it.

--pruner (local executor): after each validation line a trial's metric is reported to the
pruner; a trial it prunes gets SIGTERM (it saves and stops) and is told to the study as PRUNED at
that step; `asha` (successive halving, rungs at --min_resource steps x 3^k; default: the first
evaluation), `median` (below the median of the earlier trials at the same step, after 2 trials
finished), `none`. The other executors run the search in rounds of --max_parallel proposals
(one vmapped group, or TPU VMs) with no pruning.

The study is the search's only state: Optuna's RDB storage, `sqlite:///SWEEP_DIR/study.db`
unless --storage names another SQLAlchemy URL (PostgreSQL for several launchers on several
machines, each with its own sweep dir; each resumes only the trials it started). A rerun of the
same command finds the same study: finished trials are kept, the trials that were running
resume from their run directories (bitwise, as any rnnlab run), and it proposes trials until the
study holds --trials. sweep.json and outcomes.json are written from the study for
`launch.report`; deleting them loses nothing. A finished trial's value is its best --metric
(default: the metric the task picks its best checkpoint by); diverged and failed trials are told
as FAIL, never as a huge loss, and the search goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import warnings
from typing import Any, Callable

from absl import logging

from launch import results as results_lib, trials as trials_lib
from rnnlab import overrides as overrides_lib
from rnnlab.run import layout, storage

STUDY_FILE = "study.db"
SAMPLERS = ("tpe", "random", "qmc")
PRUNERS = ("none", "median", "asha")
# What a study must agree on with the launcher that reruns it (a changed one is refused).
STUDY_KEYS = ("config", "sweep", "metric", "mode", "search", "seed")  # study attr "search"
PRUNED = "pruned"


@dataclasses.dataclass(frozen=True)
class Options:
    config: str
    sweep: str
    sweep_dir: str
    search: str
    trials: int
    pruner: str = "none"
    metric: str = ""  # "" -> valid/<the task's best-checkpoint metric>
    mode: str = "auto"
    seed: int = 0
    storage: str = ""  # "" -> sqlite:///SWEEP_DIR/study.db
    study: str = ""  # "" -> the sweep dir's name
    max_parallel: int = 1
    min_resource: int = 0  # asha: steps to the first rung; 0 -> the config's eval_every
    reduction_factor: int = 3
    startup_trials: int = 10  # tpe: random trials before it models the results (Optuna's 10)


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(sweep_dir: str | os.PathLike, url: str = "") -> str:
    return url or f"sqlite:///{pathlib.Path(sweep_dir).resolve() / STUDY_FILE}"


def load_space(spec: str) -> Callable:
    """The `suggest(trial)` of the sweep file `path.py`; ValueError when it has none."""
    path = spec.partition(":")[0]
    module = trials_lib._load_module(path, "sweep")
    if not callable(getattr(module, "suggest", None)):
        raise ValueError(f"{path} defines no suggest(trial) (a search space in Optuna's "
                         "define-by-run idiom); --search needs one")
    return module.suggest


def propose(space: Callable, spec: str, trial, base) -> dict[str, Any]:
    """The overrides `space(trial)` returns, flattened and checked against the config `base`
    (every key exists and takes its value's type); a bad one is a ValueError naming the file."""
    path = spec.partition(":")[0]
    got = trials_lib._call(path, space, trial)
    if not isinstance(got, dict):
        raise ValueError(f"{path}: suggest(trial) must return a dict of config overrides, got "
                         f"a {type(got).__name__}")
    flat = {k: v.item() if hasattr(v, "item") and hasattr(v, "dtype") else v  # NumPy scalars
            for k, v in trials_lib.flatten(got, f"{path}: suggest(trial {trial.number})").items()}
    try:
        trials_lib.checked(base, flat)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return flat


def default_metric(base) -> tuple[str, str]:
    """(valid/<metric>, mode) that the task picks its best checkpoint by."""
    from rnnlab import tasks  # imports jax: only when --metric is not given

    best = tasks.best(base)
    if best is None:
        raise ValueError(f"task {base.task.name!r} does not say which metric is best: pass "
                         "--metric=split/name and --mode")
    return f"valid/{best[0]}", best[1]


def sampler(name: str, seed: int, number: int, startup_trials: int = 10):
    """The sampler that proposes trial `number`: seeded by (seed, number), so that a rerun
    proposes what an uninterrupted search would have."""
    optuna = _optuna()
    trial_seed = (seed * 1_000_003 + number) % 2**32
    if name == "qmc":  # its sequence is indexed by the trials so far: one seed for all; what
        # it cannot sample jointly (before a trial completed, conditionals) is drawn per trial
        return optuna.samplers.QMCSampler(
            seed=seed, scramble=True, warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=trial_seed))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=trial_seed)
    return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=startup_trials)


def pruner(opts: Options, base):
    optuna = _optuna()
    if opts.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=opts.min_resource or int(base.train.eval_every),
            reduction_factor=opts.reduction_factor)
    if opts.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def check_options(opts: Options) -> None:
    """ValueError (one line) for a bad combination of flags, before anything is written."""
    if opts.search not in SAMPLERS:
        raise ValueError(f"unknown --search={opts.search}; known: {', '.join(SAMPLERS)}")
    if opts.pruner not in PRUNERS:
        raise ValueError(f"unknown --pruner={opts.pruner}; known: {', '.join(PRUNERS)}")
    if opts.trials < 1:
        raise ValueError(f"--trials must be >= 1 with --search, got {opts.trials}")
    if opts.startup_trials < 1:
        raise ValueError(f"--startup_trials must be >= 1, got {opts.startup_trials}")
    if opts.reduction_factor < 2 or opts.min_resource < 0:
        raise ValueError("--reduction_factor must be >= 2 and --min_resource >= 0")
    if not storage.is_local(opts.sweep_dir):
        raise ValueError("a search's sweep dir is local (its trials may train in a bucket "
                         "through their own --config keys); got " + opts.sweep_dir)


def open_study(opts: Options, metric: str, mode: str):
    """The study (created, or loaded when it exists); ValueError when it was run with another
    config, space, metric, sampler or seed."""
    optuna = _optuna()
    url = storage_url(opts.sweep_dir, opts.storage)
    pathlib.Path(opts.sweep_dir).mkdir(parents=True, exist_ok=True)
    rdb = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                     if url.startswith("sqlite") else None)
    name = opts.study or pathlib.Path(opts.sweep_dir).resolve().name
    study = optuna.create_study(storage=rdb, study_name=name, load_if_exists=True,
                                direction="maximize" if mode == "max" else "minimize")
    want = {"config": opts.config, "sweep": opts.sweep, "metric": metric, "mode": mode,
            "search": opts.search, "seed": opts.seed}
    had = study.user_attrs.get("search")
    if had is None:
        study.set_user_attr("search", want)  # one write: a kill leaves all of it or none
    elif differ := [f"{k} ({had.get(k)!r} -> {want[k]!r})" for k in STUDY_KEYS
                    if had.get(k) != want[k]]:
        raise ValueError(f"study {name!r} in {_shown(url)} ran with another "
                         f"{', '.join(differ)}; use a new --workdir for a different search")
    recorded = layout.read_json(pathlib.Path(opts.sweep_dir) / trials_lib.SWEEP_FILE)
    other = ((recorded or {}).get("search") or {}).get("study") if isinstance(recorded, dict) \
        else None
    if other not in (None, name):
        raise ValueError(f"{opts.sweep_dir} holds the trials of study {other!r}, not {name!r}: "
                         "use a new --workdir for another study")
    return study


def _shown(url: str) -> str:
    """A storage URL as it may be shown or recorded: its password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _me(sweep_dir: str) -> str:
    """Who started a trial: the sweep dir (launchers sharing a study each have their own; a
    rerun in another container or on another host with the same sweep dir resumes them)."""
    return str(pathlib.Path(sweep_dir).resolve())


def trial_id(number: int) -> str:
    return f"{number:03d}"


def as_trial(opts: Options, number: int, overrides: dict) -> trials_lib.Trial:
    workdir = f"{opts.sweep_dir.rstrip('/')}/{trials_lib.TRIALS_DIR}/{trial_id(number)}"
    return trials_lib.Trial(trial_id(number), dict(overrides), workdir, trials_lib.command(
        opts.config, overrides, workdir, python=sys.executable))


def outcome_of(frozen) -> str | None:
    """finished, pruned, diverged or failed: how a study's trial ended (None: still running)."""
    return {"COMPLETE": layout.FINISHED, "PRUNED": PRUNED,
            "FAIL": frozen.user_attrs.get("outcome", "failed")}.get(frozen.state.name)


def record(opts: Options, study, metric: str, mode: str) -> None:
    """SWEEP_DIR/sweep.json and outcomes.json, written from the study for `launch.report`."""
    me = _me(opts.sweep_dir)  # this launcher's trials (several may share the study)
    started = [t for t in study.get_trials(deepcopy=False) if "overrides" in t.user_attrs
               and t.user_attrs.get("launcher") == me]
    records = trials_lib.records(
        [as_trial(opts, t.number, t.user_attrs["overrides"]) for t in started])
    search = {"search": opts.search, "seed": opts.seed, "pruner": opts.pruner,
              "metric": metric, "mode": mode, "trials": opts.trials,
              "storage": _shown(opts.storage) if opts.storage else None,
              "study": study.study_name}
    spec = {"config": opts.config, "sweep": opts.sweep, "search": search, "trials": records}
    storage.write_atomic(storage.path(opts.sweep_dir) / trials_lib.SWEEP_FILE,
                         json.dumps(spec, indent=2) + "\n")
    outcomes = {trial_id(t.number): {"outcome": outcome_of(t),
                                     "returncode": t.user_attrs.get("returncode"),
                                     **({"step": t.user_attrs["pruned_at"]}
                                        if "pruned_at" in t.user_attrs else {})}
                for t in started if outcome_of(t)}
    storage.write_atomic(storage.path(opts.sweep_dir) / trials_lib.OUTCOMES_FILE,
                         json.dumps(outcomes, indent=2, sort_keys=True) + "\n")


class _Running:
    """A trial being trained: its study trial, rnnlab run, process and what was reported."""

    def __init__(self, trial, run: trials_lib.Trial, reported: set[int]):
        self.trial, self.run, self.reported = trial, run, set(reported)
        self.steps = 0  # the run's train.steps: set by Search.track
        self.proc = None
        self.pruned_at: int | None = None


class Search:
    """One launcher's share of a study (see the module doc)."""

    def __init__(self, opts: Options, base, metric: str, mode: str):
        self.opts, self.base, self.metric, self.mode = opts, base, metric, mode
        self.optuna = _optuna()
        self.study = open_study(opts, metric, mode)
        self.space = load_space(opts.sweep)
        self.study.pruner = pruner(opts, base)
        self.me = _me(opts.sweep_dir)
        self.outcomes: dict[str, str] = {}
        self.stopped_by: int | None = None  # the signal that stopped run_local
        self.logs = pathlib.Path(opts.sweep_dir) / "logs"

    def started(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    def ask(self) -> _Running:
        """A new trial, proposed by the sampler seeded for its number."""
        self.study.sampler = sampler(self.opts.search, self.opts.seed, self.started(),
                                     self.opts.startup_trials)
        trial = self.study.ask()
        trial.set_user_attr("launcher", self.me)
        # Seeded by the number the trial got (another launcher may have asked meanwhile); the
        # sampler draws when the space suggests (Optuna's relative params are drawn lazily).
        self.study.sampler = sampler(self.opts.search, self.opts.seed, trial.number,
                                     self.opts.startup_trials)
        try:
            overrides = propose(self.space, self.opts.sweep, trial, self.base)
            workdir = as_trial(self.opts, trial.number, overrides).workdir
            if pathlib.Path(workdir).exists():
                raise ValueError(f"{workdir} holds a run that is not trial {trial.number} of "
                                 f"study {self.study.study_name!r} (the study was replaced?); "
                                 "use a new --workdir")
        except Exception:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            raise
        trial.set_user_attr("overrides", overrides)
        record(self.opts, self.study, self.metric, self.mode)
        run = as_trial(self.opts, trial.number, overrides)
        logging.info("trial %s: %s", run.id, " ".join(
            f"{k}={trials_lib.format_value(v)}" for k, v in overrides.items()))
        return self.track(_Running(trial, run, set()))

    def unfinished(self) -> list[_Running]:
        """The trials this launcher started that the study still holds as running: those with
        their overrides resume; one stopped before its overrides were recorded never ran."""
        out = []
        for frozen in self.study.get_trials(deepcopy=False,
                                            states=(self.optuna.trial.TrialState.RUNNING,)):
            if frozen.user_attrs.get("launcher") != self.me:
                continue
            if "overrides" not in frozen.user_attrs:
                self.study.tell(frozen.number, state=self.optuna.trial.TrialState.FAIL)
                continue
            trial = self.optuna.trial.Trial(self.study, frozen._trial_id)
            run = as_trial(self.opts, frozen.number, frozen.user_attrs["overrides"])
            r = self.track(_Running(trial, run, set(frozen.intermediate_values)))
            r.pruned_at = frozen.user_attrs.get("pruned_at")  # decided, not yet told
            out.append(r)
        return out

    def track(self, r: _Running) -> _Running:
        r.steps = int(overrides_lib.apply(self.base, r.run.overrides).train.steps)
        return r

    def report(self, r: _Running) -> int | None:
        """Reports the trial's new validation values; the step to prune it at, or None."""
        if r.pruned_at is not None:  # nothing counts after the pruner's decision
            return None
        split, name = results_lib.split_metric(self.metric)
        for line in layout.read_metrics(r.run.workdir):
            value, step = line.get(name), line.get("step")
            if (line.get("split") != split or not isinstance(value, (int, float))
                    or not isinstance(step, int) or step in r.reported or not math.isfinite(value)
                    or step >= r.steps):  # the final score, on the whole split
                continue
            r.trial.report(float(value), step)
            r.reported.add(step)
            if r.trial.should_prune():
                # Recorded before the trial is stopped: a launcher killed now still knows (ASHA
                # would not decide again: it records a rung as passed when it compares).
                r.trial.set_user_attr("pruned_at", step)
                r.pruned_at = step
                return step
        return None

    def tell(self, r: _Running, outcome: str, returncode: int | None) -> str:
        """Tells the study how the trial ended; returns the outcome recorded."""
        state = self.optuna.trial.TrialState
        trial_number = r.trial.number
        if returncode is not None:
            r.trial.set_user_attr("returncode", returncode)
        if r.pruned_at is not None:  # (even if it ended before the SIGTERM: as decided)
            outcome = PRUNED
            self.study.tell(trial_number, state=state.PRUNED)
        elif outcome == layout.FINISHED:
            result = results_lib.TrialResult(
                r.run.id, r.run.overrides, pathlib.Path(r.run.workdir),
                layout.read_metrics(r.run.workdir), layout.read_status(r.run.workdir) or {},
                None)
            value = results_lib.summarize(result, self.metric, self.mode).best
            if value is None:
                outcome = "failed"
                r.trial.set_user_attr("outcome", f"finished without {self.metric}")
                self.study.tell(trial_number, state=state.FAIL)
            else:
                self.study.tell(trial_number, value)
        elif outcome in (layout.DIVERGED, "failed"):
            r.trial.set_user_attr("outcome", outcome)
            self.study.tell(trial_number, state=state.FAIL)
        # interrupted: still running in the study, resumed by the next launcher
        self.outcomes[r.run.id] = outcome
        record(self.opts, self.study, self.metric, self.mode)
        logging.info("trial %s: %s%s", r.run.id, outcome,
                     f" at step {r.pruned_at}" if r.pruned_at is not None else "")
        return outcome
