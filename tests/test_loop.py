"""The train loop's own bookkeeping, apart from training (which tests/test_train.py runs)."""

import re

from rnnlab.train import clock as clock_lib


def test_the_rate_leaves_out_actions_but_not_the_steps_queued_before_them(monkeypatch):
    """Steps run asynchronously: at an action the steps dispatched before it are still
    computing. Waiting for them is training time; the action's own time is not."""
    now = [0.0]
    monkeypatch.setattr(clock_lib.time, "perf_counter", lambda: now[0])

    def finish_queued_steps(seconds):  # what block_until_ready waits for, in this fake
        now[0] += seconds
        return seconds

    monkeypatch.setattr(clock_lib.jax, "block_until_ready", finish_queued_steps)
    clock = clock_lib.Clock(0)  # (the first step compiled: the clock starts at 0 s)
    with clock.pause(2.0):  # steps 1-10 finish 2 s in; then an evaluation of 3 s
        now[0] += 3.0
    # Steps 11-20 dispatched at once, done 2 s later, at the next log line:
    assert clock.rate(2.0, 20) == 20 / 4.0
    with clock.pause(0.0):  # the log line's own time, after the clock restarted, is left out
        clock.rate(0.0, 20)
        now[0] += 1.0
    assert clock.rate(1.0, 30) == 10 / 1.0


def test_the_final_line_shows_each_tasks_headline_metric(tmp_path, caplog):
    """The copy task picks its best by loss; its final line shows the recall accuracy too."""
    import logging

    from rnnlab import train
    from test_tasks import task_config

    caplog.set_level(logging.INFO, logger="absl")
    train.train(task_config("copy", **{"train.steps": 4}), tmp_path)
    [line] = [r.getMessage() for r in caplog.records if "final, on the whole splits" in
              r.getMessage()]
    assert re.fullmatch(r"final, on the whole splits: valid loss \d\.\d{4} recall_accuracy "
                        r"\d\.\d{4} over [\d,]+, test loss \d\.\d{4} recall_accuracy \d\.\d{4} "
                        r"over [\d,]+", line), line


def test_a_long_phase_says_how_far_it_is_and_when_it_ends(monkeypatch, caplog):
    import logging

    now = [0.0]
    monkeypatch.setattr(clock_lib.time, "perf_counter", lambda: now[0])
    caplog.set_level(logging.INFO, logger="absl")
    progress = clock_lib.Progress("final evaluation of the test split", 1000, "windows")
    for done, at in ((0, 0.0), (100, 5.0), (200, 10.0), (300, 15.0), (400, 20.0)):
        now[0] = at
        progress.done(done)
    assert [r.getMessage() for r in caplog.records] == [
        "final evaluation of the test split: 200 of 1000 windows, 20%, ETA 0:00:40",
        "final evaluation of the test split: 400 of 1000 windows, 40%, ETA 0:00:30"]
