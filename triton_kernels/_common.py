"""Backend selection, the reset mask, the kernels' tile shape and the trace contraction, shared by every kernel module
(rtu, lru and elstm). The API and the reset convention are described once, in triton_kernels/__init__.py."""
import math
import os
from typing import Optional

import torch

BACKENDS = ("auto", "torch", "triton")
GATHER_ROWS_PER_BLOCK = 4  # trace_contract(..., index): gathered rows summed per block (see there)
MAX_TILE = 1024  # elements of a kernel's (units x D) tile: small enough for the RTU's eight live tiles in registers


def use_triton(x: torch.Tensor, backend: str) -> bool:
    """Decide which path runs a step.

    backend="auto": Triton for CUDA tensors, the PyTorch reference for CPU tensors.
    backend="torch": always the reference. backend="triton": always the Triton kernel (on CPU this needs
    TRITON_INTERPRET=1 set before triton is imported; tests use it to check kernel == reference).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return x.is_cuda
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before importing triton")
    return backend == "triton"


def keep_mask(reset: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """keep = 1 where reset == 0 (the episode continues), 0 where reset[b] is nonzero (True or 1.0: the previous state
    and traces of sample b are zeroed before the step); same shape as reset, dtype and device of x. Every module
    multiplies the previous state and traces by it."""
    return reset.to(x.device).eq(0).to(x.dtype)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def tile_shape(n: int, D: int):
    """(BLOCK_N, BLOCK_D) of every kernel: one program updates one sample's BLOCK_N units over the whole (padded) D
    axis, so that the row reductions W x_t stay inside a tile; BLOCK_N * BLOCK_D <= MAX_TILE where D allows."""
    BLOCK_D = next_pow2(D)
    return min(next_pow2(n), max(1, MAX_TILE // BLOCK_D)), BLOCK_D


def trace_contract(a: torch.Tensor, E: torch.Tensor, index: Optional[torch.Tensor] = None,
                   rows_per_block: Optional[int] = None) -> torch.Tensor:
    """sum over the leading dims of a[..., None] * E: the gradient of an (n, D) weight from its per-sample trace E
    (..., n, D) and output gradients a (..., n). Multiply-then-sum measured ~3x faster than the equivalent einsum on
    CPU (torch 2.13, n=192, D=64, 128 rows).

    index (B,) optional: E is a whole buffer and sample b's trace is its row index[b], i.e. the result is
    trace_contract(a, E.index_select(0, index)). Under torch.compile the gather then fuses with the contraction, the
    gathered rows are never materialised (the fast path below); the sum is the same up to float rounding.
    rows_per_block (default GATHER_ROWS_PER_BLOCK): see below; >= B sums all rows in one go.
    """
    if index is None:
        return (a[..., None] * E).flatten(0, -3).sum(0)
    # Fast path. Summed in one go, inductor's CPU loop keeps the batch innermost: every 8-float vector of the result
    # reads from all B gathered rows, ~2B memory streams (W1 and W2), too many for the hardware prefetcher (~4 GB/s).
    # Summing blocks of `rows` gathered rows first, then the B/rows block sums, gives few streams per pass and a small
    # (B/rows, n, D) intermediate (~2x the contraction's speed at B=64, n=192, D=64; scripts/bench_trace_update.py).
    rows = math.gcd(a.shape[0], rows_per_block or GATHER_ROWS_PER_BLOCK)
    prod = a[..., None] * E.index_select(0, index)  # (B, ..., n, D); under torch.compile never materialised
    return prod.unflatten(0, (-1, rows)).flatten(1, -3).sum(1).sum(0)
