"""`--ray [ADDRESS]`: the one option every indexing command adds to encode on a Ray cluster."""
from __future__ import annotations

from typing import Any, Callable

import click

RAY_HELP = ("Encode new blocks on a Ray cluster: --ray alone uses $RAY_ADDRESS, else a cluster started on this "
            "machine with `ray start`, else a new local one; --ray=HOST:PORT (or ray://HOST:PORT, or 'local') "
            "picks one. Vectors land in the same cache and index. Needs `pip install longapps[ray]`.")


def _check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in ("", "auto", "local") or ":" in value:
        return value
    raise click.BadParameter(f"'{value}' is not a Ray address (HOST:PORT, ray://HOST:PORT, auto or local); "
                             "write --ray=ADDRESS, or put --ray after the arguments", ctx=ctx, param=param)


def ray_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--ray [ADDRESS]` (parameter `ray`): None = off, "" = default address, else the address."""
    return click.option("--ray", "ray", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                        callback=_check, help=RAY_HELP)(fn)
