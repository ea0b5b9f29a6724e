"""A run directory written by an earlier rnnlab still resumes, samples, evaluates and is
diagnosed: `tests/fixtures/lm_run` is a finished 8-step character LM (H=16, on
`tests/fixtures/lm_corpus.txt`) made by the code of 2026-12-06, kept as it was written (its
config.json names the corpus relative to the repository). A change of the run-directory format
must keep these passing."""

import json
import shutil

import numpy as np
import pytest

from rnnlab import diagnose, evaluate, layout, sample, train
from test_train import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def old_run(tmp_path):
    """A copy of the old run, its config.json pointing at a copy of its corpus."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "lm_run", run)
    shutil.copy(FIXTURES / "lm_corpus.txt", tmp_path / "corpus.txt")
    config = json.loads((run / layout.CONFIG_FILE).read_text())
    config["data"]["path"] = str(tmp_path / "corpus.txt")
    (run / layout.CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return run


def test_an_old_run_samples_and_evaluates_to_its_recorded_numbers(old_run):
    text = sample.sample_text(old_run, prime="The ", length=30, temperature=0.0)
    assert text.startswith("The ") and len(text) == 34
    status = layout.read_status(old_run)
    scores = evaluate.evaluate(old_run, checkpoint="last")
    assert scores["step"] == status["step"] == 8
    for split in ("valid", "test"):
        np.testing.assert_allclose(scores[split]["bpc"], status[split]["bpc"], rtol=1e-5)


def test_an_old_run_is_diagnosed(old_run, tmp_path):
    subject = diagnose.load(workdir=old_run, out=tmp_path / "diagnostics")
    result = diagnose.gates(subject, batches=1)
    assert result["at"] == "step 8 (best checkpoint)"
    assert set(result["saturation"]["layer_0"]) == {"input", "forget", "output"}


def test_an_old_run_resumes_to_more_steps(old_run):
    config, _ = sample.load_run(old_run)
    config.train.steps = 12
    result = train.train(config, old_run)
    assert result["status"] == "finished" and result["step"] == 12
    steps = [m["step"] for m in layout.read_metrics(old_run) if m["split"] == "train"]
    assert steps == [2, 4, 6, 8, 10, 12]
