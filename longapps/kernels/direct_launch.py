"""Compiled Triton kernels launched straight through the CUDA driver (``cuLaunchKernel`` via ctypes).

A ``DirectLaunch`` holds one launch of one compiled kernel with its parameter block already packed: the grid,
the block size, the shared memory and every scalar argument are fixed when it is made; a call only overwrites
the pointer slots that changed and calls the driver. No Python objects per argument, no Triton wrapper, no
argument parsing: a launch costs one ctypes call. Used by the native eager Longformer encoder
(``models/longformer_native.py``), where ~50 launches per forward made the eager model host-bound.

Made from a ``BoundLaunch`` that has launched once (so Triton compiled the kernel and chose its
specializations); the parameter layout follows the compiled kernel's signature (Triton 3.4-3.6 NVIDIA
launcher: non-constexpr arguments in order, then the global and profile scratch pointers). Anything the packer
does not handle (tensor descriptors, scratch memory, clusters, cooperative or PDL launches) -> ``None``, and
the caller keeps Triton's path.
"""
from __future__ import annotations

import ctypes
import struct
from typing import Optional, Sequence

import torch

_SCALARS = {"i1": ctypes.c_int8, "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32,
            "i64": ctypes.c_int64, "u1": ctypes.c_uint8, "u8": ctypes.c_uint8, "u16": ctypes.c_uint16,
            "u32": ctypes.c_uint32, "u64": ctypes.c_uint64}

_CUDA = None


def cuda_driver() -> ctypes.CDLL:
    """libcuda (already loaded by torch / Triton in a CUDA process)."""
    global _CUDA
    if _CUDA is None:
        lib = ctypes.CDLL("libcuda.so.1")
        lib.cuLaunchKernel.restype = ctypes.c_int
        lib.cuGetErrorString.restype = ctypes.c_int
        _CUDA = lib
    return _CUDA


def cuda_check(code: int, what: str) -> None:
    """Raise RuntimeError for a CUresult other than CUDA_SUCCESS."""
    if code:
        msg = ctypes.c_char_p()
        cuda_driver().cuGetErrorString(code, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA error {code} ({(msg.value or b'?').decode()})")


class DirectLaunch:
    """One packed launch of a compiled Triton kernel. ``set(slot, address)`` writes the pointer argument at
    head position ``slot``; ``call`` = (``cuLaunchKernel``, its argument list) for a caller's own loop (a
    nonzero return is a CUDA error: ``cuda_check``); ``__call__()`` launches on the stream set by
    ``set_stream``. ``clone()``: an independent copy (its own parameter block)."""
    __slots__ = ("function", "grid", "block", "shared", "params", "slot_param", "args", "call")

    def __init__(self, function: int, grid: Sequence[int], block: int, shared: int, params: list,
                 slot_param: dict) -> None:
        self.function, self.grid, self.block, self.shared = function, tuple(grid), block, shared
        self.params, self.slot_param = params, slot_param
        arr = (ctypes.c_void_p * len(params))(*[ctypes.addressof(p) for p in params])
        self.args = (ctypes.c_void_p(function), ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]),
                     ctypes.c_uint(grid[2]), ctypes.c_uint(block), ctypes.c_uint(1), ctypes.c_uint(1),
                     ctypes.c_uint(shared), ctypes.c_void_p(0), arr, None)
        self.call = (cuda_driver().cuLaunchKernel, self.args)

    def set(self, slot: int, address: int) -> None:
        """The pointer argument at head position ``slot`` (every pointer slot of the head can be set)."""
        self.params[self.slot_param[slot]].value = address

    def set_stream(self, stream: int) -> None:
        self.args[8].value = stream

    def __call__(self) -> None:
        fn, a = self.call
        cuda_check(fn(*a), "cuLaunchKernel")

    def clone(self) -> "DirectLaunch":
        params = [type(p).from_buffer_copy(p) for p in self.params]
        d = DirectLaunch(self.function, self.grid, self.block, self.shared, params, dict(self.slot_param))
        d.set_stream(self.args[8].value or 0)
        return d

    @staticmethod
    def from_bound(bound, head: tuple) -> Optional["DirectLaunch"]:
        """Pack ``bound`` (a ``kernels._common.BoundLaunch`` that has launched: its compiled kernel is known)
        for a call with these ``head`` tensors (their addresses are the initial pointer values); None when the
        layout is outside what is handled here."""
        kern = getattr(bound, "kern", None)
        if kern is None or getattr(bound, "descs", None):
            return None
        md = kern.metadata
        if getattr(md, "num_ctas", 1) != 1 or getattr(md, "launch_cooperative_grid", False) \
                or getattr(md, "launch_pdl", False) or getattr(md, "global_scratch_size", 0) \
                or getattr(md, "profile_scratch_size", 0) or getattr(md, "tensordesc_meta", None):
            return None
        cd = getattr(md, "cluster_dims", (1, 1, 1))
        if cd is not None and tuple(cd) not in ((1, 1, 1), (1,), ()):
            return None
        src = getattr(kern, "src", None)
        sig = list(getattr(src, "signature", {}).values())
        args = list(head) + list(bound.tail)
        if not sig or len(sig) != len(args):
            return None
        params: list = []
        slot_param: dict = {}
        for i, (ty, a) in enumerate(zip(sig, args)):
            if not isinstance(ty, str) or ty == "constexpr":
                continue
            if ty[0] == "*":
                addr = a.data_ptr() if isinstance(a, torch.Tensor) else (0 if a is None else int(a))
                p = ctypes.c_uint64(addr)
                if i < len(head):
                    slot_param[i] = len(params)
            elif ty in _SCALARS:
                p = _SCALARS[ty](int(a))
            elif ty in ("fp32", "f32"):
                p = ctypes.c_uint32(struct.unpack("<I", struct.pack("<f", float(a)))[0])
            elif ty == "fp64":
                p = ctypes.c_double(float(a))
            else:  # tensor descriptors, tuples, 16-bit float scalars: not handled
                return None
            params.append(p)
        params += [ctypes.c_uint64(0), ctypes.c_uint64(0)]  # global and profile scratch (none)
        if any(not isinstance(h, torch.Tensor) for h in head) or len(slot_param) != len(head):
            return None
        return DirectLaunch(kern.function, bound.g, 32 * md.num_warps, md.shared, params, slot_param)
