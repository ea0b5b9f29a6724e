"""Predictions from a run (`rnnlab.predict`) for every task, checked against the task's own
evaluation of the same examples (the whole valid split, the final checkpoint), and a language
model's continuation against a plain loop over the model one character at a time."""

import csv
import io
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnlab import data, predict, tasks, train
from rnnlab.run import load
from rnnlab.tasks import seq2seq
from test_tasks import task_config, write_csv
from test_train import ROOT

SHORT = {"train.steps": 4, "train.eval_every": 4, "train.ckpt_every": 4}  # (the final ones)


def trained(name, tmp_path, **changes):
    """A short run of the task, its result, and its valid split (as the task built it)."""
    config = task_config(name, **SHORT, **changes)
    result = train.train(config, tmp_path)
    task = tasks.build(config)
    valid = {k: np.asarray(v) for k, v in task.data["valid"].items()}
    rows = int(valid["weight"].sum()) if "weight" in valid else len(valid["target"])
    return result, task, {k: v[:rows] for k, v in valid.items()}


def test_classify_predicts_the_labels_its_evaluation_scores(tmp_path):
    result, task, valid = trained("classify", tmp_path)
    vocab = data.Vocab(tuple(task.record["chars"]), task.record["unk"])
    texts = [data.to_text(vocab, ids[:n]) for ids, n in zip(valid["inputs"], valid["lengths"])]
    out = predict.predict(tmp_path, texts, checkpoint="last", top=2, batch_size=16)
    labels = task.record["labels"]
    hits = [p["label"] == labels[t] for p, t in zip(out, valid["target"])]
    assert np.mean(hits) == pytest.approx(result["valid"]["accuracy"], abs=1e-6)
    for p in out:
        probs = list(p["probabilities"].values())
        assert len(probs) == 2 and probs == sorted(probs, reverse=True)
        assert p["label"] == next(iter(p["probabilities"])) and 0 < probs[0] <= 1


def test_regress_predicts_the_values_its_mse_scores(tmp_path):
    rows = [(f"{'x' * (i % 7 + 1)}", str(float(i % 7))) for i in range(80)]
    result, _, valid = trained("classify", tmp_path / "run", **{
        "task.name": "regress", "data.path": write_csv(tmp_path / "r.csv", rows)})
    texts = ["x" * n for n in valid["lengths"]]  # (the texts are x's: their length is all)
    out = predict.predict(tmp_path / "run", texts, checkpoint="last")
    mse = np.mean([(p["value"] - t) ** 2 for p, t in zip(out, valid["target"])])
    assert mse == pytest.approx(result["valid"]["mse"], rel=1e-4)


@pytest.mark.parametrize("name", ["seq2seq", "vec2seq"])
def test_sequence_tasks_predict_the_outputs_their_exact_match_scores(tmp_path, name):
    result, task, valid = trained(name, tmp_path)
    record = task.record
    sources = [seq2seq.describe_source(task_config(name), record, s) for s in valid["source"]]
    targets = [seq2seq.detokenize(record, t[1:]) for t in valid["target"]]
    greedy = predict.predict(tmp_path, sources, checkpoint="last", batch_size=16)
    exact = [p["hypotheses"][0]["output"] == t for p, t in zip(greedy, targets)]
    assert np.mean(exact) == pytest.approx(result["valid"]["exact_match"], abs=1e-6)
    beam = predict.predict(tmp_path, sources[:4], checkpoint="last", beam=3, nbest=2)
    for p in beam:
        scores = [h["score"] for h in p["hypotheses"]]
        assert len(scores) <= 2 and scores == sorted(scores, reverse=True)
        assert len({h["output"] for h in p["hypotheses"]}) == len(scores)


@pytest.mark.parametrize("name", ["adding", "parity", "copy"])
def test_synthetic_tasks_predict_what_their_evaluation_scores(tmp_path, name):
    result, _, valid = trained(name, tmp_path)
    if name == "adding":
        inputs = [json.dumps(x.tolist()) for x in valid["inputs"]]
    else:
        inputs = ["".join(map(str, x)) for x in valid["inputs"]]
    out = predict.predict(tmp_path, inputs, checkpoint="last", batch_size=64)
    if name == "adding":
        mse = np.mean([(p["value"] - t) ** 2 for p, t in zip(out, valid["target"])])
        assert mse == pytest.approx(result["valid"]["mse"], rel=1e-4)
    elif name == "parity":
        hits = [p["parity"] == t[-1] for p, t in zip(out, valid["targets"])]
        assert np.mean(hits) == pytest.approx(result["valid"]["accuracy"], abs=1e-6)
    else:
        recall = [np.mean([a == str(b) for a, b in zip(p["recall"], t[-10:])])
                  for p, t in zip(out, valid["targets"])]
        assert np.mean(recall) == pytest.approx(result["valid"]["recall_accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match=f"a {name} run .* predicts from"):
        predict.predict(tmp_path, ["12"], checkpoint="last")


def test_a_language_model_continues_its_prime_as_a_plain_loop_does(tmp_path):
    train.train(task_config("lm", **SHORT), tmp_path)
    [out] = predict.predict(tmp_path, ["The "], checkpoint="last", length=12, temperature=0)
    config, record = load.load_run(tmp_path)
    net = tasks.model(config, record)
    params = load.load_state(tmp_path, config, net, checkpoint="last").state.params
    vocab = data.Vocab(tuple(record["chars"]), record["unk"])
    carry, text = net.initial_carry(params, (1,)), "The "
    for i in range(len(text) + 12 - 1):  # one character at a time, argmax fed back
        ids = data.encode(vocab, text[i])[None]
        carry, logits = net.apply(params, carry, jax.numpy.asarray(ids))
        if i >= 3:
            text += vocab.chars[int(np.argmax(logits[0, -1]))]
    assert out == {"input": "The ", "continuation": text[4:]}


def test_the_command_writes_csv_and_jsonl_and_refuses_bad_input_in_one_line(tmp_path):
    rows = [("good " * (i % 3 + 1), "pos") if i % 2 else ("bad " * (i % 3 + 1), "neg")
            for i in range(60)]
    train.train(task_config("classify", **SHORT, **{
        "data.path": write_csv(tmp_path / "d.csv", rows)}), tmp_path / "run")
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("good good\nbad\n\nthe meal was superb\n")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rnnlab.predict",
                               f"--workdir={tmp_path / 'run'}", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    done = cli(f"--inputs={inputs}", f"--output={tmp_path / 'p.csv'}", "--top=2")
    assert done.returncode == 0, done.stderr[-2000:]
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert [r["input"] for r in table] == ["good good", "bad", "the meal was superb"]
    assert all(r["label"] in ("neg", "pos") and len(json.loads(r["probabilities"])) == 2
               for r in table)
    done = cli(f"--inputs={inputs}", f"--output={tmp_path / 'p.jsonl'}")
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [x["label"] for x in lines] == [r["label"] for r in table]
    shown = cli("--input=good good")
    assert shown.returncode == 0 and shown.stdout.startswith(lines[0]["label"] + "\t")
    for args, message in ((["--input=x", f"--inputs={inputs}"], "pass one of --input"),
                          (["--input=x", "--output=p.txt"], "--output must end in"),
                          (["--input=x", "--nbest=2"], "--nbest does not apply to a classify "
                                                       "run (it reads --top)")):
        bad = cli(*args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert [x for x in bad.stderr.splitlines() if x.startswith("error:")][0].find(message) > 0


def test_evaluate_scores_another_labelled_file_with_the_runs_vocabulary(tmp_path):
    from rnnlab import evaluate

    rows = [("good " * (i % 3 + 1), "pos") if i % 2 else ("bad " * (i % 3 + 1), "neg")
            for i in range(60)]
    train.train(task_config("classify", **SHORT, **{
        "data.path": write_csv(tmp_path / "d.csv", rows)}), tmp_path / "run")
    # Another file: other texts (a character the run never saw), its labels in another order.
    other = [("bad good?", "neg"), ("good", "pos"), ("good good good", "pos"), ("bad", "neg")]
    scored = evaluate.evaluate(tmp_path / "run", checkpoint="last",
                               data_path=write_csv(tmp_path / "other.csv", other))
    predicted = predict.predict(tmp_path / "run", [t for t, _ in other], checkpoint="last")
    hits = [p["label"] == label for p, (_, label) in zip(predicted, other)]
    assert scored["scores"]["count"] == 4
    assert scored["scores"]["accuracy"] == pytest.approx(np.mean(hits))
    bad = write_csv(tmp_path / "bad.csv", [("good", "maybe")])
    with pytest.raises(data.DataError, match=r"bad.csv, line 2: label 'maybe' \(scored split\) "
                                             r"is not among the training labels \['neg', 'pos'\]"):
        evaluate.evaluate(tmp_path / "run", data_path=bad)
