"""Vmapped trial groups: several trials that differ only in values (seed, initialisation,
optimizer hyperparameters: `validation.VALUE_KEYS`) trained as ONE program around the same loop
and actions as a single run (`rnnlab.train.loop`).

`Group` stacks the trials' states on a leading trial axis, `jax.vmap`s every computation over
it, and hands each action its trial's slice. Each trial keeps its own run directory, and a
diverging trial stops alone.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import jax
import jax.numpy as jnp
from absl import logging

from rnnlab.run import layout
from rnnlab.train import loop


class Group(loop.Program):
    """The program of K > 1 trials, their states stacked on a leading axis."""

    state_axis = 1  # trials stack on a leading axis, so the carry's rows move to axis 1
    describe = " vmapped"

    def __init__(self, s, trials, states):
        self.index = {trial: k for k, trial in enumerate(trials)}
        super().__init__(s, trials, states)
        self._record_group()

    def stack(self, states):
        return jax.jit(lambda *s: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *s),
                       out_shardings=self.shardings)(*states)

    def batched(self, fn, in_axes):
        return jax.vmap(fn, in_axes=in_axes)

    def of(self, tree, trial):
        k = self.index[trial]
        return jax.tree_util.tree_map(lambda a: a[k], tree)

    def tag(self, trial):
        return f"[{trial.run.path.name}] "

    def per_trial(self, zeros):
        return jax.tree_util.tree_map(lambda z: jnp.zeros((len(self.trials),), z.dtype), zeros)

    def announce(self, message):
        logging.error("%s", message)

    def _record_group(self):
        """Each trial's group.json: batched reductions round differently, so the trial alone
        matches it to float rounding only; the group's command reproduces it."""
        command = "python -m rnnlab.main " + shlex.join(sys.argv[1:])
        for trial in self.trials:
            trial.run.write_file(layout.GROUP_FILE, json.dumps({
                "trained_with": [str(other.run.path) for other in self.trials],
                "command": os.environ.get("RNNLAB_SWEEP_COMMAND", command),
                "note": "trained as one vmapped program with the trials listed: rerun this "
                        "command (the same trials together) to reproduce it bitwise; alone, "
                        "its own command reproduces it to float rounding"}, indent=1) + "\n")
