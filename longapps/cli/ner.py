"""`longapps ner train|predict|eval`: thin click commands over longapps.pipelines.ner."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from longapps.cli.errors import friendly_errors, show_progress
from longapps.resources import LongappsError

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
FORMATS = ["auto", "jsonl", "brat", "conll"]
PRECISION_HELP = ("CPU, made-long BERT models: dtype of the linear layers (auto: bf16 when the CPU has native bf16, "
                  "AVX512-BF16/AMX; else fp32). GPU: Longformer taggers get bf16 weights (auto, bf16: CUDA graphs "
                  "and the native eager layers apply), else bf16 autocast.")


def _read(path: str, fmt: str) -> list:
    from longapps.adapters.ner_formats import read_documents

    return read_documents(path, None if fmt == "auto" else fmt)


@click.group("ner", context_settings=CTX)
def ner() -> None:
    """Named-entity recognition over long documents (notes, reports) with long encoders.

    \b
    Data: JSONL {"id", "text", "spans": [{"start", "end", "label"}]}, BRAT standoff folders
    (.txt + .ann), CoNLL BIO files. Offsets are characters of the original text.
    \b
    Examples:
      longapps ner train data/train --dev data/devel --out my-ner --epochs 3
      longapps ner predict notes/ --model my-ner --json
      longapps ner eval data/test --model my-ner
    """


@ner.command("train", context_settings=CTX)
@click.argument("train_path", metavar="TRAIN")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the trained model.")
@click.option("--dev", "dev_path", default=None, help="Dev set: the epoch with the best strict F1 is kept.")
@click.option("--model", default=None,
              help="Base encoder: HF id or local folder (default: packaged all-MiniLM-L6-v2 made long). "
                   "Longformer checkpoints run on FastLongformer; BERT/RoBERTa-family models are made long.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Format of TRAIN and --dev.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1))
@click.option("--max-length", default=4096, show_default=True, type=click.IntRange(16),
              help="Tokens per window; longer documents go through overlapping windows.")
@click.option("--attention-window", default=512, show_default=True, type=click.IntRange(2),
              help="Width of the sliding attention window (made-long encoders).")
@click.option("--lr", default=5e-5, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1), help="Windows per batch.")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of steps with a linear warm-up.")
@click.option("--patience", default=2, show_default=True, type=click.IntRange(1),
              help="Epochs without a better dev F1 before stopping.")
@click.option("--max-steps", default=None, type=click.IntRange(1), help="Stop after this many optimizer steps.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="GPU autocast (auto: bf16 when supported); CPU always fp32.")
@click.option("--one-label", default=None, help="Map every entity type to this one label (mention tagging).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@friendly_errors
def train_command(train_path: str, out: str, dev_path: str | None, model: str | None, fmt: str, epochs: int,
                  max_length: int, attention_window: int, lr: float, batch_size: int, grad_accum: int,
                  warmup: float, patience: int, max_steps: int | None, seed: int, precision: str,
                  one_label: str | None, device: str, as_json: bool, no_progress: bool) -> None:
    """Fine-tune a tagger on TRAIN (JSONL, BRAT folder or CoNLL) and save it to --out.

    The saved folder is a plain Hugging Face model (config.json, model.safetensors, tokenizer, label map in
    longapps_ner.json), written atomically: an interrupted run never leaves a half-written model.
    """
    from longapps.pipelines.ner import NER
    from longapps.training import TrainConfig

    train_docs = _read(train_path, fmt)
    dev_docs = _read(dev_path, fmt) if dev_path else None
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, warmup=warmup,
                      patience=patience, max_steps=max_steps, seed=seed, precision=precision, device=device,
                      progress=show_progress(no_progress))
    t0 = time.perf_counter()
    _, rep = NER.train(train_docs, out=out, dev_docs=dev_docs, model=model, max_length=max_length,
                       attention_window=attention_window, config=cfg, one_label=one_label, batch_size=batch_size)
    for note in rep.notes:
        click.echo(f"warning: {note}", err=True)
    r = rep.result
    summary = {"out": str(Path(out)), "documents": rep.documents, "windows": rep.windows, "labels": rep.labels,
               "gold_overlaps_dropped": rep.dropped_overlaps, "steps": r.steps, "epochs": r.epochs,
               "best_dev_f1": r.best_metric, "best_epoch": r.best_epoch, "stopped": r.stopped,
               "seconds": round(time.perf_counter() - t0, 1), "history": r.history}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"trained on {rep.documents} documents ({rep.windows} windows), {r.steps} steps, {r.epochs} epochs "
               f"({r.stopped}) in {summary['seconds']}s; labels {', '.join(rep.labels)}")
    if rep.dropped_overlaps:
        click.echo(f"overlapping gold spans dropped (keep-longest policy): {rep.dropped_overlaps}")
    if r.best_metric is not None:
        click.echo(f"best dev strict F1 {r.best_metric:.4f} (epoch {r.best_epoch})")
    click.echo(f"saved to {out}")


@ner.command("predict", context_settings=CTX)
@click.argument("input_path", metavar="INPUT")
@click.option("--model", required=True, help="A folder saved by `longapps ner train`.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per document: {"id", "spans": [{"start", "end", "label", "text", "score"}]}.')
@click.option("--format", "out_fmt", type=click.Choice(["jsonl", "brat", "conll"]), default=None,
              help="Write predictions in this format (to --out, or stdout for jsonl/conll).")
@click.option("--out", "out_path", default=None, help="Output file (jsonl, conll) or folder (brat).")
@click.option("--max-length", default=None, type=click.IntRange(16), help="Window length (default: the model's).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
@click.option("--timing", is_flag=True, help="Print load/predict seconds as JSON on stderr.")
@friendly_errors
def predict_command(input_path: str, model: str, as_json: bool, out_fmt: str | None, out_path: str | None,
                    max_length: int | None, batch_size: int, device: str, precision: str, timing: bool) -> None:
    """Tag INPUT: a .txt file, a folder of .txt files, or a JSONL file of {"id", "text"}.

    Documents of any length: longer than --max-length they go through overlapping windows, each token
    labelled from the window where it is most central. Offsets are characters of the original text.
    """
    from longapps.adapters.ner_formats import iter_texts, jsonl_line, write_brat, write_conll, write_jsonl
    from longapps.models.causal_lm import set_cpu_threads
    from longapps.pipelines.ner import NER

    if out_fmt == "brat" and not out_path:
        raise LongappsError("--format brat needs --out FOLDER")
    docs = iter_texts(input_path)
    first = next(docs)  # input errors (missing, empty, not UTF-8) before the model loads
    set_cpu_threads()
    t0 = time.perf_counter()
    tagger = NER.load(model, max_length=max_length, batch_size=batch_size, device=device, precision=precision)
    t1 = time.perf_counter()

    def all_docs():
        yield first
        yield from docs

    preds = tagger.predict_documents(all_docs())
    if out_fmt in ("brat", "conll") or (out_path and out_fmt == "jsonl"):
        done = list(preds)
        if out_fmt == "brat":
            write_brat(done, out_path)
        elif out_fmt == "conll":
            if out_path:
                write_conll(done, out_path)
            else:
                from longapps.adapters.ner_formats import conll_text
                for d in done:
                    click.echo(f"-DOCSTART-\tO\n\n{conll_text(d)}", nl=False)
        else:
            write_jsonl(done, out_path)
        n = len(done)
        if out_path:
            click.echo(f"wrote {n} documents to {out_path}", err=True)
    else:
        n = 0
        for d in preds:
            n += 1
            if as_json or out_fmt == "jsonl":
                click.echo(jsonl_line(d, with_text=out_fmt == "jsonl"))
            else:
                click.echo(click.style(d.id, bold=True) + f"  {len(d.spans)} entities")
                for s in d.spans:
                    click.echo(f"  {s.start:>7}-{s.end:<7} {s.label:<16} {s.score:.3f}  {s.text}")
    if timing:
        click.echo(json.dumps({"documents": n, "load_s": round(t1 - t0, 3),
                               "predict_s": round(time.perf_counter() - t1, 3)}), err=True)


@ner.command("eval", context_settings=CTX)
@click.argument("gold_path", metavar="GOLD")
@click.option("--model", required=True, help="A folder saved by `longapps ner train`.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--max-length", default=None, type=click.IntRange(16), help="Window length (default: the model's).")
@click.option("--one-label", default=None, help="Map every gold type to this label (as the model was trained).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@friendly_errors
def eval_command(gold_path: str, model: str, fmt: str, max_length: int | None, one_label: str | None,
                 batch_size: int, device: str, precision: str, as_json: bool) -> None:
    """Strict span-level precision / recall / F1 (exact start, end and type; nervaluate) of the model on GOLD:
    micro, macro and per type."""
    from longapps.models.causal_lm import set_cpu_threads
    from longapps.pipelines.ner import NER

    gold = _read(gold_path, fmt)
    set_cpu_threads()
    tagger = NER.load(model, max_length=max_length, batch_size=batch_size, device=device, precision=precision)
    if one_label is None:
        one_label = _trained_one_label(model)
    res = tagger.evaluate(gold, one_label=one_label)
    if res["unseen_labels"]:
        click.echo(f"warning: gold labels the model never saw in training (their spans count as missed): "
                   f"{', '.join(res['unseen_labels'])}", err=True)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"{'type':<20} {'P':>7} {'R':>7} {'F1':>7} {'gold':>6} {'pred':>6}")
    for name, r in list(res["per_type"].items()) + [("micro", res["micro"])]:
        click.echo(f"{name:<20} {r['precision']:7.4f} {r['recall']:7.4f} {r['f1']:7.4f} "
                   f"{r.get('gold', ''):>6} {r.get('predicted', ''):>6}")
    m = res["macro"]
    click.echo(f"{'macro':<20} {m['precision']:7.4f} {m['recall']:7.4f} {m['f1']:7.4f}")
    if res["gold_overlaps_dropped"]:
        click.echo(f"overlapping gold spans dropped (keep-longest policy): {res['gold_overlaps_dropped']}")


def _trained_one_label(model: str) -> str | None:
    """The --one-label a model was trained with (from its longapps_ner.json), so eval maps gold the same way."""
    meta = Path(model) / "longapps_ner.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("one_label")
    except (OSError, ValueError):
        return None


__all__ = ["ner"]
