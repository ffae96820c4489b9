"""The public attention() call path (issue 11), CPU side: patterns prepared once, validation from cached
bounds, torch.compile safety, the Longformer's mask preparation. GPU-side checks (no sync, graph capture,
direct launches, automatic Longformer graphs): tests/test_kernels_gpu.py."""
from __future__ import annotations

import pytest
import torch

from longapps.attention import SlidingWindow, WindowGlobal, attention
from longapps.attention.prepared import global_bounds, global_table


def _qkv(B=2, H=2, N=70, D=16):
    return [torch.randn(B, H, N, D) for _ in range(3)]


def test_pattern_prepared_once_per_device():
    pat = WindowGlobal(8, [40, 3, 3, 12])
    t1 = global_table(pat, torch.device("cpu"))
    assert t1.dtype == torch.int32 and t1.tolist() == [[3, 12, 40]]
    assert global_table(pat, torch.device("cpu")) is t1  # cached, not rebuilt
    assert global_bounds(pat) == (4, 3, 40)
    assert global_table(WindowGlobal(8, []), torch.device("cpu")) is None
    two = WindowGlobal(8, torch.tensor([[5, -1, 2], [1, 1, 60]]))
    assert global_table(two, torch.device("cpu")).tolist() == [[2, 5, -1], [1, -1, 60]]  # duplicate -> -1 slot


def test_validation_uses_cached_bounds():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"global_idx out of range \[0, 70\): min 3, max 70"):
        attention(q, k, v, WindowGlobal(8, [3, 70]))
    with pytest.raises(ValueError, match="out of range"):
        attention(q, k, v, WindowGlobal(8, torch.tensor([[1, -2], [3, 4]])))
    ok = WindowGlobal(8, [0, 69])
    for _ in range(2):  # second call: bounds from the cache
        ref = attention(q, k, v, ok, backend="reference")
        assert float((attention(q, k, v, ok) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("pat", [WindowGlobal(8, [0, 33]), SlidingWindow(5, causal=True)])
def test_attention_under_torch_compile(pat):
    """A compiled function calling attention(): the call is one graph break run eagerly, same result."""
    def f(q, k, v):
        return (attention(q * 2.0, k, v, pat) + 1.0).sum(-1)

    cf = torch.compile(f, backend="aot_eager")
    for _ in range(2):
        q, k, v = _qkv()
        assert torch.allclose(cf(q, k, v), f(q, k, v), atol=1e-5)


def test_longformer_prepare_masks():
    """Global index table (globals first, -1 padded; rounded to a power of two on request), padding mask only
    when there is padding; CPU masks need no device work."""
    from longapps.models.longformer import FastLongformerModel
    am = torch.ones(2, 10, dtype=torch.long)
    gm = torch.zeros(2, 10, dtype=torch.long)
    gm[0, [0, 4, 9]] = 1
    gm[1, 2] = 1
    gidx, kpm = FastLongformerModel.prepare(am, gm, torch.device("cpu"))
    assert kpm is None and gidx.tolist() == [[0, 4, 9], [2, -1, -1]]
    am[0, 9] = 0  # a global token on padding is dropped
    gidx, kpm = FastLongformerModel.prepare(am, gm, torch.device("cpu"), round_globals=True)
    assert kpm is not None and kpm.dtype == torch.bool and not kpm[0, 9] and bool(kpm[1].all())
    assert gidx.tolist() == [[0, 4], [2, -1]]
    gm[1, [1, 3, 5]] = 1
    gidx, _ = FastLongformerModel.prepare(None, gm, torch.device("cpu"), round_globals=True)
    assert gidx.tolist() == [[0, 4, 9, -1], [1, 2, 3, 5]]
    assert FastLongformerModel.prepare(None, None, torch.device("cpu")) == (None, None)


# ---------------------------------------------------------------- the plan cache (session 7)
from longapps.attention import Linear, SinksWindow, reference_attention  # noqa: E402
from longapps.attention import dispatch as _dispatch  # noqa: E402

from kernel_checks import child, interpreter_test, rel  # noqa: E402

test_fastpath_under_interpreter = interpreter_test(__file__)


def _plan_for(q, k, v, pat, kpm=None, backend="auto"):
    """The planned call attention() keeps for this signature (None: none yet, False: not planned)."""
    key = (pat, None, backend, q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(), q.dtype, k.dtype,
           v.dtype, q.device, k.device, v.device,
           None if kpm is None else (kpm.shape, kpm.stride(), kpm.dtype, kpm.device))
    return _dispatch._CALLS.get(key)


def test_plan_cache_cpu_signatures():
    """CPU (banded / reference backends): the second call of a signature uses the plan; a changed pattern,
    shape, stride layout, dtype or padding mask gets its own plan and its own (right) result."""
    _dispatch.clear_plans()
    q, k, v = _qkv(N=40)
    pat = SlidingWindow(5)
    for _ in range(3):
        q, k, v = _qkv(N=40)
        out = attention(q, k, v, pat)
        assert rel(out, reference_attention(q, k, v, pat)) < 1e-5
    assert callable(_plan_for(q, k, v, pat))
    cases = [(SlidingWindow(6), _qkv(N=40), None), (SlidingWindow(5), _qkv(N=41), None),
             (SlidingWindow(5), [t.transpose(1, 2).contiguous().transpose(1, 2) for t in _qkv(N=40)], None),
             (SlidingWindow(5), [t.double() for t in _qkv(N=40)], None),
             (SlidingWindow(5), _qkv(N=40), torch.rand(2, 40) > 0.3), (WindowGlobal(5, [3]), _qkv(N=40), None)]
    for p, (cq, ck, cv), kpm in cases:
        for _ in range(2):  # first call plans, second uses the plan
            o = attention(cq, ck, cv, p, key_padding_mask=kpm)
            assert rel(o, reference_attention(cq, ck, cv, p, key_padding_mask=kpm)) < 1e-5, p
        assert callable(_plan_for(cq, ck, cv, p, kpm))
    assert len(_dispatch._CALLS) == 1 + len(cases)
    with pytest.raises(ValueError, match="key_padding_mask"):  # a bad call is never planned, still checked
        attention(q, k, v, pat, key_padding_mask=torch.ones(3, 40, dtype=torch.bool))


def test_plan_cache_grad_takes_autograd_path():
    """A planned (no-grad) signature called with inputs that need a gradient goes through autograd."""
    pat = WindowGlobal(4, [0])
    q, k, v = _qkv(N=30)
    attention(q, k, v, pat)
    attention(q, k, v, pat)
    q.requires_grad_(True)
    out = attention(q, k, v, pat)
    out.sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


@child
@pytest.mark.parametrize("name", ["wg", "wg2d_kpm", "sliding", "sliding_causal", "sinks", "linear"])
def test_planned_runners_fresh_inputs(name):
    """Under the interpreter: the Triton path's planned runners (WindowRunner / LightningRunner) give the
    reference result for every call with new inputs, and a changed signature never reuses a plan."""
    from longapps.kernels.lightning import LightningRunner
    from longapps.kernels.window_global import WindowRunner
    B, H, N, D = 2, 2, 70, 16
    pats = {"wg": WindowGlobal(8, [0, 33]), "wg2d_kpm": WindowGlobal(6, torch.tensor([[0, 50, -1], [5, 6, 7]])),
            "sliding": SlidingWindow(5), "sliding_causal": SlidingWindow(7, causal=True),
            "sinks": SinksWindow(2, 9), "linear": Linear()}
    pat = pats[name]
    kpm = None
    if name == "wg2d_kpm":
        kpm = torch.ones(B, N, dtype=torch.bool)
        kpm[1, 60:] = False
    sc = 0.1 if name == "linear" else 1.0

    def ref(q, k, v):
        if name == "linear":
            from longapps.kernels.lightning import chunked_lightning_torch
            return chunked_lightning_torch(q.double(), k.double(), v.double(), None)
        return reference_attention(q.double(), k.double(), v.double(), pat, key_padding_mask=kpm)

    _dispatch.clear_plans()
    for n in (N, N + 13):  # a second length: its own plan
        for i in range(3):
            q, k, v = [torch.randn(B, H, n, D) * sc for _ in range(3)]
            km = kpm if (kpm is None or n == N) else torch.ones(B, n, dtype=torch.bool)
            if km is not None:
                kpm = km
            o = attention(q, k, v, pat, key_padding_mask=kpm, backend="triton")
            assert rel(o, ref(q, k, v)) < 1e-4, (name, n, i)
            plan = _plan_for(q, k, v, pat, kpm, backend="triton")
            assert plan is not None and plan is not False
            if name != "linear":
                assert isinstance(plan, WindowRunner)
            else:
                assert isinstance(plan.__closure__[0].cell_contents, LightningRunner)
    assert len(_dispatch._CALLS) == 2


_FAKE_DRIVER = """
encoded = []


class PyCUtensorMap:
    def __init__(self, ptr, block):
        self.ptr, self.block = ptr, block


def make_tensordesc_arg(arg, metadata):
    encoded.append(arg.base.data_ptr())
    return [PyCUtensorMap(arg.base.data_ptr(), tuple(arg.block_shape)), *arg.shape, *arg.strides]


class CLaunch:  # the compiled C function: no __code__
    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)


def wrap_handle_tensordesc(launcher, tensordesc_indices, tensordesc_meta):
    def inner(*args):
        final_args = list(args[:_BASE_ARGS_FORMAT_LEN])
        tensordesc_idx = 0
        for i, arg in enumerate(args[_BASE_ARGS_FORMAT_LEN:]):
            if i in tensordesc_indices:
                final_args.extend(make_tensordesc_arg(arg, tensordesc_meta[tensordesc_idx]))
                tensordesc_idx += 1
            else:
                final_args.append(arg)
        return launcher(*final_args)

    return inner


class CudaLauncher:
    def __init__(self, indices):
        self.c = CLaunch()
        self.launch = wrap_handle_tensordesc(self.c, indices, [{"swizzle": 128}] * len(indices)) if indices \\
            else self.c
        self.global_scratch_size = SCRATCH
        self.profile_scratch_size = 0
        self.launch_cooperative_grid = False
        self.launch_pdl = False

    def __call__(self, gridX, gridY, gridZ, stream, function, *args):
        self.launch(gridX, gridY, gridZ, stream, function, self.launch_cooperative_grid, self.launch_pdl,
                    None, None, *args)
"""


def _fake_triton_launcher(base_len: int = 13, scratch: int = 0):
    """A stand-in module with Triton 3.4-3.6's NVIDIA launcher layout (``CudaLauncher`` + the
    descriptor-expanding ``inner`` closure around the C ``launch``), recording what reaches the "C" function."""
    import types

    mod = types.ModuleType(f"fake_triton_driver_{base_len}_{scratch}")
    mod.__dict__.update(_BASE_ARGS_FORMAT_LEN=base_len, SCRATCH=scratch, __name__=mod.__name__)
    exec(compile(_FAKE_DRIVER, mod.__name__, "exec"), mod.__dict__)
    return mod


@pytest.mark.parametrize("with_desc", [True, False])
def test_raw_launch_matches_triton_layout(with_desc, monkeypatch):
    """_RawLaunch hands the C launch function exactly what Triton's wrapper would (checked against a
    stand-in of its layout), encodes a TMA descriptor once per data pointer, and refuses other layouts."""
    import sys
    import types

    from longapps.kernels import _common
    if _common._TensorDescriptor is None:
        pytest.skip("triton without tensor descriptors")
    mod = _fake_triton_launcher()
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    idx = {1} if with_desc else set()
    kern = types.SimpleNamespace(run=mod.CudaLauncher(idx), function=77, packed_metadata=(4, 1, 0))
    descs = {1: (64, 16, 16, 8, 16)} if with_desc else {}
    a, b = torch.zeros(64, 16), torch.zeros(64, 16)
    head, tail = (a, b), (3, 0.5, True)
    r = _common._RawLaunch.make(kern, (2, 3, 1), 1234, head, tail, descs)
    assert r is not None
    n_enc = len(mod.encoded)
    for t in (b, b, a):
        r((2, 3, 1), 1234, (a, t), tail)
    got = kern.run.c.calls[-3:]
    for args, t in zip(got, (b, b, a)):
        assert args[:13] == (2, 3, 1, 1234, 77, False, False, None, None, (4, 1, 0), None, None, None)
        assert args[13] == a.data_ptr()  # pointers as ints
        if with_desc:
            assert type(args[14]).__name__ == "PyCUtensorMap" and args[14].ptr == t.data_ptr()
            assert args[14].block == (8, 16) and args[15:19] == (64, 16, 16, 1) and args[19:] == tail
        else:
            assert args[14] == t.data_ptr() and args[15:] == tail
    if with_desc:  # b was encoded by make's probe launch: only a is new
        assert mod.encoded[n_enc:] == [a.data_ptr()]
    assert len(kern.run.c.calls) == 4  # the probe launch + 3 (the check's own call was recorded, not launched)
    for bad in (_fake_triton_launcher(base_len=11), _fake_triton_launcher(scratch=64)):
        monkeypatch.setitem(sys.modules, bad.__name__, bad)
        k2 = types.SimpleNamespace(run=bad.CudaLauncher(idx), function=77, packed_metadata=(4, 1, 0))
        assert _common._RawLaunch.make(k2, (2, 3, 1), 1234, head, tail, descs) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_planned_calls_equal_kernel_entry_and_device_change():
    """GPU: a planned attention() call (direct C launch when Triton's layout allows) gives bit for bit what the
    kernel entry gives, for new inputs every call; the same pattern on CPU, GPU, CPU again never reuses the
    other device's plan; new inputs copied in between replays of a captured planned call are read."""
    from longapps.kernels import _common
    from longapps.kernels.lightning import lightning_forward
    from longapps.kernels.window_global import window_global_forward
    _dispatch.clear_plans()
    pats = [WindowGlobal(256, [0, 100]), SlidingWindow(256), SinksWindow(4, 512), Linear()]
    for pat in pats:
        for i in range(4):
            q, k, v = [torch.randn(1, 4, 8192, 64, device="cuda", dtype=torch.bfloat16) * 0.3 for _ in range(3)]
            o = attention(q, k, v, pat)
            if isinstance(pat, WindowGlobal):
                from longapps.attention.prepared import global_table
                r = window_global_forward(q, k, v, 256, global_table(pat, q.device), False, gidx_prepared=True)[0]
            elif isinstance(pat, SlidingWindow):
                r = window_global_forward(q, k, v, 256, None, False)[0]
            elif isinstance(pat, SinksWindow):
                r = window_global_forward(q, k, v, 512, None, True, sinks=4)[0]
            else:
                r = lightning_forward(q, k, v, None)
            assert torch.equal(o, r), (pat, i)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            og = attention(q, k, v, pat)
        for _ in range(2):
            for t in (q, k, v):
                t.copy_(torch.randn_like(t) * 0.3)
            g.replay()
            torch.cuda.synchronize()
            assert torch.equal(og, attention(q, k, v, pat)), pat
    print("direct C launch:", _common._RAW_STATS)
    pat = WindowGlobal(8, [0, 33])
    for dev in ("cpu", "cuda", "cpu"):
        for _ in range(2):
            q, k, v = [torch.randn(2, 2, 70, 64, device=dev) for _ in range(3)]
            o = attention(q, k, v, pat)
            assert o.device.type == dev
            assert rel(o, reference_attention(q, k, v, pat)) < 2e-3, dev
