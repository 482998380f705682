"""Names PyTorch keeps: a layer with parameters becomes a submodule at its dotted name, so no part of that name
may be an attribute the module already has. Checked on the IR (no torch import), by `check` as by the lowering."""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ops import OPS

# Attribute names a layer or block cannot take, since its submodule would have to live under the same name:
# torch.nn.Module's own (torch 2.13; tests/compiler/backend/test_lower.py checks the installed torch against
# this list), and LoweredNetwork's at the top level. Any name starting with two underscores is refused too
# (Python's own, and what torch.compile patches in).
MODULE_ATTRIBUTES = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches eval
extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict modules mtia
named_buffers named_children named_modules named_parameters parameters register_backward_hook register_buffer
register_forward_hook register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module register_parameter
register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory
state_dict to to_empty train training type xpu zero_grad
_apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl _forward_hooks
_forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
_get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
_load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook _modules _named_members
_non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook _register_state_dict_hook
_replicate_for_data_parallel _save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
_wrapped_call_impl
""".split())
LOWERED_ATTRIBUTES = frozenset({"ir", "network", "shapes", "input_names", "output_names", "code", "intermediates",
                                "_place"})


def _reserved(segment: str, top: bool) -> str | None:
    """Who owns an attribute name a submodule cannot take, or None."""
    if top and segment in LOWERED_ATTRIBUTES:
        return "the lowered PyTorch module"
    if segment in MODULE_ATTRIBUTES or segment.startswith("__"):
        return "torch.nn.Module"
    return None


def check_module_names(g: nx.DiGraph) -> None:
    """Every layer with parameters becomes a submodule at its dotted name, each block scope on its path a container:
    refuse (located) a name PyTorch cannot hold there, so `check` and `export` agree."""
    paths = [name for name in g if getattr(OPS.get(g.nodes[name]["op"]), "layer", None) is not None]
    layers = set(paths)
    calls = g.graph.get("calls", {})
    for path in paths:
        segments = path.split(".")
        for i, segment in enumerate(segments):
            prefix = ".".join(segments[:i + 1])
            span = g.nodes[path].get("span") if prefix == path else calls.get(prefix, g.nodes[path].get("span"))
            owner = _reserved(segment, top=i == 0)
            if owner is not None:
                kind = "a layer" if prefix == path else "a block"
                raise NetError(f"'{segment}' cannot name {kind} ('{path}'): {owner} has its own attribute "
                               f"'{segment}'; rename it", span)
            if prefix != path and prefix in layers:
                raise NetError(f"layer '{prefix}' is also the name of a block containing other layers ('{path}'); "
                               "rename one", g.nodes[prefix].get("span"))
