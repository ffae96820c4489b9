"""``kernels.direct_launch``: the parameter block packed from a compiled kernel's signature (no GPU needed: the
driver call is replaced by a recorder that reads the packed parameters back). The launches themselves are
checked on the GPU by the native eager Longformer tests in ``test_kernels_gpu.py``."""
from __future__ import annotations

import ctypes
import struct
from types import SimpleNamespace

import pytest
import torch

from longapps.kernels import direct_launch as dl

SIG = {"X": "*bf16", "Y": "*fp32", "n": "i32", "eps": "fp32", "flag": "i1", "BLOCK": "constexpr", "big": "i64"}


def _bound(signature=SIG, **meta):
    md = dict(num_warps=4, num_ctas=1, shared=4096, launch_cooperative_grid=False, launch_pdl=False,
              global_scratch_size=0, profile_scratch_size=0, tensordesc_meta=None, cluster_dims=(1, 1, 1))
    md.update(meta)
    kern = SimpleNamespace(function=1234, metadata=SimpleNamespace(**md), src=SimpleNamespace(signature=signature))
    return SimpleNamespace(kern=kern, descs={}, g=(3, 2, 1), tail=(7, 1e-5, True, 64, 2 ** 40))


class _Recorder:
    def __init__(self) -> None:
        self.calls: list = []

    def cuLaunchKernel(self, *args):  # noqa: N802 (the driver's name)
        arr = args[9]
        n = len(arr)
        self.calls.append((args, [arr[i] for i in range(n)]))
        return 0


def _read(addr: int, ctype):
    return ctypes.cast(addr, ctypes.POINTER(ctype)).contents.value


def test_packs_pointers_scalars_and_scratch(monkeypatch):
    rec = _Recorder()
    monkeypatch.setattr(dl, "_CUDA", rec)
    x, y = torch.zeros(4), torch.zeros(4)
    d = dl.DirectLaunch.from_bound(_bound(), (x, y))
    assert d is not None
    d.set(1, 0xABC0)
    d.set_stream(99)
    d()
    args, ptrs = rec.calls[-1]
    assert args[0].value == 1234 and [a.value for a in args[1:8]] == [3, 2, 1, 128, 1, 1, 4096]
    assert args[8].value == 99
    # X, Y, n, eps, flag, big (BLOCK is a constexpr: not passed), then the global and profile scratch
    assert len(ptrs) == 8
    assert _read(ptrs[0], ctypes.c_uint64) == x.data_ptr() and _read(ptrs[1], ctypes.c_uint64) == 0xABC0
    assert _read(ptrs[2], ctypes.c_int32) == 7
    assert _read(ptrs[3], ctypes.c_uint32) == struct.unpack("<I", struct.pack("<f", 1e-5))[0]
    assert _read(ptrs[4], ctypes.c_int8) == 1 and _read(ptrs[5], ctypes.c_int64) == 2 ** 40
    assert _read(ptrs[6], ctypes.c_uint64) == 0 and _read(ptrs[7], ctypes.c_uint64) == 0
    # a clone has its own parameter block
    c = d.clone()
    c.set(0, 0x1000)
    c()
    _, cptrs = rec.calls[-1]
    assert _read(cptrs[0], ctypes.c_uint64) == 0x1000 and _read(ptrs[0], ctypes.c_uint64) == x.data_ptr()
    assert rec.calls[-1][0][8].value == 99


@pytest.mark.parametrize("change", [dict(num_ctas=2), dict(global_scratch_size=64), dict(launch_pdl=True),
                                    dict(launch_cooperative_grid=True), dict(tensordesc_meta=[{}]),
                                    dict(cluster_dims=(2, 1, 1))])
def test_refuses_launches_it_does_not_handle(monkeypatch, change):
    monkeypatch.setattr(dl, "_CUDA", _Recorder())
    assert dl.DirectLaunch.from_bound(_bound(**change), (torch.zeros(1), torch.zeros(1))) is None


def test_refuses_unknown_argument_types_and_layouts(monkeypatch):
    monkeypatch.setattr(dl, "_CUDA", _Recorder())
    t = (torch.zeros(1), torch.zeros(1))
    assert dl.DirectLaunch.from_bound(_bound({**SIG, "X": "tensordesc<bf16[64, 64]>"}), t) is None
    assert dl.DirectLaunch.from_bound(_bound({**SIG, "eps": "bf16"}), t) is None
    assert dl.DirectLaunch.from_bound(_bound({"X": "*bf16"}), t) is None  # argument count differs
    assert dl.DirectLaunch.from_bound(_bound({**SIG, "Y": "i32"}), t) is None  # a head slot that is no pointer
    assert dl.DirectLaunch.from_bound(SimpleNamespace(kern=None, descs={}), t) is None  # not launched yet


def test_cuda_error_is_one_clear_exception(monkeypatch):
    class Failing(_Recorder):
        def cuLaunchKernel(self, *args):  # noqa: N802
            return 700

        def cuGetErrorString(self, code, out):  # noqa: N802
            out._obj.value = b"an illegal memory access was encountered"
            return 0

    monkeypatch.setattr(dl, "_CUDA", Failing())
    d = dl.DirectLaunch.from_bound(_bound(), (torch.zeros(1), torch.zeros(1)))
    with pytest.raises(RuntimeError, match="CUDA error 700 .an illegal memory access"):
        d()
