"""The cost model: exact MACs, parameters, buffers, other ops and activation memory (docs/cost-model.md).

program.py lowers the IR to a struct-of-arrays program, kernel.py holds the numba kernels, batch.py the
batched form for many width rows; network.py is the public API re-exported here, memory.py the bytes a
network needs to run or train (checked before anything is allocated).
"""

from compiler.cost.memory import MemoryNeed, check_memory, memory_need
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

__all__ = ["FIGURES", "CostProgram", "CostReport", "MemoryNeed", "batched_costs", "check_memory", "compile_costs",
           "cost_of", "execution_order", "memory_need", "network_cost", "with_input_shapes"]
