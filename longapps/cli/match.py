"""`longapps match` and `longapps match-train`: thin click commands over longapps.pipelines.doc_match /
match_train."""
from __future__ import annotations

import json
from pathlib import Path

import click

from longapps.cli.errors import friendly_errors, show_progress
from longapps.cli.ray_option import ray_option
from longapps.resources import LongappsError

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _matcher(model: str | None, block_tokens: int | None, max_blocks: int | None, lexical_weight: float | None,
             progress: bool, ray: str | None = None):
    from longapps.pipelines.doc_match import Matcher, MatchConfig

    cfg = MatchConfig(model=model, block_tokens=block_tokens, max_blocks=max_blocks)
    if lexical_weight is not None:
        cfg.lexical_weight = lexical_weight
    return Matcher(cfg, progress=progress, ray=ray)


def _note_dropped(name: str, emb, matcher) -> None:
    s = matcher.smith
    if emb.dropped:
        click.echo(f"note: {name}: longer than --max-blocks {s.max_blocks} x {s.block_tokens} tokens; "
                   f"the blocks beyond were dropped", err=True)


@click.command("match", context_settings=CTX)
@click.argument("docs", nargs=-1, type=click.Path(path_type=Path), metavar="[A B]")
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path),
              help='JSONL of {"a": PATH, "b": PATH} (or "a_text"/"b_text" inline): one score per pair.')
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False),
              help="A folder of text documents to find related documents in (indexed once, then incrementally).")
@click.option("--doc", "query_doc", type=click.Path(path_type=Path),
              help="With --corpus: the document (a corpus file or any file) whose related documents to list.")
@click.option("--all", "all_docs", is_flag=True, help="With --corpus: related documents of every document.")
@click.option("-k", "--top", "k", default=10, show_default=True, type=click.IntRange(1),
              help="Related documents per document.")
@click.option("--model", default=None,
              help="A SMITH folder from `longapps match-train` (default: the untrained hierarchy over the "
                   "packaged all-MiniLM-L6-v2, fused with BM25 for --corpus).")
@click.option("--block-tokens", type=click.IntRange(4, 512), default=None,
              help="Tokens per sentence block (default: the model's, 32).")
@click.option("--max-blocks", type=click.IntRange(1, 1024), default=None,
              help="Blocks read per document (default: the model's, 64 = 2,048 tokens); more than 64 runs the "
                   "document encoder on windowed attention. Later blocks are dropped with a note.")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), default=None,
              help="--corpus: BM25 share in the related-document score (default 0.3; 0 = SMITH alone).")
@click.option("--index-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the corpus index lives (default: ~/.cache/longapps/index/match-<name>-<hash>).")
@click.option("--reindex", is_flag=True, help="Rebuild the corpus index (the embedding cache is kept).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per line).")
@click.option("-v", "--verbose", is_flag=True, help="Print the indexing summary and every skipped file.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@ray_option
def match_command(docs: tuple[Path, ...], pairs_file: Path | None, corpus: Path | None, query_doc: Path | None,
                  all_docs: bool, k: int, model: str | None, block_tokens: int | None, max_blocks: int | None,
                  lexical_weight: float | None, index_dir: Path | None, reindex: bool, as_json: bool, verbose: bool,
                  no_progress: bool, ray: str | None) -> None:
    """How related are long documents? SMITH: sentence blocks -> block encoder -> document transformer.

    \b
    Modes:
      longapps match A.txt B.txt                     the score of two documents (cosine, -1..1)
      longapps match --pairs pairs.jsonl --json      one score per pair
      longapps match --corpus DIR --doc X -k 10      the k documents of DIR most related to X
      longapps match --corpus DIR --all --json       ... for every document of DIR
      longapps match --corpus DIR --all --ray        index the corpus on a Ray cluster
    """
    friendly_errors(_match)(docs, pairs_file, corpus, query_doc, all_docs, k, model, block_tokens, max_blocks,
                            lexical_weight, index_dir, reindex, as_json, verbose, no_progress, ray)


def _match(docs, pairs_file, corpus, query_doc, all_docs, k, model, block_tokens, max_blocks, lexical_weight,
           index_dir, reindex, as_json, verbose, no_progress, ray=None) -> None:
    modes = sum([bool(docs), pairs_file is not None, corpus is not None])
    if modes != 1:
        raise LongappsError("give two documents A B, or --pairs FILE, or --corpus DIR (one of them); see --help")
    if corpus is None and (query_doc is not None or all_docs):
        raise LongappsError("--doc and --all need --corpus DIR")
    if corpus is None and ray is not None:
        raise LongappsError("--ray encodes a corpus index: use it with --corpus DIR")
    progress = show_progress(no_progress)
    if docs:
        if len(docs) != 2:
            raise LongappsError(f"give exactly two documents to compare, got {len(docs)}")
        m = _matcher(model, block_tokens, max_blocks, lexical_weight, progress)
        ea, eb = m.embed([docs[0], docs[1]])
        for name, e in zip(docs, (ea, eb)):
            _note_dropped(str(name), e, m)
        score = float(ea.vector @ eb.vector)
        prob = m.probability(score)
        if as_json:
            row = {"a": str(docs[0]), "b": str(docs[1]), "score": round(score, 4),
                   "blocks": [ea.blocks, eb.blocks]}
            if prob is not None:
                row["probability"] = round(float(prob), 4)
            click.echo(json.dumps(row))
        else:
            extra = f"  (P(related) {float(prob):.3f})" if prob is not None else ""
            click.echo(f"{score:.4f}{extra}")
        return
    if pairs_file is not None:
        _pairs(pairs_file, model, block_tokens, max_blocks, as_json, progress)
        return
    _corpus(corpus, query_doc, all_docs, k, model, block_tokens, max_blocks, lexical_weight, index_dir, reindex,
            as_json, verbose, progress, ray)


def _pairs(pairs_file: Path, model, block_tokens, max_blocks, as_json: bool, progress: bool) -> None:
    from longapps.adapters.documents import load_pairs

    m = _matcher(model, block_tokens, max_blocks, None, progress)
    pairs = load_pairs(pairs_file, max_bytes=m.max_doc_bytes)
    texts = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    embs = dict(zip(texts, m.embed_texts(texts)))
    dropped = sum(e.dropped for e in embs.values())
    if dropped:
        click.echo(f"note: {dropped} document(s) longer than --max-blocks {m.smith.max_blocks} x "
                   f"{m.smith.block_tokens} tokens; the blocks beyond were dropped", err=True)
    for p in pairs:
        score = float(embs[p.a].vector @ embs[p.b].vector)
        row = {"line": p.line, "a": p.a_name, "b": p.b_name, "score": round(score, 4)}
        prob = m.probability(score)
        if prob is not None:
            row["probability"] = round(float(prob), 4)
        if p.label is not None:
            row["label"] = p.label
        click.echo(json.dumps(row) if as_json else f"{score:8.4f}  {p.a_name}  {p.b_name}")


def _corpus(corpus, query_doc, all_docs, k, model, block_tokens, max_blocks, lexical_weight, index_dir, reindex,
            as_json, verbose, progress, ray=None) -> None:
    if query_doc is None and not all_docs:
        raise LongappsError("with --corpus, say which document: --doc PATH, or --all")
    if query_doc is not None and all_docs:
        raise LongappsError("--doc and --all exclude each other")
    m = _matcher(model, block_tokens, max_blocks, lexical_weight, progress, ray)
    s = m.index(corpus, index_dir=index_dir, reindex=reindex)
    if verbose or s.rebuilt:
        line = (f"indexed {s.docs} documents ({s.blocks} blocks): {s.parsed} re-blocked, {s.reused} unchanged, "
                f"{s.removed} removed; {s.encoded} blocks encoded, {s.cached} from cache")
        if s.skipped:
            line += "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(s.skipped.items()))
        if s.truncated:
            line += (f"; {len(s.truncated)} longer than {m.smith.max_blocks} blocks (the rest dropped)")
        click.echo(line, err=True)
        if verbose:
            for rel, reason in s.skipped_files:
                click.echo(f"  skipped {rel}: {reason}", err=True)
            for rel in s.truncated:
                click.echo(f"  truncated {rel}: blocks beyond {m.smith.max_blocks} dropped", err=True)
    if all_docs:
        results = m.corpus.related_all(k)
    else:
        results = [(str(query_doc), m.related(query_doc, k))]
    for doc, hits in results:
        if as_json:
            click.echo(json.dumps({"doc": doc, "hits": [{"path": h.path, "score": h.score, "dense": h.dense,
                                                         "lexical": h.lexical} for h in hits]}))
        else:
            click.echo(click.style(doc, bold=True))
            for h in hits:
                click.echo(f"  {h.rank:>3}. {h.score:8.4f}  {h.path}")


@click.command("match-train", context_settings=CTX)
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False),
              help="Folder of documents: self-supervised masked sentence-block prediction (no labels).")
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path),
              help='JSONL of {"a", "b", "label"}: fine-tune as a siamese model (paths relative to the file).')
@click.option("--dev-pairs", "dev_pairs_file", type=click.Path(path_type=Path),
              help="Pairs for the dev metric (early stopping); default: --dev-fraction of --pairs.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the trained model (written atomically; use with `longapps match --model`).")
@click.option("--objective", type=click.Choice(["auto", "blocks", "pairs", "contrastive"]), default="auto",
              show_default=True, help="blocks: masked sentence-block prediction; pairs: scaled cosine + sigmoid "
                                      "cross-entropy (SMITH); contrastive: in-batch InfoNCE on positive pairs; "
                                      "auto: pairs when --pairs is given, else blocks.")
@click.option("--init", "init", default=None, type=click.Path(path_type=Path, file_okay=False),
              help="Start from a SMITH folder (e.g. the self-supervised one, then fine-tune on pairs).")
@click.option("--block-encoder", default=None, help="Block encoder of a new model: HF/ST id or folder "
                                                    "(default: packaged all-MiniLM-L6-v2).")
@click.option("--block-tokens", default=32, show_default=True, type=click.IntRange(4, 512))
@click.option("--max-blocks", default=64, show_default=True, type=click.IntRange(2, 1024))
@click.option("--layers", default=3, show_default=True, type=click.IntRange(1, 24),
              help="Document-encoder layers.")
@click.option("--train-block-encoder", is_flag=True,
              help="Fine-tune the block encoder too (slow without a GPU; default: frozen, vectors cached).")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2))
@click.option("--patience", default=2, show_default=True, type=click.IntRange(0),
              help="Epochs without a better dev metric before stopping (0 = never stop early).")
@click.option("--dev-fraction", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.5),
              help="Share of documents (or pairs) held out for the dev metric.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop training after this many minutes (the best checkpoint is kept).")
@click.option("--max-docs", type=click.IntRange(4), default=None, help="Self-supervised: use at most N documents.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the training result as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def match_train_command(corpus, pairs_file, dev_pairs_file, out_dir, objective, init, block_encoder, block_tokens, max_blocks, layers,
                        train_block_encoder, epochs, lr, batch_size, patience, dev_fraction, time_budget, max_docs,
                        device, seed, as_json, no_progress) -> None:
    """Train a SMITH matcher on your documents.

    \b
      longapps match-train --corpus docs/ --out smith-ssl                  self-supervised, no labels
      longapps match-train --pairs pairs.jsonl --init smith-ssl --out smith-ft   fine-tune on labelled pairs

    Early stopping on a held-out dev split; GPU when present; the best model is saved to --out.
    """
    friendly_errors(_train)(corpus, pairs_file, dev_pairs_file, out_dir, objective, init, block_encoder, block_tokens, max_blocks,
                            layers, train_block_encoder, epochs, lr, batch_size, patience, dev_fraction, time_budget,
                            max_docs, device, seed, as_json, no_progress)


def _train(corpus, pairs_file, dev_pairs_file, out_dir, objective, init, block_encoder, block_tokens, max_blocks, layers,
           train_block_encoder, epochs, lr, batch_size, patience, dev_fraction, time_budget, max_docs, device, seed,
           as_json, no_progress) -> None:
    from longapps.adapters.documents import load_pairs
    from longapps.pipelines.match_train import MatchTrainConfig, train_match

    if corpus is None and pairs_file is None:
        raise LongappsError("give --corpus DIR (self-supervised) and/or --pairs FILE (supervised)")
    cfg = MatchTrainConfig(objective=objective, init=str(init) if init else None, block_encoder=block_encoder,
                           block_tokens=block_tokens, max_blocks=max_blocks, layers=layers,
                           train_block_encoder=train_block_encoder, epochs=epochs, lr=lr, batch_size=batch_size,
                           patience=patience or None, dev_fraction=dev_fraction,
                           time_budget_s=time_budget * 60 if time_budget else None, max_docs=max_docs, seed=seed,
                           device=device, progress=show_progress(no_progress))
    pairs = load_pairs(pairs_file, need_labels=True) if pairs_file is not None else None
    dev = load_pairs(dev_pairs_file, need_labels=True) if dev_pairs_file is not None else None
    r = train_match(corpus, out_dir, cfg, pairs, dev)
    if as_json:
        click.echo(json.dumps({k: v for k, v in r.__dict__.items()}))
    else:
        best = f"{r.best_dev:.4f}" if r.best_dev is not None else "n/a"
        click.echo(f"trained ({r.objective}) on {r.examples} examples, dev {r.dev_examples}: {r.steps} steps, "
                   f"{r.epochs} epochs ({r.stopped}), best dev {best}, {r.seconds:.0f}s; saved to {r.out}")
