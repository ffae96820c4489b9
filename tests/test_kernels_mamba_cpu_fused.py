"""The fused CPU Mamba path: the C mixer scan (dt_proj folded in) and add + RMSNorm against the float64 PyTorch
references on fresh random inputs, the portable (non-AVX-512) build, and ``models/mamba_cpu.fused_forward``
against HF ``MambaModel`` and our unfused path (fp32, padding mask, bf16 autocast)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kernel_checks import rel
from longapps.kernels import selective_scan_cpu as cpu
from longapps.kernels.rmsnorm import reference_add_rmsnorm
from longapps.kernels.selective_scan import reference_selective_scan

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"no CPU kernels here: {cpu.ERROR}")


def _mixer_inputs(b, L, d, n, R, dt_scale=0.3, seed=None):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    xz = torch.randn(b, L, 2 * d, generator=g)                    # u and z: strided views, as the model passes
    xdbl = torch.randn(b, L, R + 2 * n, generator=g)
    W = torch.randn(d, R, generator=g) * dt_scale
    bias = torch.randn(d, generator=g) * 0.3
    A = -(torch.rand(d, n, generator=g) * 3 + 0.05)
    D = torch.randn(d, generator=g)
    return xz[..., :d], xdbl, W, bias, A, D, xz[..., d:]


def _ref(u, xdbl, W, bias, A, D, z):
    R, n = W.shape[1], A.shape[1]
    dt = xdbl[..., :R].double() @ W.double().t()
    return reference_selective_scan(u, dt, A, xdbl[..., R:R + n], xdbl[..., R + n:], D, z, bias, True,
                                    dtype=torch.float64)


@pytest.mark.parametrize("b,L,d,n,R,block", [(2, 203, 70, 16, 5, None), (1, 64, 300, 5, 3, 32), (3, 17, 16, 16, 8, 16),
                                             (1, 1, 40, 4, 2, None)])
def test_mamba_scan_matches_reference(b, L, d, n, R, block):
    args = _mixer_inputs(b, L, d, n, R)
    ref = _ref(*args)
    y = cpu.mamba_scan_cpu(*args, block=block)
    assert y.shape == (b, L, d) and rel(y, ref) < 1e-5
    u, xdbl, W, bias, A, D, z = args
    ref_nod = _ref(u, xdbl, W, bias, A, None, z)
    out = torch.full((b, L, d), float("nan"))
    assert cpu.mamba_scan_cpu(u, xdbl, W, bias, A, None, z, out=out) is out and rel(out, ref_nod) < 1e-5


def test_mamba_scan_long_horizon_decays():
    """Decays within 1e-4 of 1 over 3,000 tokens: a constant bias in exp() would compound into the state."""
    u, xdbl, W, bias, A, D, z = _mixer_inputs(1, 3000, 48, 16, 4, dt_scale=0.01)
    bias = torch.full_like(bias, -9.0)                         # softplus(-9) ~ 1.2e-4
    A = -(torch.rand(48, 16) * 0.5 + 0.05)
    ref = _ref(u, xdbl, W, bias, A, D, z)
    assert rel(cpu.mamba_scan_cpu(u, xdbl, W, bias, A, D, z), ref) < 1e-5


def test_mamba_scan_rejects_bad_arguments():
    u, xdbl, W, bias, A, D, z = _mixer_inputs(1, 8, 32, 4, 2)
    with pytest.raises(ValueError):
        cpu.mamba_scan_cpu(u, xdbl[..., 1:], W, bias, A, D, z)
    with pytest.raises(ValueError):
        cpu.mamba_scan_cpu(u, xdbl, W, bias, A, D, z, block=24)
    with pytest.raises(ValueError):
        cpu.mamba_scan_cpu(u.double(), xdbl, W, bias, A, D, z)


def test_scan_block_splits_for_threads():
    assert cpu.scan_block(256, 1, 1) == 256 and cpu.scan_block(256, 1, 2) == 128 and cpu.scan_block(256, 4, 2) == 256
    assert cpu.scan_block(1536, 1, 4) == 256 and cpu.scan_block(64, 1, 8) == 32


@pytest.mark.parametrize("with_y", [True, False])
def test_add_rmsnorm_cpu(with_y):
    r, y, w = torch.randn(2, 33, 96) * 3, torch.randn(2, 33, 96), torch.randn(96)
    ref_h, ref_r = reference_add_rmsnorm(r.double(), y.double() if with_y else None, w.double(), 1e-5, torch.float64)
    rr = r.clone()
    h = cpu.add_rmsnorm_cpu(rr, y if with_y else None, w, 1e-5)
    assert rel(h, ref_h) < 1e-6 and rel(rr, ref_r) < 1e-7       # r updated in place
    with pytest.raises(ValueError):
        cpu.add_rmsnorm_cpu(r[..., :48], None, w[:48], 1e-5)


def test_portable_build_matches_reference(tmp_path):
    """The generic C loops (built with LONGAPPS_CPU_GENERIC=1, as on a CPU without AVX-512) in a child process."""
    code = ("import sys, torch; sys.path[:0] = [%r, %r]\n"
            "from test_kernels_mamba_cpu_fused import _mixer_inputs, _ref\n"
            "from kernel_checks import rel\n"
            "from longapps.kernels import selective_scan_cpu as cpu\n"
            "assert cpu.available(), cpu.ERROR\n"
            "assert '-DLONGAPPS_GENERIC' in cpu._defines()\n"
            "args = _mixer_inputs(2, 150, 70, 16, 5, seed=3)\n"
            "print(rel(cpu.mamba_scan_cpu(*args), _ref(*args)))\n") % (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, LONGAPPS_CPU_GENERIC="1", XDG_CACHE_HOME=str(tmp_path), LONGAPPS_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


@pytest.fixture(scope="module")
def models():
    from transformers import MambaModel

    from longapps.models.mamba import MambaEncoder, mamba_config
    torch.manual_seed(0)
    cfg = mamba_config(hidden_size=48, num_hidden_layers=3, state_size=16, vocab_size=200, expand=2, time_step_rank=6)
    hf = MambaModel(cfg).eval()
    with torch.no_grad():  # non-trivial A/D so a wrong formula shows
        for layer in hf.layers:
            layer.mixer.A_log.add_(torch.randn_like(layer.mixer.A_log) * 0.3)
            layer.mixer.D.add_(torch.randn_like(layer.mixer.D))
    return hf, MambaEncoder.from_hf(hf).eval()


def test_fused_forward_matches_hf_and_unfused(models, monkeypatch):
    from longapps.models import mamba_cpu
    hf, ours = models
    ids = torch.randint(0, 200, (2, 150))
    mask = torch.ones(2, 150, dtype=torch.long)
    mask[1, 90:] = 0
    with torch.no_grad():
        assert mamba_cpu.usable(ours, ids)
        fused = mamba_cpu.fused_forward(ours, ids)
        fused_m = mamba_cpu.fused_forward(ours, ids, mask)
        assert torch.equal(ours(ids), fused)                  # forward dispatches to it
        ref, ref_m = hf(ids).last_hidden_state, hf(ids, attention_mask=mask).last_hidden_state
        monkeypatch.setattr(mamba_cpu, "usable", lambda *a: False)
        unfused = ours(ids)
    assert rel(fused, ref) < 1e-5 and rel(fused_m, ref_m) < 1e-5 and rel(fused, unfused) < 1e-5
    # without oneDNN: torch's GEMM, same function
    monkeypatch.setattr(mamba_cpu, "_DNN", False)
    with torch.no_grad():
        assert rel(mamba_cpu.fused_forward(ours, ids), ref) < 1e-5


def test_fused_forward_bf16_autocast_and_dispatch(models):
    from longapps.models import mamba_cpu
    hf, ours = models
    ids = torch.randint(0, 200, (1, 200))
    with torch.no_grad():
        ref = hf(ids).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = ours(ids)
            hf_bf = hf(ids).last_hidden_state.float()
    # bf16 GEMMs: within 3e-2 of HF fp32 (HF's own bf16 autocast is at the same distance), not bit-equal
    assert got.dtype == torch.float32 and 1e-5 < rel(got, ref) < 3e-2
    assert rel(got, ref) < 2 * rel(hf_bf, ref) + 1e-2
    # with a gradient wanted the fused path is not used
    assert not mamba_cpu.usable(ours, ids)
    out = ours(ids)
    assert out.requires_grad and rel(out, ref) < 1e-5
