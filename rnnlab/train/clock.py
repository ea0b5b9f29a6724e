"""The train loop's clock: steps per second between log lines, without compile time or the
time of the periodic actions; the progress of a long phase; durations as H:MM:SS."""

from __future__ import annotations

import contextlib
import math
import time

import jax
from absl import logging


class Clock:
    """Steps per second between log lines, without compile time or the periodic actions."""

    def __init__(self, step: int):
        self.start, self.step, self.paused, self.compiled = time.perf_counter(), step, 0.0, False

    def first_step(self, state, step: int):
        if not self.compiled:  # keep compile time out of the rates
            jax.block_until_ready(state.step)
            logging.info("compiled and ran the first step in %.1fs",
                         time.perf_counter() - self.start)
            self.start, self.step, self.compiled = time.perf_counter(), step, True

    def rate(self, state, step: int) -> float:
        jax.block_until_ready(state)  # steps run asynchronously: wait, then time
        elapsed = time.perf_counter() - self.start - self.paused
        rate = (step - self.step) / elapsed if elapsed > 0 else float("nan")
        self.start, self.step, self.paused = time.perf_counter(), step, 0.0
        return rate

    @contextlib.contextmanager
    def pause(self, state):
        """Time in the block is left out of the rate; the steps queued before it are not (they
        are waited for first), nor is a log line's time before `rate` restarted the clock."""
        jax.block_until_ready(state)
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - max(begun, self.start)


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A long phase (a final evaluation over a 100M-character split, say) says how far it is
    and when it will end: a line every `every` seconds, from `every` seconds in; a short one
    says nothing."""

    def __init__(self, what: str, total: int, unit: str, every: float = 10.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.start = self.last = time.perf_counter()

    def done(self, count: int) -> None:
        now = time.perf_counter()
        if count and now - self.last >= self.every:
            self.last = now
            rate = count / (now - self.start)
            logging.info("%s: %d of %d %s, %.0f%%, ETA %s", self.what, count, self.total,
                         self.unit, 100 * count / self.total, duration((self.total - count) / rate))
