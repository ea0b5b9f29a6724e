"""launch.report, .results, .tables and .figures on fake sweep directories written by hand (no
training)."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import statistics
import subprocess
import sys

import pytest

from launch import figures, report, tables
from launch import results as results_lib

REPO = pathlib.Path(__file__).resolve().parents[1]

# Best valid/bpc of seeds 0, 1, 2 per (cell, bptt_len): a, a + d, a + 2d, so the mean is a + d and
# the sample std (ddof=1) is exactly d (ddof=0 would give d * sqrt(2/3)).
BESTS = {
    ("elman", 10): (2.0, 0.1),
    ("elman", 20): (1.9, 0.2),
    ("lstm", 10): (1.5, 0.05),
    ("lstm", 20): (1.4, 0.3),  # mean 1.7: worse than lstm/10's 1.55 despite the lowest a
}
FINAL_GAP = 0.25  # every curve ends this far above its best


def _curve(best: float) -> list[float]:
    return [best + 1.0, best, best + FINAL_GAP]  # best in the middle, so best != final


def write_trial(sweep_dir: pathlib.Path, trial_id: str, *, valid: list[float] | None,
                status: str | None = "finished", num_params: int | None = 1000,
                rate: float = 10.0, tail: str = "") -> None:
    """A run directory as rnnlab.train leaves it; valid=None: the trial never started."""
    if valid is None:
        return
    workdir = sweep_dir / "trials" / trial_id
    workdir.mkdir(parents=True)
    lines = []
    for i, v in enumerate(valid):
        step = 100 * (i + 1)
        lines.append({"step": step, "split": "train", "loss": 2.0, "steps_per_sec": rate + i})
        lines.append({"step": step, "split": "valid", "bpc": v, "accuracy": 1.0 / (1.0 + v)})
    (workdir / "metrics.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines) + tail)
    if status is not None:
        record = {"status": status, "step": 100 * len(valid)}
        if num_params is not None:
            record["num_params"] = num_params
        (workdir / "status.json").write_text(json.dumps(record))


def make_sweep(sweep_dir: pathlib.Path, trials: list[dict], outcomes: dict | None = None) -> None:
    """trials: dicts with id and overrides; the run directories are written separately."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    spec = {"config": "configs/x.py:smoke", "sweep": "sweep.py", "trials": [
        {**t, "workdir": f"runs/x/trials/{t['id']}", "command": ["python", "-m", "rnnlab.main"]}
        for t in trials]}
    (sweep_dir / "sweep.json").write_text(json.dumps(spec))
    if outcomes is not None:
        (sweep_dir / "outcomes.json").write_text(json.dumps(outcomes))


def make_2x2(sweep_dir: pathlib.Path, skip: dict | None = None) -> list[dict]:
    """The 2x2x3 sweep of BESTS; `skip` maps a trial index to write_trial keyword overrides."""
    trials = []
    for (cell, bptt), (a, d) in BESTS.items():
        for seed in range(3):
            trial_id = f"{len(trials):03d}_cell={cell}_bptt={bptt}_seed={seed}"
            trials.append({"id": trial_id, "overrides": {
                "model.cell": cell, "train.bptt_len": bptt, "seed": seed, "train.steps": 300}})
            kwargs = {"valid": _curve(a + seed * d), "num_params": 1000 if cell == "elman"
                      else 4000, **(skip or {}).get(len(trials) - 1, {})}
            write_trial(sweep_dir, trial_id, **kwargs)
    make_sweep(sweep_dir, trials)
    return trials


def _row(t: tables.Table, cell: str, bptt: int) -> tables.Row:
    (row,) = [r for r in t.rows if r.setting == {"model.cell": cell, "train.bptt_len": bptt}]
    return row


def test_2x2_table_folds_seeds_into_mean_std_n(tmp_path):
    make_2x2(tmp_path)
    t = report.table(results_lib.load_sweep(tmp_path), "valid/bpc", "auto")
    assert t.mode == "min"
    assert t.factors == ["model.cell", "train.bptt_len"]  # seed and constant keys are not
    assert [t.names[f] for f in t.factors] == ["cell", "bptt_len"]
    assert len(t.rows) == 4
    for (cell, bptt), (a, d) in BESTS.items():
        row = _row(t, cell, bptt)
        assert row.best.n == 3 and row.final.n == 3
        assert row.best.mean == pytest.approx(a + d)
        assert row.best.std == pytest.approx(d)
        assert row.final.mean == pytest.approx(a + d + FINAL_GAP)
        assert row.final.std == pytest.approx(d)
        assert row.steps_per_sec == pytest.approx(11.0)  # mean of 10, 11, 12
        assert row.num_params == (1000 if cell == "elman" else 4000)
        assert (row.diverged, row.trials) == (0, 3)
    assert t.rows[t.best].setting == {"model.cell": "lstm", "train.bptt_len": 10}
    md = tables.to_markdown(t)
    starred = [line for line in md.splitlines() if "★" in line and line.startswith("|")]
    assert starred == [
        "| lstm | 10 | **1.550 ± 0.050** ★ | 1.800 ± 0.050 | 3 | 4k | 11.0 | 0/3 |"]


def test_mode_max_for_accuracy_picks_the_highest(tmp_path):
    make_2x2(tmp_path)
    t = report.table(results_lib.load_sweep(tmp_path), "valid/accuracy")
    assert t.mode == "max"
    row = t.rows[t.best]
    # accuracy = 1 / (1 + bpc): its best is at the lowest bpc of each trial
    expected = statistics.fmean(1 / (1 + 1.5 + s * 0.05) for s in range(3))
    assert row.setting == {"model.cell": "lstm", "train.bptt_len": 10}
    assert row.best.mean == pytest.approx(expected)
    t_min = report.table(results_lib.load_sweep(tmp_path), "valid/accuracy", "min")
    assert t_min.rows[t_min.best].setting == {"model.cell": "elman", "train.bptt_len": 10}


def test_diverged_trials_count_in_fraction_not_in_mean(tmp_path):
    # elman/20 seed 2 (index 5): status diverged, with a low bpc before it blew up that would
    # otherwise win; lstm/10 seed 0 (index 6): only outcomes.json says diverged (no status).
    trials = make_2x2(tmp_path, skip={5: {"valid": [0.5], "status": "diverged"},
                                      6: {"valid": [1.0], "status": None}})
    make_sweep(tmp_path, trials, outcomes={trials[6]["id"]: {"outcome": "diverged",
                                                             "returncode": 1}})
    t = report.table(results_lib.load_sweep(tmp_path), "valid/bpc", "min")
    row = _row(t, "elman", 20)
    assert (row.diverged, row.trials, row.best.n) == (1, 3, 2)
    assert row.best.mean == pytest.approx(statistics.fmean([1.9, 2.1]))
    assert row.best.std == pytest.approx(statistics.stdev([1.9, 2.1]))
    row = _row(t, "lstm", 10)
    assert (row.diverged, row.trials, row.best.n) == (1, 3, 2)
    assert row.best.mean == pytest.approx(1.575)
    assert t.rows[t.best].setting == {"model.cell": "lstm", "train.bptt_len": 10}
    assert "1/3" in tables.to_markdown(t)
    assert any("excluded from the metric means" in note for note in t.notes)
    assert not any(note.startswith("missing") for note in t.notes)


def test_nonfinite_metric_counts_as_diverged(tmp_path):
    make_2x2(tmp_path, skip={0: {"valid": [3.0, float("nan")], "status": None}})
    row = _row(report.table(results_lib.load_sweep(tmp_path), "valid/bpc"), "elman", 10)
    assert (row.diverged, row.best.n) == (1, 2)
    p = report.pivot(results_lib.load_sweep(tmp_path), "valid/bpc", "min", "cell", "train.bptt_len")
    assert "some trials diverged" in p.notes[0] and " †" in tables.to_markdown(p)


def test_missing_trials_are_reported_and_rows_kept(tmp_path):
    # 0: never started; 4: running, no valid line yet; 8: failed (partial metrics ignored);
    # 10: interrupted with metrics: enters the means with its best so far.
    trials = make_2x2(tmp_path, skip={0: {"valid": None}, 4: {"valid": [], "status": "running"},
                                      8: {"valid": [0.1], "status": None},
                                      10: {"valid": [1.3], "status": "interrupted"}})
    make_sweep(tmp_path, trials, outcomes={trials[8]["id"]: {"outcome": "failed",
                                                             "returncode": 1}})
    results = results_lib.load_sweep(tmp_path)
    assert [results_lib.outcome(results[i]) for i in (0, 4, 8, 10, 11)] == [
        "not started", "running", "failed", "interrupted", "finished"]
    t = report.table(results, "valid/bpc")
    assert len(t.rows) == 4
    assert _row(t, "elman", 10).best.n == 2
    assert _row(t, "lstm", 10).best.mean == pytest.approx(1.525)  # 8 left out
    assert _row(t, "lstm", 20).best.mean == pytest.approx(statistics.fmean([1.4, 1.3, 2.0]))
    (missing,) = [note for note in t.notes if note.startswith("missing")]
    assert missing.startswith("missing: 3 of 12 trials: ")
    for i, reason in ((0, "not started"), (4, "running"), (8, "failed")):
        assert f"{trials[i]['id']} ({reason})" in missing
    (unfinished,) = [note for note in t.notes if note.startswith("unfinished")]
    assert trials[10]["id"] in unfinished
    assert "missing: 3 of 12 trials" in tables.to_markdown(t)


def test_half_written_last_line_is_skipped(tmp_path):
    make_2x2(tmp_path, skip={0: {"valid": [2.5, 2.2], "status": "running",
                                 "tail": '{"step": 300, "split": "valid", "bpc": 0.'}})
    result = results_lib.load_sweep(tmp_path)[0]
    assert results_lib.curve(result, "valid/bpc") == [(100, 2.5), (200, 2.2)]
    s = results_lib.summarize(result, "valid/bpc")
    assert (s.best, s.final, s.outcome) == (2.2, 2.2, "running")


def test_csv_parses_back(tmp_path):
    make_2x2(tmp_path)
    t = report.table(results_lib.load_sweep(tmp_path), "valid/bpc")
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(t))))
    assert len(rows) == 4
    assert [(r["cell"], r["bptt_len"]) for r in rows if r["best"] == "1"] == [("lstm", "10")]
    for r in rows:
        a, d = BESTS[(r["cell"], int(r["bptt_len"]))]
        assert float(r["best_mean"]) == pytest.approx(a + d)
        assert float(r["best_std"]) == pytest.approx(d)
        assert (r["n"], r["diverged"], r["trials"], r["metric"]) == ("3", "0", "3", "valid/bpc")
        assert float(r["diverged_frac"]) == 0.0


def test_latex_is_booktabs_with_best_row_bold(tmp_path):
    make_2x2(tmp_path)
    tex = tables.to_latex(report.table(results_lib.load_sweep(tmp_path), "valid/bpc"))
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{llrrrrrr}"
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"):
        assert rule in lines
    assert r"bptt\_len" in tex and r"$\pm$" in tex
    body = [line for line in lines if line.endswith(r"\\")][1:]
    assert len(body) == 4
    bold = [line for line in body if r"\textbf" in line]
    assert len(bold) == 1 and bold[0].startswith(r"\textbf{lstm} & \textbf{10}")


def test_pivot_2x2(tmp_path):
    make_2x2(tmp_path)
    results = results_lib.load_sweep(tmp_path)
    p = report.pivot(results, "valid/bpc", "min", "cell", "train.bptt_len")
    assert (p.a, p.b) == ("model.cell", "train.bptt_len")
    assert p.row_values == ["elman", "lstm"] and p.col_values == [10, 20]
    for i, cell in enumerate(p.row_values):
        for j, bptt in enumerate(p.col_values):
            a, d = BESTS[(cell, bptt)]
            assert p.cells[i][j].best.mean == pytest.approx(a + d)
            assert p.cells[i][j].best.std == pytest.approx(d)
    assert p.best == (1, 0)
    md = tables.to_markdown(p)
    assert [line for line in md.splitlines() if "★" in line and line.startswith("|")] == [
        "| lstm | **1.550 ± 0.050** ★ | 1.70 ± 0.30 |"]
    assert "†" not in md  # none diverged: no footnote saying some did
    transposed = report.pivot(results, "valid/bpc", "min", "bptt_len", "cell")
    assert transposed.best == (0, 1)
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(p))))
    assert float(rows[0]["bptt_len=20 mean"]) == pytest.approx(2.1)
    assert [r["best"] for r in rows] == ["", "10"]
    assert r"\textbf{1.550 $\pm$ 0.050}" in tables.to_latex(p)


def test_pivot_rejects_a_third_factor(tmp_path):
    trials = make_2x2(tmp_path)
    for i, t in enumerate(trials):
        t["overrides"]["optim.lr"] = 1e-3 if i % 2 else 3e-3
    make_sweep(tmp_path, trials)
    with pytest.raises(ValueError, match="lr"):
        report.pivot(results_lib.load_sweep(tmp_path), "valid/bpc", "min", "cell", "bptt_len")


def test_short_names_fall_back_to_full_keys_on_clash():
    assert report.short_names(["model.hidden_size", "readout.hidden_size", "train.bptt_len"]) == {
        "model.hidden_size": "model.hidden_size", "readout.hidden_size": "readout.hidden_size",
        "train.bptt_len": "bptt_len"}


def test_axis_kind():
    assert figures.axis_kind([1e-4, 1e-3, 1e-2]) == "log"
    assert figures.axis_kind([1e-3, 2e-3, 4e-3]) == "log"  # geometric, though within 10x
    assert figures.axis_kind([10, 20, 40, 80]) == "log"
    assert figures.axis_kind([0.001, 0.00125, 0.0015, 0.00175]) == "linear"  # equal steps
    assert figures.axis_kind([100, 200, 300]) == "linear"
    assert figures.axis_kind([1e-3, 3e-3]) == "categorical"  # two values: two ticks, no axis
    assert figures.axis_kind(["tanh", "relu"]) == "categorical"
    assert figures.axis_kind([True, False]) == "categorical"


def lr_sweep(sweep_dir, lrs, seeds):
    """A sweep over optim.lr, `seeds[i]` seeds at lrs[i]; bpc grows with lr."""
    trials = []
    for lr, n in zip(lrs, seeds):
        for seed in range(n):
            trial_id = f"{len(trials):03d}_lr={lr}_seed={seed}"
            trials.append({"id": trial_id, "overrides": {"optim.lr": lr, "seed": seed,
                                                         "train.steps": 300}})
            write_trial(sweep_dir, trial_id, valid=_curve(1.5 + 100 * lr + 0.01 * seed),
                        num_params=1000)
    make_sweep(sweep_dir, trials)
    return report.table(results_lib.load_sweep(sweep_dir), "valid/bpc", "auto")


@pytest.mark.parametrize("lrs, scale", [([0.001, 0.00125, 0.0015, 0.00175], "linear"),
                                        ([1e-3, 2e-3, 4e-3, 8e-3], "log")])
def test_a_factors_ticks_are_its_values_and_every_figure_says_what_it_shows(
        tmp_path, lrs, scale):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    t = lr_sweep(tmp_path, lrs, [3, 1, 3, 1])
    fig = figures._versus(plt, t, "optim.lr")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        tables.value_text(v) for v in lrs]  # (not 0.00100.00125...: the swept values alone)
    assert ax.get_xscale() == scale
    assert ax.get_title() == "best valid/bpc vs lr: mean ± std over 1-3 seed(s), points: trials"
    plt.close(fig)
    fig = figures._box(plt, t)
    # Boxes for the settings of 3 trials only (7 lines each: box, median, 2 whiskers, 2 caps,
    # fliers); the single trials are their points.
    assert len(fig.axes[0].lines) == 2 * 7 and "points: trials" in fig.axes[0].get_title()
    plt.close(fig)
    fig = figures._curves(plt, t, {i: [(0, 1.0), (10, 0.5)] for row in t.rows
                                   for i in row.included})
    assert fig.axes[0].get_title().startswith("valid/bpc: mean over seeds")
    plt.close(fig)


def test_figure_series_look_apart_legends_sit_outside_and_outliers_get_a_log_box():
    styles = [tuple(figures.style(k).values()) for k in range(40)]
    assert len(set(styles)) == 40  # no two of 40 series alike
    assert all(figures.style(k)["color"] != figures.style(k + 1)["color"] for k in range(39))
    assert figures.box_scale([2.0, 2.1, 2.05, 25.0]) == "log"  # (Greff's NOAF at 25 bpc)
    assert figures.box_scale([2.0, 2.1, 2.8]) == "linear"
    assert figures.box_scale([-1.0, 30.0]) == "linear"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    figures.legend_outside(ax)
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 > axes.x1  # right of the data, covering none of it
    plt.close(fig)


def test_stats_text():
    assert tables.stats_text(tables.Stats(1.9007, 0.0123, 3)) == "1.901 ± 0.012"
    assert tables.stats_text(tables.Stats(1.9007, None, 1)) == "1.901"
    assert tables.stats_text(tables.Stats(None, None, 0)) == ""


def test_figures_are_nonempty_pngs(tmp_path):
    make_2x2(tmp_path / "sweep", skip={1: {"valid": None}, 5: {"valid": [9.0],
                                                               "status": "diverged"}})
    results = results_lib.load_sweep(tmp_path / "sweep")
    paths = report.figures(results, "valid/bpc", tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["box.png", "curves.png", "vs_bptt_len.png", "vs_cell.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    from matplotlib import pyplot as plt

    assert plt.get_fignums() == []  # each figure closed once saved


def test_the_names_that_moved_out_of_report_still_work_from_it():
    old = {"Stats": tables.Stats, "Row": tables.Row, "Table": tables.Table,
           "Pivot": tables.Pivot, "to_markdown": tables.to_markdown, "to_csv": tables.to_csv,
           "to_latex": tables.to_latex, "TrialResult": results_lib.TrialResult,
           "TrialSummary": results_lib.TrialSummary, "load_sweep": results_lib.load_sweep,
           "metrics_found": results_lib.metrics_found, "outcome": results_lib.outcome,
           "curve": results_lib.curve, "summarize": results_lib.summarize}
    assert {name: getattr(report, name) for name in old} == old


def test_cli_prints_the_table_and_writes_files(tmp_path):
    make_2x2(tmp_path, skip={0: {"valid": None}})
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}", "--metric=valid/bpc"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| cell | bptt_len | best valid/bpc |" in proc.stdout
    assert "| cell \\ bptt_len | 10 | 20 |" in proc.stdout  # the automatic pivot
    assert "missing: 1 of 12 trials" in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if line.startswith("|")
                and "★" in line]) == 2
    out = tmp_path / "report"
    for name in ("table.md", "table.csv", "table.tex", "pivot.md", "pivot.csv", "pivot.tex",
                 "curves.png", "box.png", "vs_cell.png", "vs_bptt_len.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "table.md").read_text() in proc.stdout


def test_cli_fails_clearly_without_a_sweep(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}", "--nofigures"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "sweep.json" in proc.stderr



def test_a_cut_final_line_is_taken_from_status_and_a_disagreement_flagged(tmp_path):
    """A finished trial's status.json records its final lines; when metrics.jsonl lost the
    last one (cut), the report uses status.json's value and says so, never an earlier one."""
    trials = [{"id": f"00{i}", "overrides": {"seed": i}} for i in range(3)]
    make_sweep(tmp_path, trials)
    for i, trial in enumerate(trials):
        write_trial(tmp_path, trial["id"], valid=[3.0, 2.0, 1.5])
        workdir = tmp_path / "trials" / trial["id"]
        status = json.loads((workdir / "status.json").read_text())
        status["records"] = {"valid": {"bpc": 1.5 if i != 2 else 1.4}}
        (workdir / "status.json").write_text(json.dumps(status))
    cut = tmp_path / "trials" / "001" / "metrics.jsonl"
    lines = cut.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:-1]) + lines[-1][:20])  # the final valid line, cut short
    results = results_lib.load_sweep(tmp_path)
    assert [results_lib.summarize(r, "valid/bpc").final for r in results] == [1.5, 1.5, 1.5]
    assert results_lib.curve(results[1], "valid/bpc")[-1] == (300, 1.5)
    notes = "\n".join(report.table(results, "valid/bpc").notes)
    assert "001: metrics.jsonl has no valid/bpc line at its final step 300" in notes
    assert "002: its final valid/bpc in metrics.jsonl (1.5) disagrees with status.json (1.4)" \
        in notes
    assert "000:" not in notes


def test_units_png_has_a_colour_bar_per_unit(monkeypatch):
    import types

    import numpy as np

    from rnnlab import diagnose

    saved = []
    monkeypatch.setattr(diagnose, "_save_figure", lambda subject, fig, name: saved.append(fig))
    text = "def f(x):\n    return (x + 1)\n"
    acts = np.sin(np.arange(len(text) * 2, dtype=float)).reshape(len(text), 2)
    diagnose._plot_units(types.SimpleNamespace(label="step 0"), text, acts, ["u0", "u1"],
                         ["u0", "u1"], {"u1": ("bracket depth", 0.5)})
    [fig] = saved
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "value"]
    assert len(fig.axes) == 4 and len(bars) == 2
    assert bars[0].get_ylim()[0] == pytest.approx(-np.abs(acts[:, 0]).max())
