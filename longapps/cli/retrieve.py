"""`longapps retrieve` and `longapps retrieve-train`: thin click commands over longapps.pipelines.retriever
and longapps.pipelines.retriever_train."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from longapps.cli.errors import friendly_errors, show_progress as _show_progress
from longapps.cli.ray_option import ray_option
from longapps.resources import LongappsError

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _print_hits(hits: list[Any]) -> None:
    if not hits:
        click.echo("no results")
        return
    for h in hits:
        click.echo(click.style(f"{h.rank:>2}. {h.id}", bold=True) + click.style(f"  [score {h.score:.3f}]", dim=True))
        click.echo("      " + h.preview[:160])


@click.command("retrieve", context_settings=_CTX)
@click.argument("corpus", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("-k", "--top", "k", default=10, show_default=True, type=click.IntRange(1, 100_000),
              help="Number of documents to return.")
@click.option("--model", default=None, type=click.Path(path_type=Path),
              help="Mamba retriever folder (from retrieve-train). Without it: hybrid first stage "
                   "(packaged MiniLM over chunks + BM25).")
@click.option("--queries", type=click.Path(path_type=Path, dir_okay=False),
              help="File of queries (one per line, or JSONL {id, query}); prints JSON lines {id, query, hits}.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {query, encoder, hits}.")
@click.option("--pooling", type=click.Choice(["eos", "mean"]), default=None,
              help="Mamba document vector: state at the appended EOS token or mean over tokens "
                   "(default: what the model was trained with).")
@click.option("--max-tokens", type=click.IntRange(16), default=None,
              help="Document tokens the Mamba encoder reads (default: the model's setting, 8192).")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), default=None,
              help="BM25 share of the score (default: 0 with --model, 0.3 hybrid).")
@click.option("--index-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where to keep the index (default: ~/.cache/longapps/index/retrieve-<corpus>-<hash>).")
@click.option("--reindex", is_flag=True, help="Rebuild the index (cached embeddings are still reused).")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@ray_option
@friendly_errors
def retrieve_command(corpus: Path, query: Optional[str], k: int, model: Optional[Path], queries: Optional[Path],
                     as_json: bool, pooling: Optional[str], max_tokens: Optional[int], lexical_weight: Optional[float],
                     index_dir: Optional[Path], reindex: bool, device: Optional[str], no_progress: bool,
                     ray: Optional[str]) -> None:
    """Find the documents in CORPUS that answer QUERY.

    CORPUS is a folder of text files (one document each, read whole) or a JSONL file of
    {"id", "text"} objects. With --model (a Mamba retriever from `retrieve-train`) each
    document is encoded whole by the Mamba model, cost linear in its length; without one
    the hybrid first stage answers (MiniLM over chunks + BM25), and the command says so.
    The index is cached and updated incrementally: a second run encodes only new documents.

    \b
    Examples:
      longapps retrieve docs/ "how are log files rotated" -k 5
      longapps retrieve docs/ "query" --model runs/mamba-retriever --json
      longapps retrieve corpus.jsonl --queries queries.txt > hits.jsonl
    """
    from longapps.pipelines.retriever import Retriever, RetrieverConfig, read_queries

    if queries is None and (query is None or not query.strip()):
        raise LongappsError("empty query: give QUERY (e.g. \"how are log files rotated\") or --queries FILE")
    qlist = read_queries(queries) if queries is not None else [("1", (query or "").strip())]
    cfg = RetrieverConfig(model=str(model) if model else None, pooling=pooling, max_tokens=max_tokens,
                          lexical_weight=lexical_weight, device=device)
    show = _show_progress(no_progress)
    r = Retriever(corpus, config=cfg, index_dir=index_dir, progress=show, ray=ray)
    summary = r.index(reindex=reindex)
    for w in summary.warnings[:5]:
        click.echo(f"note: {w}", err=True)
    if len(summary.warnings) > 5:
        click.echo(f"note: ... and {len(summary.warnings) - 5} more", err=True)
    desc = r.encoder_description
    if summary.rebuilt:
        click.echo(f"indexed {summary.documents} documents ({summary.new} new, {summary.changed} changed, "
                   f"{summary.removed} removed; {summary.encoded} encoded, {summary.cached} from cache)", err=True)
    if not as_json and queries is None:
        click.echo(f"encoder: {desc}", err=True)
    from longapps.progress import Progress

    with Progress("searching", total=len(qlist), enabled=show and len(qlist) > 1) as bar:
        results = r.search_many([q for _, q in qlist], k, progress=bar.advance)
    if queries is not None:
        for (qid, q), hits in zip(qlist, results):
            click.echo(json.dumps({"id": qid, "query": q, "encoder": desc, "hits": [h.to_dict() for h in hits]}))
    elif as_json:
        click.echo(json.dumps({"query": qlist[0][1], "encoder": desc, "hits": [h.to_dict() for h in results[0]]}))
    else:
        _print_hits(results[0])


@click.command("retrieve-train", context_settings=_CTX)
@click.option("--corpus", required=True, type=click.Path(path_type=Path),
              help="Documents: a folder of text files or JSONL {id, text}.")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the trained retriever (written whole, then renamed into place).")
@click.option("--pairs", type=click.Path(path_type=Path, dir_okay=False),
              help="Labelled pairs, JSONL {query, doc} (doc = a document id of CORPUS): contrastive training "
                   "(InfoNCE, in-batch + BM25 hard negatives). Without: distillation from --teacher with "
                   "pseudo-queries drawn from the documents.")
@click.option("--teacher", default=None, help="Teacher encoder for distillation (default: packaged MiniLM over chunks).")
@click.option("--init", "init", default="small",
              help="Student: a Mamba checkpoint folder / HF id (e.g. state-spaces/mamba-130m-hf), or a fresh "
                   "config: small | tiny (the teacher's tokenizer, its word embeddings as a start).")
@click.option("--pooling", type=click.Choice(["eos", "mean"]), default="eos", show_default=True)
@click.option("--max-tokens", type=click.IntRange(16), default=2048, show_default=True,
              help="Document tokens per training example.")
@click.option("--epochs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=16, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate (default: 1e-3 fresh, 5e-5 pretrained).")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many optimizer steps.")
@click.option("--time-budget", type=float, default=None, help="Stop after this many seconds of training.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@friendly_errors
def retrieve_train_command(corpus: Path, out: Path, pairs: Optional[Path], teacher: Optional[str], init: str,
                           pooling: str, max_tokens: int, epochs: int, batch_size: int, lr: Optional[float],
                           max_steps: Optional[int], time_budget: Optional[float], device: str, seed: int,
                           no_progress: bool) -> None:
    """Train a Mamba retriever on CORPUS and save it to OUT (use it with `retrieve --model OUT`).

    \b
    Two modes:
      --pairs FILE   labelled (query, document) pairs: InfoNCE with in-batch negatives and
                     one BM25-mined hard negative per pair
      (default)      unlabelled corpus: pseudo-queries (titles, first sentences, held-out
                     spans) and distillation from the teacher (MiniLM over chunks): the
                     student matches the teacher's query-document score distribution,
                     plus InfoNCE on the document each pseudo-query came from
    A dev split is held out; training stops early when its nDCG@10 stops improving.

    \b
    Examples:
      longapps retrieve-train --corpus docs/ --out runs/mamba-ret --time-budget 600
      longapps retrieve-train --corpus docs/ --pairs pairs.jsonl --out runs/mamba-ret
    """
    from longapps.pipelines.retriever_train import RetrieverTrainConfig, train_retriever

    cfg = RetrieverTrainConfig(init=init, teacher=teacher, pooling=pooling, max_tokens=max_tokens, epochs=epochs,
                               batch_size=batch_size, lr=lr, max_steps=max_steps, time_budget_s=time_budget,
                               device=device, seed=seed, progress=_show_progress(no_progress))
    report = train_retriever(corpus, out, pairs=pairs, config=cfg)
    click.echo(json.dumps(report))


__all__ = ["retrieve_command", "retrieve_train_command"]
