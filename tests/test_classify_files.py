"""Reading a user's labelled file for classify/regress (rnnlab/tasks/classify.py): every field
exactly as Python's csv and json modules read it, labels and targets checked at load (one line
naming the file, the line and the value), the confusion CSV written by the csv module, and each
split's regression baseline scored on that split.

The references are the standard library's own readers over the same files and NumPy sums; no
test trains (the one that evaluates compiles a tiny model once)."""

from __future__ import annotations

import csv
import io
import json
import re

import jax
import numpy as np
import pytest

from rnnlab import data, overrides, tasks, validation
from rnnlab.tasks import classify
from test_tasks import task_config

# Every character str.splitlines() breaks a line at: inside a quoted CSV field, or inside a JSON
# string, each is a character of the text.
BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
LABELS = ["plain", "a,b", 'say "hi"']


def write_rows(path, rows, delimiter=",", header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, objects, end="\n"):
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write("".join(json.dumps(o, ensure_ascii=False) + end for o in objects))
    return str(path)


# ------------------------------------------------------------------------ reading (1, 2)


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_a_quoted_field_holds_exactly_its_characters(tmp_path, suffix, delimiter):
    rows = [(f"row {i}{ch}second, \"quoted\"\tend", LABELS[i % 3])
            for i, ch in enumerate(BREAKS * 2)]
    path = write_rows(tmp_path / f"d{suffix}", rows, delimiter)
    with open(path, newline="", encoding="utf-8") as f:
        reference = [(r["text"], r["label"]) for r in csv.DictReader(f, delimiter=delimiter)]
    got = classify.read_file(path, "text", "label")
    assert [(text, label) for text, label, _ in got] == reference == rows
    # Each example's line is the one it starts on; the csv module's line breaks are \r\n, \r, \n.
    starts, line = [], 2
    for text, label in rows:
        starts.append(line)
        line += len(re.findall(r"\r\n|\r|\n", text + label)) + 1
    assert [number for _, _, number in got] == starts


def test_a_bad_row_after_a_multi_line_field_names_the_line_it_starts_on(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"a\nb\nc",x\n\nd,\n', newline="")
    with pytest.raises(data.DataError, match=r"^\S*d.csv, line 6: label '' is not a class"):
        classify.read_file(str(path), "text", "label")


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_a_json_line_ends_at_newline_only(tmp_path, end):
    objects = [{"text": f"a{ch}b", "label": "xy"[i % 2]} for i, ch in enumerate(BREAKS)]
    path = write_jsonl(tmp_path / "d.jsonl", objects, end)
    with open(path, newline="", encoding="utf-8") as f:
        reference = [json.loads(line) for line in f.read().split("\n") if line]
    got = classify.read_file(path, "text", "label")
    assert [(t, lab) for t, lab, _ in got] == [(o["text"], o["label"]) for o in reference]
    assert [number for _, _, number in got] == list(range(1, len(objects) + 1))


def test_a_field_longer_than_csvs_default_limit_is_read(tmp_path):
    big = "x" * 200_000 + "\n" + "y" * 1000  # > 131,072, csv's default field size limit
    path = write_rows(tmp_path / "d.csv", [("short", "a"), (big, "b")])
    limit = csv.field_size_limit()
    got = classify.read_file(path, "text", "label")
    assert [text for text, _, _ in got] == ["short", big]
    assert csv.field_size_limit() == limit  # the module's limit is the caller's again


def test_a_field_over_the_limit_is_one_line_naming_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(classify, "CSV_FIELD_LIMIT", 1000)
    path = write_rows(tmp_path / "d.csv", [("short", "a"), ("z" * 2000, "b")])
    with pytest.raises(data.DataError, match=r"d.csv, line 3: field larger than field limit "
                                             r"\(1000\)$"):
        classify.read_file(path, "text", "label")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path, suffix):
    body = ("text,label\nt,a\nu,b\n" if suffix == ".csv" else
            '{"text": "t", "label": "a"}\n{"text": "u", "label": "b"}\n')
    path = tmp_path / f"d{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert classify.read_file(str(path), "text", "label") == [("t", "a", 2 - (suffix != ".csv")),
                                                             ("u", "b", 3 - (suffix != ".csv"))]


# ------------------------------------------------------------------------------ labels (3)


@pytest.mark.parametrize("value,shown", [
    ([1, 2], r"\[1, 2\]"), ({"x": 1}, r'\{"x": 1\}'), (None, "null"), ("", "''"),
    ("  ", "'  '"), (True, "true"), (1.5, "1.5"), (float("nan"), "NaN")])
def test_a_class_label_is_a_non_empty_string_or_an_integer(tmp_path, value, shown):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": "a"},
                                              {"text": "u", "label": value}])
    with pytest.raises(data.DataError, match=rf"d.jsonl, line 2: label {shown} is not a class"):
        classify.read_file(path, "text", "label")


def test_json_1_and_1_0_are_one_class_and_csv_cells_are_strings_as_written(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": v}
                                              for v in (1, 1.0, 2, "2", -3.0)])
    assert [label for _, label, _ in classify.read_file(path, "text", "label")] == \
        ["1", "1", "2", "2", "-3"]
    path = write_rows(tmp_path / "d.csv", [("t", "1"), ("u", "1.0")])
    assert [label for _, label, _ in classify.read_file(path, "text", "label")] == ["1", "1.0"]


@pytest.mark.parametrize("body,message", [
    ("text,label\nt,a\nu,\n", r"d.csv, line 3: label '' is not a class"),
    ("text,label\nt,a\nu\n", r"d.csv, line 3: 1 field\(s\), the header has 2 \('text', 'label'\)"),
    ("text,label\nt,a\nu,b,c\n", r"d.csv, line 3: 3 field\(s\), the header has 2"),
])
def test_an_empty_or_missing_csv_cell_is_named_not_a_missing_column(tmp_path, body, message):
    path = tmp_path / "d.csv"
    path.write_text(body)
    with pytest.raises(data.DataError, match=message):
        classify.read_file(str(path), "text", "label")


def test_a_json_line_without_the_key_names_its_own_keys_and_a_text_is_a_string(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": "a"}, {"text": "u"}])
    with pytest.raises(data.DataError, match=r"d.jsonl, line 2: no column 'label' "
                                             r"\(data.label_field\); its columns: 'text'$"):
        classify.read_file(path, "text", "label")
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": 5, "label": "a"}])
    with pytest.raises(data.DataError, match=r"e.jsonl, line 1: the text 5 is not a string "
                                             r"\(data.text_field='text'\)"):
        classify.read_file(path, "text", "label")


# ------------------------------------------------------------------- confusion files (4)


def test_the_confusion_csv_quotes_labels_with_commas_and_quotes(tmp_path):
    labels = sorted(LABELS + ["tab\there"])
    rows = [(f"text {i}", labels[i % 4]) for i in range(40)]
    config = task_config("classify", **{"data.path": write_rows(tmp_path / "d.csv", rows),
                                        "train.batch_size": 8})
    task = tasks.build(config)
    assert task.record["labels"] == labels
    counts = np.arange(16, dtype=np.float32).reshape(4, 4)
    text = task.files("test", {"confusion": counts})["confusion_test.csv"]
    table = list(csv.reader(io.StringIO(text, newline="")))
    assert table[0] == ["true\\predicted", *labels]
    assert [row[0] for row in table[1:]] == labels
    assert [[int(v) for v in row[1:]] for row in table[1:]] == counts.astype(int).tolist()


# ------------------------------------------------------------------ regression targets (5)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("value,shown", [
    ("nan", "'nan'"), ("inf", "'inf'"), ("-Infinity", "'-Infinity'"), ("1e39", "'1e39'")])
def test_a_non_finite_target_in_any_split_is_refused_at_load(tmp_path, split, value, shown):
    files = {s: [(f"t{i}", str(i % 5)) for i in range(16)] for s in ("train", "valid", "test")}
    files[split][1] = ("bad", value)
    paths = {s: write_rows(tmp_path / f"{s}.csv", rows) for s, rows in files.items()}
    config = task_config("classify", **{
        "task.name": "regress", "data.path": paths["train"], "data.valid_path": paths["valid"],
        "data.test_path": paths["test"], "train.batch_size": 8})
    validation.check_config(config)
    with pytest.raises(data.DataError, match=rf"{split}.csv, line 3: label {shown} is "
                                             r"(not a finite number|beyond float32's range)"):
        tasks.build(config)


@pytest.mark.parametrize("line,shown,problem", [
    ('{"text": "u", "label": NaN}', "NaN", "not a finite number"),
    ('{"text": "u", "label": 1e400}', "Infinity", "not a finite number"),
    ('{"text": "u", "label": 1' + "0" * 400 + "}", "1000", "not a finite number"),
    ('{"text": "u", "label": true}', "true", "not a number"),
    ('{"text": "u", "label": null}', "null", "not a number"),
    ('{"text": "u", "label": [1]}', r"\[1\]", "not a number"),
])
def test_a_json_target_is_a_finite_number(tmp_path, line, shown, problem):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "t", "label": 2.5}\n' + line + "\n")
    with pytest.raises(data.DataError, match=rf"d.jsonl, line 2: label {shown}.* is {problem}"):
        classify.read_file(str(path), "text", "label", regress=True)


def test_numeric_targets_are_read_as_numbers(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": v}
                                              for v in (1, 2.5, "-3e2", " 4 ")])
    assert [label for _, label, _ in classify.read_file(path, "text", "label", regress=True)] \
        == [1.0, 2.5, -300.0, 4.0]


def test_regression_needs_a_file():
    config = overrides.apply(task_config("classify"), {"task.name": "regress"})
    with pytest.raises(validation.ConfigError, match=r"task.name='regress' needs data.path"):
        validation.check_config(config)


# ------------------------------------------------------------- each split's baseline (6)


def test_each_splits_baseline_is_the_training_mean_scored_on_that_split(tmp_path):
    rng = np.random.default_rng(0)
    values = {"train": rng.integers(0, 8, 24), "valid": rng.integers(5, 15, 10),
              "test": rng.integers(-6, 3, 7)}
    paths = {s: write_rows(tmp_path / f"{s}.csv", [(f"t{i}", str(v)) for i, v in enumerate(vs)])
             for s, vs in values.items()}
    config = task_config("classify", **{
        "task.name": "regress", "data.path": paths["train"], "data.valid_path": paths["valid"],
        "data.test_path": paths["test"], "train.batch_size": 8, "train.eval_batch_size": 4})
    task = tasks.build(config)
    params = task.model.init(jax.random.key(0))
    mean = values["train"].astype(np.float64).mean()
    # every example of a split, and the first evaluation batch (4 examples) of valid alone
    for split, windows, targets in (("valid", None, values["valid"]),
                                    ("test", None, values["test"]),
                                    ("valid", 1, values["valid"][:4])):
        sums = jax.jit(lambda p, d, s=split, w=windows: task.evaluate(p, d, s, w))(
            params, task.data)
        scalars = tasks.base.averages(task, jax.device_get(sums))
        assert scalars["baseline_mse"] == pytest.approx(np.mean((targets - mean) ** 2),
                                                        rel=1e-5)
        assert scalars["mse"] == scalars["loss"] and int(sums["count"]) == len(targets)
    assert task.derive({"loss": 2.0}) == {"loss": 2.0, "mse": 2.0}  # a train line: no baseline
