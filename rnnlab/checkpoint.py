"""Old import path of `rnnlab.run.checkpoint` (orbax checkpoints of the train state), kept working."""
import sys
from rnnlab.run import checkpoint
sys.modules[__name__] = checkpoint
