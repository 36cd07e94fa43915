"""Exact RTRL for diagonal recurrent cells: one step of state + traces, a PyTorch reference and a fused Triton kernel.

Modules: `rtu` (linear and non-linear Recurrent Trace Units), `lru` (online LRU), `elstm` (element-wise LSTM). Each
module's docstring gives its model, its trace recursion and its gradients. All three expose the same functions, with
the same leading arguments (tests/test_kernel_api.py checks the names and the order):

    <cell>_init_params(n, D, ..., generator=None, dtype=float32) -> Params
    <cell>_zero_carry(B, n, D, dtype=float32, device="cpu") -> (state, Traces), all zeros
    <cell>_step(params, x, state, traces, reset, *, backend="auto") -> (new_state, new_traces)
        one recurrent step and its RTRL trace update (the traces are d state / d params over the whole history).
    <cell>_state_step(params, x, state, reset) -> new_state
        the state part of <cell>_step (no traces); differentiable by autograd.
    <cell>_grads(params, x, state, reset, new_state, new_traces, delta) -> (grad_x, Params of gradients)
        the gradients of the step (params, x, state, reset) -> (new_state, new_traces), given
        delta = dL/d(new_state) through this step's output only. Parameter gradients are summed over the batch and
        are exact (summed over steps, they are the gradient of the summed loss: RTRL == BPTT); grad_x (B, D) is the
        one-step input gradient, with the previous state held constant. Each cell reads only what it needs.
    <cell>_grads_from_carry(params, x, state, traces, reset, new_state, delta, *, index=None) -> (grad_x, Params)
        the same gradients as <cell>_step + <cell>_grads, formed from the OLD traces of the carry without
        materialising the new ones (each new trace is linear in its old one): the PPO update reads every stored trace
        once. With `index` (B,), state and traces are whole rollout buffers and their rows `index` are the carry.

The RTU adds `activation` after the leading arguments (and `compact` to rtu_zero_carry); the LRU adds lru_init_readout
and lru_state_unroll; elstm adds ELSTMStepRTRL, the autograd.Function of R2AC and the copy task.

Shapes: x (B, D); params, traces and state per module (NamedTuples with named fields). Inputs are never modified.

Reset convention (every function that takes `reset`): reset (B,) is bool or float, and reset[b] = 1 (True) zeroes
sample b's previous state and traces before the step: the step is then the first of a new episode. Implemented as a
multiplication by keep = (reset == 0) (_common.keep_mask), in the reference paths and in the kernels alike.

backend: "auto" runs the Triton kernel on CUDA tensors and the reference on CPU; "torch" / "triton" force a path (on
CPU the Triton path needs TRITON_INTERPRET=1 set before triton is imported; the tests do this).
"""
