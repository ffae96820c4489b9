"""Mamba kernels (selective scan, causal conv1d): Triton under the interpreter and the chunked PyTorch scan,
each against the float64 token-by-token reference on fresh random inputs, values and gradients."""
from __future__ import annotations

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel
from longapps.kernels.causal_conv1d import reference_causal_conv1d
from longapps.kernels.selective_scan import chunked_selective_scan, reference_selective_scan

test_under_interpreter = interpreter_test(__file__)

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _inputs(b, L, d, n, dt=torch.float32, grad=False, strided=False):
    """Fresh random scan inputs; `strided` makes u/z views of one (b, L, 2d) tensor and B/C views of a
    (b, L, 3n) tensor, as the model passes them."""
    if strided:
        xz = torch.randn(b, L, 2 * d)
        u, z = xz[..., :d], xz[..., d:]
        bc = torch.randn(b, L, 3 * n)
        B, C = bc[..., n:2 * n], bc[..., 2 * n:]
    else:
        u, z, B, C = torch.randn(b, L, d), torch.randn(b, L, d), torch.randn(b, L, n), torch.randn(b, L, n)
    delta = torch.randn(b, L, d) * 0.7
    A = -(torch.rand(d, n) * 3 + 0.05)
    D, bias = torch.randn(d), torch.randn(d) * 0.3
    out = [u.to(dt), delta.to(dt), A, B.to(dt), C.to(dt), D, z.to(dt), bias]
    return [x.detach().requires_grad_(grad) if x.is_leaf or grad else x for x in out]


def _grads(fn, args, g):
    leaves = [a.detach().clone().requires_grad_() for a in args]
    return fn(*leaves), torch.autograd.grad(fn(*leaves), leaves, g)


@pytest.mark.parametrize("method", ["auto", "steps", "closed"])
@pytest.mark.parametrize("L,chunk", [(1, None), (37, 4), (100, 16), (257, None)])
def test_chunked_torch_scan_matches_reference(L, chunk, method):
    args = _inputs(2, L, 6, 5)
    ref = reference_selective_scan(*args, dtype=torch.float64)
    assert rel(chunked_selective_scan(*args, chunk=chunk, block=64, method=method), ref) < 1e-5


def test_closed_form_scan_large_decays_and_gradients():
    """The closed-form chunks stay finite and exact when dt * |A| over a chunk far exceeds the float range
    (the plan cuts such chunks), and are differentiable."""
    from longapps.kernels.selective_scan import _chunk_plan
    args = _inputs(1, 300, 8, 16)
    args[1] = args[1] * 4 + 3                                      # dt up to ~15, |A| up to ~3
    ref = reference_selective_scan(*args, dtype=torch.float64)
    assert rel(chunked_selective_scan(*args, method="closed"), ref) < 1e-5
    plan = _chunk_plan(torch.nn.functional.softplus(args[1] + args[7]), args[2], 64)
    assert plan[0][0] == 0 and plan[-1][1] == 300 and all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    assert len(plan) > 300 // 64 + 1                               # some chunks were cut
    d64 = [a.double() for a in _inputs(1, 45, 4, 3)]
    g = torch.randn(1, 45, 4, dtype=torch.float64)
    _, g1 = _grads(lambda *a: chunked_selective_scan(*a, chunk=8, method="closed"), d64, g)
    _, g2 = _grads(lambda *a: reference_selective_scan(*a, dtype=torch.float64), d64, g)
    for name, a, b in zip(NAMES, g1, g2):
        assert rel(a, b) < 1e-9, name


def test_compiled_cpu_conv_kernel():
    """The compiled causal conv (inference, token-major): strided input, bf16, no bias / no SiLU, several
    channel blocks; the dispatcher keeps PyTorch's conv under autograd."""
    from longapps.kernels import selective_scan_cpu as cpu
    from longapps.kernels.causal_conv1d import causal_conv1d
    if not cpu.available():
        pytest.skip(f"no CPU kernels here: {cpu.ERROR}")
    base = torch.randn(2, 77, 2 * 300)
    x, w, b = base[..., :300], torch.randn(300, 4), torch.randn(300)
    for act in ("silu", None):
        y = causal_conv1d(x, w, b, act)
        assert y.is_contiguous() and rel(y, reference_causal_conv1d(x.double(), w.double(), b.double(), act)) < 1e-6
    assert rel(cpu.causal_conv1d_cpu(x, w, None, False), reference_causal_conv1d(x.double(), w.double(), None, None)) < 1e-6
    yb = causal_conv1d(x.bfloat16(), w, b)
    assert yb.dtype == torch.bfloat16 and rel(yb, reference_causal_conv1d(x.double(), w.double(), b.double())) < 2e-2
    xg = x.detach().requires_grad_()
    yg = causal_conv1d(xg, w, b)
    assert yg.requires_grad and rel(yg, reference_causal_conv1d(x.double(), w.double(), b.double())) < 1e-6


def test_fused_cpu_scan_kernel():
    """The compiled C kernel (inference): strided views, bf16 inputs, no D/z, no softplus/bias, last state."""
    from longapps.kernels import selective_scan_cpu as cpu
    if not cpu.available():
        pytest.skip(f"no CPU scan kernel here: {cpu.ERROR}")
    args = _inputs(2, 203, 70, 16, strided=True)                  # 70 channels: one full + one partial block
    ref = reference_selective_scan(*args, dtype=torch.float64)
    y, h = cpu.selective_scan_cpu(*args, return_last_state=True)
    assert y.dtype == torch.float32 and rel(y, ref) < 1e-5
    u, delta, A, B, C, D, z, bias = [a.double() for a in args]
    dt = torch.nn.functional.softplus(delta + bias)
    hh = torch.zeros(2, 70, 16, dtype=torch.float64)
    for t in range(203):
        hh = torch.exp(dt[:, t, :, None] * A) * hh + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
    assert rel(h, hh) < 1e-5
    bf = [a.to(torch.bfloat16) if a.dim() == 3 else a for a in args]
    yb = cpu.selective_scan_cpu(*bf)
    assert yb.dtype == torch.bfloat16 and rel(yb, reference_selective_scan(*bf, dtype=torch.float64)) < 2e-2
    full = dict(zip(NAMES, args))
    # without softplus dt is delta itself: keep it positive (a negative dt grows the state past fp32's range)
    for kw in ({"D": None, "z": None}, {"delta": args[1].abs(), "delta_bias": None, "delta_softplus": False}):
        assert rel(cpu.selective_scan_cpu(**(full | kw)), reference_selective_scan(**(full | kw), dtype=torch.float64)) < 1e-5
    # the dispatcher uses it only without autograd
    leaves = [a.detach().requires_grad_() for a in args]
    y2 = chunked_selective_scan(*leaves)
    assert y2.requires_grad and rel(y2, ref) < 1e-5


def test_chunked_torch_scan_options_and_gradients():
    args = [a.double() for a in _inputs(1, 45, 4, 3)]
    for kw in ({"D": None, "z": None}, {"delta_bias": None, "delta_softplus": False}):
        full = dict(zip(NAMES, args)) | kw
        ref = reference_selective_scan(**full, dtype=torch.float64)
        assert rel(chunked_selective_scan(**full, chunk=8, block=16), ref) < 1e-10
    g = torch.randn(1, 45, 4, dtype=torch.float64)
    _, g1 = _grads(lambda *a: chunked_selective_scan(*a, chunk=8, block=16), args, g)
    _, g2 = _grads(lambda *a: reference_selective_scan(*a, dtype=torch.float64), args, g)
    for name, a, b in zip(NAMES, g1, g2):
        assert rel(a, b) < 1e-9, name


def test_gradcheck_chunked_scan():
    args = [a.double().requires_grad_() for a in _inputs(1, 9, 2, 3)]
    assert torch.autograd.gradcheck(lambda *a: chunked_selective_scan(*a, chunk=4, block=8), args)


def test_gradcheck_reference_conv():
    x, w, b = torch.randn(1, 6, 2, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    assert torch.autograd.gradcheck(reference_causal_conv1d, [t.requires_grad_() for t in (x, w, b)])


@child
@pytest.mark.parametrize("dt,L,segments,strided", [(torch.float32, 37, 1, False), (torch.float32, 53, 3, True),
                                                   (torch.bfloat16, 17, 2, True), (torch.float32, 1, None, False)])
def test_scan_forward(dt, L, segments, strided):
    from longapps.kernels.selective_scan import selective_scan_forward
    args = _inputs(2, L, 6, 5, dt, strided=strided)
    y, _, _ = selective_scan_forward(*args, segments=segments)
    assert y.dtype == dt
    assert rel(y, reference_selective_scan(*args, dtype=torch.float64)) < TOL[dt]


@child
@pytest.mark.parametrize("L,segments,strided", [(37, 1, True), (29, 3, False)])
def test_scan_forward_tile_impl(L, segments, strided):
    """The tile + associative-scan forward (the sequential walk is the default the other tests use)."""
    from longapps.kernels.selective_scan import selective_scan_forward
    args = _inputs(2, L, 6, 5, torch.float32, strided=strided)
    y, hs, T = selective_scan_forward(*args, segments=segments, impl="tile", save_states=True)
    y2, hs2, T2 = selective_scan_forward(*args, segments=segments, save_states=True)
    ref = reference_selective_scan(*args, dtype=torch.float64)
    assert rel(y, ref) < 1e-5 and rel(y2, ref) < 1e-5
    # both save the same tile start states for the backward (the padded states past n are never read)
    assert T == T2 and rel(hs[..., :5], hs2[..., :5]) < 1e-5


@child
def test_scan_fold_with_prefetch_stages():
    """The walk with its inline segment fold software-pipelined (``fold_stages``: the GPU prefetches earlier segments' end
    states; the interpreter runs the same loop) and many segments: same values as the reference."""
    from longapps.kernels.selective_scan import selective_scan_forward
    args = _inputs(2, 77, 3, 5, torch.float32)
    y, _, _ = selective_scan_forward(*args, segments=19, fold="inline", fold_stages=3)
    assert rel(y, reference_selective_scan(*args, dtype=torch.float64)) < 1e-5


@child
def test_scan_fold_by_last_program():
    """The segment fold done once by the last program of each channel block to finish (an atomic ticket; the
    prefix states replace the end states, each later segment loads one): same values as the reference, with
    several batches and channel blocks, on repeated calls (the kept tickets are left zeroed for the next call), and
    with the fold's loads pipelined or not (``fold_stages``), and segments on the default one-token grid or on an
    8-token grid (``seg_unit``)."""
    from longapps.kernels.selective_scan import selective_scan_forward
    args = _inputs(2, 45, 6, 5, torch.float32)
    ref = reference_selective_scan(*args, dtype=torch.float64)
    # (the interpreter walks every token in Python: one call per config, two where the kept tickets are reused)
    for segments, extra, calls in ((19, {}, 2), (2, {}, 1), (7, dict(fold_stages=1), 1), (5, dict(fold_stages=2), 1),
                                   (4, dict(fold="inline"), 1), (6, dict(seg_unit=8), 1), (None, {}, 2)):
        for _ in range(calls):
            y, _, _ = selective_scan_forward(*args, segments=segments, **{"fold": "last", "BD": 4, **extra})
            assert rel(y, ref) < 1e-5, (segments, extra)
    y, _, _ = selective_scan_forward(*args, fold="last", BD=4, programs_per_sm=2.5)  # a fractional programs per SM
    assert rel(y, ref) < 1e-5
    with pytest.raises(ValueError, match="fold"):
        selective_scan_forward(*args, fold="tree")


@child
def test_scan_seq_saves_tile_states_across_segments():
    """The sequential walk with more segments than one tile each: the saved states (every T tokens) are the
    reference's states at those tokens."""
    from longapps.kernels.selective_scan import selective_scan_forward
    args = _inputs(1, 41, 3, 4, torch.float32)
    y, hs, T = selective_scan_forward(*args, segments=3, save_states=True, T=4)
    assert rel(y, reference_selective_scan(*args, dtype=torch.float64)) < 1e-5
    u, delta, A, B, C, D, z, bias = [a.double() for a in args]
    dt = torch.nn.functional.softplus(delta + bias)
    h = torch.zeros(1, 3, 4, dtype=torch.float64)
    for t in range(41):
        if t % T == 0:
            assert float((hs[:, t // T, :, :4].double() - h).abs().max()) < 1e-5 * (1 + float(h.abs().max())), t
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]


@child
def test_scan_forward_without_optional_inputs():
    from longapps.kernels.selective_scan import selective_scan_forward
    args = dict(zip(NAMES, _inputs(1, 29, 5, 3)))
    for kw in ({"D": None, "z": None}, {"delta_bias": None, "delta_softplus": False}):
        full = args | kw
        y, _, _ = selective_scan_forward(**full, segments=2)
        assert rel(y, reference_selective_scan(**full, dtype=torch.float64)) < 1e-4


@child
@pytest.mark.parametrize("dt,L,strided", [(torch.float32, 29, True), (torch.bfloat16, 19, False)])
def test_scan_backward(dt, L, strided):
    from longapps.kernels.selective_scan import selective_scan
    args = _inputs(2, L, 5, 4, dt, strided=strided)
    g = torch.randn(2, L, 5)
    y1, g1 = _grads(lambda *a: selective_scan(*a, backend="triton"), args, g.to(dt))
    y2, g2 = _grads(lambda *a: reference_selective_scan(*a, dtype=torch.float64), [a.double() for a in args], g.double())
    assert rel(y1, y2) < TOL[dt]
    for name, a, b in zip(NAMES, g1, g2):
        assert rel(a, b) < (TOL[dt] * 2 if dt != torch.float32 else 1e-4), name


@child
def test_scan_backward_without_optional_inputs():
    from longapps.kernels.selective_scan import selective_scan
    args = _inputs(1, 21, 3, 2)
    g = torch.randn(1, 21, 3)
    fn = lambda u, dl, A, B, C: selective_scan(u, dl, A, B, C, None, None, None, False, backend="triton")  # noqa: E731
    ref = lambda u, dl, A, B, C: reference_selective_scan(u, dl, A, B, C, None, None, None, False, torch.float64)  # noqa: E731
    _, g1 = _grads(fn, args[:5], g)
    _, g2 = _grads(ref, [a.double() for a in args[:5]], g.double())
    for a, b in zip(g1, g2):
        assert rel(a, b) < 1e-4


@child
@pytest.mark.parametrize("dt,L,act,strided", [(torch.float32, 21, "silu", False), (torch.bfloat16, 19, None, True)])
def test_conv_forward_backward(dt, L, act, strided):
    from longapps.kernels.causal_conv1d import causal_conv1d
    base = torch.randn(2, L, 22)
    x = (base[..., :11] if strided else base[..., :11].contiguous()).to(dt)
    w, b = torch.randn(11, 4), torch.randn(11)
    g = torch.randn(2, L, 11)
    y1, g1 = _grads(lambda *a: causal_conv1d(*a, activation=act, backend="triton"), [x, w, b], g.to(dt))
    y2, g2 = _grads(lambda *a: reference_causal_conv1d(*a, activation=act), [x.double(), w.double(), b.double()],
                    g.double())
    assert y1.dtype == dt and rel(y1, y2) < TOL[dt]
    for a, c in zip(g1, g2):
        assert rel(a, c) < TOL[dt] * 2


@child
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_conv_walk_forward(k):
    """The walk forward (K <= 4; K = 5 goes to the tile kernel) against PyTorch's conv on fresh random inputs:
    strided bf16 and contiguous fp32, lengths around the program's token block and below K, several channel
    blocks, with and without bias / SiLU; both impls agree with each other."""
    from longapps.kernels.causal_conv1d import causal_conv1d_forward
    for L, dt, strided, has_bias, silu in [(21, torch.float32, False, True, True), (2, torch.float32, True, False, True),
                                           (17, torch.bfloat16, True, True, False), (8, torch.float32, False, True, True)]:
        base = torch.randn(2, L, 38)
        x = (base[..., 3:22] if strided else base[..., :19].contiguous()).to(dt)
        w, b = torch.randn(19, k), torch.randn(19)
        bias = b if has_bias else None
        ref = reference_causal_conv1d(x.double(), w.double(), bias.double() if has_bias else None,
                                      "silu" if silu else None)
        walk = causal_conv1d_forward(x, w, bias, silu, impl="walk")
        tile = causal_conv1d_forward(x, w, bias, silu, impl="tile")
        assert walk.dtype == dt and walk.is_contiguous()
        assert rel(walk, ref) < TOL[dt] and rel(walk, tile) < TOL[dt]
    with pytest.raises(ValueError):
        causal_conv1d_forward(x, w, bias, silu, impl="nope")


@child
def test_conv_without_bias():
    from longapps.kernels.causal_conv1d import causal_conv1d
    x, w = torch.randn(1, 9, 5), torch.randn(5, 3)
    assert rel(causal_conv1d(x, w, None, backend="triton"), reference_causal_conv1d(x.double(), w.double())) < 1e-5


def test_dispatch_errors():
    from longapps.kernels.causal_conv1d import causal_conv1d
    from longapps.kernels.selective_scan import selective_scan
    args = _inputs(1, 4, 2, 2)
    with pytest.raises(ValueError):
        selective_scan(*args, backend="nope")
    with pytest.raises(ValueError):
        causal_conv1d(args[0], torch.randn(2, 4), activation="relu")
    assert rel(selective_scan(*args, backend="auto"), reference_selective_scan(*args, dtype=torch.float64)) < 1e-5


def test_fallback_helper_and_torch_gradients(monkeypatch):
    import warnings

    from longapps.kernels import _common
    from longapps.kernels.causal_conv1d import _torch_grads as conv_grads
    from longapps.kernels.selective_scan import _torch_grads
    monkeypatch.setattr(_common, "BROKEN", {})

    def broken():
        raise RuntimeError("compile error")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert _common.triton_or_fallback("k", broken, lambda: 7) == 7
    assert "k" in _common.BROKEN and w and "Triton kernel failed" in str(w[0].message)
    assert _common.triton_or_fallback("k", lambda: 1, lambda: 7) == 7  # remembered
    args = [a.double() for a in _inputs(1, 13, 3, 2)]
    g = torch.randn(1, 13, 3, dtype=torch.float64)
    _, ref = _grads(lambda *a: reference_selective_scan(*a, dtype=torch.float64), args, g)
    for a, b in zip(_torch_grads(g, args, True), ref):
        assert rel(a, b) < 1e-9
    x, w_, b_ = torch.randn(1, 6, 2, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    _, ref = _grads(reference_causal_conv1d, [x, w_, b_], torch.ones(1, 6, 2, dtype=torch.float64))
    for a, b in zip(conv_grads(torch.ones(1, 6, 2, dtype=torch.float64), x, w_, b_, True), ref):
        assert rel(a, b) < 1e-12


@child
@pytest.mark.parametrize("with_y", [True, False])
def test_add_rmsnorm_kernel(with_y):
    """The fused residual add + RMSNorm kernel (several rows per program, a ragged last program) vs PyTorch."""
    from longapps.kernels.rmsnorm import _add_rmsnorm_triton, reference_add_rmsnorm
    r, w = torch.randn(3, 7, 48), torch.randn(48)
    y = torch.randn(3, 7, 48) if with_y else None
    h, rout = _add_rmsnorm_triton(r, y, w, 1e-5, torch.float32)
    hr, rr = reference_add_rmsnorm(r, y, w, 1e-5, torch.float32)
    assert rel(h, hr) < 1e-5 and rel(rout, rr) < 1e-6
    h2, none = _add_rmsnorm_triton(r, y, w, 1e-5, torch.float32, keep_sum=False)  # the final norm: no stream out
    assert none is None and rel(h2, hr) < 1e-5


@child
def test_embed_rmsnorm_kernel():
    """The first layer's norm with the stream gathered from the embedding table by id in the same kernel (bf16 table,
    fp32 stream, bf16 norm as mamba-130m) vs F.embedding + the reference: equal stream, equal h."""
    from longapps.kernels.rmsnorm import _embed_rmsnorm_triton, reference_add_rmsnorm
    table, w = torch.randn(50, 48).to(torch.bfloat16), torch.randn(48).to(torch.bfloat16)
    ids = torch.randint(0, 50, (3, 7))
    h, r = _embed_rmsnorm_triton(ids, table, w, 1e-5, torch.bfloat16, torch.float32)
    hr, rr = reference_add_rmsnorm(torch.nn.functional.embedding(ids, table).float(), None, w, 1e-5, torch.bfloat16)
    assert r.dtype == torch.float32 and torch.equal(r, rr)
    assert h.dtype == torch.bfloat16 and h.shape == (3, 7, 48) and rel(h, hr) < 1e-2


@child
@pytest.mark.parametrize("M,K,N", [(37, 5, 40), (16, 48, 33), (3, 16, 16)])
def test_lowrank_linear(M, K, N):
    """x @ w.T for a small inner dimension (dt_proj) against F.linear: x a strided view of a wider tensor (as
    xdbl[..., :dt_rank]), sizes that are not multiples of the tiles; too large a K is refused."""
    from longapps.kernels.lowrank_linear import lowrank_linear, reference_lowrank_linear
    xdbl = torch.randn(2, M, K + 9)
    x, w = xdbl[..., :K], torch.randn(N, K) / K ** 0.5
    y = lowrank_linear(x, w)
    assert y.shape == (2, M, N) and y.is_contiguous()
    assert rel(y, reference_lowrank_linear(x, w)) < 1e-5
    with pytest.raises(ValueError, match="K <= 128"):
        lowrank_linear(torch.randn(4, 130), torch.randn(8, 130))


def test_lowrank_linear_auto_is_f_linear_off_cuda():
    """Off CUDA (and with gradients wanted) the dispatcher is F.linear, gradients included."""
    from longapps.kernels.lowrank_linear import lowrank_linear_auto
    x, w = torch.randn(3, 7, 5, requires_grad=True), torch.randn(11, 5, requires_grad=True)
    y = lowrank_linear_auto(x, w)
    assert torch.equal(y, torch.nn.functional.linear(x, w))
    y.sum().backward()
    assert x.grad is not None and w.grad is not None
