"""Old import path of `rnnlab.cells.kernels` (the cells' hand-derived backward), kept working."""
import sys
from rnnlab.cells import kernels
sys.modules[__name__] = kernels
