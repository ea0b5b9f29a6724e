"""How an adaptive search's trials run (`launch.search`): as subprocesses watched for pruning
(the local executor), or in rounds through another executor."""

from __future__ import annotations

import signal
import time

from absl import logging

from launch import local, trials as trials_lib
from launch.search import PRUNED, Search, _Running
from rnnlab.run import layout


def run_local(search: Search) -> dict[str, str]:
    """Trains the trials as subprocesses, at most --max_parallel at once, pruning as the
    validation lines come in; returns {trial id: outcome} of those it ran."""
    stopping: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    search.logs.mkdir(parents=True, exist_ok=True)
    waiting = search.unfinished()
    running: list[_Running] = []
    try:
        while not stopping:
            while len(running) < search.opts.max_parallel and (
                    waiting or search.started() < search.opts.trials):
                r = waiting.pop(0) if waiting else search.ask()
                if _ended_while_away(search, r):
                    continue
                if _start(search, r):
                    running.append(r)
                else:
                    waiting.append(r)
                    break
            if not running and not waiting:
                break
            for r in list(running):
                if (step := search.report(r)) is not None:
                    logging.info("trial %s: pruned at step %d (%s behind); stopping it",
                                 r.run.id, step, search.metric)
                    r.proc.send_signal(signal.SIGTERM)
                if r.proc.poll() is not None:
                    running.remove(r)
                    search.report(r)
                    search.tell(r, trials_lib.outcome(r.run), r.proc.returncode)
            time.sleep(0.2)
    except KeyboardInterrupt:
        stopping.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for r in running:
            r.proc.send_signal(signal.SIGTERM)
        for r in running:  # each got SIGTERM from this launcher: interrupted, not failed
            r.proc.wait()
            search.tell(r, trials_lib.outcome(r.run, stopped=True), r.proc.returncode)
    search.stopped_by = stopping[-1] if stopping else None
    return search.outcomes


def _ended_while_away(search: Search, r: _Running) -> bool:
    """Tells a resumed trial that needs no more training (the launcher died before it told the
    study): it was pruned, its run became a result, or the pruner prunes it on what it logged
    while the launcher was away."""
    if r.pruned_at is None and (result := trials_lib.result(r.run)):
        search.report(r)
        search.tell(r, result, None)
        return True
    if r.pruned_at is None and search.report(r) is None:
        return False
    search.tell(r, PRUNED, None)
    return True


def _start(search: Search, r: _Running) -> bool:
    """Starts the trial's process; False while another process still trains its run
    directory (a trial of a launcher that was killed, still saving)."""
    if layout.lock_holder(r.run.workdir) is not None:
        return False
    with open(search.logs / f"{r.run.id}.log", "a") as log:
        logging.info("start %s: %s", r.run.id, " ".join(r.run.command))
        r.proc = local.spawn(r.run.command, log)
    return True


def run_rounds(search: Search, execute) -> dict[str, str]:
    """Another executor: rounds of --max_parallel proposals, each run to its end by
    `execute(trials, config, sweep_dir) -> {id: outcome}`, then told to the study."""
    waiting = search.unfinished()
    while waiting or search.started() < search.opts.trials:
        batch = waiting[:search.opts.max_parallel]
        waiting = waiting[len(batch):]
        while len(batch) < search.opts.max_parallel and search.started() < search.opts.trials:
            batch.append(search.ask())
        got = execute([r.run for r in batch], search.opts.config, search.opts.sweep_dir)
        if got is None:
            return search.outcomes
        for r in batch:
            search.report(r)
            search.tell(r, got.get(r.run.id, layout.INTERRUPTED), None)
        if any(search.outcomes[r.run.id] == layout.INTERRUPTED for r in batch):
            break  # stopped: the next launcher resumes them
    search.stopped_by = local.stopped_by()
    return search.outcomes
