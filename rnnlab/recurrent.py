"""Old import path of `rnnlab.layers` (recurrent layers: rnn, stack, bidirectional), kept working."""
import sys
from rnnlab import layers
sys.modules[__name__] = layers
