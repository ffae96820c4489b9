"""Fused CPU selective scan and causal conv (inference): small C kernels compiled once with the system compiler.

PyTorch's eager ops cannot fuse the scan: every formulation makes several passes over a (tokens x channels x
states) tensor, and those memory passes (not the arithmetic) set the speed. This kernel walks the tokens
with each block of channels' states in L1 and does softplus(dt + bias), exp(dt A), the state update, the C
contraction, the D skip and the silu(z) gate in one pass, vectorised over channels (gcc/clang with
``-O3 -ffast-math``: the exp/log calls become SIMD calls of glibc's libmvec), OpenMP over (batch, channel
blocks).

It is built on first use into the longapps cache (keyed by the source, the compiler and this CPU's flags,
since ``-march=native`` code must not run on another CPU) and loaded with ctypes: no torch headers, about a
second to compile. Without a compiler, or if the build fails, ``available()`` is False and callers use the
PyTorch chunked scan. Forward only (no autograd): ``chunked_selective_scan`` uses it when no gradient is
wanted. Disable with ``LONGAPPS_CPU_SCAN=0``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef DB
#define DB 256
#endif

/* exp(x) for the decays: 2^(x log2 e) split into 2^i * 2^f, f in [-0.5, 0.5], degree-6 polynomial
   (relative error ~2e-7, fp32's own rounding), inlined so the channel loop vectorises without libm calls;
   x is clamped to [-87, 87] (exp(-87) ~ 1.6e-38: a decay that small is zero for the state). */
static inline float fast_expf(float x) {
    x = fminf(fmaxf(x, -87.0f), 87.0f);
    float t = x * 1.44269504088896341f;
    float r = __builtin_roundf(t);
    float f = t - r;
    float p = 1.53533473e-4f;
    p = p * f + 1.33989082e-3f;
    p = p * f + 9.61812910e-3f;
    p = p * f + 5.55041086e-2f;
    p = p * f + 2.40226507e-1f;
    p = p * f + 6.93147182e-1f;
    p = p * f + 1.0f;
    union { float f; int32_t i; } u = { p };
    u.i += ((int32_t)r) << 23;
    return u.f;
}

int longapps_scan_f32(const float* u, const float* delta, const float* A /* (n, d): row k = A[:, k] */,
                      const float* B, const float* C, const float* D, const float* z, const float* bias,
                      float* y, float* hlast /* (b, d, n) or NULL */,
                      int64_t bsz, int64_t L, int64_t d, int64_t n,
                      int64_t su_b, int64_t su_l, int64_t sd_b, int64_t sd_l, int64_t sB_b, int64_t sB_l,
                      int64_t sC_b, int64_t sC_l, int64_t sz_b, int64_t sz_l, int64_t sy_b, int64_t sy_l,
                      int softplus, int has_d, int has_z, int has_bias, int threads)
{
    int64_t nblk = (d + DB - 1) / DB;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
#endif
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t d0 = blk * DB;
            int64_t w = d - d0 < DB ? d - d0 : DB;
            float* h = (float*)calloc((size_t)(n * DB), sizeof(float));
            float dt[DB], x[DB], acc[DB];
            float* Ab = (float*)malloc((size_t)(64 * DB) * sizeof(float));
            if (!h || !Ab || n > 64) { failed = 1; free(h); free(Ab); continue; }
            for (int64_t k = 0; k < n; k++)
                for (int64_t i = 0; i < w; i++) Ab[k * DB + i] = A[k * d + d0 + i];
            for (int64_t t = 0; t < L; t++) {
                const float* restrict ur = u + b * su_b + t * su_l + d0;
                const float* restrict dr = delta + b * sd_b + t * sd_l + d0;
                const float* restrict Br = B + b * sB_b + t * sB_l;
                const float* restrict Cr = C + b * sC_b + t * sC_l;
                float* restrict yr = y + b * sy_b + t * sy_l + d0;
                for (int64_t i = 0; i < w; i++) {
                    float v = dr[i] + (has_bias ? bias[d0 + i] : 0.0f);
                    if (softplus) {
                        float sp = logf(1.0f + expf(fminf(v, 20.0f)));
                        v = v > 20.0f ? v : sp;
                    }
                    dt[i] = v;
                    x[i] = v * ur[i];
                    acc[i] = 0.0f;
                }
                for (int64_t k = 0; k < n; k++) {
                    const float bk = Br[k], ck = Cr[k];
                    float* restrict hk = h + k * DB;
                    const float* restrict Ak = Ab + k * DB;
                    for (int64_t i = 0; i < w; i++) {
                        float hv = fast_expf(dt[i] * Ak[i]) * hk[i] + x[i] * bk;
                        hk[i] = hv;
                        acc[i] += hv * ck;
                    }
                }
                if (has_z) {
                    const float* restrict zr = z + b * sz_b + t * sz_l + d0;
                    for (int64_t i = 0; i < w; i++) {
                        float o = acc[i] + (has_d ? D[d0 + i] * ur[i] : 0.0f);
                        yr[i] = o * zr[i] / (1.0f + expf(-zr[i]));
                    }
                } else {
                    for (int64_t i = 0; i < w; i++) yr[i] = acc[i] + (has_d ? D[d0 + i] * ur[i] : 0.0f);
                }
            }
            if (hlast)
                for (int64_t i = 0; i < w; i++)
                    for (int64_t k = 0; k < n; k++) hlast[(b * d + d0 + i) * n + k] = h[k * DB + i];
            free(h);
            free(Ab);
        }
    }
    return failed;
}

/* causal depthwise conv (+ SiLU): y[b,t,c] = act(bias[c] + sum_k wT[k,c] x[b,t-(K-1)+k,c]), token-major */
int longapps_conv_f32(const float* x, const float* wT /* (K, d) */, const float* bias, float* y,
                      int64_t bsz, int64_t L, int64_t d, int64_t K, int64_t sx_b, int64_t sx_l,
                      int64_t sy_b, int64_t sy_l, int silu, int has_bias, int threads)
{
    int64_t nblk = (d + 255) / 256;
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
#endif
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t d0 = blk * 256;
            int64_t w = d - d0 < 256 ? d - d0 : 256;
            float acc[256];
            for (int64_t t = 0; t < L; t++) {
                for (int64_t i = 0; i < w; i++) acc[i] = has_bias ? bias[d0 + i] : 0.0f;
                for (int64_t k = 0; k < K; k++) {
                    int64_t tt = t - (K - 1) + k;
                    if (tt < 0) continue;
                    const float* restrict xr = x + b * sx_b + tt * sx_l + d0;
                    const float* restrict wk = wT + k * d + d0;
                    for (int64_t i = 0; i < w; i++) acc[i] += wk[i] * xr[i];
                }
                float* restrict yr = y + b * sy_b + t * sy_l + d0;
                if (silu)
                    for (int64_t i = 0; i < w; i++) yr[i] = acc[i] / (1.0f + expf(-acc[i]));
                else
                    for (int64_t i = 0; i < w; i++) yr[i] = acc[i];
            }
        }
    }
    return 0;
}

/* ---- the fused Mamba-mixer scan (dt_proj folded in) and add + RMSNorm, used by models/mamba_cpu.py ---- */

/* 2^t, t <= 0 in practice (t = dt * A * log2 e): t = r + f, r = rint(t), f in [-0.5, 0.5], degree-5 fit of
   2^f with the constant exactly 1 (max relative error 1.9e-7, and ~0 as f -> 0: a decay near 1 carries no
   bias that would compound over a long state horizon), times 2^r by vscalefps (AVX-512) / exponent bits (generic) */
#define EXP2_C0 1.0f
#define EXP2_C1 0.6931470036506653f
#define EXP2_C2 0.24022240936756134f
#define EXP2_C3 0.05550726130604744f
#define EXP2_C4 0.009671593084931374f
#define EXP2_C5 0.0013267117319628596f

#if defined(__AVX512F__) && !defined(LONGAPPS_GENERIC)
#include <immintrin.h>
#define LONGAPPS_AVX512 1
static inline __m512 exp2_v16(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-150.0f));
    __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EXP2_C5), f, _mm512_set1_ps(EXP2_C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_C0));
    return _mm512_scalef_ps(p, r);
}
#endif

static inline float exp2_s(float t) {
    t = fminf(fmaxf(t, -126.0f), 126.0f);
    float r = __builtin_rintf(t);
    float f = t - r;
    float p = ((((EXP2_C5 * f + EXP2_C4) * f + EXP2_C3) * f + EXP2_C2) * f + EXP2_C1) * f + EXP2_C0;
    union { float f; int32_t i; } u = { p };
    u.i += ((int32_t)r) << 23;
    return u.f;
}

/* y[b,t,c] = silu(z) * (D u + sum_k C[t,k] h[t,c,k]), h[t,c,k] = exp(dt A[c,k]) h[t-1,c,k] + dt u B[t,k],
   dt = softplus(bias[c] + sum_r WdtT[r,c] xdbl[t,r]); xdbl rows are (dt_low (R) | B (n) | C (n)) = x_proj's
   output, read in place. A2 = A * log2(e) laid out (n, d). Channel blocks of `db` (multiple of 16, <= 512)
   with their states in L1, OpenMP over (batch, block). */
int longapps_mamba_scan_f32(const float* u, const float* xdbl, const float* WdtT, const float* dt_bias,
                            const float* A2, const float* D, const float* z, float* y,
                            int64_t bsz, int64_t L, int64_t d, int64_t n, int64_t R, int64_t db,
                            int64_t su_b, int64_t su_l, int64_t sx_b, int64_t sx_l, int64_t sz_b, int64_t sz_l,
                            int64_t sy_b, int64_t sy_l, int has_d, int threads)
{
    if (db <= 0 || db % 16 || db > 512) return 2;
    int64_t nblk = (d + db - 1) / db;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
#endif
    for (int64_t b = 0; b < bsz; b++) {
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t d0 = blk * db;
            int64_t w = d - d0 < db ? d - d0 : db;
            /* h (n x db) | A2 block (n x db) | dt | x | acc, zero padded past w */
            float* ws = (float*)calloc((size_t)((2 * n + 3) * db), sizeof(float));
            if (!ws) { failed = 1; continue; }
            float *h = ws, *Ab = ws + n * db, *dt = ws + 2 * n * db, *x = dt + db, *acc = x + db;
            for (int64_t k = 0; k < n; k++)
                for (int64_t i = 0; i < w; i++) Ab[k * db + i] = A2[k * d + d0 + i];
            for (int64_t t = 0; t < L; t++) {
                const float* restrict ur = u + b * su_b + t * su_l + d0;
                const float* restrict xr = xdbl + b * sx_b + t * sx_l;
                const float* restrict Br = xr + R;
                const float* restrict Cr = xr + R + n;
                const float* restrict zr = z + b * sz_b + t * sz_l + d0;
                float* restrict yr = y + b * sy_b + t * sy_l + d0;
                for (int64_t i = 0; i < w; i++) dt[i] = dt_bias[d0 + i];
                for (int64_t r = 0; r < R; r++) {
                    const float xv = xr[r];
                    const float* restrict wr = WdtT + r * d + d0;
                    for (int64_t i = 0; i < w; i++) dt[i] += wr[i] * xv;
                }
                for (int64_t i = 0; i < w; i++) {
                    float v = dt[i];
                    float sp = logf(1.0f + expf(fminf(v, 20.0f)));
                    v = v > 20.0f ? v : sp;
                    dt[i] = v;
                    x[i] = v * ur[i];
                }
#ifdef LONGAPPS_AVX512
                for (int64_t i = 0; i < w; i += 16) {
                    __m512 dv = _mm512_loadu_ps(dt + i), xv = _mm512_loadu_ps(x + i), av = _mm512_setzero_ps();
                    for (int64_t k = 0; k < n; k++) {
                        __m512 dec = exp2_v16(_mm512_mul_ps(dv, _mm512_loadu_ps(Ab + k * db + i)));
                        __m512 hv = _mm512_fmadd_ps(dec, _mm512_loadu_ps(h + k * db + i),
                                                    _mm512_mul_ps(xv, _mm512_set1_ps(Br[k])));
                        _mm512_storeu_ps(h + k * db + i, hv);
                        av = _mm512_fmadd_ps(hv, _mm512_set1_ps(Cr[k]), av);
                    }
                    _mm512_storeu_ps(acc + i, av);
                }
#else
                for (int64_t i = 0; i < w; i++) acc[i] = 0.0f;
                for (int64_t k = 0; k < n; k++) {
                    const float bk = Br[k], ck = Cr[k];
                    float* restrict hk = h + k * db;
                    const float* restrict Ak = Ab + k * db;
                    for (int64_t i = 0; i < w; i++) {
                        float hv = exp2_s(dt[i] * Ak[i]) * hk[i] + x[i] * bk;
                        hk[i] = hv;
                        acc[i] += hv * ck;
                    }
                }
#endif
                for (int64_t i = 0; i < w; i++) {
                    float o = acc[i] + (has_d ? D[d0 + i] * ur[i] : 0.0f);
                    yr[i] = o * zr[i] / (1.0f + expf(-zr[i]));
                }
            }
            free(ws);
        }
    }
    return failed;
}

/* r += y (when y), h = w * r / sqrt(mean(r^2) + eps), rows of C contiguous floats (fp32 statistics) */
void longapps_add_rmsnorm_f32(float* r, const float* y, const float* w, float* h, int64_t rows, int64_t C,
                              float eps, int threads)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t row = 0; row < rows; row++) {
        float* restrict rr = r + row * C;
        float* restrict hr = h + row * C;
        if (y) {
            const float* restrict yr = y + row * C;
            for (int64_t i = 0; i < C; i++) rr[i] += yr[i];
        }
        float ss = 0.0f;
        for (int64_t i = 0; i < C; i++) ss += rr[i] * rr[i];
        float inv = 1.0f / sqrtf(ss / (float)C + eps);
        for (int64_t i = 0; i < C; i++) hr[i] = w[i] * (rr[i] * inv);
    }
}
"""

_LOCK = threading.Lock()
_LIB: Optional[ctypes.CDLL] = None
_TRIED = False
ERROR: Optional[str] = None   # why the kernel is unavailable (compiler missing, build failed), for messages


def _cpu_key() -> str:
    """Compiler + CPU identity (the build uses -march=native)."""
    info = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                info += line
                if line.startswith("flags"):
                    break
    except OSError:
        pass
    return info


def _defines() -> list[str]:
    """``LONGAPPS_CPU_GENERIC=1`` builds the portable C loops instead of the AVX-512 intrinsics (for tests)."""
    return ["-DLONGAPPS_GENERIC"] if os.environ.get("LONGAPPS_CPU_GENERIC", "0") == "1" else []


def _compiler() -> Optional[str]:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _build() -> Optional[ctypes.CDLL]:
    global ERROR
    cc = _compiler()
    if cc is None:
        ERROR = "no C compiler (cc/gcc/clang) found"
        return None
    from ..resources import cache_dir

    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        ERROR = f"{cc} --version failed: {err}"
        return None
    key = hashlib.sha1((SOURCE + version + _cpu_key() + " ".join(_defines())).encode()).hexdigest()[:16]
    folder = cache_dir("cpu_kernels")
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"selective_scan_{key}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = Path(tmp) / "scan.c"
            src.write_text(SOURCE)
            out = Path(tmp) / "scan.so"
            base = [cc, "-O3", "-ffast-math", "-fPIC", "-shared", "-std=c99", *_defines(), str(src), "-o", str(out),
                    "-lm"]
            msg = ""
            for flags in (["-march=native", "-mprefer-vector-width=512", "-fopenmp"], ["-march=native", "-fopenmp"], ["-march=native"], []):
                try:
                    r = subprocess.run(base[:1] + flags + base[1:], capture_output=True, text=True, timeout=120)
                except (OSError, subprocess.SubprocessError) as err:
                    msg = str(err)
                    continue
                if r.returncode == 0:
                    break
                msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"
            else:
                ERROR = f"building the CPU scan failed: {msg[:200]}"
                return None
            os.replace(out, lib)
    try:
        handle = ctypes.CDLL(str(lib))
    except OSError as err:
        ERROR = f"loading the CPU scan failed: {err}"
        return None
    fn = handle.longapps_scan_f32
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_int64] * 16 + [ctypes.c_int] * 5
    conv = handle.longapps_conv_f32
    conv.restype = ctypes.c_int
    conv.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 8 + [ctypes.c_int] * 3
    mscan = handle.longapps_mamba_scan_f32
    mscan.restype = ctypes.c_int
    mscan.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 14 + [ctypes.c_int] * 2
    norm = handle.longapps_add_rmsnorm_f32
    norm.restype = None
    norm.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_float, ctypes.c_int]
    return handle


def available() -> bool:
    """True when the compiled kernel can be used (built on the first call)."""
    global _LIB, _TRIED
    if os.environ.get("LONGAPPS_CPU_SCAN", "1") == "0":
        return False
    with _LOCK:
        if not _TRIED:
            _TRIED = True
            _LIB = _build()
    return _LIB is not None


def _f32_rows(x: torch.Tensor) -> torch.Tensor:
    """fp32 with unit stride on the last dim (a view when it already is)."""
    x = x.float() if x.dtype != torch.float32 else x
    return x if x.stride(-1) == 1 else x.contiguous()


@torch.no_grad()
def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = True,
                       return_last_state: bool = False, threads: Optional[int] = None):
    """The fused scan on CPU tensors (any float dtype; math in fp32, output in u's dtype). Same arguments as
    ``selective_scan``; with ``return_last_state`` also the final state (b, d, n) fp32."""
    if not available():
        raise RuntimeError(ERROR or "the CPU scan kernel is disabled")
    bsz, L, d = u.shape
    n = A.shape[1]
    if n > 64:
        raise ValueError("the CPU scan kernel supports d_state <= 64")
    uu, dd, BB, CC = _f32_rows(u), _f32_rows(delta), _f32_rows(B), _f32_rows(C)
    zz = _f32_rows(z) if z is not None else uu
    At = A.float().t().contiguous()                                  # (n, d)
    Dv = D.float().contiguous() if D is not None else At
    bias = delta_bias.float().contiguous() if delta_bias is not None else At
    y = torch.empty((bsz, L, d), dtype=torch.float32)
    hlast = torch.empty((bsz, d, n), dtype=torch.float32) if return_last_state else None
    if L:
        rc = _LIB.longapps_scan_f32(
            uu.data_ptr(), dd.data_ptr(), At.data_ptr(), BB.data_ptr(), CC.data_ptr(), Dv.data_ptr(), zz.data_ptr(),
            bias.data_ptr(), y.data_ptr(), hlast.data_ptr() if hlast is not None else None,
            bsz, L, d, n, uu.stride(0), uu.stride(1), dd.stride(0), dd.stride(1), BB.stride(0), BB.stride(1),
            CC.stride(0), CC.stride(1), zz.stride(0), zz.stride(1), y.stride(0), y.stride(1),
            int(bool(delta_softplus)), int(D is not None), int(z is not None), int(delta_bias is not None),
            int(threads or torch.get_num_threads()))
        if rc:
            raise MemoryError("the CPU scan kernel could not allocate its state")
    elif hlast is not None:
        hlast.zero_()
    y = y.to(u.dtype) if u.dtype != torch.float32 else y
    return (y, hlast) if return_last_state else y


@torch.no_grad()
def causal_conv1d_cpu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, silu: bool = True,
                      threads: Optional[int] = None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal depthwise conv (+ SiLU) on CPU tensors (b, L, d) with any strides (fp32 math, output contiguous
    token-major in x's dtype), the compiled kernel; weight (d, K). ``out``: an fp32 (b, L, d) buffer with unit
    channel stride to write into (fp32 input only; returned)."""
    if not available():
        raise RuntimeError(ERROR or "the CPU scan kernel is disabled")
    bsz, L, d = x.shape
    K = weight.shape[1]
    xx = _f32_rows(x)
    wT = weight.float().t().contiguous()
    bb = bias.float().contiguous() if bias is not None else wT
    if out is not None:
        _check_out(out, (bsz, L, d))
    y = out if out is not None else torch.empty((bsz, L, d), dtype=torch.float32)
    if L:
        _LIB.longapps_conv_f32(xx.data_ptr(), wT.data_ptr(), bb.data_ptr(), y.data_ptr(), bsz, L, d, K,
                               xx.stride(0), xx.stride(1), y.stride(0), y.stride(1), int(bool(silu)),
                               int(bias is not None), int(threads or torch.get_num_threads()))
    return y.to(x.dtype) if x.dtype != torch.float32 else y


def _check_out(out: torch.Tensor, shape: tuple) -> None:
    if out.dtype != torch.float32 or tuple(out.shape) != tuple(shape) or out.stride(-1) != 1 or out.device.type != "cpu":
        raise ValueError(f"out: need a CPU fp32 tensor of shape {tuple(shape)} with unit last stride")


def scan_block(d: int, bsz: int, threads: int) -> int:
    """Channels per scan block: 256 (states in L1), smaller when (batch x blocks) would leave threads idle."""
    db = 256
    while db > 32 and bsz * -(-d // db) < threads:
        db //= 2
    return db


@torch.no_grad()
def mamba_scan_cpu(u: torch.Tensor, xdbl: torch.Tensor, dt_weight: torch.Tensor, dt_bias: torch.Tensor,
                   A: torch.Tensor, D: Optional[torch.Tensor], z: torch.Tensor, out: Optional[torch.Tensor] = None,
                   threads: Optional[int] = None, block: Optional[int] = None) -> torch.Tensor:
    """A Mamba mixer's scan with dt_proj folded in (fp32 CPU tensors, inference):
    ``selective_scan(u, xdbl[..., :R] @ dt_weight.T, A, xdbl[..., R:R+n], xdbl[..., R+n:], D, z, dt_bias, True)``
    without materialising dt. u, z: (b, L, d) (any row strides, unit channel stride); xdbl: (b, L, R + 2n), x_proj's
    output; dt_weight (d, R); A (d, n); out: an optional fp32 (b, L, d) buffer."""
    if not available():
        raise RuntimeError(ERROR or "the CPU scan kernel is disabled")
    bsz, L, d = u.shape
    n = A.shape[1]
    R = dt_weight.shape[1]
    if xdbl.shape != (bsz, L, R + 2 * n) or z.shape != u.shape or dt_weight.shape[0] != d:
        raise ValueError(f"shapes: u {tuple(u.shape)}, xdbl {tuple(xdbl.shape)}, dt_weight {tuple(dt_weight.shape)}, "
                         f"A {tuple(A.shape)}, z {tuple(z.shape)}")
    for name, t in (("u", u), ("xdbl", xdbl), ("z", z)):
        if t.dtype != torch.float32 or t.stride(-1) != 1:
            raise ValueError(f"{name}: need fp32 with unit last stride")
    threads = int(threads or torch.get_num_threads())
    db = int(block or scan_block(d, bsz, threads))
    WdtT = dt_weight.float().t().contiguous()                                        # (R, d)
    A2 = (A.float() * 1.4426950408889634).t().contiguous()                          # (n, d), A log2(e)
    bias = dt_bias.float().contiguous()
    Dv = D.float().contiguous() if D is not None else bias
    if out is not None:
        _check_out(out, (bsz, L, d))
    y = out if out is not None else torch.empty((bsz, L, d), dtype=torch.float32)
    if L:
        rc = _LIB.longapps_mamba_scan_f32(
            u.data_ptr(), xdbl.data_ptr(), WdtT.data_ptr(), bias.data_ptr(), A2.data_ptr(), Dv.data_ptr(),
            z.data_ptr(), y.data_ptr(), bsz, L, d, n, R, db, u.stride(0), u.stride(1), xdbl.stride(0),
            xdbl.stride(1), z.stride(0), z.stride(1), y.stride(0), y.stride(1), int(D is not None), threads)
        if rc:
            raise MemoryError("the CPU scan kernel could not allocate its state") if rc == 1 else \
                ValueError(f"block: {db} channels (a multiple of 16, at most 512)")
    return y


@torch.no_grad()
def add_rmsnorm_cpu(r: torch.Tensor, y: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                    out: Optional[torch.Tensor] = None, threads: Optional[int] = None) -> torch.Tensor:
    """``r += y`` IN PLACE (when y is given), then ``weight * r * rsqrt(mean(r**2, -1) + eps)`` (fp32 contiguous
    CPU tensors; into ``out`` when given). Returns the normalised tensor."""
    if not available():
        raise RuntimeError(ERROR or "the CPU scan kernel is disabled")
    C = r.shape[-1]
    for name, t in (("r", r), ("y", y)):
        if t is not None and (t.dtype != torch.float32 or not t.is_contiguous() or t.shape != r.shape):
            raise ValueError(f"{name}: need a contiguous fp32 tensor of r's shape")
    w = weight.float().contiguous()
    if out is not None:
        _check_out(out, tuple(r.shape))
        if not out.is_contiguous():
            raise ValueError("out: need a contiguous tensor")
    h = out if out is not None else torch.empty(r.shape, dtype=torch.float32)
    rows = r.numel() // C if C else 0
    if rows:
        _LIB.longapps_add_rmsnorm_f32(r.data_ptr(), y.data_ptr() if y is not None else None, w.data_ptr(),
                                      h.data_ptr(), rows, C, float(eps), int(threads or torch.get_num_threads()))
    return h


__all__ = ["selective_scan_cpu", "causal_conv1d_cpu", "mamba_scan_cpu", "add_rmsnorm_cpu", "scan_block", "available",
           "SOURCE"]
