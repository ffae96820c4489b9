"""`longapps` command line: a click group whose subcommands live one per module in this package.

Subcommands are imported only when they run (or for --help), so `longapps --help` stays fast and one
pipeline's optional dependency never breaks another command. To add a command, add one line to
``COMMANDS``: name -> "module:attribute" (a click command or group)."""
from __future__ import annotations

import importlib
from typing import Any

import click

from longapps.cli.errors import friendly_errors, quiet_libraries

COMMANDS: dict[str, str] = {
    "search-code": "longapps.cli.search_code:search_code",
    "rank": "longapps.cli.rank:rank_command",
    "rank-train": "longapps.cli.rank:rank_train_command",
    "bench": "longapps.cli.bench:bench",
    "retrieve": "longapps.cli.retrieve:retrieve_command",
    "retrieve-train": "longapps.cli.retrieve:retrieve_train_command",
    "ner": "longapps.cli.ner:ner",
    "chat": "longapps.cli.chat:chat_command",
    "video-index": "longapps.cli.video:video_index",
    "video-qa": "longapps.cli.video:video_qa",
    "match": "longapps.cli.match:match_command",
    "match-train": "longapps.cli.match:match_train_command",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="longapps")
def main() -> None:
    """longapps: make inputs too long for an ordinary transformer usable.

    Every pipeline works offline with packaged default models; pass --model to use any
    Hugging Face id or local folder instead.
    """
    quiet_libraries()


__all__ = ["main", "friendly_errors", "COMMANDS"]
