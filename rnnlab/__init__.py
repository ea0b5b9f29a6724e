"""rnnlab: a functional research framework for recurrent networks in JAX."""

import logging as _logging

__version__ = "0.1.0"

# jax logs "Unable to initialize backend 'tpu'" at INFO on every machine without one: noise.
_logging.getLogger("jax._src.xla_bridge").setLevel(_logging.WARNING)
