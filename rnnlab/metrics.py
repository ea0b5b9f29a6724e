"""Metrics of a language model from the sums of an evaluation: loss, bits per character,
perplexity and accuracy.

Writing them to the run directory (`metrics.jsonl`, TensorBoard) is `rnnlab.run.logs`.
"""

from __future__ import annotations

import math

from rnnlab.run import logs


def lm_scalars(loss_sum: float, correct: float, count: float) -> dict[str, float]:
    """Next-character metrics from sums over `count` predicted characters."""
    loss = loss_sum / count
    return {
        "loss": loss,  # nats per character
        "bpc": loss / math.log(2.0),
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": correct / count,
    }


# The writer of metrics.jsonl lives with the run directory; its old import path is kept.
MetricsWriter = logs.MetricsWriter
