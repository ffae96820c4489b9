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


def interpreter_test(*specs: str):
    """A test that re-runs ``specs`` (test files or node ids) in child processes with TRITON_INTERPRET=1 (the
    interpreter cannot be switched on once triton is imported) and asserts they passed. The children of every
    selected wrapper run two at a time when the first wrapper runs (``interpreter_results``)."""

    @pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
    @pytest.mark.skipif(in_interpreter_child(), reason="parent wrapper")
    def test_under_interpreter() -> None:
        for spec in specs:
            rc, out = interpreter_results(spec)
            assert rc == 0, f"{spec}:\n{out}"

    test_under_interpreter.interp_specs = specs
    return test_under_interpreter


# the interpreter children of the session's selected wrappers (conftest's pytest_collection_modifyitems)
SELECTED_SPECS: list = []
_RESULTS: dict = {}
WORKERS = 2


def interpreter_results(spec: str) -> tuple:
    """(return code, output tail) of ``spec`` under the interpreter. The first call runs every selected spec,
    ``WORKERS`` processes at a time (the children are single-threaded Python: on the 2-core CI machine two at
    once halve their ~8 minutes), and waits for all of them, so no child competes with the other tests."""
    if spec not in _RESULTS:
        from concurrent.futures import ThreadPoolExecutor
        todo = [s for s in dict.fromkeys(SELECTED_SPECS + [spec]) if s not in _RESULTS]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for s, res in zip(todo, pool.map(run_tests_under_interpreter, todo)):
                _RESULTS[s] = res
    return _RESULTS[spec]
