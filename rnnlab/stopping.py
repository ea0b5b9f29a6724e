"""Stopping a run cleanly: SIGTERM (a TPU VM preemption notice) or a first Ctrl-C means save a
checkpoint, then stop; a second Ctrl-C stops at once. Before training has begun (while the
corpus loads, say, which may never end on a stuck source) there is nothing to save, so a signal
stops at once: `Interrupted` is raised wherever the program is.

With several processes the stop must come at the same step in all of them, or their collectives
would wait forever: there JAX's preemption service (started by `jax.distributed.initialize()`)
takes SIGTERM and agrees on that step, and `Stop.at(step)` asks it. A Ctrl-C in one of them
just stops that one (the others then fail; rerunning resumes from the last checkpoint).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import jax
from absl import logging
from jax.experimental import multihost_utils


class Interrupted(Exception):
    """A signal arrived before training began: nothing was saved, nothing needed saving."""


class Stop:
    """Whether to stop; set by a signal, or by the preemption service across processes."""

    def __init__(self):
        self.set = False
        self.armed = False  # training has begun: a signal means "save, then stop"
        self.multiprocess = jax.process_count() > 1

    def arm(self) -> None:
        self.armed = True

    def at(self, step: int) -> bool:
        """Asked once at every step (the preemption service needs that)."""
        if self.multiprocess and multihost_utils.reached_preemption_sync_point(step):
            logging.warning("preemption notice: saving a checkpoint and stopping")
            self.set = True
        return self.set

    def __call__(self, signum, frame):
        del frame
        if not self.armed:
            raise Interrupted(f"stopped by signal {signum} before training began; nothing to "
                              "save. Rerun the same command to start.")
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        logging.warning("received signal %d: saving a checkpoint and stopping", signum)
        self.set = True


@contextlib.contextmanager
def on_signals() -> Iterator[Stop]:
    """A `Stop` that SIGTERM and SIGINT set while the block runs (signal handlers can only be
    installed from the main thread; elsewhere, and with several processes, none is)."""
    stop = Stop()
    in_main = threading.current_thread() is threading.main_thread()
    signals = () if stop.multiprocess or not in_main else (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, stop) for s in signals}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
