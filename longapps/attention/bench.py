"""Attention benchmark: our kernels vs SDPA (dense / masked) and compiled FlexAttention, same run.

Used by ``benchmarks/attention.py`` and ``longapps bench attention``. Useful FLOPs are
``4 * D * H * B * (number of unmasked (q, k) pairs)``; for linear attention the table reports
time per token instead (its FLOPs are not comparable).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .patterns import Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Row:
    scenario: str
    n: int
    method: str
    ms: Optional[float]
    tflops: Optional[float]
    peak_mem_mb: Optional[float]
    ns_per_token: Optional[float]
    note: str = ""
    ratios: Dict[str, float] = field(default_factory=dict)
    ms_eager: Optional[float] = None


def pairs(pattern: Pattern, n: int) -> int:
    """Number of unmasked (query, key) pairs of the pattern at length n (no padding)."""
    if isinstance(pattern, Full):
        return n * n
    if isinstance(pattern, (Causal, Linear)):
        return n * (n + 1) // 2
    if isinstance(pattern, SlidingWindow):
        w = min(pattern.window, n - 1)
        band = n * (w + 1) - w * (w + 1) // 2  # causal band (diagonal included)
        return band if pattern.causal else 2 * band - n
    if isinstance(pattern, SinksWindow):
        w, s = min(pattern.window, n - 1), min(pattern.sinks, n)
        band = n * (w + 1) - w * (w + 1) // 2
        extra = 0  # sink keys j < s outside the band: query i sees them when i - j > w
        for j in range(s):
            extra += max(0, n - (j + w + 1))
        return band + extra
    if isinstance(pattern, WindowGlobal):
        gi = pattern.global_idx
        if gi.dim() != 1 or pattern.causal:
            raise ValueError("pairs() counts only 1-D, non-causal WindowGlobal analytically")
        w = min(pattern.window, n - 1)
        total = 2 * (n * (w + 1) - w * (w + 1) // 2) - n
        g = sorted(set(int(x) for x in gi.tolist()))
        # rows of global queries: all n keys (replace their band count)
        for i in g:
            total += n - (min(n - 1, i + w) - max(0, i - w) + 1)
        # global key columns for non-global rows outside the band
        for j in g:
            lo, hi = max(0, j - w), min(n - 1, j + w)
            outside = n - (hi - lo + 1)
            outside -= sum(1 for i in g if (i < lo or i > hi))  # those rows already counted
            total += outside
        return total
    raise ValueError(f"pairs() does not handle {type(pattern).__name__}")


def _time_ms(fn: Callable[[], object], warmup: int = 3, iters: int = 20, budget_s: float = 2.0) -> float:
    """Median milliseconds per call. CUDA: the calls are queued back to back (no host sync between them,
    as triton.testing.do_bench), each between its own pair of events, with the L2 cache flushed before
    each (outside the events): the GPU time of a call, without the host's launch latency. CPU: wall clock."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        flush = torch.empty(256 * 2**20 // 4, dtype=torch.int32, device="cuda")
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        n = max(3, min(iters, int(budget_s / max(time.perf_counter() - t0, 1e-6))))
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for s, e in ev:
            flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in ev]
        del flush
    else:
        t_end = time.perf_counter() + budget_s
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            if len(times) >= 3 and time.perf_counter() > t_end:
                break
    times.sort()
    return times[len(times) // 2]


def graph_of(fn: Callable[[], object]) -> Optional[Callable[[], object]]:
    """Capture ``fn`` in a CUDA graph (after warm-up); returns its replay, or None if capture fails."""
    if not torch.cuda.is_available():
        return None
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        g.replay()
        torch.cuda.synchronize()
        return g.replay
    except Exception:
        torch.cuda.synchronize()
        return None


def measure(fn: Callable[[], object], **kw) -> tuple[float, Optional[float]]:
    """(median ms, peak extra memory MB during one call on CUDA)."""
    peak = None
    if torch.cuda.is_available():
        fn()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return _time_ms(fn, **kw), peak


def scenarios(window: int = 256, sink_window: int = 512, sinks: int = 4) -> Dict[str, Pattern]:
    """The benchmark's patterns: Longformer (window + 1 global), sliding window, StreamingLLM, linear."""
    return {
        f"window{window}+global1": WindowGlobal(window, [0]),
        f"window{window}": SlidingWindow(window),
        f"sinks{sinks}+window{sink_window}": SinksWindow(sinks, sink_window),
        "linear": Linear(),
    }


def _peers(name: str, pattern: Pattern, q, k, v, n: int, with_flex: bool, mask_max_n: int) -> Dict[str, Callable]:
    import torch.nn.functional as F

    from .flex import flex_attention_call, flex_block_mask
    from .reference import dense_mask

    out: Dict[str, Callable] = {}
    causal = not isinstance(pattern, WindowGlobal) or pattern.causal
    out["sdpa_dense"] = (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)) if causal else \
        (lambda: F.scaled_dot_product_attention(q, k, v))
    if isinstance(pattern, Linear):
        return out
    if n <= mask_max_n:
        m = dense_mask(pattern, n, n, q.device)
        out["sdpa_mask"] = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    if with_flex and q.is_cuda:
        bm = flex_block_mask(pattern, q.shape[0], q.shape[1], n, n, q.device)
        out["flex"] = lambda: flex_attention_call(q, k, v, bm)
    return out


def _ours(pattern: Pattern, q, k, v) -> Callable:
    from ..kernels.lightning import lightning_forward
    from ..kernels.window_global import prepare_global_idx, window_global_forward
    if isinstance(pattern, WindowGlobal):
        g = prepare_global_idx(pattern.global_idx, q.device)
        return lambda: window_global_forward(q, k, v, pattern.window, g, pattern.causal, gidx_prepared=True)[0]
    if isinstance(pattern, SinksWindow):
        return lambda: window_global_forward(q, k, v, pattern.window, None, True, sinks=pattern.sinks)[0]
    if isinstance(pattern, SlidingWindow):
        return lambda: window_global_forward(q, k, v, pattern.window, None, pattern.causal)[0]
    if isinstance(pattern, Linear):
        return lambda: lightning_forward(q, k, v, pattern.scale)
    raise ValueError(type(pattern).__name__)


def _ours_api(pattern: Pattern, q, k, v) -> Callable:
    """The public call, as a user makes it (``longapps.attention.attention``)."""
    from .dispatch import attention
    return lambda: attention(q, k, v, pattern)


def run_attention_bench(ns: Sequence[int] = (4096, 16384, 65536), dtype: str = "bf16", heads: int = 16,
                        dim: int = 64, batch: int = 1, with_flex: bool = True, mask_max_n: int = 16384,
                        dense_max_n: int = 65536, window: int = 256, sink_window: int = 512, sinks: int = 4,
                        linear_ns: Optional[Sequence[int]] = None, only: Optional[Sequence[str]] = None,
                        use_graphs: bool = True,
                        log: Callable[[str], None] = print) -> List[Row]:
    """Time ours and the peers at each length; returns rows (ratios = peer ms / our ms)."""
    if not torch.cuda.is_available():
        raise RuntimeError("the attention benchmark needs a CUDA GPU")
    dt = DTYPES[dtype]
    rows: List[Row] = []
    for name, pat in scenarios(window, sink_window, sinks).items():
        if only and not any(o in name for o in only):
            continue
        lens = list(linear_ns) if (isinstance(pat, Linear) and linear_ns) else list(ns)
        for n in lens:
            torch.manual_seed(0)
            q, k, v = [torch.randn(batch, heads, n, dim, device="cuda", dtype=dt) for _ in range(3)]
            if isinstance(pat, Linear):
                q, k, v = q * 0.1, k * 0.1, v
            useful = None if isinstance(pat, Linear) else 4.0 * dim * heads * batch * pairs(pat, n)
            fns = {"ours": _ours(pat, q, k, v), "ours_api": _ours_api(pat, q, k, v)}
            try:
                fns.update(_peers(name, pat, q, k, v, n, with_flex, mask_max_n))
            except Exception as e:  # a peer that cannot be built is reported, not fatal
                log(f"  peer setup failed for {name} n={n}: {e!r}"[:300])
            if n > dense_max_n:
                fns.pop("sdpa_dense", None)
            res: Dict[str, Row] = {}
            for meth, fn in fns.items():
                try:
                    ms_e, mem = measure(fn)
                    rep = graph_of(fn) if use_graphs else None
                    ms = measure(rep)[0] if rep is not None else ms_e
                    tf = useful / (ms * 1e-3) / 1e12 if useful else None
                    res[meth] = Row(name, n, meth, ms, tf, mem, ms * 1e6 / (n * batch),
                                    note="" if rep is not None else "eager (no graph)", ms_eager=ms_e)
                    del rep
                except Exception as e:
                    res[meth] = Row(name, n, meth, None, None, None, None, note=repr(e)[:200])
                    torch.cuda.empty_cache()
                r = res[meth]
                log(f"  {name:24s} n={n:6d} {meth:10s} " + (f"{r.ms:9.3f} ms (eager {r.ms_eager:.3f})" if r.ms else
                                                            f"failed {r.note}") +
                    (f" {r.tflops:7.1f} TFLOP/s" if r.tflops else "") + (f" [{r.note}]" if r.note and r.ms else ""))
            ours = res.get("ours")
            if ours and ours.ms:
                for meth, r in res.items():
                    if meth != "ours" and not meth.startswith("ours_") and r.ms:
                        ours.ratios[meth] = r.ms / ours.ms
                api = res.get("ours_api")
                if api and api.ms_eager:  # the public call as a user makes it (eager) over the kernel (graph)
                    api.ratios["api_eager_over_kernel"] = api.ms_eager / ours.ms
                    for meth, r in res.items():
                        if not meth.startswith("ours") and r.ms:
                            api.ratios[meth] = r.ms / api.ms_eager
                    log(f"  {name:24s} n={n:6d} attention() eager / kernel graph = {api.ms_eager / ours.ms:.3f}x")
            rows.extend(res.values())
            del q, k, v
            torch.cuda.empty_cache()
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """Markdown table."""
    lines = ["| scenario | N | method | ms (graph) | ms (eager) | useful TFLOP/s | ns/token | peak MB | speedup of ours vs this |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    ours = {(r.scenario, r.n): r for r in rows if r.method == "ours"}
    for r in rows:
        o = ours.get((r.scenario, r.n))
        sp = ""
        if r.method == "ours_api" and o and o.ms and r.ms_eager:
            sp = f"api eager / kernel {r.ms_eager / o.ms:.2f}x"
        elif r.method != "ours" and o and o.ms and r.ms:
            sp = f"{r.ms / o.ms:.2f}x"
        lines.append(f"| {r.scenario} | {r.n} | {r.method} | " + (f"{r.ms:.3f}" if r.ms else "fail") +
                     (" (eager)" if r.note.startswith("eager") else "") + " | " +
                     (f"{r.ms_eager:.3f}" if r.ms_eager else "-") + " | " +
                     (f"{r.tflops:.1f}" if r.tflops else "-") + " | " +
                     (f"{r.ns_per_token:.2f}" if r.ns_per_token else "-") + " | " +
                     (f"{r.peak_mem_mb:.0f}" if r.peak_mem_mb is not None else "-") + f" | {sp} |")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[Row]) -> List[dict]:
    return [asdict(r) for r in rows]


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


__all__ = ["run_attention_bench", "format_table", "rows_to_json", "pairs", "measure", "graph_of", "scenarios", "Row",
           "device_name"]
