"""Old import path of `rnnlab.run.resume` (where the trials of a group start), kept working."""
import sys
from rnnlab.run import resume
sys.modules[__name__] = resume
