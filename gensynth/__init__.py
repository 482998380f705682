"""Generative synthesis: data, training, evaluation and probing of torch networks."""
