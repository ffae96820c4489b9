"""Helpers shared by the Triton kernels: availability, interpreter detection, dtype maps."""
from __future__ import annotations

import os
from typing import Optional

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


class BoundLaunch:
    """One launch of ``launcher``'s kernel for a fixed call signature: grid, options and the trailing arguments
    (``tail``: strides, sizes, constexprs) are fixed; a call passes only the leading arguments (``head``:
    tensors) and the raw CUDA stream. ``descs``: {head slot: (rows, cols, row stride, block rows, block cols)}
    for the slots that the kernel takes as TMA tensor descriptors; the head holds the plain tensor there and
    the descriptor is made here (only on a cache miss on the direct path). Used by the planned entry points
    behind ``attention()`` (``window_global.WindowRunner``, ``lightning.LightningRunner``).

    ``key`` is the ``KernelLauncher`` key (None: always Triton's own path). Once the kernel is compiled, a
    call goes to the compiled kernel's launcher: by default straight to Triton's C launch function with the
    arguments flattened here (``_RawLaunch``: TMA descriptors encoded once per data pointer), skipping
    Triton's Python wrapper (``LONGAPPS_RAW_LAUNCH=0`` turns that off); else ``CompiledKernel.run``.
    """
    __slots__ = ("launcher", "key", "grid", "g", "tail", "options", "kern", "raw", "descs")

    def __init__(self, launcher: "KernelLauncher", key, grid: tuple, tail: tuple, options: dict,
                 descs: Optional[dict] = None) -> None:
        self.launcher, self.key, self.grid, self.tail, self.options = launcher, key, grid, tail, options
        self.g = (grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1)
        self.descs = descs or {}
        self.kern = None
        self.raw = None

    def with_descs(self, head: tuple) -> tuple:
        """``head`` with the descriptor slots turned into ``TensorDescriptor`` objects."""
        if not self.descs:
            return head
        h = list(head)
        for i, geo in self.descs.items():
            h[i] = make_desc(h[i], *geo)
        return tuple(h)

    def __call__(self, head: tuple, raw_stream: Optional[int], stream=None) -> None:
        """Launch on ``raw_stream`` (an int from ``cuda_stream``; None off CUDA) = ``stream`` (the
        ``torch.cuda.Stream`` object, or None for the current stream: used by Triton's own path)."""
        kern = self.kern
        if kern is not None and _no_launch_hooks():
            raw = self.raw
            if raw is not None:
                raw(self.g, raw_stream, head, self.tail)
                return
            g = self.g
            kern.run(g[0], g[1], g[2], raw_stream, kern.function, kern.packed_metadata, None, None, None,
                     *self.with_descs(head), *self.tail)
            return
        self.launcher(self.key, self.grid, self.with_descs(head) + self.tail, self.options, stream)
        if self.key is not None and kern is None and not (raw_stream is not None and _capturing()):
            kern = self.launcher.compiled.get(self.key)
            if kern is not None:  # (not while capturing a graph: the check's probe launch would be captured)
                self.raw = _RawLaunch.make(kern, self.g, raw_stream, head, self.tail, self.descs) if RAW_LAUNCH \
                    else None
                self.kern = kern


def make_desc(t: torch.Tensor, rows: int, cols: int, sn: int, block: int, bcols: int):
    """A Triton ``TensorDescriptor`` over ``t`` viewed as (rows, cols) with row stride ``sn``, tiles
    (block, bcols), built without the dataclass's checks (the caller's plan checked the layout once)."""
    d = _TensorDescriptor.__new__(_TensorDescriptor)
    d.base, d.shape, d.strides, d.block_shape, d.padding = t, [rows, cols], [sn, 1], [block, bcols], "zero"
    return d


RAW_LAUNCH = os.environ.get("LONGAPPS_RAW_LAUNCH", "1") != "0"
_capturing = getattr(torch._C, "_cuda_isCurrentStreamCapturing", lambda: False)
_RAW_STATS = {"made": 0, "refused": 0, "why": ""}


class _RawLaunch:
    """Triton's C launch function of one compiled kernel, called without Triton's Python wrapper.

    Triton (3.4-3.6 NVIDIA backend) launches a compiled kernel through ``CudaLauncher.__call__`` (scratch
    allocation) and, for kernels with tensor-descriptor arguments, a Python closure that loops over every
    argument and encodes each descriptor into a CUtensorMap (``make_tensordesc_arg``) before calling the C
    ``launch``: tens of microseconds per launch on a slow host. Here the flattened argument list is built
    from a fixed prefix, the call's head arguments and the fixed tail, and the encoded descriptors are kept
    per (argument slot, data pointer) (a CUtensorMap holds only the address and the fixed geometry).

    Pointers go in as ints (the C function takes an int as the address as is, instead of calling
    ``data_ptr()`` and checking it with the driver for every tensor argument).

    ``make`` checks the layout once against Triton's own path: it runs Triton's wrapper with the C function
    swapped for a recorder (no launch) and compares the recorded arguments with the ones built here
    (same length, same objects or equal values, ints equal to the tensors' addresses, same types for encoded
    descriptors), then launches once for real with the arguments built here (``probe``: the caller's launch
    was just made, the kernels here are idempotent: same inputs, same outputs). Anything unexpected
    (another Triton version's layout, scratch memory, an error) -> None, and the caller keeps
    ``CompiledKernel.run``.
    """
    __slots__ = ("c_launch", "base", "desc", "maps")

    def __init__(self, c_launch, base: tuple, desc: dict) -> None:
        self.c_launch, self.base, self.desc, self.maps = c_launch, base, desc, {}

    def __call__(self, g: tuple, raw_stream: int, head: tuple, tail: tuple) -> None:
        desc = self.desc
        if not desc:
            self.c_launch(g[0], g[1], g[2], raw_stream, *self.base, *[a.data_ptr() for a in head], *tail)
            return
        flat = []
        for i, a in enumerate(head):
            d = desc.get(i)
            if d is None:
                flat.append(a.data_ptr())
            else:
                key = (i, a.data_ptr())
                enc = self.maps.get(key)
                if enc is None:
                    if len(self.maps) > 256:
                        self.maps.clear()
                    enc = self.maps[key] = tuple(d[0](make_desc(a, *d[2]), d[1]))
                flat.extend(enc)
        self.c_launch(g[0], g[1], g[2], raw_stream, *self.base, *flat, *tail)

    @staticmethod
    def make(kern, g: tuple, raw_stream: int, head: tuple, tail: tuple, descs: dict,
             probe: bool = True) -> Optional["_RawLaunch"]:
        try:
            r = _RawLaunch._make(kern, g, raw_stream, head, tail, descs, probe)
        except Exception as err:  # noqa: BLE001 (an unexpected layout: keep Triton's path)
            r, why = None, repr(err)[:200]
        else:
            why = "" if r is not None else "layout check failed"
        _RAW_STATS["made" if r is not None else "refused"] += 1
        if why:
            _RAW_STATS["why"] = why
        return r

    @staticmethod
    def _make(kern, g, raw_stream, head, tail, descs, probe) -> Optional["_RawLaunch"]:
        import sys
        run = kern.run
        mod = sys.modules.get(type(run).__module__)
        launch = getattr(run, "launch", None)
        if mod is None or launch is None or getattr(mod, "_BASE_ARGS_FORMAT_LEN", None) != 13:
            return None
        if getattr(run, "global_scratch_size", 1) or getattr(run, "profile_scratch_size", 0):
            return None
        base = (kern.function, run.launch_cooperative_grid, run.launch_pdl, None, None, kern.packed_metadata,
                None, None, None)
        desc: dict = {}
        cell = None
        if getattr(launch, "__name__", "") != "inner" and not hasattr(launch, "__code__"):  # the C function itself
            c_launch = launch
        elif getattr(launch, "__name__", "") == "inner" and launch.__closure__:
            fv = launch.__code__.co_freevars
            if set(fv) != {"launcher", "tensordesc_indices", "tensordesc_meta"}:
                return None
            cells = dict(zip(fv, launch.__closure__))
            cell = cells["launcher"]
            c_launch = cell.cell_contents
            idx, meta = cells["tensordesc_indices"].cell_contents, cells["tensordesc_meta"].cell_contents
            mk = getattr(mod, "make_tensordesc_arg", None)
            if mk is None or not callable(c_launch):
                return None
            nd = 0
            for i in range(len(head) + len(tail)):
                if i in idx:
                    if i not in descs or meta[nd] is None:  # descriptors only where planned, TMA-lowered
                        return None
                    desc[i] = (mk, meta[nd], descs[i])
                    nd += 1
            if nd != len(descs):
                return None
        else:
            return None
        if descs and not desc:
            return None
        full = list(head)  # what Triton's own path gets: descriptor objects in their slots
        for i, geo in descs.items():
            full[i] = make_desc(head[i], *geo)
        # what Triton's own path would hand to the C function, recorded instead of launched
        rec: list = []

        def recorder(*a):
            rec.append(a)

        if cell is not None:
            cell.cell_contents = recorder
            try:
                run(g[0], g[1], g[2], raw_stream, kern.function, kern.packed_metadata, None, None, None, *full, *tail)
            finally:
                cell.cell_contents = c_launch
        else:
            run.launch = recorder
            try:
                run(g[0], g[1], g[2], raw_stream, kern.function, kern.packed_metadata, None, None, None, *full, *tail)
            finally:
                run.launch = c_launch
        r = _RawLaunch(c_launch, base, desc)
        mine: list = []
        r.c_launch = lambda *a: mine.append(a)
        r(g, raw_stream, head, tail)
        r.c_launch = c_launch
        r.maps.clear()
        if len(rec) != 1 or len(mine) != 1 or len(rec[0]) != len(mine[0]):
            return None
        for x, y in zip(rec[0], mine[0]):
            if x is y:
                continue
            if isinstance(x, (int, float, bool, str, type(None))) and type(x) is type(y) and x == y:
                continue
            if isinstance(x, torch.Tensor) and type(y) is int and y == x.data_ptr():  # pointers as ints
                continue
            if type(x).__name__ == "PyCUtensorMap" and type(y) is type(x):
                continue
            return None
        if probe:  # one real launch of the same (idempotent) work: an argument the C function refuses shows here
            r(g, raw_stream, head, tail)
        return r


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


_TensorDescriptor = None
if HAS_TRITON:
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor as _TensorDescriptor
    except Exception:  # pragma: no cover (older triton: no TMA descriptors)
        pass
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
