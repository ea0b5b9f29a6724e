"""Early stopping (`train.patience`, `train.min_delta`): where a run stops is checked against
Keras's EarlyStopping rule written out as a plain loop over the logged validation scores; a
stopped run is a finished result; a resume (also one inside the stop) and a vmapped group are
bitwise the same as runs without a break."""

import json
import math

import jax
import numpy as np
import pytest

from rnnlab import layout, stopping, train
from rnnlab.run import checkpoint
from rnnlab.train import loop
from test_train import deterministic_metrics, restore_params, tiny_config

# A model that cannot learn (lr 1e-5): its validation score stalls from the first evaluation.
STALLS = {"optim.lr": 1e-5, "train.patience": 2, "train.min_delta": 0.01}
LEARNS = {"optim.lr": 3e-2, "train.patience": 2, "train.min_delta": 0.02}
STEPS = {"train.steps": 60, "train.eval_every": 6, "train.log_every": 3, "train.ckpt_every": 9}


def keras_stop(values, patience, min_delta):
    """The index of the evaluation after which Keras's EarlyStopping(mode="min") stops: an
    improvement is `value + min_delta < best` (Keras negates min_delta for mode "min" and
    compares `value - min_delta < best`); it stops when `wait >= patience`."""
    best, wait = math.inf, 0
    for i, value in enumerate(values):
        wait += 1
        if value + min_delta < best:
            best, wait = value, 0
        if wait >= patience:
            return i
    return None


def periodic_valid(workdir):
    """(step, bpc) of the periodic validation lines (not the final one at train.steps)."""
    return [(m["step"], m["bpc"]) for m in layout.read_metrics(workdir)
            if m["split"] == "valid" and m["step"] < 60]


@pytest.mark.parametrize("values", [STALLS, LEARNS], ids=["stalls", "learns"])
def test_the_run_stops_where_keras_early_stopping_would(tmp_path, values):
    config = tiny_config(**STEPS, **values)
    result = train.train(config, tmp_path)
    scores = periodic_valid(tmp_path)
    expected = keras_stop([v for _, v in scores], values["train.patience"],
                          values["train.min_delta"])
    if values is STALLS:
        assert expected is not None  # (the planted case: it must stop)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status.pop("committed_step") == status["step"]
    assert status == result and status["status"] == "finished"
    if expected is None:
        assert status["step"] == 60 and "stopped_early" not in status
        return
    stop = scores[expected][0]
    assert status["step"] == stop < 60 and status["stopped_early"] is True
    assert status["message"] == (
        f"stopped early at step {stop}: in 2 evaluations valid bpc has not improved on "
        f"{status['ref']:.4f} by more than {values['train.min_delta']:g} (best "
        f"{status['best_valid_bpc']:.4f} at step {status['best_step']})")
    # The final evaluation of the whole splits at the stop, and the final checkpoint there.
    assert {m["split"] for m in layout.read_metrics(tmp_path) if m["step"] == stop} >= {
        "valid", "test", "valid_full"}
    assert max(m["step"] for m in layout.read_metrics(tmp_path)) == stop
    assert checkpoint.Checkpointer(tmp_path, 3).latest_step() == stop
    assert restore_params(tmp_path)[1]["final"]["stopped_early"] is True
    # A rerun of the stopped run is its result: nothing trains, nothing is rewritten.
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.*")}
    assert train.train(config, tmp_path) == result
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.*")} == before


def stop_once_at(monkeypatch, step):
    """Stop.at says "stop" at `step` once, as a SIGTERM arriving then would."""
    real, fired = stopping.Stop.at, []

    def at(self, s):
        if s == step and not fired:
            fired.append(s)
            self.set = True
        return real(self, s)
    monkeypatch.setattr(stopping.Stop, "at", at)


def assert_bitwise(a_dir, b_dir):
    a, meta_a = restore_params(a_dir)
    b, meta_b = restore_params(b_dir)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert meta_a == meta_b
    assert deterministic_metrics(a_dir) == deterministic_metrics(b_dir)
    assert (json.loads((a_dir / "status.json").read_text())
            == json.loads((b_dir / "status.json").read_text()))


def test_a_run_stopped_and_resumed_stops_early_bitwise_as_one_without_a_break(
        tmp_path, monkeypatch):
    config = tiny_config(**STEPS, **STALLS)
    train.train(config, tmp_path / "straight")
    stop = json.loads((tmp_path / "straight" / "status.json").read_text())["step"]
    stop_once_at(monkeypatch, stop - 4)  # a signal between two evaluations
    assert train.train(config, tmp_path / "broken")["status"] == "interrupted"
    train.train(config, tmp_path / "broken")
    assert_bitwise(tmp_path / "straight", tmp_path / "broken")


def test_a_signal_during_the_stopping_evaluation_ends_the_run_on_the_rerun(
        tmp_path, monkeypatch):
    config = tiny_config(**STEPS, **STALLS)
    train.train(config, tmp_path / "straight")
    real, calls = loop.Program.whole, []

    def whole(self, state, split):  # the first whole split (the stopping one) meets a signal
        if not calls:
            calls.append(split)
            self.s.stop.set = True
            return None
        return real(self, state, split)
    monkeypatch.setattr(loop.Program, "whole", whole)
    assert train.train(config, tmp_path / "broken")["status"] == "interrupted"
    monkeypatch.undo()
    assert train.train(config, tmp_path / "broken")["stopped_early"] is True
    assert_bitwise(tmp_path / "straight", tmp_path / "broken")


# Two trials: after one stops, one trains on, which alone would be a plain (unbatched) program.
GROUP = [{"seed": 0, "optim.lr": 1e-2}, {"seed": 1, **STALLS}]


def test_each_trial_of_a_group_stops_on_its_own_and_a_resumed_group_is_bitwise(
        tmp_path, monkeypatch):
    configs = [tiny_config(**STEPS, **o) for o in GROUP]
    straight = [tmp_path / "straight" / str(i) for i in range(2)]
    results = train.train_group(configs, straight)
    assert [r["status"] for r in results] == ["finished"] * 2
    assert [r.get("stopped_early", False) for r in results] == [False, True]
    stop = results[1]["step"]
    assert results[0]["step"] == 60 > stop
    # The stopping trial alone stops at the same evaluation.
    alone = train.train(configs[1], tmp_path / "alone")
    assert alone["step"] == stop and alone["stopped_early"]
    # Broken after the trial stopped: the rerun trains the group at its full size (the stopped
    # trial rides along, untouched), so the others are bitwise the straight group's.
    broken = [tmp_path / "broken" / str(i) for i in range(2)]
    stop_once_at(monkeypatch, stop + 5)
    assert [r["status"] for r in train.train_group(configs, broken)] == [
        "interrupted", "finished"]
    assert train.train_group(configs, broken) == results
    for a, b in zip(straight, broken):
        assert_bitwise(a, b)


def test_patience_is_checked():
    with pytest.raises(ValueError, match="train.patience must be an integer >= 0"):
        train.train(tiny_config(**{"train.patience": -1}), "unused")
    with pytest.raises(ValueError, match="train.min_delta must be >= 0"):
        train.train(tiny_config(**{"train.min_delta": -0.1}), "unused")
