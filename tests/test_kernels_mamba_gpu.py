"""GPU-size checks of the Mamba kernels and encoder (skipped without CUDA): the Triton selective scan and
causal conv1d against the float64 references (values and gradients), MambaEncoder against HF MambaModel, the
CUDA-graph runner against eager, and one bf16 training step. Run on the device (benchmarks/mamba_device.sh)."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 1e-2}


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    assert torch.isfinite(a).all(), "non-finite values"
    return float((a - b).norm() / b.norm())


def _inputs(b, L, d, n, dt, strided=True):
    g = lambda *s: torch.randn(*s, device="cuda")  # noqa: E731
    xz = g(b, L, 2 * d)
    bc = g(b, L, 3 * n)
    u, z = (xz[..., :d], xz[..., d:]) if strided else (xz[..., :d].contiguous(), xz[..., d:].contiguous())
    A = -(torch.rand(d, n, device="cuda") * 3 + 0.05)
    return [u.to(dt), (g(b, L, d) * 0.7).to(dt), A, bc[..., n:2 * n].to(dt), bc[..., 2 * n:].to(dt), g(d), z.to(dt),
            g(d) * 0.3]


@pytest.mark.parametrize("dt,L,segments", [(torch.float32, 4097, None), (torch.bfloat16, 4096, None),
                                           (torch.bfloat16, 1000, 1), (torch.float16, 777, 5)])
def test_scan_forward(dt, L, segments):
    from longapps.kernels.selective_scan import reference_selective_scan, selective_scan_forward
    args = _inputs(2, L, 64, 16, dt)
    y, _, _ = selective_scan_forward(*args, segments=segments)
    assert rel(y, reference_selective_scan(*args, dtype=torch.float64)) < TOL[dt]


@pytest.mark.parametrize("cfg", [dict(impl="tile"), dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16),
                                 dict(impl="seq", BD=128, num_warps=4, programs_per_sm=4),
                                 dict(impl="seq", BD=64, num_warps=2, programs_per_sm=32),
                                 dict(impl="seq", BD=64, num_warps=2, programs_per_sm=8),
                                 dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16, fold="inline",
                                      fold_stages=1),
                                 dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16, fold="inline",
                                      fold_stages=3),
                                 dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16, fold="last", fold_stages=1),
                                 dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16, fold="last", fold_stages=3),
                                 dict(impl="seq", BD=32, num_warps=1, programs_per_sm=16, fold="last", fold_stages=3,
                                      seg_unit=8)])
def test_scan_forward_implementations(cfg):
    """Both forward kernels (tile + associative scan, sequential walk) and several launch shapes: d_inner not a
    multiple of the channel block, a length that is not a multiple of the save tile, many segments."""
    from longapps.kernels.selective_scan import reference_selective_scan, selective_scan_forward
    args = _inputs(3, 2111, 200, 16, torch.bfloat16)
    ref = reference_selective_scan(*args, dtype=torch.float64)
    y, hs, T = selective_scan_forward(*args, save_states=True, **cfg)
    assert rel(y, ref) < TOL[torch.bfloat16]
    assert hs.shape[:3] == (3, -(-2111 // T), 200)


@pytest.mark.parametrize("impl", ["seq", "tile"])
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
def test_scan_backward(dt, impl, monkeypatch):
    from longapps.kernels import selective_scan as S
    monkeypatch.setattr(S, "SCAN_DEFAULTS", dict(S.SCAN_DEFAULTS if impl == "seq" else S.TILE_SCAN_DEFAULTS))
    from longapps.kernels.selective_scan import reference_selective_scan, selective_scan
    args = _inputs(2, 300, 48, 16, dt)
    leaves = [a.detach().clone().requires_grad_() for a in args]
    ref_leaves = [a.detach().double().requires_grad_() for a in args]
    g = torch.randn(2, 300, 48, device="cuda")
    y = selective_scan(*leaves, backend="triton")
    r = reference_selective_scan(*ref_leaves, dtype=torch.float64)
    assert rel(y, r) < TOL[dt]
    for a, b in zip(torch.autograd.grad(y, leaves, g.to(dt)), torch.autograd.grad(r, ref_leaves, g.double())):
        assert rel(a, b) < (1e-3 if dt == torch.float32 else 5e-2)


@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
def test_conv(dt):
    from longapps.kernels.causal_conv1d import causal_conv1d, reference_causal_conv1d
    x = torch.randn(2, 3000, 2 * 96, device="cuda")[..., :96].to(dt)
    w, b = torch.randn(96, 4, device="cuda"), torch.randn(96, device="cuda")
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    ref = [t.detach().double().requires_grad_() for t in (x, w, b)]
    y, r = causal_conv1d(*leaves, backend="triton"), reference_causal_conv1d(*ref)
    assert rel(y, r) < TOL[dt]
    g = torch.randn_like(r)
    for a, c in zip(torch.autograd.grad(y, leaves, g.to(dt)), torch.autograd.grad(r, ref, g)):
        assert rel(a, c) < TOL[dt] * 2


@pytest.mark.parametrize("impl,shape", [("tile", {}), ("walk", {}), ("walk", dict(walk_T=16, walk_BC=256)),
                                         ("walk", dict(walk_T=16, walk_BC=512, walk_warps=2))])
@pytest.mark.parametrize("k", [3, 4])
def test_conv_forward_impls(impl, shape, k, monkeypatch):
    """Both conv forwards at the model's shape (bf16, x a strided half of xz, 1,536 channels) and at a channel
    count that is not a multiple of the block, lengths not multiples of the token block."""
    from longapps.kernels import causal_conv1d as CV
    for key, v in shape.items():
        monkeypatch.setitem(CV.CONV_DEFAULTS, key, v)
    for c, L in [(1536, 4099), (200, 37)]:
        x = torch.randn(1, L, 2 * c, device="cuda")[..., :c].to(torch.bfloat16)
        w, b = torch.randn(c, k, device="cuda"), torch.randn(c, device="cuda")
        y = CV.causal_conv1d_forward(x, w, b, True, impl=impl)
        assert rel(y, CV.reference_causal_conv1d(x.double(), w.double(), b.double())) < TOL[torch.bfloat16]


@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cfg", [{}, dict(BM=128, BN=64, num_warps=4), dict(BM=128, BN=128, num_warps=8)])
def test_lowrank_linear(dt, cfg):
    """dt_proj's low-rank kernel against float64 F.linear: x a strided view (xdbl[..., :dt_rank]), sizes that
    are not multiples of the tiles."""
    from longapps.kernels.lowrank_linear import lowrank_linear
    xdbl = torch.randn(3, 1111, 80, device="cuda")
    x, w = xdbl[..., :48].to(dt), torch.randn(1500, 48, device="cuda") / 48 ** 0.5
    y = lowrank_linear(x, w, **cfg)
    # bf16: the output's own rounding is ~2.3e-3 relative (run 72); fp32: ieee dots
    assert y.dtype == dt and rel(y, torch.nn.functional.linear(x.double(), w.double())) < {torch.float32: 1e-5,
                                                                                          torch.bfloat16: 5e-3}[dt]


def test_model_lowrank_dt_proj_equals_f_linear(monkeypatch):
    """The model with the low-rank dt_proj kernel (its inference default on CUDA) equals the model without it."""
    from longapps.kernels import lowrank_linear as LR
    _, ours = _small_pair()
    ours.to(torch.bfloat16)
    ids = torch.randint(0, 500, (2, 700), device="cuda")
    with torch.no_grad():
        fast = ours(ids)
        monkeypatch.setitem(LR.LOWRANK_DEFAULTS, "enabled", False)
        plain = ours(ids)
    assert rel(fast, plain) < 1e-2


def _small_pair():
    from transformers import MambaModel

    from longapps.models.mamba import MambaEncoder, mamba_config
    torch.manual_seed(0)
    hf = MambaModel(mamba_config(hidden_size=128, num_hidden_layers=3, state_size=16, vocab_size=500)).cuda().eval()
    return hf, MambaEncoder.from_hf(hf).eval()


def test_model_matches_hf_and_graph():
    hf, ours = _small_pair()
    ids = torch.randint(0, 500, (2, 700), device="cuda")
    with torch.no_grad():
        ref = hf(ids).last_hidden_state
        assert rel(ours(ids), ref) < 1e-4
        ours.to(torch.bfloat16)
        eager = ours(ids)
        assert rel(eager, ref) < 3e-2
        graph = ours.cuda_graph(ids)
        assert rel(graph(ids), eager) < 1e-6
        ids2 = torch.randint(0, 500, (2, 700), device="cuda")
        assert rel(graph(ids2).clone(), ours(ids2)) < 1e-6


def test_training_step_bf16_autocast():
    _, ours = _small_pair()
    ours.train()
    ours.gradient_checkpointing_enable()
    ids = torch.randint(0, 500, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = ours(ids)[:, -1].float().pow(2).mean()
    loss.backward()
    for n, p in ours.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("rdt,wdt,with_y", [(torch.float32, torch.bfloat16, True), (torch.float32, torch.bfloat16, False),
                                            (torch.bfloat16, torch.bfloat16, True), (torch.float32, torch.float32, True)])
def test_add_rmsnorm(rdt, wdt, with_y):
    from longapps.kernels.rmsnorm import add_rmsnorm, reference_add_rmsnorm
    r = torch.randn(3, 1000, 768, device="cuda").to(rdt)
    y = torch.randn(3, 1000, 768, device="cuda").to(wdt) if with_y else None
    w = torch.rand(768, device="cuda").to(wdt)
    with torch.no_grad():
        for norm_dtype in (wdt, torch.promote_types(rdt, wdt)):
            h, r2 = add_rmsnorm(r, y, w, 1e-5, norm_dtype)
            hr, rr = reference_add_rmsnorm(r, y, w, 1e-5, norm_dtype)
            assert h.dtype == hr.dtype and r2.dtype == rr.dtype
            assert rel(r2, rr) < 1e-6 and rel(h, hr) < 1e-2
