"""`longapps rank` and `longapps rank-train`: thin click commands over longapps.pipelines.ranking / rank_train."""
from __future__ import annotations

import json
from pathlib import Path

import click

from longapps.cli.errors import friendly_errors, show_progress as _show_progress
from longapps.resources import LongappsError


def _print_ranking(ranked: list, preview_chars: int) -> None:
    if not ranked:
        click.echo("no results")
        return
    width = max(len(r.id) for r in ranked)
    for r in ranked:
        line = click.style(f"{r.rank:>3}. {r.id:<{width}}", bold=True) + click.style(f"  {r.score:8.4f}", dim=True)
        if preview_chars:
            line += "  " + r.preview[:preview_chars]
        click.echo(line)


def _print_stats(stats, err: bool = True) -> None:
    s = stats
    parts = [f"method {s.method}", f"{s.passages} passages", f"{s.chunks} chunks",
             f"first stage {s.first_stage_s:.2f}s"]
    if s.llm_calls:
        parts += [f"LLM: {s.llm_calls} call{'s' if s.llm_calls > 1 else ''}", f"{s.reranked} reranked",
                  f"{s.prompt_tokens} prompt tokens", f"{s.generated_tokens} generated tokens",
                  f"{s.passage_tokens} tokens/passage", f"{s.parsed_ids} ids parsed, {s.repaired_ids} repaired",
                  f"{s.llm_s:.1f}s"]
    parts.append(f"wall {s.wall_s:.2f}s")
    click.echo("stats: " + ", ".join(parts), err=err)


@click.command("rank", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("args", nargs=-1, metavar="[QUERY_FILE] PASSAGES")
@click.option("-q", "--query", "query_text", default=None, help="The query as text (instead of QUERY_FILE).")
@click.option("-k", "--top", "k", default=10, show_default=True, type=click.IntRange(0),
              help="Number of passages to print (0 = all).")
@click.option("--method", type=click.Choice(["hybrid", "dense", "bm25", "llm-full", "llm-window"]),
              default="hybrid", show_default=True,
              help="hybrid/dense/bm25: first stage only; llm-full: the LLM orders the top-N in one prompt; "
                   "llm-window: RankGPT sliding window (20, step 10) over the top-N.")
@click.option("--model", default=None, help="Encoder: HF id or local folder (default: packaged all-MiniLM-L6-v2).")
@click.option("--llm", default=None,
              help="Causal LM for llm-*: HF id, local folder or .gguf (default: packaged SmolLM2-135M-Instruct).")
@click.option("--top-n", "rerank_top", default=100, show_default=True, type=click.IntRange(1),
              help="llm-*: first-stage candidates the LLM reranks.")
@click.option("--window", default=20, show_default=True, type=click.IntRange(2), help="llm-window: window size.")
@click.option("--step", default=10, show_default=True, type=click.IntRange(1), help="llm-window: step.")
@click.option("--passage-tokens", type=click.IntRange(1), default=None,
              help="llm-*: tokens of each passage shown to the LLM (default: fitted to its context).")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), default=None, help="BM25 share in the hybrid score.")
@click.option("--max-bytes", type=click.IntRange(1), default=None,
              help="Read at most this many bytes of each passage file (default 4 MB).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per passage (JSON lines).")
@click.option("--stats", "show_stats", is_flag=True, help="Print cost accounting (tokens, LLM calls, wall time).")
@click.option("--preview", "preview_chars", default=100, show_default=True, type=click.IntRange(0),
              help="Characters of each passage shown.")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped or truncated passage file.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def rank_command(args: tuple[str, ...], query_text: str | None, k: int, method: str, model: str | None,
                 llm: str | None, rerank_top: int, window: int, step: int, passage_tokens: int | None,
                 lexical_weight: float | None, max_bytes: int | None, as_json: bool, show_stats: bool,
                 preview_chars: int, verbose: bool, no_progress: bool) -> None:
    """Rank PASSAGES (a folder of text files, or a JSONL file of {"id", "text"}) for a query.

    The query comes from QUERY_FILE or --query. Long passages are chunked for the encoder and
    fused (first + best chunk) with BM25; --method llm-full then lets an LLM order the top-N in
    a single prompt, each passage cut to fit its context.

    \b
    Examples:
      longapps rank examples/rank/query.txt examples/rank/passages
      longapps rank --query "sort a list in place" docs/ -k 5 --json
      longapps rank query.txt passages.jsonl --method llm-full --top-n 30 --stats
    """
    friendly_errors(_rank)(args, query_text, k, method, model, llm, rerank_top, window, step, passage_tokens,
                     lexical_weight, max_bytes, as_json, show_stats, preview_chars, verbose, no_progress)


def _rank(args, query_text, k, method, model, llm, rerank_top, window, step, passage_tokens, lexical_weight,
          max_bytes, as_json, show_stats, preview_chars, verbose, no_progress) -> None:
    from longapps.pipelines.ranking import DEFAULT_READ_BYTES, Ranker, RankerConfig, load_passages, read_query

    if query_text is not None:
        if len(args) != 1:
            raise LongappsError("with --query, give exactly one PASSAGES argument (a folder or a JSONL file)")
        query = read_query(query_text)
        source = args[0]
    else:
        if len(args) != 2:
            raise LongappsError("usage: longapps rank QUERY_FILE PASSAGES  (or: longapps rank --query TEXT PASSAGES)")
        if not Path(args[0]).is_file():
            raise LongappsError(f"query file not found: {args[0]} (use --query to pass the query as text)")
        query = read_query(query_file=args[0])
        source = args[1]
    show_progress = _show_progress(no_progress)
    passages, warnings = load_passages(source, max_bytes=max_bytes or DEFAULT_READ_BYTES, progress=show_progress)
    if warnings:
        if verbose or len(warnings) <= 5:
            for w in warnings:
                click.echo(f"warning: {w}", err=True)
        else:
            for w in warnings[:3]:
                click.echo(f"warning: {w}", err=True)
            click.echo(f"warning: ... and {len(warnings) - 3} more (-v lists them)", err=True)
    cfg = RankerConfig(method=method, model=model, llm=llm, rerank_top=rerank_top, window=window, step=step,
                       passage_tokens=passage_tokens)
    if lexical_weight is not None:
        cfg.lexical_weight = lexical_weight
    ranker = Ranker(cfg, progress=show_progress)
    ranked = ranker.rank(query, passages, k or None)
    for note in ranker.stats.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        for r in ranked:
            click.echo(json.dumps(r.to_dict()))
    else:
        _print_ranking(ranked, preview_chars)
    if show_stats:
        if as_json:
            click.echo(json.dumps({"stats": ranker.stats.to_dict()}), err=True)
        else:
            _print_stats(ranker.stats)


@click.command("rank-train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the fine-tuned model (safetensors + tokenizer).")
@click.option("--llm", default=None, help="Model to fine-tune: HF id, local folder or .gguf (default: SmolLM2-135M).")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--alpha", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Importance weight of early ids (0 = plain language-modelling loss).")
@click.option("--schedule", type=click.Choice(["inverse", "log"]), default="log", show_default=True,
              help="How the id weight decays with output position i: 1+a/(i+1) or 1+a/log2(i+2).")
@click.option("--max-passages", default=100, show_default=True, type=click.IntRange(2),
              help="Candidates per training list (the first ones in the file's order).")
@click.option("--passage-tokens", type=click.IntRange(1), default=None,
              help="Tokens per passage in the training prompts (default: fitted to the context).")
@click.option("--context", type=click.IntRange(64), default=None, help="Context to plan prompts for.")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def rank_train_command(data: Path, out_dir: Path, llm: str | None, epochs: int, lr: float, alpha: float,
                       schedule: str, max_passages: int, passage_tokens: int | None, context: int | None,
                       grad_accum: int, seed: int, no_progress: bool) -> None:
    """Fine-tune a causal LM for full-list ranking on DATA (JSONL).

    Each line: {"query": ..., "passages": [{"id", "text"}, ...], "qrels": {id: grade}, "teacher": [ids]}.
    The target is the complete permutation: judged passages by grade, then the rest in teacher
    order (default: the order of "passages"). The loss is importance-aware: tokens of the id at
    output position i weigh more the earlier i is. Use the result with
    `longapps rank --method llm-full --llm OUT`.
    """
    friendly_errors(_train)(data, out_dir, llm, epochs, lr, alpha, schedule, max_passages, passage_tokens, context,
                      grad_accum, seed, no_progress)


def _train(data, out_dir, llm, epochs, lr, alpha, schedule, max_passages, passage_tokens, context, grad_accum, seed,
           no_progress) -> None:
    from longapps.pipelines.rank_train import TrainConfig, load_examples, train

    examples = load_examples(data)
    cfg = TrainConfig(llm=llm, epochs=epochs, lr=lr, alpha=alpha, schedule=schedule, max_passages=max_passages,
                      passage_tokens=passage_tokens, context=context, grad_accum=grad_accum, seed=seed)
    result = train(examples, out_dir, cfg, progress=_show_progress(no_progress))
    click.echo(f"trained on {result.examples} lists x {epochs} epoch(s), {result.steps} steps: "
               f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}; saved to {out_dir}")
