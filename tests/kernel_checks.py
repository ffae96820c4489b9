"""Shared helpers for the Triton kernel tests: tolerances, relative error, the interpreter child process."""
from __future__ import annotations

import pytest
import torch

from longapps.kernels._common import HAS_TRITON, in_interpreter_child, run_tests_under_interpreter

# relative L2 error allowed against a float64 reference, by input dtype
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 1e-2}

# tests marked `child` run only inside the TRITON_INTERPRET=1 child process
child = pytest.mark.skipif(not in_interpreter_child(), reason="runs inside the interpreter child process")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64; fails on any non-finite value in `a`."""
    a, b = a.detach().double(), b.detach().double()
    assert torch.isfinite(a).all(), "non-finite values in output"
    return float((a - b).norm() / b.norm())


def interpreter_test(test_file: str):
    """A test that re-runs `test_file` in a child process with TRITON_INTERPRET=1 (the interpreter cannot be
    switched on once triton is imported) and asserts it passed."""

    @pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
    @pytest.mark.skipif(in_interpreter_child(), reason="parent wrapper")
    def test_under_interpreter() -> None:
        rc, out = run_tests_under_interpreter(test_file)
        assert rc == 0, out

    return test_under_interpreter
