"""Old import path of `rnnlab.run.storage` (where run directories live and how their files are written), kept working."""
import sys
from rnnlab.run import storage
sys.modules[__name__] = storage
