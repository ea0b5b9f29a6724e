"""The config rules of many-to-one tasks: a sequence in, one vector out (classification,
regression, the adding problem, parity), with truncated BPTT over long sequences. Their model is
`rnnlab.models.pooled` (`encode` and `pool` are re-exported here for old imports).

Truncated BPTT (`train.bptt_len` < T; 0 means full BPTT): the sequence is processed in windows
of `bptt_len` steps with the carry passed along, and the gradient is cut at each window
boundary that a sequence continues past. So an example's loss reaches back only into the
window holding its last valid step (the CS231n treatment of many-to-one TBPTT); the outputs of
its earlier windows enter mean or max pooling without gradient.
"""

from __future__ import annotations

import ml_collections

from rnnlab import model as model_lib
from rnnlab import models

POOLINGS = models.POOLINGS
encode, pool = models.encode, models.pool  # (their old home)


def check(config: ml_collections.ConfigDict, length: int | None = None) -> None:
    """Raises ValueError for a bad many-to-one config (`length`: T, when known already)."""
    if config.task.pooling not in POOLINGS:
        raise ValueError(f"task.pooling must be one of {POOLINGS}, got {config.task.pooling!r}")
    model_lib.check_model_config(config.model, causal=False, jordan=False)
    windowed = config.train.bptt_len and (length is None or config.train.bptt_len < length)
    if windowed and config.train.log_gradients:
        raise ValueError(
            "train.log_gradients measures the gradient through whole sequences, but truncated "
            f"BPTT (train.bptt_len={config.train.bptt_len}) cuts it: set train.bptt_len=0, or "
            "measure a checkpoint with `python -m rnnlab.diagnose gradients` (full BPTT)")
    if windowed and config.model.bidirectional:
        raise ValueError(
            "model.bidirectional=True needs the whole sequence: truncated BPTT "
            f"(train.bptt_len={config.train.bptt_len}) would start each window's backward pass "
            "without the rest of the sequence. Set train.bptt_len=0 (full BPTT).")
