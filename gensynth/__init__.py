"""Generative synthesis (FermiNets): a generator learns to rewrite a prototype into efficient networks.

Floors, bottom up: data/ (dataset readers), tasks/ (losses, metrics, output decoding per task), training/
(train, evaluate, probe any nn.Module), then synthesis itself in this package's own modules.
"""
