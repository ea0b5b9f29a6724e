"""Inputs that once changed a result without a word: a data file changed under a finished run,
a resume that shrinks train.steps, an edited vocab.json, seeds past what a JAX key holds, NaN
config values. Each is refused with one line naming what was wrong (or, where a flag allows
it, every output says so), and each test feeds exactly that input."""

import json
import subprocess
import sys

import ml_collections
import pytest

from rnnlab import diagnose, evaluate, layout, rundir, sample, train, validation
from test_train import ROOT, run_main, tiny_config

TEXT = "the quick brown fox jumps over the lazy dog. " * 200
RUN = {"data.name": "text", "data.max_chars": 0, "train.steps": 4, "train.ckpt_every": 2,
       "train.eval_every": 2}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A finished tiny LM run on a text file, and that file; copied by the tests that damage
    either."""
    root = tmp_path_factory.mktemp("text_run")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    train.train(tiny_config(**RUN, **{"data.path": str(corpus)}), root / "run")
    return root / "run", corpus


def copy_run(text_run, tmp_path):
    """A copy of the run and of its data file, the copy's config.json pointing at the copy."""
    import shutil

    run, corpus = text_run
    shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(layout.LOCK_FILE))
    shutil.copy(corpus, tmp_path / "corpus.txt")
    config = json.loads((tmp_path / "run" / layout.CONFIG_FILE).read_text())
    config["data"]["path"] = str(tmp_path / "corpus.txt")
    (tmp_path / "run" / layout.CONFIG_FILE).write_text(json.dumps(config))
    return tmp_path / "run", tmp_path / "corpus.txt"


def cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def one_error_line(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    return line


# ------------------------------------------------------------ 7. evaluation on changed data


def test_evaluate_and_diagnose_refuse_data_other_than_the_runs_own(text_run, tmp_path):
    run, corpus = copy_run(text_run, tmp_path)
    same = evaluate.evaluate(run)
    assert "data_changed" not in same
    corpus.write_text("the lazy dog jumps over the quick brown fox. " * 200)  # same characters
    with pytest.raises(rundir.RunDirError, match="data differs from the data .* trained on"):
        evaluate.evaluate(run)
    proc = cli("rnnlab.evaluate", f"--workdir={run}")
    assert proc.returncode == 2 and "--allow_changed_data" in one_error_line(proc)
    allowed = evaluate.evaluate(run, allow_changed_data=True)
    assert "data differs" in allowed["data_changed"]
    assert allowed["test"]["bpc"] != same["test"]["bpc"]  # it did score the other data
    with pytest.raises(rundir.RunDirError, match="data differs.*--allow_changed_data"):
        diagnose.load(workdir=run)
    subject = diagnose.load(workdir=run, out=tmp_path / "d", allow_changed_data=True)
    result = diagnose.gates(subject, batches=1)
    assert "on data other than the run's" in result["at"]
    assert "on data other than the run's" in (tmp_path / "d" / "gates.json").read_text()


def test_evaluate_without_its_data_file_is_one_line_and_exit_2(text_run, tmp_path):
    run, corpus = copy_run(text_run, tmp_path)
    corpus.unlink()
    proc = cli("rnnlab.evaluate", f"--workdir={run}")
    assert proc.returncode == 2
    assert str(corpus) in one_error_line(proc)


# ----------------------------------------------------------- 8. resume-time config changes


def test_shrinking_train_steps_below_the_step_reached_is_refused(text_run, tmp_path):
    run, corpus = copy_run(text_run, tmp_path)
    config_before = (run / layout.CONFIG_FILE).read_text()
    overrides = {**RUN, "data.path": str(corpus)}
    with pytest.raises(rundir.RunDirError, match=r"trained to step 4, past train\.steps=2: "
                                                 r"pass train\.steps >= 4"):
        train.train(tiny_config(**{**overrides, "train.steps": 2}), run)
    assert (run / layout.CONFIG_FILE).read_text() == config_before
    assert layout.read_status(run)["step"] == 4
    # growing it takes effect: the run trains on to the new end and says so
    result = train.train(tiny_config(**{**overrides, "train.steps": 6}), run)
    assert result["step"] == 6 and layout.read_status(run)["status"] == "finished"
    assert json.loads((run / layout.CONFIG_FILE).read_text())["train"]["steps"] == 6


def _leaves(values, prefix=""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return "x" if value is None else None


def test_every_other_key_changed_on_resume_is_refused(tmp_path):
    """Keys outside RESUMABLE_KEYS change the computation: a resume with any one of them
    changed is refused, and config.json is left as it was."""
    base = tiny_config()
    rundir.RunDir(tmp_path, base).close()
    written = (tmp_path / layout.CONFIG_FILE).read_text()
    keys = [k for k, _ in _leaves(base.to_dict())]
    assert len(keys) > 80
    for key, value in _leaves(base.to_dict()):
        values = base.to_dict()
        section, _, leaf = key.rpartition(".")
        node = values
        for part in section.split(".") if section else ():
            node = node[part]
        node[leaf] = _changed(value)
        config = ml_collections.ConfigDict(values)
        if key in rundir.RESUMABLE_KEYS or key == "train.steps":
            continue
        with pytest.raises(rundir.RunDirError, match=rf"differs in: {key}"):
            rundir.RunDir(tmp_path, config)
        assert (tmp_path / layout.CONFIG_FILE).read_text() == written


def test_every_resumable_change_takes_effect(text_run, tmp_path):
    run, corpus = copy_run(text_run, tmp_path)
    later = {**RUN, "data.path": str(corpus), "train.steps": 12, "train.log_every": 4,
             "train.eval_every": 8, "train.ckpt_every": 5, "train.keep_checkpoints": 2,
             "train.sample_length": 7, "train.sample_temperature": 0.5,
             "train.sample_prime": "the q", "data.dir": str(tmp_path / "cache")}
    train.train(tiny_config(**later), run)
    rows = [m for m in layout.read_metrics(run) if m["step"] > 4]
    assert [m["step"] for m in rows if m["split"] == "train"] == [8, 12]
    assert [m["step"] for m in rows if m["split"] == "valid"] == [8, 12]
    assert layout.checkpoint_steps(run) == [10, 12]
    samples = (run / layout.SAMPLES_FILE).read_text().split("=== step ")
    for block in samples[1:]:
        step = int(block.split()[0])
        if step > 4:
            header, text = block.split("\n", 1)
            assert "(temperature 0.5)" in header
            assert text.startswith("the q") and len(text.rstrip("\n")) == len("the q") + 7
    written = json.loads((run / layout.CONFIG_FILE).read_text())
    assert written["train"]["sample_prime"] == "the q" and written["data"]["dir"] == later[
        "data.dir"]


# A relu RNN with W_hh = 3I, no clipping and a huge learning rate: every update is non-finite.
EXPLODING = {"model.cell": "irnn", "model.init_scale": 3.0, "optim.name": "sgd",
             "optim.lr": 1e3, "optim.clip_norm": 0.0, "train.skip_nonfinite": True}


def test_a_lower_max_nonfinite_takes_effect_on_resume(tmp_path):
    run = tmp_path / "run"
    first = tiny_config(**EXPLODING, **{"train.steps": 6, "train.max_nonfinite": 1000})
    assert train.train(first, run)["status"] == "finished"  # every update skipped, counted
    with pytest.raises(train.DivergenceError, match=r"training diverged: .*\(1[0-2] such "):
        train.train(tiny_config(**EXPLODING, **{"train.steps": 12, "train.max_nonfinite": 8}),
                    run)  # (found at the first check past 8: a log, evaluation or checkpoint)


# ------------------------------------------------------------------- 9. an edited vocab.json


def _drop_chars(path, digest=True):
    record = json.loads(path.read_text())
    record["chars"] = record["chars"][3:]
    if not digest:
        record.pop(rundir.RECORD_DIGEST)
    path.write_text(json.dumps(record))


def test_an_edited_vocab_is_named_by_sample_and_training(text_run, tmp_path):
    run, corpus = copy_run(text_run, tmp_path)
    _drop_chars(run / layout.VOCAB_FILE)
    with pytest.raises(rundir.RunDirError, match=rf"{run / layout.VOCAB_FILE} was changed"):
        sample.sample_text(run, length=5)
    proc = cli("rnnlab.sample", f"--workdir={run}", "--length=5")
    assert proc.returncode == 2 and "vocab.json was changed" in one_error_line(proc)
    assert len(proc.stderr.splitlines()) < 5, proc.stderr[-3000:]
    with pytest.raises(rundir.RunDirError, match="vocab.json was changed"):
        train.train(tiny_config(**RUN, **{"data.path": str(corpus)}), run)


def test_a_vocab_without_a_digest_is_still_checked_against_the_data(text_run, tmp_path):
    """A run made before vocab.json had a digest: training compares it with the data's."""
    run, corpus = copy_run(text_run, tmp_path)
    _drop_chars(run / layout.VOCAB_FILE, digest=False)
    with pytest.raises(rundir.RunDirError, match="vocab.json does not match the data's"):
        train.train(tiny_config(**RUN, **{"data.path": str(corpus)}), run)
    proc = cli("rnnlab.sample", f"--workdir={run}", "--length=5")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) < 5, proc.stderr[-3000:]


# -------------------------------------------------------------------- 10. config values


def test_a_seed_past_32_bits_or_a_nan_is_refused_before_any_file(tmp_path):
    proc = run_main(tmp_path / "run", "--config.seed=18446744073709551617")
    assert proc.returncode == 2 and "seed must be an integer from 0 to" in one_error_line(proc)
    assert not (tmp_path / "run").exists()
    proc = run_main(tmp_path / "run", "--config.train.sample_temperature=nan")
    assert proc.returncode == 2
    assert "train.sample_temperature must be a finite number" in one_error_line(proc)
    assert not (tmp_path / "run").exists()
    for seed in (2**32, -1, True):  # 2**32 would make seed 0's key
        with pytest.raises(validation.ConfigError, match="seed must be an integer"):
            validation.check_config(tiny_config(seed=seed))
    validation.check_config(tiny_config(seed=validation.MAX_SEED))
    for key in ("optim.lr", "model.dropout", "data.valid_fraction"):
        with pytest.raises(validation.ConfigError, match=rf"{key} must be a finite number"):
            validation.check_config(tiny_config(**{key: float("inf")}))


# ------------------------------------------------------ 18. a signal in the final evaluation


@pytest.mark.parametrize("name", ["lm", "classify", "seq2seq"])
def test_the_whole_split_in_parts_is_bitwise_the_whole_split_at_once(name):
    """The final evaluation runs in `Part`s (so that a signal can stop it): with the sums handed
    on, the last part's sums are bitwise those of one pass, the tail of a text included."""
    import jax
    import numpy as np

    from rnnlab import tasks
    from test_tasks import task_config

    extra = {"train.final_eval_streams": 3, "train.bptt_len": 5} if name == "lm" else {}
    task = tasks.build(task_config(name, **extra))
    params = task.model.init(jax.random.key(0))
    whole = jax.device_get(jax.jit(lambda p, d: task.evaluate(p, d, "valid", None))(
        params, task.data))
    total = (task.whole_windows or task.eval_windows)["valid"]
    assert total >= 3
    part = jax.jit(lambda p, d, first, so_far: task.evaluate(
        p, d, "valid", tasks.base.Part(first, 2, so_far)))  # the last part runs past the end
    sums = None
    for first in range(0, total, 2):
        sums = part(params, task.data, first, sums)
    sums = jax.device_get(sums)
    sums.pop("carry", None)
    assert sums.keys() == whole.keys()
    for key in whole:
        np.testing.assert_array_equal(sums[key], whole[key], err_msg=key)


def test_a_signal_during_the_final_evaluation_saves_and_a_rerun_finishes(text_run, tmp_path,
                                                                          monkeypatch):
    """SIGTERM arrives as the final evaluation starts: the trained state is saved (status
    "interrupted" at the last step), nothing of the evaluation is written, and the rerun does
    the final evaluation alone, with the results of a run never stopped."""
    import os
    import signal

    run, corpus = text_run
    straight = layout.read_status(run)
    stopped = tmp_path / "run"
    config = tiny_config(**RUN, **{"data.path": str(corpus)})
    whole = train.loop.Program.whole

    def signalled(self, state, split):
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: the stop is set
        return whole(self, state, split)

    monkeypatch.setattr(train.loop.Program, "whole", signalled)
    result = train.train(config, stopped)
    assert result["status"] == "interrupted" and result["step"] == 4
    assert layout.read_status(stopped)["status"] == "interrupted"
    assert layout.checkpoint_steps(stopped)[-1] == 4
    assert [m["step"] for m in layout.read_metrics(stopped) if m["split"] != "train"] == [2]
    monkeypatch.setattr(train.loop.Program, "whole", whole)
    assert train.train(config, stopped)["status"] == "finished"
    status = layout.read_status(stopped)
    for key in ("valid", "test", "best_step", "best_valid_bpc"):
        assert status[key] == straight[key], key
    # the final checkpoint replaced the interrupted one: a rerun is a finished result
    again = train.train(config, stopped)
    assert again["status"] == "finished" and layout.read_status(stopped) == status


@pytest.mark.slow
def test_sigterm_stops_a_long_final_evaluation_within_seconds(tmp_path):
    """A run whose whole valid and test splits take long to score (a wide model, 1.3M
    characters each: about 40 s here): SIGTERM after its last training step stops it within
    seconds, mid-split, with the trained state saved. (That the rerun then finishes, with the
    numbers of a run never stopped, is the test above.)"""
    import random
    import re
    import signal
    import time

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
             for _ in range(500)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(700_000)))
    args = ["--config.data.name=text", f"--config.data.path={corpus}",
            "--config.data.max_chars=0", "--config.data.valid_fraction=0.35",
            "--config.data.test_fraction=0.35", "--config.model.hidden_size=256",
            "--config.train.steps=2", "--config.train.eval_every=2", "--config.train.log_every=1",
            "--config.train.eval_batches=1", "--config.train.sample_length=0"]
    workdir, log = tmp_path / "run", tmp_path / "run.log"
    proc = run_main(workdir, *args, wait=False, log=log)
    deadline = time.time() + 240
    while not any(m["step"] == 2 for m in layout.read_metrics(workdir)):
        assert proc.poll() is None and time.time() < deadline, "no last training step"
        time.sleep(0.05)
    time.sleep(3)  # into the final evaluation
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    stop_took = time.time() - signalled
    status = layout.read_status(workdir)
    assert status["status"] == "interrupted" and status["step"] == 2
    assert layout.checkpoint_steps(workdir) == [2]
    [(split, done, total)] = re.findall(r"stopping the final evaluation \((\w+) split, (\d+) of "
                                        r"(\d+) windows done\)", log.read_text())
    assert split == "test" and int(done) < int(total) / 2, (done, total)  # mid-split
    assert stop_took < 15, stop_took


# ------------------------------------------------- a cut metrics.jsonl on a resumed run


def test_a_resume_names_the_rows_a_cut_metrics_file_lost(text_run, tmp_path, caplog):
    run, corpus = copy_run(text_run, tmp_path)  # train rows at steps 3 and 4 (log_every 3)
    lines = (run / layout.METRICS_FILE).read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["step"] < 3]
    (run / layout.METRICS_FILE).write_text("".join(kept) + lines[len(kept)][:20])  # cut
    caplog.set_level("WARNING")
    train.train(tiny_config(**{**RUN, "data.path": str(corpus), "train.steps": 6}), run)
    assert "has the train rows up to step 0 only, but the run resumes from step 4: the rows " \
           "of steps 1 to 3 were lost" in caplog.text
    # an intact file: not a word
    caplog.clear()
    train.train(tiny_config(**{**RUN, "data.path": str(corpus), "train.steps": 8}), run)
    assert "were lost" not in caplog.text


# --------------------------------------- found by a probe of fresh bad inputs (see the README)


def test_a_misspelt_config_variant_or_a_missing_config_file_is_one_line(tmp_path):
    for config, message in (("configs/parity.py:SMOKE", "unknown config variant 'SMOKE'; this "
                                                        "config has: smoke"),
                            ("configs/nonexist.py", "cannot read the --config file "
                                                    "'configs/nonexist.py'; configs/ has ")):
        proc = run_main(tmp_path / "run", config=config)
        assert proc.returncode == 2 and message in one_error_line(proc)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = cli("rnnlab.main", f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "--config is required" in one_error_line(proc)
    (tmp_path / "no_get_config.py").write_text("x = 1\n")
    proc = run_main(tmp_path / "run", config=str(tmp_path / "no_get_config.py"))
    assert proc.returncode == 2 and "no attribute 'get_config'" in one_error_line(proc)
    assert not (tmp_path / "run").exists()
    from experiments.relu_unroll import config as relu_unroll

    relu_unroll.get_config("sgd")
    with pytest.raises(ValueError, match="unknown config variant 'sdg'; this config has: sgd, "
                                         "smoke, one_seed"):
        relu_unroll.get_config("sdg")


@pytest.mark.parametrize("task, changes", [
    ("lm", {}), ("adding", {}), ("seq2seq", {}), ("vec2seq", {})])
def test_a_data_path_the_task_would_ignore_is_refused(task, changes):
    from test_tasks import task_config

    config = task_config(task, **{"data.path": "/some/file.txt", **changes})
    with pytest.raises(validation.ConfigError, match=r"data\.path='/some/file.txt'"):
        validation.check_config(config)


def test_pairs_lines_end_at_newline_only_and_cut_pairs_are_named(tmp_path, caplog):
    from rnnlab.tasks import seq2seq
    from test_tasks import task_config

    path = tmp_path / "pairs.tsv"
    odd = "\u2028\x85\x0c\x1c\x1d\x1e\x0b"
    rows = [(f"a{c}b{i}", f"c{c}d") for i, c in enumerate(odd)] + [("abcdefgh", "ijklmnop")] * 40
    path.write_text("".join(f"{s}\t{t}\r\n" for s, t in rows), encoding="utf-8")
    assert [(s, t) for s, t, _ in seq2seq.read_pairs(str(path))] == rows
    assert [n for _, _, n in seq2seq.read_pairs(str(path))] == list(range(1, len(rows) + 1))
    pairs = {"data.name": "pairs", "data.path": str(path)}
    with pytest.raises(validation.ConfigError, match=r"data\.max_length must be an integer >= 0"):
        validation.check_config(task_config("seq2seq", **pairs, **{"data.max_length": -2}))
    caplog.set_level("WARNING")
    seq2seq.build(task_config("seq2seq", **pairs, **{"data.max_length": 3}))
    assert "pairs cut to data.max_length=3 characters" in caplog.text


def test_bad_flags_and_an_unwritable_output_are_one_line_and_exit_2(text_run, tmp_path):
    run, _ = text_run
    for module, flag in (("rnnlab.sample", "--lenght=5"), ("rnnlab.evaluate", "--checkpoint=x")):
        proc = cli(module, f"--workdir={run}", flag)
        assert proc.returncode == 2, proc.stderr[-2000:]
        one_error_line(proc)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ValueError, match=rf"cannot write the diagnostics to {a_file}"):
        diagnose.load(workdir=copy_run(text_run, tmp_path)[0], out=a_file)


def test_small_messages_name_what_is_wrong(tmp_path, text_run):
    from rnnlab import data as data_lib
    from test_tasks import task_config

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=rf"text file {empty}: the train split of a corpus of 0"):
        data_lib.load_corpus(task_config("lm", **{"data.name": "text", "data.path": str(empty),
                                                  "data.max_chars": 0}).data)
    with pytest.raises(ValueError, match="pass --input=SOURCE to decode one"):
        sample.sample_text(_finished(task_config("seq2seq"), tmp_path / "s2s"), length=3)
    vec = _finished(task_config("vec2seq"), tmp_path / "vec")
    digits = json.loads((vec / layout.CONFIG_FILE).read_text())["data"]["max_digits"]
    with pytest.raises(ValueError, match=rf"trained on numbers in \[0, {10 ** digits}\)"):
        sample.decode_input(vec, str(10 ** digits))
    assert sample.decode_input(vec, str(10 ** digits - 1)).isdigit()


def _finished(config, workdir):
    config.train.steps = 2
    train.train(config, workdir)
    return workdir


def test_help_shows_its_examples_whole_and_the_dry_run_and_key_list_work(tmp_path):
    """--help's examples keep their line breaks; --print_config prints the checked config after
    the overrides and trains nothing; --help_config lists every key with value and meaning."""
    help_text = cli("rnnlab.main", "--help").stdout
    assert help_text.startswith("The training command: trains (or resumes) a run of any task")
    assert "--workdir=runs/lstm_text8 \\\n        --config.model.cell=gru" in help_text
    assert "--help_config" in help_text and "--print_config" in help_text
    workdir = tmp_path / "run"
    printed = run_main(workdir, "--config.optim.lr=0.001", "--print_config")
    assert printed.returncode == 0, printed.stderr
    loaded = ml_collections.ConfigDict(__import__("yaml").safe_load(printed.stdout))
    assert loaded.optim.lr == 0.001 and loaded.train.steps == 30 and loaded.data.name == "pydoc"
    assert not workdir.exists()
    bad = run_main(workdir, "--config.optim.lr=-1", "--print_config")
    assert bad.returncode == 2 and "optim.lr" in one_error_line(bad)
    listed = cli("rnnlab.main", "--help_config", "--config=configs/quickstart.py:smoke")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    from rnnlab import config as config_lib, overrides

    assert sorted(rows) == sorted(overrides.known_keys(config_lib.get_config()))
    assert "30 (default 10000)" in rows["train.steps"] and "optimizer steps" in rows["train.steps"]
    assert "evaluations in a row" in rows["train.patience"]


def test_every_config_key_has_a_meaning():
    from rnnlab import config as config_lib, overrides

    meanings = config_lib.meanings()
    keys = overrides.known_keys(config_lib.get_config())
    assert sorted(meanings) == sorted(keys)
    assert [k for k in keys if len(meanings[k]) < 8] == []
    # the comment block above a key, and a comment that goes on below its key
    assert meanings["train.log_gradients"].startswith('At each evaluation, a "gradients" line')
    assert meanings["model.jordan_feedback"].endswith("scheduled (sampling, Bengio 2015)")


def test_diagnostics_of_a_config_go_under_runs_not_into_the_working_directory(
        tmp_path, monkeypatch):
    from test_tasks import task_config

    monkeypatch.chdir(tmp_path)
    subject = diagnose.load(config=task_config("adding"), checkpoint="init")
    assert subject.out.resolve() == tmp_path / "runs" / "diagnostics" / "adding"
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_a_key_misnamed_as_other_libraries_name_it_gets_rnnlabs_name():
    from rnnlab import config as config_lib, overrides

    known = overrides.known_keys(config_lib.get_config())
    assert overrides.suggest("optim.learning_rate", known)[0] == "optim.lr"
    assert overrides.suggest("model.layers", known)[0] == "model.num_layers"
    assert overrides.suggest("train.seq_len", known)[0] == "train.bptt_len"
    assert overrides.suggest("model.hiden_size", known)[0] == "model.hidden_size"
