"""Generative synthesis (FermiNets): a generator learns to rewrite a prototype into efficient networks.

Floors, bottom up: data/ (dataset readers), tasks/ (losses, metrics, output decoding per task), training/
(train, evaluate, probe any nn.Module), then synthesis itself in this package's own modules.
"""

import os

# oneDNN, which runs PyTorch's CPU convolutions, keeps up to 1,024 compiled kernels by default; a process that has
# timed many networks holds that many, and a network timed then ran 20-35% slower than in a fresh process (the
# same MobileNetV2, one after the other: docs/latency.md). 256 holds every kernel one network needs (MobileNetV2:
# 51 at inference, 70 while training) and keeps timings within a few percent of a fresh process. oneDNN reads it
# once, before its first kernel, hence here; a value the user set is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "256")
