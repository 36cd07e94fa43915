"""The kernel modules (rtu, lru, elstm) expose the same functions with the same leading arguments, in the same order,
and the same keyword-only options: a script can swap one cell for another by changing its prefix."""
import inspect

import pytest

import triton_kernels.elstm as elstm
import triton_kernels.lru as lru
import triton_kernels.rtu as rtu

MODULES = {"rtu": rtu, "lru": lru, "elstm": elstm}
LEADING = {  # function suffix: the parameters every module's version starts with
    "init_params": ["n", "D"],
    "zero_carry": ["B", "n", "D", "dtype", "device"],
    "step": ["params", "x", "state", "traces", "reset"],
    "state_step": ["params", "x", "state", "reset"],
    "grads": ["params", "x", "state", "reset", "new_state", "new_traces", "delta"],
    "grads_from_carry": ["params", "x", "state", "traces", "reset", "new_state", "delta"],
}
KEYWORD_ONLY = {"step": ["backend"], "grads_from_carry": ["index"]}


@pytest.mark.parametrize("suffix", list(LEADING))
def test_same_functions_with_the_same_leading_parameters(suffix):
    for name, module in MODULES.items():
        fn = getattr(module, f"{name}_{suffix}")
        params = inspect.signature(fn).parameters.values()
        positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keyword_only = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert positional[:len(LEADING[suffix])] == LEADING[suffix], (name, positional)
        assert keyword_only == KEYWORD_ONLY.get(suffix, []), (name, keyword_only)
    if suffix == "init_params":
        for name, module in MODULES.items():
            assert {"generator", "dtype"} <= set(inspect.signature(getattr(module, f"{name}_{suffix}")).parameters)
