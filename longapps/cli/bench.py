"""``longapps bench attention``: our attention kernels vs SDPA / FlexAttention on this machine's GPU."""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import click


def too_long(ns: Sequence[int], heads: int, dim: int, free_bytes: int) -> Optional[str]:
    """Error text when the longest length's q, k, v and output (16-bit) would not fit in ``free_bytes``
    (with room for the peers' work), else None."""
    n = max(ns)
    need = 4 * heads * n * dim * 2 * 2
    if need > free_bytes:
        return (f"--n {n} needs about {need / 2**30:.1f} GiB of GPU memory, {free_bytes / 2**30:.1f} GiB free: "
                "use a shorter --n or fewer --heads")
    return None


@click.command("attention")
@click.option("--n", "ns", multiple=True, type=click.IntRange(min=16), default=(4096, 16384, 65536), show_default=True,
              help="Sequence lengths (repeat the option: --n 4096 --n 16384).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16"]), default="bf16", show_default=True)
@click.option("--heads", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--dim", type=click.Choice(["16", "32", "64", "128"]), default="64", show_default=True,
              help="Head dimension (the kernels' tile sizes).")
@click.option("--window", type=click.IntRange(min=1), default=256, show_default=True, help="One-sided window of the Longformer pattern.")
@click.option("--no-flex", is_flag=True, help="Skip FlexAttention (its compile takes a while).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the rows as JSON.")
def attention_command(ns: Sequence[int], dtype: str, heads: int, dim: int, window: int, no_flex: bool,
                      json_path: Optional[str]) -> None:
    """Benchmark window+global, sliding window, sinks+window and linear attention against SDPA and FlexAttention.

    Rows: "ours" = the kernel (CUDA-graph time), "ours_api" = the public attention() call as a user makes it
    (its eager time over the kernel's is shown, so a regression of the call path shows)."""
    import torch

    dim = int(dim)
    if json_path and not os.path.isdir(os.path.dirname(os.path.abspath(json_path))):
        raise click.ClickException(f"--json: folder {os.path.dirname(os.path.abspath(json_path))} does not exist")
    if not torch.cuda.is_available():
        raise click.ClickException("no CUDA GPU found: the attention benchmark needs one")
    try:
        import triton  # noqa: F401
    except Exception:
        raise click.ClickException("triton is not installed (pip install 'longapps[gpu]')") from None
    from longapps.attention.bench import device_name, format_table, rows_to_json, run_attention_bench

    err = too_long(ns, heads, dim, torch.cuda.mem_get_info()[0])
    if err:
        raise click.ClickException(err)

    ns = sorted(set(ns))
    click.echo(f"device: {device_name()}, {dtype}, H={heads}, D={dim}")
    rows = run_attention_bench(ns, dtype, heads, dim, with_flex=not no_flex, window=window, linear_ns=ns,
                               log=lambda s: click.echo(s, err=True))
    click.echo(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": device_name(), "rows": rows_to_json(rows)}, f, indent=1)


@click.group("bench", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def bench() -> None:
    """Benchmarks you can run on your own hardware."""


bench.add_command(attention_command, "attention")

__all__ = ["attention_command", "bench"]
