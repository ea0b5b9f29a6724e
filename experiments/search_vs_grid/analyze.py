r"""The search-vs-reference table: train steps until a trial is within --within of the
reference's best, and the best reached at equal budgets (fractions of the reference's steps).

    python experiments/search_vs_grid/analyze.py --runs=runs/search_vs_grid \
        --out=experiments/search_vs_grid/results.md

RUNS holds one sweep dir per search: `reference` (run to the end), and `<method>_<seed>` for
each method and seed (random_0, tpe_0, tpe_asha_0, ...).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from launch import search_report  # noqa: E402

FRACTIONS = (1 / 8, 1 / 4, 1 / 3)


def curve(sweep_dir: pathlib.Path):
    """(study, [(trials ended, steps spent, best so far)], wall seconds)."""
    study, _ = search_report.load(sweep_dir)
    steps = {t.number: search_report.steps_spent(sweep_dir, t.number) for t in study.trials}
    ended = [t for t in study.trials if t.datetime_complete]
    wall = (max(t.datetime_complete for t in ended)
            - min(t.datetime_start for t in ended)).total_seconds() if ended else 0.0
    return study, search_report.progress(study, steps), wall


def best_within(points, budget: float) -> float | None:
    got = [b for _, spent, b in points if spent <= budget and b is not None]
    return got[-1] if got else None


def steps_to(points, target: float) -> int | None:
    return next((spent for _, spent, b in points if b is not None and b <= target), None)


def _fmt(x, spec=".3f"):
    return "–" if x is None else format(x, spec)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--out", default="")
    parser.add_argument("--within", type=float, default=0.02)
    args = parser.parse_args(argv)
    runs = pathlib.Path(args.runs)
    ref_study, ref, ref_wall = curve(runs / "reference")
    best, total = ref_study.best_value, ref[-1][1]
    target = best + args.within
    budgets = [f * total for f in FRACTIONS]
    lines = [f"Reference: {len(ref_study.trials)} trials run to the end, {total} train steps, "
             f"best valid/bpc {best:.4f} (trial {ref_study.best_trial.number}); its own order "
             f"reached {target:.4f} (best + {args.within}) after "
             f"{_fmt(steps_to(ref, target), 'd')} steps; wall {ref_wall / 60:.1f} min.", "",
             "| search | seed | trials | steps spent | steps to target | "
             + " | ".join(f"best at {f:.3g} of ref" for f in FRACTIONS) + " | best | wall min |",
             "|:---|---:|---:|---:|---:|" + "---:|" * (len(FRACTIONS) + 2)]
    by_method: dict[str, list] = {}
    for sweep_dir in sorted(p for p in runs.iterdir() if p.name != "reference"
                            and (p / "sweep.json").is_file()):
        method, _, seed = sweep_dir.name.rpartition("_")
        study, points, wall = curve(sweep_dir)
        row = (len(study.trials), points[-1][1] if points else 0, steps_to(points, target),
               [best_within(points, b) for b in budgets], study.best_value, wall)
        by_method.setdefault(method, []).append(row)
        lines.append(f"| {method} | {seed} | {row[0]} | {row[1]} | {_fmt(row[2], 'd')} | "
                     + " | ".join(_fmt(v) for v in row[3]) + f" | {row[4]:.3f} | "
                     f"{wall / 60:.1f} |")
    lines += ["", "| search | reached target | mean steps to target (reached) | "
              "fraction of the reference's steps | "
              + " | ".join(f"mean best at {f:.3g}" for f in FRACTIONS) + " |",
              "|:---|---:|---:|---:|" + "---:|" * len(FRACTIONS)]
    for method, rows in by_method.items():
        reached = [r[2] for r in rows if r[2] is not None]
        mean = statistics.fmean(reached) if reached else None
        means = [statistics.fmean(v) if (v := [r[3][i] for r in rows if r[3][i] is not None])
                 else None for i in range(len(FRACTIONS))]
        lines.append(f"| {method} | {len(reached)}/{len(rows)} | {_fmt(mean, '.0f')} | "
                     f"{_fmt(mean / total if mean else None)} | "
                     + " | ".join(_fmt(m) for m in means) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
