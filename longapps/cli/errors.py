"""One place for how every command fails: one line on stderr, a non-zero exit, never a traceback
(``LONGAPPS_DEBUG=1`` shows one)."""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import click

from longapps.resources import LongappsError


def quiet_libraries() -> None:
    """Silence the progress bars and warnings of transformers / the hub client."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by transformers at import too
    if "transformers" not in sys.modules:
        return  # the variables above are enough; importing transformers here would cost ~1 s per command
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one line on stderr and a non-zero exit.

    ``LongappsError`` -> exit 2 (bad input / missing model), ``KeyboardInterrupt`` -> 130, a closed pipe -> 141
    quietly, anything else -> ``error: Type: first line`` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LongappsError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `longapps ... | head`: the reader is gone, stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
            sys.exit(141)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.Abort):
            raise
        except MemoryError:
            click.echo("error: out of memory", err=True)
            sys.exit(1)
        except Exception as err:  # noqa: BLE001 - the last line of defence
            if os.environ.get("LONGAPPS_DEBUG"):
                raise
            msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
            click.echo(f"error: {type(err).__name__}: {msg} (set LONGAPPS_DEBUG=1 for details)", err=True)
            sys.exit(1)

    return wrapper


def show_progress(no_progress: bool) -> bool:
    """Progress bars only on an interactive stderr and unless --no-progress."""
    return not no_progress and sys.stderr.isatty()


__all__ = ["friendly_errors", "quiet_libraries", "show_progress", "LongappsError"]
