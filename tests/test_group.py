"""Trials trained together as one vmapped program equal the same trials trained alone."""

import json
import pathlib
import signal

import jax
import numpy as np
import pytest

from rnnlab import layout, train, validation
from test_train import assert_same_run, restore_params, run_main, tiny_config, wait_for_step

DETERMINISTIC = ("loss", "bpc", "accuracy", "grad_norm", "lr", "perplexity")


def trial_metrics(workdir):
    return [(m["step"], m["split"], {k: m[k] for k in DETERMINISTIC if k in m})
            for m in layout.read_metrics(workdir)]


def assert_close_runs(a_dir, b_dir, rtol=2e-4):
    a, b = trial_metrics(a_dir), trial_metrics(b_dir)
    assert [x[:2] for x in a] == [x[:2] for x in b]
    for (_, _, ma), (_, _, mb) in zip(a, b):
        for k in ma:
            np.testing.assert_allclose(ma[k], mb[k], rtol=rtol, atol=1e-6, err_msg=k)
    pa, pb = restore_params(a_dir)[0].params, restore_params(b_dir)[0].params
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5),
                           pa, pb)


GROUP = [
    {"seed": 0, "optim.lr": 1e-2},
    {"seed": 1, "optim.lr": 3e-3, "optim.clip_norm": 0.5},
    {"seed": 2, "optim.lr": 1e-2, "model.init_scale": 0.5, "model.forget_bias": 0.0},
]


def test_vmapped_trials_equal_trials_run_alone(tmp_path):
    configs = [tiny_config(**o) for o in GROUP]
    assert validation.split_groups(configs) == [[0, 1, 2]]
    group_dirs = [tmp_path / f"group{i}" for i in range(3)]
    results = train.train_group(configs, group_dirs)
    assert [r["status"] for r in results] == ["finished"] * 3
    for i, config in enumerate(configs):
        alone = train.train(config, tmp_path / f"alone{i}")
        assert_close_runs(group_dirs[i], tmp_path / f"alone{i}")
        np.testing.assert_allclose(results[i]["test"]["bpc"], alone["test"]["bpc"], rtol=2e-4)
        for name in ("config.json", "vocab.json", "metrics.jsonl", "samples.txt", "status.json"):
            assert (group_dirs[i] / name).exists()
        # close, not bitwise: each run dir says which trials it trained with and how to
        # reproduce it (a trial alone has no group.json)
        group = json.loads((group_dirs[i] / layout.GROUP_FILE).read_text())
        assert group["trained_with"] == [str(d) for d in group_dirs]
        assert group["command"].startswith("python -m ") and "bitwise" in group["note"]
        assert not (tmp_path / f"alone{i}" / layout.GROUP_FILE).exists()
    # The trials really differ: different seeds and learning rates give different params.
    p0, p1 = (restore_params(d)[0].params for d in group_dirs[:2])
    assert not np.allclose(p0["readout"]["w"], p1["readout"]["w"])


def test_a_diverging_trial_does_not_spoil_the_others(tmp_path):
    base = {"model.cell": "irnn", "optim.name": "sgd", "optim.clip_norm": 0.0}
    good = tiny_config(**base, **{"optim.lr": 1e-2, "model.init_scale": 0.5})
    bad = tiny_config(**base, **{"optim.lr": 1e3, "model.init_scale": 3.0})
    dirs = [tmp_path / "good", tmp_path / "bad"]
    results = train.train_group([good, bad], dirs)
    assert results[0]["status"] == "finished"
    assert results[1]["status"] == "diverged"
    assert "non-finite loss or gradient at step" in results[1]["message"]
    train.train(good, tmp_path / "alone")
    assert_close_runs(dirs[0], tmp_path / "alone")


def test_trials_that_differ_in_shape_are_split_into_groups():
    configs = [tiny_config(**{"seed": 0}), tiny_config(**{"model.hidden_size": 24}),
               tiny_config(**{"seed": 5, "optim.lr": 0.1}), tiny_config(**{"optim.name": "sgd"}),
               tiny_config(**{"optim.clip_norm": 0.0})]
    assert validation.split_groups(configs) == [[0, 2], [1], [3], [4]]
    with pytest.raises(ValueError, match="split them with split_groups"):
        train.train_group(configs[:2], ["a", "b"])


# KILL_RUN's cadence (checkpoints every 17 steps, logs every 5) over 60 steps instead of 150:
# the kill comes after step 25, past the first checkpoint (17) and 35 steps before the end, so
# the rerun resumes from 17 (or 34), inside a log window, as KILL_RUN's kill did.
STEPS = 60
KILL_RUN = (f"--config.train.steps={STEPS}", "--config.train.ckpt_every=17",
            "--config.train.log_every=5", "--config.train.eval_every=50",
            "--config.data.max_chars=12000", "--config.model.hidden_size=16")


@pytest.mark.slow
def test_sigkilled_group_resumes_bitwise(tmp_path):
    """The --trials command, killed and rerun, equals the same command run without a kill."""
    trials = {name: [{"overrides": o, "workdir": str(tmp_path / name / str(i))}
                     for i, o in enumerate(GROUP[:2])] for name in ("straight", "killed")}
    files = {}
    for name, spec in trials.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(spec))
    args = [f"--trials={files['killed']}", *KILL_RUN]
    proc = run_main(tmp_path / "unused", *args, wait=False)
    killed0 = pathlib.Path(trials["killed"][0]["workdir"])
    wait_for_step(proc, killed0, 25)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(m["step"] for m in layout.read_metrics(killed0)) < STEPS
    assert run_main(tmp_path / "unused", *args).returncode == 0
    assert run_main(tmp_path / "unused", f"--trials={files['straight']}", *KILL_RUN).returncode == 0
    for a, b in zip(trials["straight"], trials["killed"]):
        assert_same_run(pathlib.Path(a["workdir"]), pathlib.Path(b["workdir"]), steps=STEPS)
