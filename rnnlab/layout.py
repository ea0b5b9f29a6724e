"""Old import path of `rnnlab.run.layout` (the run directory's layout), kept working."""
import sys
from rnnlab.run import layout
sys.modules[__name__] = layout
