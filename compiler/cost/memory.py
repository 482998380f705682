"""Will a network fit in memory? A lower bound of the bytes that lowering, exporting or training needs, checked
against the memory available before anything is allocated: a refusal names the largest layer and the estimate.

The bound counts float32 weights (and for training their gradients and optimizer state) and activations: the
peak of a forward pass for inference, every layer's output for training (autograd keeps them for the backward
pass). It leaves out the framework's own overhead, so a network it passes may still be tight; one it refuses
cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from compiler.cost.network import network_cost
from compiler.diagnostics import count, size_bytes
from compiler.memory import check_allocation

FLOAT_BYTES = 4


@dataclass(frozen=True)
class MemoryNeed:
    """A lower bound of the bytes a job needs, and the layers that need the most."""

    weight_bytes: int  # weights, buffers and (training) gradients and optimizer state
    activation_bytes: int
    heaviest: str  # the node with the most parameters
    heaviest_params: int
    widest: str  # the node with the largest output
    widest_elements: int

    @property
    def total(self) -> int:
        return self.weight_bytes + self.activation_bytes


def memory_need(g: nx.DiGraph, batch: int = 1, training: bool = False, optimizer_states: int = 1) -> MemoryNeed:
    """The lower bound for one network at a batch size; training keeps gradients, `optimizer_states` copies of
    the weights (1 for SGD with momentum, 2 for AdamW) and every activation."""
    report = network_cost(g)
    nodes = report.nodes()
    weights = (report.params * (2 + optimizer_states if training else 1) + report.buffers) * FLOAT_BYTES
    elements = report.activation_elements if training else report.peak_activation_elements
    heaviest = max(nodes, key=lambda n: n["params"])
    widest = max(nodes, key=lambda n: n["activation_elements"])
    return MemoryNeed(weights, elements * batch * FLOAT_BYTES, heaviest["name"], heaviest["params"],
                      widest["name"], widest["activation_elements"])


def check_memory(g: nx.DiGraph, what: str, batch: int = 1, training: bool = False, optimizer_states: int = 1,
                 available: int | None = None, where: str = "memory") -> MemoryNeed:
    """Raise a NetError, located at the layer that needs the most, when the lower bound exceeds `available`
    bytes (default: this machine's available memory); return the estimate otherwise."""
    need = memory_need(g, batch, training, optimizer_states)
    weights_first = need.weight_bytes >= need.activation_bytes
    layer = need.heaviest if weights_first else need.widest
    d = g.nodes[layer]
    kept = "weights, gradients and optimizer state" if training else "weights"
    activations = "every layer's output" if training else "the largest activations"
    notes = [f"{d['op']} '{layer}' alone has " + (f"{count(need.heaviest_params)} parameters"
                                                  if weights_first else
                                                  f"an output of {count(need.widest_elements)} elements per sample"),
             f"{size_bytes(need.weight_bytes)} for {kept}, {size_bytes(need.activation_bytes)} for {activations}"
             + (f" at batch {batch}" if batch != 1 else "")]
    if not weights_first and batch > 1:
        notes.append("a smaller --batch-size needs less")
    check_allocation(need.total, f"{what} {g.graph.get('name', '')}", available, where, d.get("span"), notes)
    return need
