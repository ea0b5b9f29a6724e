"""rnnlab: a functional research framework for recurrent networks in JAX."""

__version__ = "0.1.0"
