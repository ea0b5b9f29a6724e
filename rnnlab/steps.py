"""Old import path of `rnnlab.train.step`, kept working."""

import sys

from rnnlab.train import step

sys.modules[__name__] = step
