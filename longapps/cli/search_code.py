"""`longapps search-code`: a thin click command over longapps.pipelines.code_search."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from longapps.cli.errors import friendly_errors, show_progress as _show_progress
from longapps.cli.ray_option import ray_option
from longapps.resources import LongappsError


# -- search-code ----------------------------------------------------------------------------------

def _print_hits(hits: list[Any], preview_lines: int) -> None:
    if not hits:
        click.echo("no results")
        return
    for h in hits:
        click.echo(click.style(f"{h.rank:>2}. {h.location}", bold=True) + f"  {h.name}  "
                   + click.style(f"[{h.kind}, score {h.score:.3f}]", dim=True))
        for line in h.preview.splitlines()[:preview_lines]:
            click.echo("      " + line.rstrip()[:160])
        click.echo()


@click.command("search-code", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("repo", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("-k", "--top", "k", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Number of hits to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per hit (JSON lines).")
@click.option("--queries", type=click.Path(path_type=Path, dir_okay=False),
              help="File with one query per line; prints JSON lines {query, hits} (one model load).")
@click.option("--model", default=None, help="Encoder: HF id or local folder (default: packaged all-MiniLM-L6-v2).")
@click.option("--reindex", is_flag=True, help="Re-split every file (cached embeddings are still reused).")
@click.option("--index-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where to keep the index (default: ~/.cache/longapps/index/<repo>-<hash>).")
@click.option("--pooling", type=click.Choice(["mean", "max", "attention", "first"]), default=None,
              help="How block vectors become one vector per function (default: chosen by benchmark).")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), default=None,
              help="Share of BM25 in the hybrid score (0 = dense only).")
@click.option("--max-file-bytes", type=click.IntRange(1), default=None, help="Skip files larger than this.")
@click.option("--preview", "preview_lines", default=6, show_default=True, type=click.IntRange(0),
              help="Lines of code shown per hit.")
@click.option("-v", "--verbose", is_flag=True, help="Print the indexing summary and list skipped files.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@ray_option
@friendly_errors
def search_code(repo: Path, query: str | None, k: int, as_json: bool, queries: Path | None, model: str | None,
                reindex: bool, index_dir: Path | None, pooling: str | None, lexical_weight: float | None,
                max_file_bytes: int | None, preview_lines: int, verbose: bool, no_progress: bool,
                ray: str | None) -> None:
    """Search the code in REPO for QUERY, in plain language.

    Code is split along its syntax tree (functions, methods, classes; long ones into blocks),
    each block is encoded, block vectors are pooled into one vector per function, and the
    dense score is fused with BM25. The index is kept in the cache and updated incrementally:
    a second run re-encodes only what changed.

    \b
    Examples:
      longapps search-code . "read a config file and merge defaults"
      longapps search-code ~/src/project "retry with backoff" -k 5 --json
      longapps search-code . --queries queries.txt > hits.jsonl
      longapps search-code ~/src/monorepo "query" --ray            # encode on a Ray cluster
    """
    from longapps.pipelines.code_search import CodeSearch, CodeSearchConfig

    if queries is None and (query is None or not query.strip()):
        raise LongappsError("empty query: give QUERY (e.g. \"parse a date string\") or --queries FILE")
    query_list: list[str] = []
    if queries is not None:
        try:
            query_list = [q.strip() for q in queries.read_text(encoding="utf-8", errors="replace").splitlines()
                          if q.strip()]
        except OSError as err:
            raise LongappsError(f"cannot read --queries file {queries}: {err.strerror}") from err
        if not query_list:
            raise LongappsError(f"no queries in {queries}")
    cfg = CodeSearchConfig(model=model)
    if pooling:
        cfg.pooling = pooling
    if lexical_weight is not None:
        cfg.lexical_weight = lexical_weight
    if max_file_bytes:
        cfg.max_file_bytes = max_file_bytes
    show_progress = _show_progress(no_progress)
    cs = CodeSearch(repo, config=cfg, index_dir=index_dir, progress=show_progress, ray=ray)
    summary = cs.index(reindex=reindex)
    _report_summary(summary, verbose)
    if summary.units == 0:
        raise LongappsError(f"nothing to search in {repo}: no source files found"
                            + (f" ({_skips(summary.skipped)} skipped; -v lists them)" if summary.skipped else ""))
    if query_list:
        from longapps.progress import Progress

        with Progress("searching", total=len(query_list), enabled=show_progress) as bar:
            results = cs.search_many(query_list, k, progress=bar.advance)
        for q, hits in zip(query_list, results):
            click.echo(json.dumps({"query": q, "hits": [h.to_dict() for h in hits]}))
        return
    hits = cs.search(query or "", k)
    if as_json:
        for h in hits:
            click.echo(json.dumps(h.to_dict()))
    else:
        _print_hits(hits, preview_lines)


def _skips(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda x: -x[1]))


def _report_summary(s: Any, verbose: bool) -> None:
    if not (verbose or s.rebuilt):
        return
    line = (f"indexed {s.files} files ({s.parsed} parsed, {s.reused} unchanged"
            + (f", {s.removed} removed" if s.removed else "") + f"): {s.units} units, {s.blocks} blocks"
            + (f", {s.encoded} encoded, {s.cached} from cache" if s.rebuilt else ""))
    if s.skipped:
        line += f"; skipped {_skips(s.skipped)}"
    if s.notes.get("non-utf8"):
        line += f"; {s.notes['non-utf8']} non-UTF-8 files read with replacement characters"
    click.echo(line, err=True)
    if verbose:
        for rel, reason in s.skipped_files:
            click.echo(f"  skipped {rel}: {reason}", err=True)
