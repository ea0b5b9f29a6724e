"""Old import path of the seq2seq model, now `rnnlab.models` (its `seq2seq` head), kept working."""
import sys
from rnnlab import models
sys.modules[__name__] = models
