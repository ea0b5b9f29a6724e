"""What `launch.report` adds for an adaptive search (`launch.search`), read from its study:

  search.md           the best trials (value, hyperparameters, train steps, outcome), the count of
                      trials by outcome, and each hyperparameter's importance (fANOVA, as Optuna
                      implements it: Hutter et al. 2014, used by Greff et al. 2015 for LSTMs)
  search_progress.png the best value so far, and each trial's own (x: pruned), against the trials
                      ended and against the train steps they spent (a pruned trial counts the
                      steps it ran)
  slices.png          the metric against each hyperparameter, one panel each; a pruned trial at
                      its last reported value, marked x

fANOVA fits a random forest to the completed trials, on the hyperparameters that every one of
them has (a conditional one, such as an LSTM variant, is left out); it needs 2 or more.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from launch import search as search_lib, trials as trials_lib
from rnnlab.run import layout


def load(sweep_dir: str | pathlib.Path, storage: str = ""):
    """(study, sweep.json's "search" record) of a search's sweep dir, or None for a grid;
    `storage` overrides the recorded URL (recorded without its password). FileNotFoundError or
    ValueError (one line) when the study cannot be read."""
    spec = layout.read_json(pathlib.Path(sweep_dir) / trials_lib.SWEEP_FILE)
    search = spec.get("search") if isinstance(spec, dict) else None
    if not isinstance(search, dict):
        return None
    url = search_lib.storage_url(sweep_dir, storage or search.get("storage") or "")
    if url.startswith("sqlite:///") and not pathlib.Path(url[len("sqlite:///"):]).is_file():
        raise FileNotFoundError(f"{sweep_dir}: the search's study {url[len('sqlite:///'):]} is "
                                "missing (its only state: restore it, or pass --storage=URL)")
    if "***" in url:
        raise ValueError(f"{sweep_dir}: its study is in {url}, whose password is not recorded: "
                         "pass --storage=URL")
    optuna = search_lib._optuna()
    try:
        return optuna.load_study(study_name=search["study"], storage=url), search
    except KeyError:
        raise ValueError(f"{url} holds no study {search['study']!r}") from None
    except Exception as e:  # noqa: BLE001 - the database's own errors, as one line
        if not type(e).__module__.startswith("sqlalchemy"):
            raise
        raise ValueError(f"cannot open {url}: {str(e).splitlines()[0]}") from None


def steps_spent(sweep_dir: str | pathlib.Path, number: int) -> int:
    """The train steps trial `number` ran: its last logged step."""
    lines = layout.read_metrics(pathlib.Path(sweep_dir) / trials_lib.TRIALS_DIR
                                / search_lib.trial_id(number))
    return max((m["step"] for m in lines if isinstance(m.get("step"), int)), default=0)


def progress(study, steps: dict[int, int]) -> list[tuple[int, int, float | None]]:
    """(trials ended, train steps they spent, best value so far) after each trial that ended,
    in the order they ended."""
    ended = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                   key=lambda t: (t.datetime_complete, t.number))
    better = max if study.direction.name == "MAXIMIZE" else min
    out, spent, best = [], 0, None
    for i, t in enumerate(ended, 1):
        spent += steps.get(t.number, 0)
        if t.state.name == "COMPLETE":
            best = t.value if best is None else better(best, t.value)
        out.append((i, spent, best))
    return out


def importance(study) -> dict[str, float] | str:
    """{hyperparameter: fANOVA importance (they sum to 1)}, or why there is none."""
    optuna = search_lib._optuna()
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return f"{len(done)} completed trial(s): fANOVA needs 2 or more"
    common = set.intersection(*(set(t.params) for t in done))
    varied = [p for p in common if len({repr(t.params[p]) for t in done}) > 1]
    if not varied:
        return "no hyperparameter that every completed trial has took two values"
    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            params=sorted(varied)))
    except ImportError as e:
        return f"fANOVA needs scikit-learn ({e})"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(study, steps: dict[int, int], metric: str, top: int = 10) -> str:
    """search.md: the best trials, the trials by outcome and the importances."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value,
                  reverse=study.direction.name == "MAXIMIZE")
    params = list(dict.fromkeys(p for t in trials for p in t.params))
    counts: dict[str, int] = {}
    for t in trials:
        name = search_lib.outcome_of(t) or "running"
        counts[name] = counts.get(name, 0) + 1
    lines = [f"# Search {study.study_name}: {len(trials)} trials, "
             + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), "",
             f"## The {min(top, len(done))} best by {metric}", "",
             "| rank | trial | " + " | ".join([metric, *params, "train steps"]) + " |",
             "|---:|:---|" + "---:|" * (len(params) + 2)]
    for rank, t in enumerate(done[:top], 1):
        lines.append(f"| {rank} | {search_lib.trial_id(t.number)} | {t.value:.4f} | " + " | ".join(
            _value(t.params[p]) if p in t.params else "–" for p in params)
            + f" | {steps.get(t.number, 0)} |")
    pruned = [f"{search_lib.trial_id(t.number)} (step {t.user_attrs.get('pruned_at')})"
              for t in trials if t.state.name == "PRUNED"]
    if pruned:
        lines += ["", f"pruned: {trials_lib.some(pruned, 12)}"]
    failed = [f"{search_lib.trial_id(t.number)} ({search_lib.outcome_of(t)})" for t in trials
              if t.state.name == "FAIL"]
    if failed:
        lines += ["", f"failed (told to the sampler as failures): {trials_lib.some(failed, 12)}"]
    got = importance(study)
    lines += ["", "## Hyperparameter importance (fANOVA)", ""]
    if isinstance(got, str):
        lines.append(f"none: {got}")
    else:
        lines += ["| hyperparameter | importance |", "|:---|---:|"]
        lines += [f"| {p} | {v:.3f} |" for p, v in got.items()]
        lines += ["", "Over the completed trials; the importances sum to 1."]
    return "\n".join(lines) + "\n"


def figures(study, steps: dict[int, int], metric: str, out: pathlib.Path) -> list[pathlib.Path]:
    """search_progress.png and slices.png (see the module doc)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from matplotlib.ticker import MaxNLocator

    paths = []
    ended = progress(study, steps)
    points = [p for p in ended if p[2] is not None]
    if points:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        own = _own_values(study)  # each trial's value, in the order they ended
        for ax, column, label in ((axes[0], 0, "trials ended"), (axes[1], 1, "train steps spent")):
            ax.step([p[column] for p in points], [p[2] for p in points], where="post",
                    label="best so far")
            for pruned, marker, name in ((False, "o", "a trial"), (True, "x", "pruned (last)")):
                xy = [(p[column], v) for p, (v, was) in zip(ended, own) if v is not None
                      and was == pruned]
                if xy:
                    ax.scatter(*zip(*xy), marker=marker, s=18, color="0.55", label=name)
            ax.set_xlabel(label)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Search {study.study_name}: the best so far and each trial's value")
        paths.append(out / "search_progress.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    params = list(dict.fromkeys(p for t in trials for p in t.params))
    if params:
        cols = min(3, len(params))
        rows = math.ceil(len(params) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False,
                                 layout="constrained")
        for ax, param in zip(axes.flat, params):
            _slice(ax, trials, param, metric)
        for ax in list(axes.flat)[len(params):]:
            ax.set_visible(False)
        fig.suptitle(f"Search {study.study_name}: {metric} against each hyperparameter "
                     "(colour: trial number; x: pruned, at its last value)")
        paths.append(out / "slices.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def _own_values(study) -> list[tuple[float | None, bool]]:
    """(value, pruned) of each ended trial, in `progress`'s order: a completed trial's value, a
    pruned one's last reported value, None for a failed one."""
    ended = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                   key=lambda t: (t.datetime_complete, t.number))
    return [(t.value, False) if t.state.name == "COMPLETE" else
            (t.intermediate_values[max(t.intermediate_values)], True)
            if t.state.name == "PRUNED" and t.intermediate_values else (None, False)
            for t in ended]


def _slice(ax, trials, param: str, metric: str) -> None:
    have = [t for t in trials if param in t.params]
    dist = have[0].distributions[param]
    categorical = type(dist).__name__ == "CategoricalDistribution"
    labels = [repr(c) if not isinstance(c, str) else c for c in getattr(dist, "choices", ())]
    for pruned in (False, True):
        chosen = [t for t in have if (t.state.name == "PRUNED") == pruned]
        xs = [labels.index(repr(t.params[param]) if not isinstance(t.params[param], str)
                           else t.params[param]) if categorical else t.params[param]
              for t in chosen]
        ys = [t.intermediate_values[max(t.intermediate_values)] if pruned else t.value
              for t in chosen]
        kept = [(x, y, t.number) for x, y, t in zip(xs, ys, chosen) if y is not None]
        if kept:
            ax.scatter([k[0] for k in kept], [k[1] for k in kept], c=[k[2] for k in kept],
                       cmap="viridis", marker="x" if pruned else "o", s=28,
                       vmin=0, vmax=max(t.number for t in trials) or 1)
    if categorical:
        ax.set_xticks(range(len(labels)), labels)
    elif getattr(dist, "log", False):
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def write(sweep_dir: str | pathlib.Path, loaded, out: pathlib.Path, *, draw: bool = True):
    """Writes search.md (and the figures) of `loaded` = `load(sweep_dir)`; returns (its text,
    figure paths)."""
    study, spec = loaded
    steps = {t.number: steps_spent(sweep_dir, t.number) for t in study.get_trials(deepcopy=False)}
    text = markdown(study, steps, spec["metric"])
    (out / "search.md").write_text(text)
    return text, figures(study, steps, spec["metric"], out) if draw else []

