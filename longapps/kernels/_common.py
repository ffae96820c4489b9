"""Helpers shared by the Triton kernels: availability, interpreter detection, dtype maps."""
from __future__ import annotations

import os

import torch

try:  # triton is optional (CPU installs)
    import triton  # noqa: F401
    import triton.language as tl  # noqa: F401
    HAS_TRITON = True
except Exception:  # pragma: no cover
    HAS_TRITON = False

LOG2E = 1.4426950408889634


def interpreting() -> bool:
    """True when Triton runs in interpreter mode (TRITON_INTERPRET=1, CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(t: torch.Tensor) -> bool:
    """Triton kernels can run on this tensor: CUDA, or CPU under the interpreter."""
    if not HAS_TRITON:
        return False
    return t.is_cuda or (interpreting() and t.device.type == "cpu")


def dot_dtype(dtype: torch.dtype):
    """Operand dtype for tl.dot. The interpreter (triton 3.9) computes bf16 dots wrongly,
    so operands are upcast to fp32 there."""
    if dtype == torch.float32 or (interpreting() and dtype == torch.bfloat16):
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]


def default_blocks(t: torch.Tensor, bm: int = 128, bn: int = 64) -> tuple[int, int]:
    """Tile sizes: small under the interpreter (speed), GPU-sized otherwise."""
    if interpreting() and not t.is_cuda:
        return 16, 16
    return bm, bn



_SIDE_STREAMS: dict = {}


def side_stream(device: torch.device, priority: int = 0) -> "torch.cuda.Stream":
    """A second CUDA stream per device (and priority: lower is more urgent), for small work that can run
    beside a bigger kernel."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if (idx, priority) not in _SIDE_STREAMS:
        _SIDE_STREAMS[idx, priority] = torch.cuda.Stream(device=idx, priority=priority)
    return _SIDE_STREAMS[idx, priority]


CHILD_ENV = "LONGAPPS_TRITON_INTERP_CHILD"


def in_interpreter_child() -> bool:
    """True inside the subprocess that runs Triton kernel tests under the interpreter."""
    return os.environ.get(CHILD_ENV) == "1" and interpreting()


def run_tests_under_interpreter(test_file: str, timeout: float = 600.0) -> tuple[int, str]:
    """Run ``pytest test_file`` in a fresh process with TRITON_INTERPRET=1 set before triton is
    imported (the interpreter cannot be switched on after ``import triton``)."""
    import subprocess
    import sys

    env = dict(os.environ, TRITON_INTERPRET="1", **{CHILD_ENV: "1"})
    env.pop("CUDA_VISIBLE_DEVICES", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", test_file],
                       env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr)[-6000:]


if HAS_TRITON:

    @triton.jit
    def head_ptr(X, bh, H, stride_b, stride_h):
        """Base pointer of (batch, head) = divmod(bh, H) in a (B, H, ...) tensor (int64 offsets)."""
        return X + (bh // H).to(tl.int64) * stride_b + (bh % H).to(tl.int64) * stride_h
