"""The cost model: exact MACs, parameters, buffers, other ops and activation memory (docs/cost-model.md).

program.py lowers the IR to a struct-of-arrays program, kernel.py holds the numba kernels, batch.py the
batched form for many width rows; network.py is the public API re-exported here.
"""

from compiler.cost.network import (
    FIGURES,
    CostProgram,
    CostReport,
    batched_costs,
    compile_costs,
    cost_of,
    execution_order,
    network_cost,
    with_input_shapes,
)

__all__ = ["FIGURES", "CostProgram", "CostReport", "batched_costs", "compile_costs", "cost_of", "execution_order",
           "network_cost", "with_input_shapes"]
