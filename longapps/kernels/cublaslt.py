"""``y = act(x @ W^T + b)`` through cuBLASLt directly (ctypes), with everything but the data pointers prepared.

``torch.addmm`` on a CUDA tensor spends ~15-20 us of host time per call on a slow host (dispatch, output
allocation, matmul descriptors and an algorithm query every call). An ``LtLinear`` creates its matmul
descriptor (transposes, bias epilogue, optional GELU), the three matrix layouts and the algorithm once for a
(rows, in, out, dtype) shape; a call is one ``cublasLtMatmul`` with the input and output addresses. The
library is the cuBLASLt that torch itself loaded, and the epilogues are the ones torch's ``addmm`` /
``_addmm_activation`` use (bias; GELU tanh form), so results match torch's to rounding (the algorithm
can differ).
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

import torch

CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF = 0, 2, 14
CUBLAS_COMPUTE_32F = 68
OP_N, OP_T = 0, 1
DESC_TRANSA, DESC_TRANSB, DESC_EPILOGUE, DESC_BIAS_POINTER = 3, 4, 7, 8
EPILOGUE_BIAS, EPILOGUE_GELU_BIAS = 4, 36
PREF_MAX_WORKSPACE_BYTES = 1
WORKSPACE_BYTES = 32 << 20

_DTYPES = {torch.float16: CUDA_R_16F, torch.bfloat16: CUDA_R_16BF}


class _Heuristic(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspaceSize", ctypes.c_size_t), ("state", ctypes.c_int),
                ("wavesCount", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


_LIB = None


def _find_cublaslt() -> str:
    """Path of the libcublasLt that this process loaded (torch loads it with its first GEMM)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rsplit(" ", 1)[-1].strip()
            if "libcublasLt.so" in os.path.basename(path):
                return path
    raise RuntimeError("libcublasLt is not loaded in this process")


def cublaslt() -> ctypes.CDLL:
    """The process's cuBLASLt (ctypes handle; run one torch GEMM on the GPU first)."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(_find_cublaslt())
        for name in ("cublasLtCreate", "cublasLtMatmulDescCreate", "cublasLtMatmulDescSetAttribute",
                     "cublasLtMatrixLayoutCreate", "cublasLtMatmulPreferenceCreate",
                     "cublasLtMatmulPreferenceSetAttribute", "cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul"):
            getattr(lib, name).restype = ctypes.c_int
        _LIB = lib
    return _LIB


def _check(status: int, what: str) -> None:
    if status:
        raise RuntimeError(f"cuBLASLt {what} failed (status {status})")


_HANDLES: dict = {}
_WORKSPACES: dict = {}


def _handle(device: int) -> ctypes.c_void_p:
    h = _HANDLES.get(device)
    if h is None:
        h = ctypes.c_void_p()
        with torch.cuda.device(device):
            _check(cublaslt().cublasLtCreate(ctypes.byref(h)), "create")
        _HANDLES[device] = h
    return h


def workspace(device: int, stream: int) -> torch.Tensor:
    """A cuBLASLt workspace per (device, stream): GEMMs on one stream run in order, so they can share it."""
    key = (device, stream)
    w = _WORKSPACES.get(key)
    if w is None:
        w = _WORKSPACES[key] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=f"cuda:{device}")
    return w


class LtShape:
    """Layouts and algorithm of ``(rows x k) @ (n x k)^T (+ bias, GELU)`` for one dtype; shared by every
    ``LtLinear`` of that shape (the algorithm depends on the shape, the epilogue and the alignment only)."""

    def __init__(self, device: int, dtype: torch.dtype, rows: int, k: int, n: int, gelu: bool,
                 ld_x: Optional[int] = None, ld_y: Optional[int] = None) -> None:
        lib = cublaslt()
        dt = _DTYPES[dtype]
        self.device, self.dtype, self.gelu = device, dtype, gelu
        self.rows, self.k, self.n = rows, k, n
        self.epilogue = EPILOGUE_GELU_BIAS if gelu else EPILOGUE_BIAS
        # column-major view: D (n x rows) = op(W) (n x k) @ X^T (k x rows); W is (n, k) row-major = (k x n)
        self.a, self.b, self.d = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(self.a), dt, ctypes.c_uint64(k), ctypes.c_uint64(n),
                                              ctypes.c_int64(k)), "layout W")
        _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(self.b), dt, ctypes.c_uint64(k), ctypes.c_uint64(rows),
                                              ctypes.c_int64(ld_x or k)), "layout X")
        _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(self.d), dt, ctypes.c_uint64(n), ctypes.c_uint64(rows),
                                              ctypes.c_int64(ld_y or n)), "layout Y")
        self.algo = None

    def make_desc(self, bias_ptr: int) -> ctypes.c_void_p:
        """A matmul descriptor (fp32 compute, W transposed, bias + optional GELU epilogue) for one bias."""
        lib = cublaslt()
        desc = ctypes.c_void_p()
        _check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc")
        for attr, val in ((DESC_TRANSA, ctypes.c_int32(OP_T)), (DESC_TRANSB, ctypes.c_int32(OP_N)),
                          (DESC_EPILOGUE, ctypes.c_int32(self.epilogue)), (DESC_BIAS_POINTER, ctypes.c_void_p(bias_ptr))):
            _check(lib.cublasLtMatmulDescSetAttribute(desc, attr, ctypes.byref(val), ctypes.sizeof(val)), "desc attr")
        if self.algo is None:
            self.algo = self._heuristic(desc)
        return desc

    def _heuristic(self, desc: ctypes.c_void_p) -> _Heuristic:
        found = self.candidates(desc, 1)
        if not found:
            raise RuntimeError(f"cuBLASLt has no algorithm for {self.rows}x{self.k} @ {self.k}x{self.n}")
        return found[0]

    def candidates(self, desc: ctypes.c_void_p, count: int) -> list:
        """Up to ``count`` algorithms for this shape and descriptor, cuBLASLt's heuristic order (the first is
        the one used unless ``algo`` is set to another before the ``LtLinear`` objects are made)."""
        lib = cublaslt()
        pref = ctypes.c_void_p()
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "preference")
        ws = ctypes.c_uint64(WORKSPACE_BYTES)
        _check(lib.cublasLtMatmulPreferenceSetAttribute(pref, PREF_MAX_WORKSPACE_BYTES, ctypes.byref(ws),
                                                        ctypes.sizeof(ws)), "preference attr")
        res = (_Heuristic * count)()
        got = ctypes.c_int(0)
        _check(lib.cublasLtMatmulAlgoGetHeuristic(_handle(self.device), desc, self.a, self.b, self.d, self.d, pref,
                                                  count, res, ctypes.byref(got)), "heuristic")
        lib.cublasLtMatmulPreferenceDestroy(pref)
        return [res[i] for i in range(got.value) if not res[i].state]


class LtLinear:
    """One ``y = act(x @ W^T + b)`` on fixed addresses of ``W`` and ``b``. ``bind(x_ptr, y_ptr, stream,
    workspace_ptr)`` sets the call's addresses; ``call`` = (``cublasLtMatmul``, its argument list) for a caller's
    own loop (a nonzero return is a cuBLAS error: ``check``); ``__call__()`` runs it."""
    __slots__ = ("call", "args", "_keep")

    _ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def __init__(self, shape: LtShape, weight: torch.Tensor, bias: torch.Tensor) -> None:
        desc = shape.make_desc(bias.data_ptr())
        # the descriptor holds the bias address, the arguments the weight's: keep their storage alive
        self._keep = (shape, weight.detach(), bias.detach(), desc)
        y = ctypes.c_void_p(0)
        self.args = (_handle(shape.device), desc, ctypes.byref(self._ONE), ctypes.c_void_p(weight.data_ptr()),
                     shape.a, ctypes.c_void_p(0), shape.b, ctypes.byref(self._ZERO), y, shape.d, y, shape.d,
                     ctypes.byref(shape.algo.algo), ctypes.c_void_p(0), ctypes.c_size_t(WORKSPACE_BYTES),
                     ctypes.c_void_p(0))
        self.call = (cublaslt().cublasLtMatmul, self.args)

    def bind(self, x_ptr: int, y_ptr: int, stream: int, ws_ptr: int) -> None:
        a = self.args
        a[5].value, a[8].value, a[13].value, a[15].value = x_ptr, y_ptr, ws_ptr, stream

    def set_input(self, x_ptr: int) -> None:
        self.args[5].value = x_ptr

    def __call__(self) -> None:
        fn, a = self.call
        check(fn(*a))


def check(status: int) -> None:
    """Raise for a nonzero cublasLtMatmul status."""
    _check(status, "matmul")
