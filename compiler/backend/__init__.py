"""The PyTorch backend: code generation, lowering to an nn.Module, export, and weights on disk."""
