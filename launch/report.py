"""The `launch.report` command: a sweep directory's ablation tables and figures.

    python -m launch.report --sweep_dir=runs/NAME --metric=valid/bpc [--mode=auto|min|max]
        [--out=DIR] [--formats=md,csv,tex] [--pivot=cell,bptt_len] [--nofigures]

Reads sweep.json, outcomes.json (optional) and each trial's run directory (metrics.jsonl,
status.json; see `launch/__init__.py`) and writes into OUT (default SWEEP_DIR/report):
  table.{md,csv,tex}  one row per setting of the swept factors (the override keys that take more
                      than one value; `seed` keys are folded): mean ± std (ddof=1) and n of the
                      best and the final metric, parameters, steps/s and the diverged fraction
                      (Collins et al. 2017); the best row is marked. Markdown is also printed.
  pivot.{md,csv,tex}  factor A rows x factor B columns of the best metric (two-factor sweeps)
  curves.png, vs_<factor>.png, box.png   (Greff et al. 2015's box plots per variant)
  search.md, search_progress.png, slices.png   for an adaptive search (`launch.search_report`:
                      the best trials, each hyperparameter's fANOVA importance, the best so far
                      against trials and train steps, the metric against each hyperparameter);
                      --metric defaults to the one the search optimised; pruned trials are
                      marked, and enter the table with their best before they were stopped
This module folds the trials into the table and runs the command: `launch.results` reads the
trials, `launch.tables` holds the table types and writes their text, `launch.figures` draws (the
names that lived here before, load_sweep, Table, to_markdown and the rest, still work).

A metric `split/name` is the `name` scalar of the metrics.jsonl lines of that split. Trials that
diverged (status or outcome "diverged", or a non-finite metric value) count in the diverged
fraction and are left out of the metric means; failed trials and trials with no value of the
metric yet are listed as missing; running or interrupted ones enter with their best so far. A
finished trial whose last metrics line is cut is read from what its status.json recorded.

Each trial is read from SWEEP_DIR/trials/<id> and nowhere else, so a sweep directory that was
moved, copied or synced reports its own trials (a trial missing from the copy is missing).
A --metric that no trial has is refused with the metrics found, and nothing is written (unless
every trial diverged before logging it, and some trial logged its name in another split: then
the table shows them all diverged; without such a name the one line names the diverged trials);
every bad argument is one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import collections
import pathlib
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags, logging

import launch
from launch import figures as figures_lib
from launch import search_report
from launch import results as results_lib
from launch import tables

# Names that lived here before the table types moved to `launch.tables` and the reading of trials
# to `launch.results`, kept working for old callers.
Stats, Row, Table, Pivot = tables.Stats, tables.Row, tables.Table, tables.Pivot
to_markdown, to_csv, to_latex = tables.to_markdown, tables.to_csv, tables.to_latex
TrialResult, TrialSummary = results_lib.TrialResult, results_lib.TrialSummary
load_sweep, metrics_found, outcome = (results_lib.load_sweep, results_lib.metrics_found,
                                      results_lib.outcome)
curve, summarize = results_lib.curve, results_lib.summarize


def _swept_factors(results: Sequence[results_lib.TrialResult]) -> list[str]:
    """Override keys with more than one value across trials, seeds excluded, in sweep order."""
    keys = list(dict.fromkeys(k for r in results for k in r.overrides))
    return [k for k in keys if k.rsplit(".", 1)[-1] != "seed"
            and len({tables.canon(r.overrides.get(k)) for r in results}) > 1]


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last dotted component of each key, or the full key where two would clash."""
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = collections.Counter(short.values())
    return {k: s if counts[s] == 1 else k for k, s in short.items()}


def _stats(values: Sequence[float]) -> tables.Stats:
    if not values:
        return tables.Stats(None, None, 0)
    std = statistics.stdev(values) if len(values) > 1 else None
    return tables.Stats(statistics.fmean(values), std, len(values))


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _row(setting: dict[str, Any], summaries: list[results_lib.TrialSummary]) -> tables.Row:
    kept = [s for s in summaries if s.outcome not in ("diverged", "failed") and s.best is not None]
    diverged = sum(s.outcome == "diverged" for s in summaries)
    return tables.Row(setting, _stats([s.best for s in kept]), _stats([s.final for s in kept]),
               _mean([s.num_params for s in summaries]),
               _mean([s.steps_per_sec for s in summaries]), diverged, len(kept) + diverged,
               tuple(s.best for s in kept), tuple(s.id for s in kept))


def _notes(metric: str, mode: str, summaries: list[results_lib.TrialSummary],
           results: Sequence[results_lib.TrialResult]) -> list[str]:
    word = "lowest" if mode == "min" else "highest"
    notes = [(f"best: a trial's {word} {metric}; final: its last {metric}; mean ± sample std "
              "(ddof=1) over seeds, n trials. Diverged trials (status, outcome or a non-finite "
              "value) count in 'diverged' and are excluded from the metric means."),
             f"best setting (★ in Markdown, bold in LaTeX): by mean best {metric} ({word})."]
    unfinished = [f"{s.id} ({s.outcome})" for s in summaries
                  if s.outcome in ("running", "interrupted", "pruned") and s.best is not None]
    if unfinished:
        notes.append(f"unfinished or pruned (best so far included): {len(unfinished)} trials: "
                     + ", ".join(unfinished))
    missing = collections.defaultdict(list)
    for s in summaries:
        if s.outcome != "diverged" and (s.best is None or s.outcome == "failed"):
            reason = f"finished, no {metric}" if s.outcome == "finished" else s.outcome
            missing[reason].append(s.id)
    if missing:
        count = sum(len(ids) for ids in missing.values())
        notes.append(f"missing: {count} of {len(summaries)} trials: " + "; ".join(
            f"{', '.join(ids)} ({reason})" for reason, ids in missing.items()))
    notes += [s.problem for s in summaries if s.problem]
    if summaries and all(s.outcome == "diverged" and s.best is None for s in summaries):
        notes.append(f"no trial has a {metric} value: every trial diverged before it logged one")
    elif all(s.best is None for s in summaries):
        notes.append(f"no trial has a {metric} value yet; metrics seen: "
                     + (", ".join(results_lib.metrics_found(results)) or "none"))
    return notes


def _best(means: Sequence[float | None], mode: str) -> int | None:
    scored = [(m if mode == "min" else -m, i) for i, m in enumerate(means) if m is not None]
    return min(scored)[1] if scored else None


def table(results: Sequence[results_lib.TrialResult], metric: str,
          mode: str = "auto") -> tables.Table:
    """One row per setting of the swept factors, in order of first appearance in the sweep."""
    mode = results_lib.resolve_mode(metric, mode)
    factors = _swept_factors(results)
    settings: dict[tuple, dict] = {}
    groups: dict[tuple, list[results_lib.TrialSummary]] = collections.defaultdict(list)
    summaries = []
    for r in results:
        key = tuple(tables.canon(r.overrides.get(f)) for f in factors)
        settings.setdefault(key, {f: r.overrides.get(f) for f in factors})
        summaries.append(results_lib.summarize(r, metric, mode))
        groups[key].append(summaries[-1])
    rows = [_row(settings[key], groups[key]) for key in settings]
    return tables.Table(metric, mode, factors, short_names(factors), rows,
                 _best([row.best.mean for row in rows], mode),
                 _notes(metric, mode, summaries, results))


def _resolve_factor(t: tables.Table, name: str) -> str:
    for key in t.factors:
        if name in (key, t.names[key]):
            return key
    raise ValueError(f"{name!r} is not a swept factor; the swept factors are "
                     f"{[t.names[k] for k in t.factors]}")


def pivot(results: Sequence[results_lib.TrialResult], metric: str, mode: str, a: str,
          b: str) -> tables.Pivot:
    """The best metric with factor `a` down the rows and factor `b` across the columns."""
    t = table(results, metric, mode)
    a, b = _resolve_factor(t, a), _resolve_factor(t, b)
    others = [t.names[k] for k in t.factors if k not in (a, b)]
    if a == b or others:
        raise ValueError(f"a pivot needs two different factors and no others swept; got {a!r}, "
                         f"{b!r} with {others} also swept (pivot a sweep over two factors)")
    row_values = list({tables.canon(r.setting[a]): r.setting[a] for r in t.rows}.values())
    col_values = list({tables.canon(r.setting[b]): r.setting[b] for r in t.rows}.values())
    index_a = {tables.canon(v): i for i, v in enumerate(row_values)}
    index_b = {tables.canon(v): j for j, v in enumerate(col_values)}
    cells: list[list[tables.Row | None]] = [[None] * len(col_values) for _ in row_values]
    best = None
    for k, row in enumerate(t.rows):
        i, j = index_a[tables.canon(row.setting[a])], index_b[tables.canon(row.setting[b])]
        cells[i][j] = row
        best = (i, j) if k == t.best else best
    diverged = any(row.diverged for row in t.rows)
    notes = [(f"best {metric} (mean ± std over seeds): {t.names[a]} down, {t.names[b]} across"
              + ("; † some trials diverged (see the table)." if diverged else "."))] + t.notes[1:]
    return tables.Pivot(metric, t.mode, a, b, t.names, row_values, col_values, cells, best, notes)


def figures(results: Sequence[results_lib.TrialResult], metric: str, out_dir: str | pathlib.Path,
            mode: str = "auto") -> list[pathlib.Path]:
    """`launch.figures.write` of the sweep's table: curves.png, vs_<factor>.png, box.png."""
    t = table(results, metric, mode)
    by_id = {r.id: r for r in results}
    curves = {i: results_lib.curve(by_id[i], metric) for row in t.rows for i in row.included}
    return figures_lib.write(t, curves, out_dir)


_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Sweep directory (holds sweep.json).",
                                 required=True)
_METRIC = flags.DEFINE_string("metric", "valid/bpc", "split/name: the `name` scalar of the "
                              "metrics.jsonl lines of that split; one that no trial has is "
                              "refused, naming those found.")
_MODE = flags.DEFINE_enum("mode", "auto", ["auto", "min", "max"],
                          "Whether lower or higher is better; auto: max iff the name has 'acc'.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default SWEEP_DIR/report).")
_FORMATS = flags.DEFINE_list("formats", list(tables.WRITERS), "Table files: md, csv, tex.")
_PIVOT = flags.DEFINE_list("pivot", [], "factorA,factorB: also a pivot table (automatic when "
                           "exactly two factors are swept).")
_FIGURES = flags.DEFINE_bool("figures", True, "Write PNG figures (--nofigures: tables only).")
_STORAGE = flags.DEFINE_string("storage", "", "A search's study URL, when not the one recorded "
                               "(SWEEP_DIR/study.db, or a URL recorded without its password).")


def _write(out: pathlib.Path, stem: str, t: tables.Table | tables.Pivot,
           formats: Sequence[str]) -> None:
    for fmt in formats:
        (out / f"{stem}.{fmt}").write_text(tables.WRITERS[fmt](t))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _check_metric(sweep_dir: pathlib.Path, results: Sequence[results_lib.TrialResult], metric: str):
    """Refuses a metric that no trial has (ValueError), unless every trial diverged before it
    was logged and some trial logged the name in another split (valid/bpc after train/bpc):
    then the table is still the sweep's result, its diverged fraction."""
    found = results_lib.metrics_found(results)
    if metric in found:
        return
    diverged = [r.id for r in results if results_lib.outcome(r) == "diverged"]
    if diverged and len(diverged) == len(results):
        name = results_lib.split_metric(metric)[1]
        if any(f.partition("/")[2] == name for f in found):
            return
        raise ValueError(f"--metric={metric}: every trial of {sweep_dir} diverged before it "
                         f"logged it ({', '.join(diverged)}); metrics found: "
                         f"{', '.join(found) or 'none'}")
    raise ValueError(f"--metric={metric}: no trial of {sweep_dir} has it; "
                     f"metrics found: {', '.join(found) or 'none yet'}")


def _tables(sweep_dir: pathlib.Path, metric: str, mode: str) -> tuple[
        list[results_lib.TrialResult], tables.Table, tables.Pivot | None]:
    """The sweep's trials, table and pivot; a bad argument exits 2 before anything is written."""
    try:
        results = results_lib.load_sweep(sweep_dir)
        results_lib.split_metric(metric)
        _check_metric(sweep_dir, results, metric)
        t = table(results, metric, mode)
        pair = _PIVOT.value or (t.factors if len(t.factors) == 2 else [])
        if pair and len(pair) != 2:
            raise ValueError(f"--pivot takes two factors, got {pair}")
        p = pivot(results, metric, mode, *pair) if pair else None
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    return results, t, p


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {argv[1:]} (every option is a --flag=value)")
    unknown = set(_FORMATS.value) - set(tables.WRITERS)
    if unknown:
        _fail(f"--formats: unknown {sorted(unknown)}; known: {list(tables.WRITERS)}")
    sweep_dir = pathlib.Path(_SWEEP_DIR.value)
    out = pathlib.Path(_OUT.value) if _OUT.value else sweep_dir / "report"
    if out.exists() and not out.is_dir():
        _fail(f"--out={out} is a file, not a folder: pass a folder for the report's files")
    metric, mode = _METRIC.value, _MODE.value
    try:
        searched = search_report.load(sweep_dir, _STORAGE.value)  # None: not a search
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if searched and not flags.FLAGS["metric"].present:
        metric, mode = searched[1]["metric"], searched[1]["mode"]  # what the search optimised
    results, t, p = _tables(sweep_dir, metric, mode)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"cannot make the report folder {out}: {e.strerror or e}")
    print(tables.to_markdown(t))
    _write(out, "table", t, _FORMATS.value)
    if p is not None:
        print(tables.to_markdown(p))
        _write(out, "pivot", p, _FORMATS.value)
    if _FIGURES.value:
        try:
            paths = figures(results, metric, out, mode)
        except ImportError:
            logging.warning("matplotlib cannot be imported (it comes with rnnlab: pip install "
                            "-e . again): no figures")
        else:
            logging.info("figures: %s", ", ".join(str(p) for p in paths))
    if searched:
        text, paths = search_report.write(sweep_dir, searched, out, draw=_FIGURES.value)
        print(text)
        logging.info("search figures: %s", ", ".join(str(p) for p in paths) or "none")
    logging.info("wrote %s", out)


if __name__ == "__main__":
    app.run(main, flags_parser=launch.parse_flags)
