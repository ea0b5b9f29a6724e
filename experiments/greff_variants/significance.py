r"""Each architecture against the vanilla LSTM, as Greff et al. 2015 tested theirs: the mean
difference of the metric and Welch's t-test (two-sided, p < 0.05 "significant").

    python experiments/greff_variants/significance.py --sweep_dir=runs/greff_variants \
        --metric=valid/bpc
"""

import argparse
import collections
import statistics

from scipy import stats

from launch import report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep_dir", required=True, help="The sweep directory.")
    parser.add_argument("--metric", default="valid/bpc", help="split/name, as launch.report's.")
    args = parser.parse_args()
    table = report.table(report.load_sweep(args.sweep_dir), args.metric, "min")
    values = collections.OrderedDict()
    for row in table.rows:
        name = "/".join(str(v) for v in row.setting.values() if v is not None)
        values[name] = list(row.best_values)
    base = values["lstm/vanilla"]
    print(f"| architecture | best {args.metric} | vs vanilla | Welch p | every seed vs every "
          "vanilla seed |")
    print("|---|---:|---:|---:|---|")
    for name, v in values.items():
        diff = statistics.fmean(v) - statistics.fmean(base)
        p = 1.0 if v is base else stats.ttest_ind(v, base, equal_var=False).pvalue
        worse = "worse" if min(v) > max(base) else ("better" if max(v) < min(base) else "")
        print(f"| {name} | {statistics.fmean(v):.3f} | {diff:+.3f} | {p:.2g} | {worse} |")


if __name__ == "__main__":
    main()
