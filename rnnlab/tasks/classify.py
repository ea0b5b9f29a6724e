"""Many-to-one classification and regression of texts: one label (or number) per sequence.

Data: the user's own file, `--config.data.path=FILE`, read by its extension as CSV or TSV (with
a header row) or JSON lines; the text is the column `data.text_field`, the label
`data.label_field`. Validation and test examples come from `data.valid_path` /
`data.test_path` when given, else from a split of the file by `data.valid_fraction` /
`data.test_fraction` with `data.split_seed` (the same split for every training seed). Without a
path, an offline example set: paragraphs of Python's help text ("prose") against runs of lines
of its standard library's source ("code").

Reading (UTF-8; a leading byte-order mark is dropped): a CSV/TSV is read by the csv module over
the whole file, so a quoted field holds exactly its characters (newlines, form feeds, U+2028
...) at any length; every row has the header's number of fields. A JSON-lines file is split at
'\\n' only, one object a line. A text is a string. A class label is a non-empty string or an
integer (JSON 1 and 1.0 are the class "1"); a regression target is a finite number (a JSON
number or a numeric string, within float32's range). Anything else stops the run before any
compute with one line naming the file, the line the example starts on and the value.

Texts are read as characters (the vocabulary of the training texts plus an unknown symbol;
`data.max_length` > 0 truncates), right-padded with their lengths. `task.name="classify"`:
the labels of the training split, cross-entropy, `accuracy`, and a confusion matrix per split
written at the end (`confusion_valid.csv`, `confusion_test.csv`, written by the csv module:
rows the true label, columns the predicted one). `task.name="regress"` (needs data.path):
numeric labels, MSE (`mse`, and `baseline_mse`: the training mean as the prediction, scored on
the same examples of the same split). The model is `rnnlab.models.pooled`
(pooling, bidirectional layers, truncated BPTT over long texts).
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import re
import sysconfig

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab import models
from rnnlab.tasks import base, encoder

FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".json": None}
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's largest field size limit on every platform
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a regression target beyond it is refused


def check(config: ml_collections.ConfigDict) -> None:
    d = config.data
    for key in ("path", "valid_path", "test_path"):
        if d[key] and pathlib.Path(d[key]).suffix.lower() not in FORMATS:
            raise ValueError(f"data.{key}={d[key]!r}: read by its extension, one of "
                             f"{', '.join(FORMATS)}")
    if not d.text_field or not d.label_field:
        raise ValueError("data.text_field and data.label_field name the file's columns; "
                         "neither may be empty")
    config_lib.check(config, config_lib.DATA, ("data.max_length",))
    if bool(d.valid_path) != bool(d.test_path):
        raise ValueError("give both data.valid_path and data.test_path, or neither (then the "
                         "fractions split data.path)")
    if not d.path and d.valid_path:
        raise ValueError("data.valid_path and data.test_path go with data.path")
    if not d.path and config.task.name == "regress":
        raise ValueError("task.name='regress' needs data.path, a file of texts and numbers (the "
                         "offline example set has class labels)")
    data_lib.check_fractions(d.valid_fraction, d.test_fraction)
    encoder.check(config)


def best(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """The validation scalar that picks the best checkpoint, and whether lower is better."""
    return ("mse", "min") if config.task.name == "regress" else ("accuracy", "max")


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return ("loss", "accuracy") if config.task.name == "classify" else ("loss",)


def model(config: ml_collections.ConfigDict, record: dict) -> models.Model:
    """The model of a run from its vocab.json record: characters -> one label (or number)."""
    return models.pooled(config.model, pooling=config.task.pooling,
                         bptt_len=config.train.bptt_len, vocab_size=len(record["chars"]),
                         output_size=len(record["labels"]) if config.task.name == "classify" else 1)


# ------------------------------------------------------------------------------ reading


def read_file(path: str, text_field: str, label_field: str,
              regress: bool = False) -> list[tuple[str, str | float, int]]:
    """(text, label, line number) of every example of a CSV, TSV or JSON-lines file.

    The line is the one the example starts on. Each label is checked here (`parse_label`): a
    class name (str) for classification, a float for regression.

    Raises:
      data.DataError: the file is missing or unreadable, lacks a column, or holds a row or a
        value that is not an example (the message names the file, the line and the value).
      ValueError: a regression label that is not a number (the file and task.name disagree).
    """
    text = _read_text(path)
    delimiter = FORMATS[pathlib.Path(path).suffix.lower()]
    rows = _json_rows(path, text) if delimiter is None else _csv_rows(path, text, delimiter)
    examples = []
    for number, row in rows:
        where = f"{path}, line {number}"
        for field, key in ((text_field, "data.text_field"), (label_field, "data.label_field")):
            if field not in row:
                raise data_lib.DataError(
                    f"{where}: no column {field!r} ({key}); its columns: "
                    f"{', '.join(map(repr, row)) or 'none'}")
        if not isinstance(row[text_field], str):
            raise data_lib.DataError(f"{where}: the text {_show(row[text_field])} is not a "
                                     f"string (data.text_field={text_field!r})")
        examples.append((row[text_field], parse_label(row[label_field], regress, where), number))
    return examples


def _read_text(path: str) -> str:
    """The file's text, exactly: UTF-8 (a leading byte-order mark dropped), line ends kept."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise data_lib.DataError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e


def _json_rows(path: str, text: str) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line; lines end at '\\n' only (a U+2028 or a
    form feed is a character of the line, as JSON has it)."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip(" \t\r"):
            try:
                row = json.loads(line)
            except ValueError as e:
                raise data_lib.DataError(f"{path}, line {number}: not JSON ({e})") from e
            if not isinstance(row, dict):
                raise data_lib.DataError(f"{path}, line {number}: not a JSON object")
            rows.append((number, row))
    return rows


def _csv_rows(path: str, text: str, delimiter: str) -> list[tuple[int, dict]]:
    """(first line, {column: field}) of each row after the header, read by the csv module
    over the whole text: a quoted field keeps its newlines and any other character, and may
    be of any length (up to csv's largest limit, 2**31 - 1 characters). Blank lines are no
    rows; a row with more or fewer fields than the header is refused."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, rows, start = None, [], 1
    old_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        for row in reader:
            if header is None and row:
                header = row
            elif row and len(row) != len(header):
                raise data_lib.DataError(
                    f"{path}, line {start}: {len(row)} field(s), the header has "
                    f"{len(header)} ({', '.join(map(repr, header))}); a field that holds "
                    f"{delimiter!r} or a line break needs quotes")
            elif row:
                rows.append((start, dict(zip(header, row))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise data_lib.DataError(f"{path}, line {start}: {e}") from e
    finally:
        csv.field_size_limit(old_limit)
    return rows


def parse_label(value, regress: bool, where: str) -> str | float:
    """A label as the task reads it, or a one-line error naming `where` and the value.

    Classification: a non-empty string, or an integer (JSON 1 and 1.0 are both the class "1";
    a CSV cell is the string as written); a bool, null, a list, an object, a fraction or an
    empty (or blank) string is refused. Regression: a finite number (a JSON number or a
    numeric string) within float32's range; a bool or null is refused."""
    if regress:
        return _target(value, where)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise data_lib.DataError(f"{where}: label {_show(value)} is not a class: a class label "
                             "is a non-empty string or an integer")


def _target(value, where: str) -> float:
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}: label {value!r} is not a number (task.name="
                             "'regress')") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
    else:
        raise data_lib.DataError(f"{where}: label {_show(value)} is not a number "
                                 "(task.name='regress')")
    if not math.isfinite(number):
        raise data_lib.DataError(f"{where}: label {_show(value)} is not a finite number "
                                 "(task.name='regress')")
    if abs(number) > FLOAT32_MAX:
        raise data_lib.DataError(f"{where}: label {_show(value)} is beyond float32's range "
                                 f"(+-{FLOAT32_MAX:.4g}) (task.name='regress')")
    return number


def _show(value, limit: int = 60) -> str:
    """A value as the file has it (a string quoted, JSON's null/true/lists), cut short."""
    shown = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def prose_or_code(limit: int = 3000) -> list[tuple[str, str, int]]:
    """The offline example set: Python's help-text paragraphs ("prose") and runs of lines of
    its standard library's source ("code"), 40 to 300 characters each, as many of each (at
    most `limit`)."""
    import pydoc_data.topics

    prose = []
    for key in sorted(pydoc_data.topics.topics):
        for paragraph in re.split(r"\n\s*\n", pydoc_data.topics.topics[key]):
            text = " ".join(paragraph.split())
            if 40 <= len(text) <= 300 and not paragraph.startswith((" ", "\t")):
                prose.append(text)
    code = []
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(stdlib.glob("*.py"), key=lambda p: p.name):
        for block in re.split(r"\n\s*\n", file.read_text(encoding="utf-8", errors="replace")):
            if 40 <= len(block) <= 300 and not block.lstrip().startswith(("#", '"""', "'''")):
                code.append(block)
        if len(code) >= limit:
            break
    n = min(limit, len(prose), len(code))  # balanced: chance is 0.5
    return ([(t, "prose", i) for i, t in enumerate(prose[:n])]
            + [(t, "code", i) for i, t in enumerate(code[:n])])


def _splits(config) -> dict[str, list]:
    d, regress = config.data, config.task.name == "regress"
    if not d.path:
        examples = prose_or_code()
    elif d.valid_path:
        return {split: read_file(path, d.text_field, d.label_field, regress) for split, path in
                (("train", d.path), ("valid", d.valid_path), ("test", d.test_path))}
    else:
        examples = read_file(d.path, d.text_field, d.label_field, regress)
    return base.split_examples(examples, d, "examples")


def _encode(config, splits, vocab, labels):
    """Padded ids, lengths and targets of every split (also the record of the run)."""
    d, regress = config.data, config.task.name == "regress"
    paths = {"train": d.path, "valid": d.valid_path or d.path, "test": d.test_path or d.path}
    longest = max(len(text) for examples in splits.values() for text, _, _ in examples)
    T = min(longest, d.max_length) if d.max_length else longest
    arrays = {}
    for split, examples in splits.items():
        if not examples:
            raise ValueError(f"the {split} split is empty: use more examples or larger "
                             f"data.{split}_fraction")
        arrays[split] = encode_examples(examples, vocab, labels, T, regress,
                                        f"{paths[split] or 'the example set'}", split)
        cut = sum(len(text) > T for text, _, _ in examples)
        if cut:
            logging.warning("%s split: %d texts cut to data.max_length=%d characters", split,
                            cut, T)
    return arrays, T


def encode_examples(examples, vocab, labels: list, T: int, regress: bool, where: str,
                    split: str) -> dict[str, np.ndarray]:
    """Padded ids, lengths and targets of (text, label, line) examples; a label outside
    `labels` (classification) is a DataError naming the file (`where`) and line."""
    ids = np.zeros((len(examples), T), np.int32)
    lengths = np.zeros(len(examples), np.int32)
    targets = np.zeros(len(examples), np.float32 if regress else np.int32)
    for row, (text, label, line) in enumerate(examples):
        encoded = data_lib.encode(vocab, text[:T])
        ids[row, :len(encoded)], lengths[row] = encoded, max(len(encoded), 1)
        if regress:
            targets[row] = label  # a finite number, checked by `parse_label`
        elif label not in labels:
            raise data_lib.DataError(f"{where}, line {line}: label {label!r} ({split} split) is "
                                     f"not among the training labels {labels}")
        else:
            targets[row] = labels.index(label)
    return {"inputs": ids, "lengths": lengths, "target": targets}


def score_file(config, record: dict, params, path: str) -> dict[str, float]:
    """The run's metrics on every example of another labelled file (`path`, read as
    `data.path` is), encoded with the run's own vocabulary, labels and text length."""
    regress = config.task.name == "regress"
    examples = read_file(path, config.data.text_field, config.data.label_field, regress)
    if not examples:
        raise data_lib.DataError(f"{path} has no examples")
    vocab = data_lib.Vocab(tuple(record["chars"]), record["unk"])
    arrays = encode_examples(examples, vocab, record["labels"], record["length"], regress,
                             path, "scored")
    batch = config.train.eval_batch_size or config.train.batch_size
    padded, _ = base.pad_rows(arrays, batch)
    evaluate = _evaluate_fn(_scores_fn(model(config, record), regress), record["labels"],
                            0.0 if regress else None, batch)
    sums = jax.device_get(jax.jit(lambda p, d: evaluate(p, {"file": d}, "file", None))(
        params, padded))
    count = float(sums["count"])
    scalars = {k: float(v) / count for k, v in sums.items()
               if k not in ("count", "baseline_mse") and np.ndim(v) == 0}
    return {**(_derive_mse(scalars) if regress else scalars), "count": int(count)}


def _scores_fn(net: models.Model, regress: bool):
    """`(params, batch, key, tap) -> (per-example scores, predicted classes or None)`."""

    def scores(params, b, key, tap):
        _, out = net.apply(params, None, b["inputs"], lengths=b["lengths"], key=key, tap=tap)
        if regress:
            return {"loss": (out[:, 0] - b["target"]) ** 2}, None
        ce = optax.softmax_cross_entropy_with_integer_labels(out, b["target"])
        predicted = jnp.argmax(out, -1)
        return {"loss": ce, "accuracy": (predicted == b["target"]).astype(jnp.float32)}, predicted

    return scores


def _evaluate_fn(scores, labels: list, mean: float | None, batch_size: int):
    """`Task.evaluate`: score sums, and a confusion matrix (classify) or the MSE of the
    training mean as the prediction (regress: `mean`), on exactly these examples."""

    def evaluate(params, d, split, windows, tap=None):
        def sums(b):
            values, predicted = scores(params, b, None, tap)
            out = {**{k: jnp.sum(v * b["weight"]) for k, v in values.items()},
                   "count": jnp.sum(b["weight"])}
            if mean is not None:
                out["baseline_mse"] = jnp.sum((mean - b["target"]) ** 2 * b["weight"])
            else:
                C = len(labels)
                out["confusion"] = jnp.zeros((C, C), jnp.float32).at[
                    b["target"], predicted].add(b["weight"])
            return out

        return base.scan_batches(sums, d[split], batch_size, windows)

    return evaluate


def _derive_mse(scalars: dict[str, float]) -> dict[str, float]:
    return {**scalars, "mse": scalars["loss"]}


def _confusion_files(labels: list):
    """`Task.files`: each split's confusion matrix as CSV (rows: the true label)."""

    def files(split, sums):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")  # quotes a label's commas and quotes
        writer.writerow(["true\\predicted", *labels])
        writer.writerows([name, *(int(round(float(v))) for v in row)]
                         for name, row in zip(labels, np.asarray(sums["confusion"])))
        return {f"confusion_{split}.csv": out.getvalue()}

    return files


def _describe(config, vocab: data_lib.Vocab, labels: list, T: int, arrays: dict) -> str:
    return (f"{config.task.name}: {config.data.path or 'the offline prose-or-code set'}; "
            f"{len(vocab.chars)} symbols, " + (f"{len(labels)} labels {labels}, " if labels
                                               else "") + f"texts of up to {T} characters; "
            + " / ".join(f"{s} {len(a['target'])}" for s, a in arrays.items()))


def build(config: ml_collections.ConfigDict) -> base.Task:
    t, regress = config.train, config.task.name == "regress"
    splits = _splits(config)
    vocab = data_lib.vocab_of(c for text, _, _ in splits["train"] for c in text)
    labels = [] if regress else sorted({label for _, label, _ in splits["train"]})
    if not regress and len(labels) < 2:
        raise data_lib.DataError(f"the training split has {len(labels)} label(s) {labels}: "
                                 "classification needs two or more")
    arrays, T = _encode(config, splits, vocab, labels)
    record = {"chars": list(vocab.chars), "unk": vocab.unk, "labels": labels, "length": T}
    net = model(config, record)
    if len(arrays["train"]["target"]) < t.batch_size:
        raise ValueError(f"the training split has {len(arrays['train']['target'])} examples, "
                         f"fewer than train.batch_size={t.batch_size}")
    eval_batch = t.eval_batch_size or t.batch_size
    data, eval_windows = {"train": arrays["train"]}, {}
    for split in ("valid", "test"):
        data[split], _ = base.pad_rows(arrays[split], eval_batch)
        eval_windows[split] = len(data[split]["weight"]) // eval_batch
    mean = float(np.mean(arrays["train"]["target"], dtype=np.float64)) if regress else None
    scores = _scores_fn(net, regress)

    def batch(d, index, key):
        return base.shuffled_batch(d["train"], index, key, t.batch_size)

    def loss(params, carry, b, key, tap=None):
        means = {k: v.mean() for k, v in scores(params, b, key, tap)[0].items()}
        return means["loss"], (carry, means)

    return base.Task(
        model=net, data=data, row_sharded=(), batch=batch, loss=loss,
        evaluate=_evaluate_fn(scores, labels, mean, eval_batch), eval_windows=eval_windows,
        derive=_derive_mse if regress else base.no_derived, metrics=metric_names(config),
        best=best(config), record=record,
        fingerprint=base.fingerprint({f"{s}/{k}": v for s in arrays for k, v in
                                      arrays[s].items()}, record),
        describe=_describe(config, vocab, labels, T, arrays),
        throughput=("examples_per_sec", t.batch_size),
        files=None if regress else _confusion_files(labels))
