"""The fused add + LayerNorm kernel (several rows per program) vs the PyTorch reference, under the Triton
interpreter on CPU (child process); the GPU paths are in test_kernels_gpu.py."""
from __future__ import annotations

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel

test_under_interpreter = interpreter_test(__file__)


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("M,C,rows", [(7, 48, 1), (10, 48, 4), (9, 100, 2), (5, 768, 8)])
def test_add_ln_kernel_matches_reference(dt, M, C, rows):
    """Rows of LN(x + r) on fresh inputs: row counts that are not a multiple of the rows per program, widths
    that are not a power of two, strided input rows; rows past M are not written."""
    import triton

    from longapps.kernels.layernorm import _add_ln_kernel, reference_add_layernorm
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    x = torch.randn(M, C + 5, generator=g).to(dt)[:, 2:C + 2]  # strided rows
    r = torch.randn(M, C, generator=g).to(dt)
    w, b = torch.randn(C, generator=g).to(dt), torch.randn(C, generator=g).to(dt)
    y = torch.full((M + 1, C), 7.0, dtype=dt)
    _add_ln_kernel[(triton.cdiv(M, rows),)](x, r, w, b, y, x.stride(0), r.stride(0), y.stride(0), M, C, 1e-5,
                                            ROWS=rows, BLOCK=triton.next_power_of_2(C))
    want = reference_add_layernorm(x.double(), r.double(), w.double(), b.double(), 1e-5)
    assert rel(y[:M], want) < TOL[dt]
    assert torch.all(y[M] == 7.0)


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B,N,C,rows", [(2, 13, 48, 4), (1, 9, 100, 1), (3, 6, 64, 8)])
def test_embed_layernorm_matches_hf_embeddings(dt, B, N, C, rows, monkeypatch):
    """The fused embeddings equal HF's ``LongformerEmbeddings`` (eval) on fresh ids with pad tokens inside and
    at the end (positions restart their count only over non-pad tokens); a second call reads new ids."""
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import LongformerEmbeddings

    from longapps.kernels import embed_layernorm as mod
    monkeypatch.setitem(mod.EMBED_DEFAULTS, "rows", rows)
    torch.manual_seed(torch.seed() % 2**31)
    cfg = LongformerConfig(vocab_size=50, hidden_size=C, max_position_embeddings=N + 2, pad_token_id=1)
    emb = LongformerEmbeddings(cfg).eval()
    with torch.no_grad():
        for p in emb.parameters():
            p.normal_()
        emb = emb.to(dt)
        for _ in range(2):
            ids = torch.randint(2, 50, (B, N))
            ids[0, N // 2] = ids[-1, -2:] = 1  # pad tokens
            want = emb(input_ids=ids)
            got = mod.embed_layernorm(ids, emb.word_embeddings.weight, emb.position_embeddings.weight,
                                      emb.token_type_embeddings.weight, emb.LayerNorm.weight, emb.LayerNorm.bias,
                                      emb.LayerNorm.eps, emb.padding_idx)
            assert got.shape == (B, N, C) and got.dtype == dt
            ref = mod.reference_embed_layernorm(ids, *(t.double() for t in (
                emb.word_embeddings.weight, emb.position_embeddings.weight, emb.token_type_embeddings.weight,
                emb.LayerNorm.weight, emb.LayerNorm.bias)), emb.LayerNorm.eps, emb.padding_idx)
            assert rel(got, ref) < TOL[dt]
            assert rel(got, want.double()) < (1e-5 if dt == torch.float32 else 3 * TOL[dt])


def test_embed_layernorm_cpu_path_equals_hf():
    """Off CUDA (no interpreter) ``embed_layernorm`` is the PyTorch reference: equal to HF's embeddings."""
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import LongformerEmbeddings

    from longapps.kernels.embed_layernorm import embed_layernorm
    cfg = LongformerConfig(vocab_size=40, hidden_size=32, max_position_embeddings=20, pad_token_id=1)
    emb = LongformerEmbeddings(cfg).eval()
    ids = torch.randint(2, 40, (2, 11))
    ids[1, 3] = ids[1, -1] = 1
    with torch.no_grad():
        got = embed_layernorm(ids, emb.word_embeddings.weight, emb.position_embeddings.weight,
                              emb.token_type_embeddings.weight, emb.LayerNorm.weight, emb.LayerNorm.bias,
                              emb.LayerNorm.eps, emb.padding_idx)
        assert rel(got, emb(input_ids=ids)) < 1e-5


@child
def test_embed_layernorm_out_of_range_ids_read_no_memory():
    """An id outside the vocabulary reads no memory: that token's row is LN(position + token type)."""
    import torch.nn.functional as F

    from longapps.kernels.embed_layernorm import embed_layernorm
    V, C, N = 20, 32, 6
    word, pos, tt = torch.randn(V, C), torch.randn(N + 4, C), torch.randn(2, C)
    w, b = torch.randn(C), torch.randn(C)
    ids = torch.tensor([[3, 4, V, 5, -2, 6]])
    got = embed_layernorm(ids, word, pos, tt, w, b, 1e-5, 1)
    for j in (2, 4):  # positions 2 + j - 1 + 1 (no pad tokens): padding_idx 1 + rank
        want = F.layer_norm(pos[1 + j + 1] + tt[0], (C,), w, b, 1e-5)
        assert rel(got[0, j], want) < 1e-5


def test_embed_layernorm_rejects_sequences_past_the_position_table():
    """A sequence that could reach past the position table is a clear ValueError (no out-of-bounds read)."""
    from longapps.kernels.embed_layernorm import embed_layernorm
    C = 8
    with pytest.raises(ValueError, match="position embeddings"):
        embed_layernorm(torch.full((1, 10), 3), torch.randn(5, C), torch.randn(11, C), torch.randn(1, C),
                        torch.ones(C), torch.zeros(C), 1e-5, 1)
