"""`longapps chat`: endless dialogue with bounded memory, interactive or replayed from JSON lines."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from longapps.cli.errors import friendly_errors
from longapps.models.memory_defaults import DEFAULT_CACHE_SIZE, DEFAULT_DECAY, DEFAULT_RECENT, DEFAULT_SINKS, POLICIES
from longapps.resources import LongappsError

HELP = "commands: /stats (cache fill, kept key tokens, speed), /reset (new conversation), /quit; Ctrl-C stops a reply"


def _stats_line(chat: Any) -> str:
    s = chat.stats()
    c = s.cache
    parts = [f"turns {s.turns}", f"cache {c.tokens}/{c.capacity} ({c.policy})"]
    if c.policy != "full":
        parts.append(f"sinks {c.sinks}, key tokens {c.key_tokens}, recent {c.recent}")
    parts += [f"seen {c.seen}, evicted {c.evicted} in {c.evictions} evictions",
              f"last turn: {s.prompt_tokens} prompt tokens at {s.prefill_tok_s:.0f} tok/s, "
              f"{s.reply_tokens} reply tokens at {s.decode_tok_s:.1f} tok/s"]
    return "stats: " + "; ".join(parts)


def _interactive(chat: Any) -> None:
    tty = sys.stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:  # pragma: no cover
            pass
        click.echo(f"longapps chat ({chat.lm.name}, --memory {chat.cache.config.memory}). {HELP}", err=True)
    while True:
        try:
            line = input("you> " if tty else "")
        except EOFError:
            if tty:
                click.echo("", err=True)
            return
        cmd = line.strip()
        if cmd in ("/quit", "/exit"):
            return
        if cmd == "/help":
            click.echo(HELP, err=True)
            continue
        if cmd == "/stats":
            click.echo(_stats_line(chat), err=True)
            continue
        if cmd == "/reset":
            chat.reset()
            click.echo("(conversation reset: the cache is empty)", err=True)
            continue
        if cmd.startswith("/"):
            click.echo(f"unknown command {cmd.split()[0]} ({HELP})", err=True)
            continue
        if not cmd:
            click.echo("empty turn: type a message (/help lists the commands)", err=True)
            continue
        click.echo("bot> ", nl=False)
        try:
            reply = chat.say(line, on_token=lambda piece: click.echo(piece, nl=False))
        except KeyboardInterrupt:  # before the reply began: the turn was not taken
            click.echo("\n(interrupted: that turn was dropped; type again or /quit)", err=True)
            continue
        except LongappsError as err:  # e.g. --memory full ran out of context: /reset helps
            click.echo(f"\nerror: {err}", err=True)
            continue
        click.echo("")
        if reply.interrupted:
            click.echo("(reply interrupted; the conversation goes on)", err=True)


def _replay(chat: Any, turns: list, as_json: bool) -> None:
    for i, t in enumerate(turns, 1):
        try:
            reply = chat.choose(t.user, list(t.choices)) if t.choices else chat.say(t.user)
        except LongappsError as err:
            raise LongappsError(f"turn {i} (line {t.line}): {err}") from None
        if as_json:
            click.echo(json.dumps(reply.to_dict(i)))
        else:
            click.echo(f"you> {t.user}")
            click.echo(f"bot> {reply.text}" + (f"   [choice {reply.choice}]" if reply.choice is not None else ""))


@click.command("chat", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--llm", default=None, help="Causal LM: HF id, local folder or .gguf (default: packaged SmolLM2-135M).")
@click.option("--memory", type=click.Choice(POLICIES), default="sirllm", show_default=True,
              help="sirllm: sinks + entropy-selected key tokens + recent; streaming: sinks + recent; "
                   "full: keep everything until the model's context is full.")
@click.option("--cache-size", type=click.IntRange(1), default=DEFAULT_CACHE_SIZE, show_default=True,
              help="KV cache size in tokens (sirllm/streaming).")
@click.option("--sinks", type=click.IntRange(0), default=DEFAULT_SINKS, show_default=True,
              help="First tokens always kept (attention sinks).")
@click.option("--recent", type=click.IntRange(0), default=DEFAULT_RECENT,
              help="sirllm: most recent tokens always kept; the rest of the cache goes to key tokens "
                   "[default: a quarter of --cache-size, tuned on the dev tasks; 0 = SirLLM's setting].")
@click.option("--decay", type=click.FloatRange(0, 1), default=DEFAULT_DECAY, show_default=True,
              help="sirllm: key-token scores are multiplied by this at every turn.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=128, show_default=True,
              help="Longest reply, in tokens.")
@click.option("--system", default=None, help="System prompt (when the chat template has a system role).")
@click.option("--replay", "replay", default=None, metavar="TURNS.jsonl",
              help="Scripted dialogue: one JSON object per line, {\"user\": text} or "
                   "{\"user\": text, \"choices\": [...]} ('-' reads stdin).")
@click.option("--json", "as_json", is_flag=True, help="--replay: print one JSON object per turn.")
@click.option("--stats", "show_stats", is_flag=True, help="--replay: print the final /stats line on stderr.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
def chat_command(llm: str | None, memory: str, cache_size: int, sinks: int, recent: int, decay: float,
                 max_new_tokens: int, system: str | None, replay: str | None, as_json: bool, show_stats: bool,
                 device: str | None) -> None:
    """Chat for thousands of turns with a KV cache of fixed size (SirLLM).

    The cache keeps the first --sinks tokens, the --recent latest ones and, with --memory sirllm, the
    tokens the model found most surprising (token entropy, decayed by --decay each turn), so facts said
    long ago survive. Replies stream token by token; /stats shows the cache, /reset starts over, Ctrl-C
    stops a reply.

    \b
    Examples:
      longapps chat
      longapps chat --memory streaming --cache-size 512
      longapps chat --replay examples/chat/recall.jsonl --json
    In replay files a turn with "choices" makes the model pick the most likely choice
    (multiple choice by log-likelihood); the output has "choice" (0-based) for those turns.
    """
    friendly_errors(_chat)(llm, memory, cache_size, sinks, recent, decay, max_new_tokens, system, replay, as_json,
                           show_stats, device)


def _chat(llm, memory, cache_size, sinks, recent, decay, max_new_tokens, system, replay, as_json, show_stats,
          device) -> None:
    from longapps.adapters.turns import read_turns
    from longapps.models.bounded_cache import MemoryConfig
    from longapps.pipelines.dialogue import ChatConfig, StreamingChat

    if as_json and not replay:
        raise LongappsError("--json needs --replay TURNS.jsonl (interactive chat prints text)")
    cfg = ChatConfig(memory=memory, cache_size=cache_size, sinks=sinks, recent=recent, decay=decay,
                     max_new_tokens=max_new_tokens, system=system, device=device)
    MemoryConfig(memory, cache_size, sinks, recent, decay).validate()  # bad options fail before loading
    turns = read_turns(replay) if replay else None  # a malformed file fails before loading the model
    chat = StreamingChat(llm, config=cfg)
    for note in chat.notes:
        click.echo(f"note: {note}", err=True)
    if turns is None:
        _interactive(chat)
    else:
        _replay(chat, turns, as_json)
        if show_stats:
            click.echo(json.dumps({"stats": chat.stats().to_dict()}) if as_json else _stats_line(chat), err=True)
