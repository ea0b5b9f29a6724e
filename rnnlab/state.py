"""Old import path of `rnnlab.train.state`, kept working."""

import sys

from rnnlab.train import state

sys.modules[__name__] = state
