"""The figures of an ablation Table: learning curves, best metric vs each factor, box plots.

matplotlib is imported when `write` runs (not with the module): tables need nothing of it.
`write` takes the Table and the trials' curves rather than the sweep, so this module knows only
`launch.tables`; `launch.report.figures` does it all from a sweep.
"""

from __future__ import annotations

import collections
import math
import pathlib
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from launch import tables


# Ten well-separated colours (matplotlib's tab10); past ten series the dash changes, so no two
# series look alike (tab20 comes in light/dark pairs of one hue, which look alike).
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf")
DASHES = ("-", "--", ":", "-.")


def style(k: int) -> dict[str, str]:
    """The colour and line style of series k."""
    return {"color": TAB10[k % len(TAB10)], "linestyle": DASHES[k // len(TAB10) % len(DASHES)]}


def legend_outside(ax) -> None:
    """The legend to the right of the axes, where it covers no data."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def box_scale(values: Sequence[float]) -> str:
    """"log" when the largest value is over 5x the median (and all are positive), else
    "linear"."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite or finite[0] <= 0:
        return "linear"
    return "log" if finite[-1] > 5 * finite[len(finite) // 2] else "linear"


def axis_kind(values: Sequence[Any]) -> str:
    """How to lay out a factor's values: categorical (not all numbers, or only two), log
    (positive and geometric: equal ratios, a learning-rate grid; or spanning over 10x), else
    linear. The ticks go at the values themselves either way (`_versus`)."""
    numbers = sorted({float(v) for v in values
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if (not values or len(numbers) < len({tables.canon(v) for v in values}) or len(numbers) < 3
            or not all(map(math.isfinite, numbers))):
        return "categorical"
    if numbers[0] > 0:
        ratios = [b / a for a, b in zip(numbers, numbers[1:])]
        if numbers[-1] > 10 * numbers[0] or (min(ratios) > 1.2 and max(ratios) < 1.05 * min(
                ratios) and not _equal_steps(numbers)):
            return "log"
    return "linear"


def _equal_steps(numbers: Sequence[float]) -> bool:
    steps = [b - a for a, b in zip(numbers, numbers[1:])]
    return max(steps) < 1.05 * min(steps)


def _label(t: tables.Table, setting: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{t.names[k]}={tables.value_text(setting[k])}" for k in keys) or "all"


def write(t: tables.Table, curves: Mapping[str, Sequence[tuple[int, float]]],
          out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Writes curves.png, vs_<factor>.png per swept factor and box.png; returns their paths.

    curves: trial id -> (step, value) of t.metric, for every trial in the rows' means.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in _drawn(plt, t, curves):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120, bbox_inches="tight")  # (the legend outside)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def _drawn(plt, t: tables.Table, curves: Mapping[str, Sequence[tuple[int, float]]]):
    """(file name, figure) of each figure, drawn one at a time so that one is open at once."""
    yield "curves.png", _curves(plt, t, curves)
    for factor in t.factors:
        yield f"vs_{re.sub(r'[^A-Za-z0-9_.-]+', '_', t.names[factor])}.png", _versus(plt, t, factor)
    yield "box.png", _box(plt, t)


def _curves(plt, t: tables.Table, curves: Mapping[str, Sequence[tuple[int, float]]]):
    """Each row's learning curve: the mean over the seeds that logged each step, band min-max."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, row in enumerate(t.rows):
        per_step = collections.defaultdict(list)
        for trial_id in row.included:
            for step, v in curves[trial_id]:
                per_step[step].append(v)
        steps = sorted(per_step)
        if steps:
            (line,) = ax.plot(steps, [statistics.fmean(per_step[s]) for s in steps],
                              label=_label(t, row.setting, t.factors), **style(k))
            ax.fill_between(steps, [min(per_step[s]) for s in steps],
                            [max(per_step[s]) for s in steps], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    ax.set(xlabel="step", ylabel=t.metric, title=f"{t.metric}: mean over seeds, min–max band")
    if ax.lines:
        legend_outside(ax)
        if box_scale([y for line in ax.lines for y in line.get_ydata()]) == "log":
            ax.set_yscale("log")
    return fig


def _versus(plt, t: tables.Table, factor: str):
    """The best metric against one factor's values, a line per setting of the other factors."""
    values = list({tables.canon(r.setting[factor]): r.setting[factor] for r in t.rows}.values())
    kind = axis_kind(values)
    x_of = {tables.canon(v): (float(v) if kind != "categorical" else i)
            for i, v in enumerate(values)}
    others = [k for k in t.factors if k != factor]
    lines = collections.defaultdict(list)  # one line per setting of the other factors
    for row in t.rows:
        lines[tuple(tables.canon(row.setting[k]) for k in others)].append(row)
    fig, ax = plt.subplots(figsize=(6, 4))
    for g, rows in enumerate(lines.values()):
        colour = style(g)["color"]
        rows = sorted((r for r in rows if r.best.n),
                      key=lambda r: x_of[tables.canon(r.setting[factor])])
        if not rows:
            continue
        # Categories: no connecting lines, and each group nudged sideways so none hide.
        dodge = 0.08 * (g - (len(lines) - 1) / 2) if kind == "categorical" else 0.0
        xs = [x_of[tables.canon(r.setting[factor])] + dodge for r in rows]
        ax.errorbar(xs, [r.best.mean for r in rows], capsize=3, marker="o",
                    yerr=[r.best.std or 0.0 for r in rows],
                    linestyle="none" if kind == "categorical" else style(g)["linestyle"],
                    color=colour, label=_label(t, rows[0].setting, others))
        for x, r in zip(xs, rows):
            ax.scatter([x] * r.best.n, r.best_values, s=10, alpha=0.4, color=colour)
    if kind == "log":
        ax.set_xscale("log")
        ax.minorticks_off()
    # Ticks at the swept values, labelled as the sweep wrote them: never a run of digits.
    ax.set_xticks([x_of[tables.canon(v)] for v in values], [tables.value_text(v) for v in values],
                  rotation=30 if len(values) > 5 else 0)
    n = sorted({r.best.n for r in t.rows if r.best.n})
    seeds = "no" if not n else f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    ax.set(xlabel=t.names[factor], ylabel=f"best {t.metric}",
           title=f"best {t.metric} vs {t.names[factor]}: mean ± std over {seeds} seed(s), "
                 "points: trials")
    if others and ax.lines:
        legend_outside(ax)
    return fig


def _box(plt, t: tables.Table):
    """Greff et al.'s box plot of the best metric per setting, each trial's point over it."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(t.rows)), 4.5))
    boxed = [i for i, r in enumerate(t.rows, start=1) if len(r.best_values) > 1]
    if boxed:  # a setting of one trial is its point alone, not a flat box
        ax.boxplot([list(t.rows[i - 1].best_values) for i in boxed], positions=boxed)
    for i, r in enumerate(t.rows, start=1):  # with 3 seeds a box hides little: show the points
        ax.scatter([i] * len(r.best_values), r.best_values, s=12, alpha=0.5, color="k", zorder=3)
    crowded = len(t.rows) > 3
    ax.set_xticks(range(1, len(t.rows) + 1), [_label(t, r.setting, t.factors) for r in t.rows],
                  rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set(ylabel=f"best {t.metric}", title=f"best {t.metric} per setting: boxes over seeds, "
                                           "points: trials")
    if box_scale([v for r in t.rows for v in r.best_values]) == "log":
        ax.set_yscale("log")  # an outlier setting would flatten all the others' boxes
    return fig
