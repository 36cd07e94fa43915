"""Backend selection shared by every kernel module (written once, used by rtu, lru and elstm)."""
import os

import torch

BACKENDS = ("auto", "torch", "triton")


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


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def trace_contract(a: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """sum over the leading dims of a[..., None] * E: the gradient of an (n, D) weight from its per-sample trace E
    (..., n, D) and output gradients a (..., n). Multiply-then-sum measured ~3x faster than the equivalent einsum on
    CPU (torch 2.13, n=192, D=64, 128 rows)."""
    return (a[..., None] * E).flatten(0, -3).sum(0)
