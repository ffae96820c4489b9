"""longapps.attention on CPU: every pattern through reference / SDPA / Flex (eager) paths, input checks."""
from __future__ import annotations

import warnings

import pytest
import torch

from longapps.attention import (BlockSparse, Causal, Full, Linear, SinksWindow, SlidingWindow, WindowGlobal,
                                attention, choose_backend, dense_mask)
from longapps.attention.flex import flex_available, flex_path


def rel(a, b):
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all(), "non-finite values"
    return float((a - b).norm() / b.norm())


def _qkv(B=2, H=2, N=41, D=16, dt=torch.float32, nk=None):
    nk = nk or N
    return torch.randn(B, H, N, D, dtype=dt), torch.randn(B, H, nk, D, dtype=dt), torch.randn(B, H, nk, D, dtype=dt)


def _patterns(N):
    return [Full(), Causal(), SlidingWindow(5), SlidingWindow(5, causal=True), WindowGlobal(4, [0, N - 1]),
            WindowGlobal(3, torch.tensor([[2, -1], [7, 9]]), causal=True), SinksWindow(3, 6),
            BlockSparse(torch.rand(-(-N // 8), -(-N // 8)) > 0.4, 8)]


def _naive(q, k, v, pattern, kpm):
    """Independent O(N^2) loop-free check using the dense mask and float64."""
    m = dense_mask(pattern, q.shape[2], k.shape[2], "cpu", kpm)
    s = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    s = s.masked_fill(~m, float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, -1))
    return p @ v.double()


@pytest.mark.parametrize("use_kpm", [False, True])
def test_all_patterns_all_cpu_paths_agree(use_kpm):
    N = 41
    q, k, v = _qkv(N=N)
    kpm = None
    if use_kpm:
        kpm = torch.ones(2, N, dtype=torch.bool)
        kpm[1, 30:] = False
    for pat in _patterns(N):
        ref = _naive(q, k, v, pat, kpm)
        for be in ("auto", "reference", "sdpa"):
            assert rel(attention(q, k, v, pat, key_padding_mask=kpm, backend=be), ref) < 1e-5, (pat, be)
        if flex_available():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert rel(flex_path(q, k, v, pat, kpm), ref) < 1e-5, pat


def test_cpu_auto_is_banded_for_window_patterns():
    q, k, v = _qkv()
    assert choose_backend(q, k, WindowGlobal(3, [0])) == "banded"
    assert choose_backend(q, k, SinksWindow(2, 4)) == "banded"
    assert choose_backend(q, k, Causal()) == "reference"


BANDED_CASES = [  # (pattern, N, Nk, block): odd lengths, blocks that do not divide N, globals at the ends,
    (SlidingWindow(5), 41, None, 8),              # repeated and -1-padded global indices, window >= N
    (SlidingWindow(7, causal=True), 41, None, 16),
    (SlidingWindow(4, causal=True), 9, 41, 4),    # decode-style: queries end-aligned
    (WindowGlobal(4, [0, 40]), 41, None, 8),
    (WindowGlobal(4, [5, 5, 20]), 41, None, 16),
    (WindowGlobal(3, torch.tensor([[2, -1, 2], [7, 9, 40]]), causal=True), 41, None, 8),
    (WindowGlobal(60, [3]), 41, None, 8),
    (WindowGlobal(5, torch.tensor([[-1, -1], [0, 40]])), 41, None, 8),  # no global token in one row
    (WindowGlobal(2, list(range(0, 41, 3))), 41, None, 8),
    (SinksWindow(3, 6), 41, None, 8),
    (SinksWindow(0, 6), 41, None, 8),
    (SinksWindow(4, 5), 7, 50, 8),
    (SinksWindow(50, 5), 41, None, 8),            # every key a sink
]


@pytest.mark.parametrize("pat,N,nk,block", BANDED_CASES)
@pytest.mark.parametrize("use_kpm", [False, True])
def test_banded_matches_dense(pat, N, nk, block, use_kpm):
    """The banded CPU path (only each block's band + global/sink keys) computes the dense-mask function."""
    from longapps.attention.banded import banded_attention
    q, k, v = _qkv(N=N, nk=nk)
    kpm = None
    if use_kpm:
        kpm = torch.ones(2, k.shape[2], dtype=torch.bool)
        kpm[1, -9:] = False
        kpm[0, 0] = False
    ref = _naive(q, k, v, pat, kpm)
    assert rel(banded_attention(q, k, v, pat, kpm, block=block), ref) < 1e-5, pat
    assert rel(attention(q, k, v, pat, key_padding_mask=kpm), ref) < 1e-5, pat  # auto -> banded on CPU


def test_banded_gradients_match_reference():
    from longapps.attention.banded import banded_attention
    q, k, v = [t.double().requires_grad_(True) for t in _qkv(N=23, D=8)]
    kpm = torch.ones(2, 23, dtype=torch.bool)
    kpm[0, 20:] = False
    for pat in (WindowGlobal(3, [0, 11]), SinksWindow(2, 4), SlidingWindow(2, causal=True)):
        assert torch.autograd.gradcheck(lambda a, b, c: banded_attention(a, b, c, pat, kpm, block=8), (q, k, v))
        do = torch.randn_like(q)
        got = torch.autograd.grad(banded_attention(q, k, v, pat, kpm, block=8), (q, k, v), do)
        exp = torch.autograd.grad(attention(q, k, v, pat, key_padding_mask=kpm, backend="reference"), (q, k, v), do)
        for a, b in zip(got, exp):
            assert rel(a, b) < 1e-10


def test_banded_refuses_other_patterns():
    from longapps.attention.banded import banded_attention
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="banded_attention"):
        banded_attention(q, k, v, Causal())
    with pytest.raises(ValueError, match="banded|backend"):
        attention(q, k, v, Causal(), backend="banded")


def test_pattern_semantics_small():
    m = dense_mask(WindowGlobal(1, [0]), 5, 5)[0, 0]
    exp = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [1, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, exp)
    s = dense_mask(SinksWindow(1, 1), 5, 5)[0, 0]
    exp = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(s, exp)


def test_decode_alignment_end():
    q, k, v = _qkv(N=3, nk=20)
    for pat in (Causal(), SinksWindow(2, 4), SlidingWindow(4, causal=True)):
        full_q = torch.cat([torch.randn(2, 2, 17, 16), q], 2)
        a = attention(q, k, v, pat)
        b = attention(full_q, k, v, pat)[:, :, -3:]
        assert rel(a, b) < 1e-6


def test_linear_reference_paths():
    q, k, v = _qkv(N=33)
    a = attention(q, k, v, Linear(scale=0.5))
    n = 33
    s = (q.double() @ k.double().transpose(-1, -2) * 0.5).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), 0)
    assert rel(a, s @ v.double()) < 1e-5


def test_fully_masked_rows_are_zero():
    q, k, v = _qkv(B=1, N=10)
    kpm = torch.zeros(1, 10, dtype=torch.bool)
    for be in ("reference", "sdpa"):
        assert torch.equal(attention(q, k, v, Full(), key_padding_mask=kpm, backend=be), torch.zeros_like(q))


def test_backward_through_reference():
    q, k, v = [t.double().requires_grad_(True) for t in _qkv(B=1, H=1, N=9, D=4)]
    assert torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, WindowGlobal(2, [4])), (q, k, v))


@pytest.mark.parametrize("bad,match", [
    (lambda: SlidingWindow(0), "window"),
    (lambda: SlidingWindow(-3), "window"),
    (lambda: SinksWindow(-1, 4), "sinks"),
    (lambda: WindowGlobal(0, [1]), "window"),
    (lambda: WindowGlobal(4, [[[1]]]), "global_idx"),
    (lambda: BlockSparse(torch.ones(3), 4), "block_mask"),
])
def test_bad_patterns(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_bad_inputs():
    q, k, v = _qkv(N=16)
    with pytest.raises(ValueError, match="global_idx"):
        attention(q, k, v, WindowGlobal(3, [0, 16]))
    with pytest.raises(ValueError, match="global_idx"):
        attention(q, k, v, WindowGlobal(3, [-1]))
    with pytest.raises(ValueError, match="dtype"):
        attention(q, k.half(), v, Full())
    with pytest.raises(ValueError, match="k shape"):
        attention(q, k[:, :1], v, Full())
    with pytest.raises(ValueError, match="v shape"):
        attention(q, k, v[:, :, :5], Full())
    with pytest.raises(ValueError, match="q must"):
        attention(q[0], k, v, Full())
    with pytest.raises(ValueError, match="key_padding_mask"):
        attention(q, k, v, Full(), key_padding_mask=torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="backend"):
        attention(q, k, v, Full(), backend="cuda-magic")
    with pytest.raises(ValueError, match="block_mask"):
        attention(q, k, v, BlockSparse(torch.ones(3, 3, dtype=torch.bool), 4))
    with pytest.raises(ValueError, match="pattern"):
        attention(q, k, v, "causal")
    with pytest.raises(ValueError, match="at least one position"):
        attention(q[:, :, :0], k[:, :, :0], v[:, :, :0], SlidingWindow(4))
    with pytest.raises(ValueError, match="triton"):
        attention(q, k, v, WindowGlobal(3, [0]), backend="triton")  # CPU without interpreter


def test_cli_bench_command_without_gpu():
    from click.testing import CliRunner

    from longapps.cli.bench import attention_command
    r = CliRunner().invoke(attention_command, ["--help"])
    assert r.exit_code == 0 and "--dtype" in r.output and "--json" in r.output
    if not torch.cuda.is_available():
        r = CliRunner().invoke(attention_command, ["--n", "4096"])
        assert r.exit_code != 0 and "GPU" in r.output


@pytest.mark.parametrize("args,word", [(["--n", "0"], "--n"), (["--dim", "48"], "--dim"), (["--window", "0"], "--window"),
                                       (["--heads", "0"], "--heads"), (["--json", "/nonexistent/dir/x.json"], "--json")])
def test_cli_bench_bad_options(args, word):
    """Bad values are refused before any GPU work, naming the option."""
    from click.testing import CliRunner

    from longapps.cli.bench import attention_command
    r = CliRunner().invoke(attention_command, args)
    assert r.exit_code != 0 and word in r.output and "Traceback" not in r.output


def test_cli_bench_length_that_cannot_fit():
    """A length whose inputs would not fit in the GPU's free memory is refused up front, naming --n."""
    from longapps.cli.bench import too_long
    msg = too_long([4096, 10**11], 16, 64, free_bytes=80 * 2**30)
    assert msg is not None and "--n 100000000000" in msg and "GiB" in msg
    assert too_long([4096, 65536], 16, 64, free_bytes=80 * 2**30) is None
