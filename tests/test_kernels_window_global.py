"""Window+global / sinks Triton kernels vs the float64 PyTorch reference, under the Triton
interpreter on CPU (run in a child process: the interpreter must be on before triton is imported)."""
from __future__ import annotations

import math

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel




test_under_interpreter = interpreter_test(__file__)


CASES = [  # (N, window, globals, kpm)
    (77, 11, [0, 76], True),       # odd length, globals at both ends, padding
    (50, 3, [], False),            # window smaller than a block, no globals
    (64, 20, "2d", True),          # per-batch globals (-1 padded), padding
    (33, 40, [16], False),         # window wider than the sequence
]


def _inputs(N, dt, D=32, B=2, H=2, grad=False):
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    t = [torch.randn(B, H, N, D, generator=g).to(dt) for _ in range(3)]
    if grad:
        t = [x.requires_grad_(True) for x in t]
    return t


def _globals(spec, N):
    if spec == "2d":
        return torch.tensor([[3, N - 1, -1], [0, 1, N // 2]])
    return torch.tensor(spec, dtype=torch.long)


def _kpm(flag, N):
    if not flag:
        return None
    m = torch.ones(2, N, dtype=torch.bool)
    m[1, N - 7:] = False
    return m


FWD = [(dt, c, case) for dt in (torch.float32, torch.bfloat16) for c in (False, True) for case in CASES]
FWD += [(torch.float16, False, CASES[0]), (torch.float16, True, CASES[2])]


@child
@pytest.mark.parametrize("dt,causal,case", FWD)
def test_forward(dt, causal, case):
    from longapps.kernels.window_global import reference_window_global, window_global_forward
    N, W, gspec, kflag = case
    q, k, v = _inputs(N, dt)
    g, kpm = _globals(gspec, N), _kpm(kflag, N)
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    o, lse = window_global_forward(q, k, v, W, g, causal, kpm, out=out)
    ref = reference_window_global(q, k, v, W, g, causal, kpm)
    assert rel(o, ref) < TOL[dt]


@child
@pytest.mark.parametrize("causal,case", [
    (False, CASES[0]), (True, CASES[2]), (False, (70, 9, list(range(0, 70, 5)), True)),  # 14 globals
    (True, (40, 4, list(range(0, 40, 2)), False)),   # 20 globals: two row tiles of 16
])
@pytest.mark.parametrize("grows", ["launch", "overlap", "first"])
def test_forward_global_rows_twice(causal, case, grows):
    """Global query rows (split-K, last split merges): every element written, and a second call
    gives the right answer too (the ticket counters reset themselves)."""
    from longapps.kernels.window_global import reference_window_global, window_global_forward
    N, W, gspec, kflag = case
    g, kpm = _globals(gspec, N), _kpm(kflag, N)
    for _ in range(2):
        q, k, v = _inputs(N, torch.float32)
        out = torch.full_like(q, float("nan"))
        o, lse = window_global_forward(q, k, v, W, g, causal, kpm, out=out, grows=grows)
        assert rel(o, reference_window_global(q, k, v, W, g, causal, kpm)) < TOL[torch.float32]
        assert torch.isfinite(lse[:, :, :N - 7]).all()


@child
@pytest.mark.parametrize("dt,sinks,window,N", [(torch.float32, 4, 9, 61), (torch.bfloat16, 0, 5, 40),
                                               (torch.bfloat16, 20, 6, 45)])
def test_sinks_forward_backward(dt, sinks, window, N):
    from longapps.kernels.window_global import reference_window_global, sinks_window_attention
    q, k, v = _inputs(N, dt, D=16, grad=True)
    do = torch.randn_like(q)
    o = sinks_window_attention(q, k, v, sinks, window)
    ref = reference_window_global(q, k, v, window, None, True, None, sinks=sinks)
    assert rel(o, ref) < TOL[dt]
    gk = torch.autograd.grad(o, (q, k, v), do)
    gr = torch.autograd.grad(ref, (q, k, v), do)
    for a, b in zip(gk, gr):
        assert rel(a, b) < TOL[dt]


@child
@pytest.mark.parametrize("dt,causal,case", [(torch.float32, False, CASES[0]), (torch.bfloat16, True, CASES[0]),
                                            (torch.float32, True, CASES[2]), (torch.float16, False, CASES[2])])
def test_backward(dt, causal, case):
    from longapps.kernels.window_global import reference_window_global, window_global_attention
    N, W, gspec, kflag = case
    q, k, v = _inputs(N, dt, D=16, grad=True)
    g, kpm = _globals(gspec, N), _kpm(kflag, N)
    do = torch.randn_like(q)
    o = window_global_attention(q, k, v, W, g, causal, kpm)
    ref = reference_window_global(q, k, v, W, g, causal, kpm)
    gk = torch.autograd.grad(o, (q, k, v), do)
    gr = torch.autograd.grad(ref, (q, k, v), do)
    for name, a, b in zip("qkv", gk, gr):
        assert rel(a, b) < TOL[dt], name


@child
def test_gradcheck_float64_reference_agrees():
    """Reference itself passes torch.autograd.gradcheck (the kernels are then compared to it)."""
    from longapps.kernels.window_global import reference_window_global
    q, k, v = [torch.randn(1, 1, 7, 2, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b, c: reference_window_global(a, b, c, 2, torch.tensor([0])), (q, k, v))


@child
def test_separate_global_projections():
    """Longformer: global rows use their own q/k/v (``global_qkv``), local rows the usual ones."""
    from longapps.kernels.window_global import reference_window_global, window_global_attention
    N, W, dt = 45, 6, torch.float32
    q, k, v = _inputs(N, dt, D=16, grad=True)
    qg, kg, vg = _inputs(N, dt, D=16, grad=True)
    g = torch.tensor([0, 30])
    kpm = _kpm(True, N)
    o = window_global_attention(q, k, v, W, g, False, kpm, global_qkv=(qg, kg, vg))
    ref_local = reference_window_global(q, k, v, W, g, False, kpm)
    ref_glob = reference_window_global(qg, kg, vg, N, None, False, kpm)  # window >= N: dense
    ref = ref_local.clone()
    ref[:, :, g] = ref_glob[:, :, g]
    assert rel(o, ref) < TOL[dt]
    do = torch.randn_like(o)
    got = torch.autograd.grad(o, (q, k, v, qg, kg, vg), do)
    exp = torch.autograd.grad(ref, (q, k, v, qg, kg, vg), do)
    for a, b in zip(got, exp):
        assert rel(a, b) < TOL[dt]


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.float16])
def test_dispatch_triton_matches_reference(dt):
    from longapps.attention import SinksWindow, SlidingWindow, WindowGlobal, attention
    N = 37
    q, k, v = _inputs(N, dt, D=16)
    kpm = _kpm(True, N)
    for pat in (WindowGlobal(5, [0, 36]), WindowGlobal(4, [2], causal=True), SlidingWindow(7),
                SlidingWindow(7, causal=True), SinksWindow(3, 8)):
        a = attention(q, k, v, pat, key_padding_mask=kpm, backend="triton")
        b = attention(q.double(), k.double(), v.double(), pat, key_padding_mask=kpm, backend="reference")
        assert rel(a, b) < TOL[dt], pat


@child
def test_scale_argument():
    from longapps.kernels.window_global import reference_window_global, window_global_forward
    q, k, v = _inputs(30, torch.float32, D=16)
    o, _ = window_global_forward(q, k, v, 4, torch.tensor([1]), scale=0.37)
    assert rel(o, reference_window_global(q, k, v, 4, torch.tensor([1]), scale=0.37)) < 1e-4
    assert math.isfinite(rel(o, reference_window_global(q, k, v, 4, torch.tensor([1]))))


@child
@pytest.mark.parametrize("dt,causal,case", [(torch.float32, False, CASES[0]), (torch.bfloat16, True, CASES[2]),
                                            (torch.float32, False, (70, 9, list(range(0, 70, 4)), True))])
def test_forward_skip_global_rows(dt, causal, case):
    """``global_rows="skip"``: the band programs leave the global query rows untouched (a caller writes them,
    maybe concurrently); every other row equals ``global_rows=False``'s output."""
    from longapps.kernels.window_global import window_global_forward
    N, W, gspec, kflag = case
    q, k, v = _inputs(N, dt)
    g, kpm = _globals(gspec, N), _kpm(kflag, N)
    want, _ = window_global_forward(q, k, v, W, g, causal, kpm, out=torch.full_like(q, float("nan")),
                                    global_rows=False)
    o, _ = window_global_forward(q, k, v, W, g, causal, kpm, out=torch.full_like(q, float("nan")),
                                 global_rows="skip")
    is_g = torch.zeros(2, N, dtype=torch.bool)
    for b in range(2):
        gb = g if g.dim() == 1 else g[b]
        is_g[b, gb[gb >= 0]] = True
    assert torch.isnan(o.permute(0, 2, 1, 3)[is_g]).all()
    assert torch.equal(o.permute(0, 2, 1, 3)[~is_g], want.permute(0, 2, 1, 3)[~is_g])
    with pytest.raises(ValueError, match="global_rows"):
        window_global_forward(q, k, v, W, g, causal, kpm, global_rows="Skip")


@child
@pytest.mark.parametrize("grows", ["launch", "overlap", "first"])
@pytest.mark.parametrize("dt,causal,case", [
    (torch.float32, False, CASES[0]), (torch.float32, True, CASES[2]), (torch.bfloat16, False, CASES[3]),
    (torch.float32, False, (70, 9, list(range(0, 70, 4)), True)),  # 18 globals: two row tiles of 16
])
def test_forward_global_rows_modes(dt, causal, case, grows):
    """Global rows by the split-K launch after the band launch ("launch"), or with the band launch leaving
    their rows alone ("overlap": a side stream on the GPU, one after the other here)."""
    from longapps.kernels.window_global import reference_window_global, window_global_forward
    N, W, gspec, kflag = case
    q, k, v = _inputs(N, dt)
    g, kpm = _globals(gspec, N), _kpm(kflag, N)
    out = torch.full_like(q, float("nan"))
    o, lse = window_global_forward(q, k, v, W, g, causal, kpm, out=out, grows=grows)
    assert rel(o, reference_window_global(q, k, v, W, g, causal, kpm)) < TOL[dt]


@child
@pytest.mark.parametrize("grows", ["launch", "overlap", "first"])
def test_global_rows_separate_compact_projections(grows):
    """Global rows with Longformer's own projections and a compact (B, H, G, D) global query."""
    from longapps.kernels.window_global import reference_window_global, window_global_forward
    N, W, dt = 45, 6, torch.float32
    q, k, v = _inputs(N, dt, D=16)
    qg, kg, vg = _inputs(N, dt, D=16)
    g = torch.tensor([0, 30])
    kpm = _kpm(True, N)
    o, _ = window_global_forward(q, k, v, W, g, False, kpm, global_qkv=(qg[:, :, g].contiguous(), kg, vg),
                                 grows=grows)
    ref = reference_window_global(q, k, v, W, g, False, kpm).clone()
    ref[:, :, g] = reference_window_global(qg, kg, vg, N, None, False, kpm)[:, :, g]
    assert rel(o, ref) < TOL[dt]
    with pytest.raises(ValueError, match="grows"):
        window_global_forward(q, k, v, W, g, grows="diag")


def _layout(kind, B, H, N, D, dt):
    """q, k, v in a memory layout: head-major (contiguous), rows padded, sequence-major (heads
    interleaved in a row, a view of one fused projection as in Longformer), or rows not 16-byte aligned."""
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    if kind == "seq-major":
        buf = torch.randn(B, N, 3, H, D, generator=g).to(dt)
        return [buf[:, :, i].transpose(1, 2) for i in range(3)]
    pad = {"head-major": 0, "padded rows": 8, "unaligned rows": 1}[kind]
    return [torch.randn(B, H, N, D + pad, generator=g).to(dt)[..., :D] for _ in range(3)]


@child
@pytest.mark.parametrize("kind", ["head-major", "padded rows", "seq-major", "unaligned rows"])
@pytest.mark.parametrize("tma", [True, False])
def test_forward_layouts_tma(kind, tma):
    """Band tiles through TMA descriptors (head-major and sequence-major 2-D views; key tiles that run
    past N read the next head's / batch's rows, which must not leak in) and through pointer loads."""
    from longapps.kernels import window_global as wg
    N, W, dt = 77, 11, torch.float32
    q, k, v = _layout(kind, 2, 3, N, 32, dt)
    assert (wg._tma_layout(q, k, v, 16, 16) is not None) == (kind != "unaligned rows")
    assert (wg._tma_layout(q, k, v, 16, 16, "head-major") is not None) == (kind in ("head-major", "padded rows"))
    g, kpm = torch.tensor([0, 40]), _kpm(True, N)
    for causal in (False, True):
        out = torch.full((2, 3, N, 32), float("nan"))
        o, _ = wg.window_global_forward(q, k, v, W, g, causal, kpm, out=out, tma=tma)
        assert rel(o, wg.reference_window_global(q, k, v, W, g, causal, kpm)) < TOL[dt]
    o, _ = wg.window_global_forward(q, k, v, 9, None, True, None, sinks=3, tma=tma)
    assert rel(o, wg.reference_window_global(q, k, v, 9, None, True, None, sinks=3)) < TOL[dt]


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B,N,C,G,shared", [(1, 50, 48, 1, False), (3, 40, 100, 4, False), (2, 33, 1500, 3, True)])
def test_gather_rows_matches_reference(dt, B, N, C, G, shared):
    """The global rows' gather (Triton) vs PyTorch on fresh random inputs: -1 slots read row 0, a (1, G) table
    shared by the batch, a strided x (a view of a wider tensor), C above the 1,024-wide block."""
    from longapps.kernels.gather_rows import gather_rows, reference_gather_rows
    x = torch.randn(B, N, C + 16).to(dt)[:, :, 8:8 + C]
    idx = torch.randint(-1, N, (1 if shared else B, G), dtype=torch.int32)
    y = gather_rows(x, idx)
    assert torch.equal(y, reference_gather_rows(x, idx))
    x2 = torch.randn(B, N, C + 16).to(dt)[:, :, 8:8 + C]  # same signature, new data: no stale reads
    assert torch.equal(gather_rows(x2, idx), reference_gather_rows(x2, idx))
