"""Test configuration shared by the whole suite.

Triton has no CPU backend: without a CUDA device its kernels only run under the interpreter, and
TRITON_INTERPRET must be set before `triton` is first imported. This file is loaded by pytest
before any test module, so setting it here covers every test.
"""
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Make `triton_kernels` and the single-file scripts in `algos/` importable from the tests.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "algos"))
