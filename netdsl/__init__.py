"""netdsl: a language for neural-network architectures and a generative-synthesis engine."""

__version__ = "0.1.0"
