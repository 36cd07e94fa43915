"""Fused per-step RTRL trace updates with pure-PyTorch reference paths.

Modules: `rtu` (linear and non-linear Recurrent Trace Units), `lru` (online LRU), `elstm` (element-wise LSTM).
See each module's docstring for its API.
"""
