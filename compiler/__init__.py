"""The compiler: the graph IR and the passes over it (shapes, validation, cost, rewrites, PyTorch backend).

It imports no other package of this project; the language (netdsl) builds its IR, synthesis (gensynth) uses it.
Floors inside it: ir/ops/shapes/validate/printer/dot/diagnostics at the bottom, then cost/ and rewrite/, then
backend/ (the only floor that imports torch, and only inside functions that need tensors).
"""
