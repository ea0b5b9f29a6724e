"""The ablation table types (Stats, Row, Table, Pivot) and their Markdown, CSV and LaTeX text.

`launch.report` fills a Table or Pivot from a sweep's trials; `launch.figures` draws a Table.
Every formatter takes either kind: a Pivot is told from a Table by its `cells`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, NamedTuple


class Stats(NamedTuple):
    """A metric over the seeds of one setting."""

    mean: float | None  # None when n == 0
    std: float | None  # sample std (ddof=1); None when n < 2
    n: int


class Row(NamedTuple):
    """One setting of the swept factors, its trials folded."""

    setting: dict[str, Any]  # factor key -> override value (None: key absent)
    best: Stats
    final: Stats
    num_params: float | None
    steps_per_sec: float | None
    diverged: int
    trials: int  # trials that have a value or diverged: the diverged fraction's denominator
    best_values: tuple[float, ...]  # of the trials in the means, in sweep order
    included: tuple[str, ...]  # their ids


class Table(NamedTuple):
    """The ablation table: one row per setting of the swept factors."""

    metric: str
    mode: str  # min | max
    factors: list[str]  # full override keys, in sweep order
    names: dict[str, str]  # factor key -> column name
    rows: list[Row]
    best: int | None  # index of the best row
    notes: list[str]


class Pivot(NamedTuple):
    """A two-factor sweep's best metric, factor `a` down and factor `b` across."""

    metric: str
    mode: str
    a: str  # row factor key
    b: str  # column factor key
    names: dict[str, str]
    row_values: list[Any]
    col_values: list[Any]
    cells: list[list[Row | None]]  # None: a combination the sweep does not have
    best: tuple[int, int] | None
    notes: list[str]


def canon(value: Any) -> str:
    """An override value as a key: equal values, equal text (the sweep's grouping)."""
    return json.dumps(value, sort_keys=True, default=str)


def value_text(value: Any) -> str:
    """An override value as it was written in the sweep (None: the trial lacks the key)."""
    if value is None:
        return "–"
    return value if isinstance(value, str) else canon(value) if isinstance(
        value, (list, dict)) else str(value)


def _decimals(x: float, digits: int) -> int:
    return max(0, min(6, digits - 1 - math.floor(math.log10(abs(x))))) if x else digits - 1


def stats_text(s: Stats) -> str:
    """`mean ± std` with std to 2 significant digits (mean to 4 when there is no std)."""
    if s.mean is None:
        return ""
    if not math.isfinite(s.mean) or abs(s.mean) >= 1e6:
        return f"{s.mean:.4g}"
    if s.std is None:
        return f"{s.mean:.{_decimals(s.mean, 4)}f}"
    d = _decimals(s.std, 2) if s.std else _decimals(s.mean, 4)
    return f"{s.mean:.{d}f} ± {s.std:.{d}f}"


def _count_text(n: float | None) -> str:
    if n is None:
        return ""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:g}"


def _is_pivot(t: Table | Pivot) -> bool:
    return hasattr(t, "cells")


def _grid(t: Table | Pivot):
    """(header, rows of text, cells to bold, cell to star, number of left-aligned columns)."""
    if _is_pivot(t):
        header = [f"{t.names[t.a]} \\ {t.names[t.b]}"] + [value_text(v) for v in t.col_values]
        rows = [[value_text(v)] + [
            "" if c is None else (stats_text(c.best) or ("diverged" if c.diverged else "–"))
            + (" †" if c is not None and c.diverged else "") for c in cells]
            for v, cells in zip(t.row_values, t.cells)]
        star = None if t.best is None else (t.best[0], t.best[1] + 1)
        return header, rows, {star} - {None}, star, 1
    k = len(t.factors)
    header = [t.names[f] for f in t.factors] + [
        f"best {t.metric}", f"final {t.metric}", "n", "params", "steps/s", "diverged"]
    rows = [[value_text(r.setting[f]) for f in t.factors] + [
        stats_text(r.best), stats_text(r.final), str(r.best.n), _count_text(r.num_params),
        "" if r.steps_per_sec is None else f"{r.steps_per_sec:.1f}",
        f"{r.diverged}/{r.trials}"] for r in t.rows]
    bold = set() if t.best is None else {(t.best, j) for j in range(len(header))}
    return header, rows, bold, None if t.best is None else (t.best, k), k


def to_markdown(t: Table | Pivot) -> str:
    """A GitHub Markdown table, the best metric in bold with a ★, then the notes."""
    header, rows, _, star, left = _grid(t)

    def cell(i: int, j: int, text: str) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}** ★" if (i, j) == star else text

    lines = ["| " + " | ".join(cell(-1, j, h) for j, h in enumerate(header)) + " |",
             "|" + "|".join(":---" if j < left else "---:" for j in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(i, j, x) for j, x in enumerate(row)) + " |"
              for i, row in enumerate(rows)]
    return "\n".join(lines + [""] + t.notes) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "†": r"$^\dagger$", "–": "--", "★": r"$\star$"}
_TEX_SPECIAL = re.compile("|".join(map(re.escape, _TEX)))


def _tex(text: str) -> str:
    return _TEX_SPECIAL.sub(lambda m: _TEX[m.group()], text)


def to_latex(t: Table | Pivot) -> str:
    """A booktabs tabular (\\usepackage{booktabs}); best cell(s) in \\textbf; notes as comments."""
    header, rows, bold, _, left = _grid(t)
    lines = [r"\begin{tabular}{" + "l" * left + "r" * (len(header) - left) + "}", r"\toprule",
             " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for i, row in enumerate(rows):
        lines.append(" & ".join(rf"\textbf{{{_tex(x)}}}" if (i, j) in bold and x else _tex(x)
                                for j, x in enumerate(row)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {_tex(n)}" for n in t.notes]
    return "\n".join(lines) + "\n"


def _csv_number(x: float | None) -> str:
    return "" if x is None else f"{x:.10g}"  # full precision less float noise (2.1500000000000004)


def to_csv(t: Table | Pivot) -> str:
    """Numbers at full precision, one `best` column marking the best row (or cell's column)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if _is_pivot(t):
        nb = t.names[t.b]
        writer.writerow([t.names[t.a]] + [f"{nb}={value_text(v)} {field}" for v in t.col_values
                                          for field in ("mean", "std", "n")] + ["best"])
        for i, (v, cells) in enumerate(zip(t.row_values, t.cells)):
            best = value_text(t.col_values[t.best[1]]) if t.best and t.best[0] == i else ""
            writer.writerow([value_text(v)] + [x for c in cells for x in (
                ("", "", 0) if c is None else
                (_csv_number(c.best.mean), _csv_number(c.best.std), c.best.n))] + [best])
        return out.getvalue()
    writer.writerow(["metric"] + [t.names[f] for f in t.factors] + [
        "best_mean", "best_std", "final_mean", "final_std", "n", "num_params", "steps_per_sec",
        "diverged", "trials", "diverged_frac", "best"])
    for i, r in enumerate(t.rows):
        writer.writerow([t.metric] + [value_text(r.setting[f]) for f in t.factors] + [
            _csv_number(r.best.mean), _csv_number(r.best.std), _csv_number(r.final.mean),
            _csv_number(r.final.std), r.best.n, _csv_number(r.num_params),
            _csv_number(r.steps_per_sec), r.diverged, r.trials,
            _csv_number(r.diverged / r.trials if r.trials else None), int(i == t.best)])
    return out.getvalue()


WRITERS = {"md": to_markdown, "csv": to_csv, "tex": to_latex}  # file extension -> formatter
