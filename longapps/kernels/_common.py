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


_FORK_EVENTS: dict = {}


def fork_to(side: "torch.cuda.Stream", main: "torch.cuda.Stream") -> None:
    """``side.wait_stream(main)`` with a cached event per stream pair (no event created per call)."""
    _wait(side, main)


def join_from(main: "torch.cuda.Stream", side: "torch.cuda.Stream") -> None:
    """``main.wait_stream(side)`` with a cached event."""
    _wait(main, side)


def _wait(waiter: "torch.cuda.Stream", on: "torch.cuda.Stream") -> None:
    key = (on.cuda_stream, waiter.cuda_stream)
    ev = _FORK_EVENTS.get(key)
    if ev is None:
        ev = _FORK_EVENTS[key] = torch.cuda.Event()
    ev.record(on)
    waiter.wait_event(ev)


class KernelLauncher:
    """``fn[grid](*args, **options)`` without Triton's per-call argument binding, specialization and cache
    lookup once a kernel for ``key`` is compiled: the compiled kernel is launched directly (host cost of a
    launch: a few microseconds instead of tens).

    ``args`` holds every parameter of the kernel in signature order (constexprs too). ``key`` must fix
    everything Triton derives from the arguments (device, dtypes, 16-byte alignment of every pointer, every
    integer argument's value, constexprs, options); ``key=None`` always takes Triton's own path (so does the
    interpreter, and any launch while a Triton launch hook, e.g. a profiler, is set). ``stream``: a
    ``torch.cuda.Stream`` to launch on instead of the current one."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.compiled: dict = {}

    def __call__(self, key, grid: tuple, args: tuple, options: dict, stream=None) -> None:
        kern = self.compiled.get(key) if key is not None else None
        if kern is not None and _no_launch_hooks():
            g1 = grid[1] if len(grid) > 1 else 1
            g2 = grid[2] if len(grid) > 2 else 1
            raw = stream.cuda_stream if stream is not None else torch._C._cuda_getCurrentRawStream(_current_device())
            kern.run(grid[0], g1, g2, raw, kern.function, kern.packed_metadata, None, None, None, *args)
            return
        if stream is not None:
            with torch.cuda.stream(stream):
                kern = self.fn[grid](*args, **options)
        else:
            kern = self.fn[grid](*args, **options)
        if key is not None and not interpreting() and kern is not None:
            if hasattr(kern, "result"):
                kern = kern.result()
            if hasattr(kern, "packed_metadata") and hasattr(kern, "function"):
                self.compiled[key] = kern


def _no_launch_hooks() -> bool:
    """No Triton launch hook set (triton >= 3.5 keeps an empty ``HookChain`` there instead of None)."""
    rt = _knobs.runtime
    return _empty_hook(rt.launch_enter_hook) and _empty_hook(rt.launch_exit_hook)


def _empty_hook(h) -> bool:
    return h is None or (hasattr(h, "calls") and not h.calls)


_current_device = torch.cuda.current_device


# kernels whose Triton version failed at run time (name -> error), for the "auto" backends' fallback;
# LONGAPPS_TRITON_DISABLE="name,name" marks some as failed from the start (e.g. after a failed GPU test)
BROKEN: dict = {n.strip(): "disabled by LONGAPPS_TRITON_DISABLE"
                for n in os.environ.get("LONGAPPS_TRITON_DISABLE", "").split(",") if n.strip()}


def triton_or_fallback(name: str, run_triton, run_fallback):
    """``run_triton()``; if it raises anything but an out-of-memory error (say a compile failure on an untested
    Triton version), warn once, remember, and use ``run_fallback()`` from then on. Only the "auto" backends use
    this: an explicit backend="triton" fails loudly (the tests rely on that)."""
    import warnings

    if name in BROKEN:
        return run_fallback()
    try:
        return run_triton()
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # noqa: BLE001
        BROKEN[name] = repr(err)[:500]
        warnings.warn(f"{name}: the Triton kernel failed ({str(err).splitlines()[0][:200] if str(err) else type(err).__name__}); "
                      f"using the PyTorch path", RuntimeWarning, stacklevel=2)
        return run_fallback()


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
    try:
        from triton import knobs as _knobs
    except ImportError:  # pragma: no cover (older triton: no hooks to honour)
        class _knobs:  # type: ignore[no-redef]
            class runtime:
                launch_enter_hook = launch_exit_hook = None

    @triton.jit
    def head_ptr(X, bh, H, stride_b, stride_h):
        """Base pointer of (batch, head) = divmod(bh, H) in a (B, H, ...) tensor (int64 offsets)."""
        return X + (bh // H).to(tl.int64) * stride_b + (bh % H).to(tl.int64) * stride_h
