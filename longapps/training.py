"""The shared training loop: ``fit(model, examples, collate, TrainConfig(...), evaluate=..., on_best=...)``.

Generic over tasks (NER, document matching, retrieval): the caller supplies examples, a ``collate`` that
turns a list of them into a batch dict of tensors, and optionally a ``loss_fn(model, batch) -> loss``
(default: ``model(**batch)`` returning ``.loss``, a ``(loss, ...)`` tuple or the loss itself).

What it does: AdamW (no decay on biases / LayerNorm), linear warm-up then linear decay, gradient
accumulation, gradient clipping, a seed, bf16 (or fp16 + loss scaling) autocast and gradient checkpointing on
CUDA, early stopping on a dev metric (``evaluate(model) -> float``, higher is better, after every epoch),
the best weights restored at the end, a progress bar (stderr, rich) showing loss and the dev metric.
``save_atomic(folder, write)`` is the checkpoint helper: write into a temp folder, then rename.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn

from .progress import Progress


@dataclass
class TrainConfig:
    """Knobs of ``fit``; the defaults suit fine-tuning a BERT-size encoder."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 8
    grad_accum: int = 1            # optimizer step every this many batches
    weight_decay: float = 0.01
    warmup: float = 0.1            # fraction of the optimizer steps spent warming up
    max_grad_norm: float = 1.0
    seed: int = 0
    patience: Optional[int] = 2    # epochs without a better dev metric before stopping (None: never stop)
    precision: str = "auto"        # auto (bf16 on CUDA when supported, else fp16; fp32 on CPU) | fp32 | bf16 | fp16
    grad_checkpointing: Optional[bool] = None  # None: on with CUDA
    device: str = "auto"
    max_steps: Optional[int] = None            # stop after this many optimizer steps (budgeted runs)
    time_budget_s: Optional[float] = None      # stop after this much training time (checked every batch)
    progress: bool = False                     # show a progress bar on stderr
    eval_before: bool = False                  # evaluate the starting weights too (epoch 0): when no epoch beats
                                               # them, the start is kept (training never makes the dev metric worse)
    log_every: Optional[int] = None            # also print "step N/T loss L" to stderr every N steps (logs)


@dataclass
class TrainResult:
    """What happened: optimizer steps, epochs run, best dev metric (None without ``evaluate``), history."""

    steps: int
    epochs: int
    best_metric: Optional[float]
    best_epoch: Optional[int]
    seconds: float
    history: list[dict] = field(default_factory=list)
    stopped: str = "epochs"        # epochs | early-stop | max-steps | time-budget


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for a precision setting (None = fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _default_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(**batch)
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    return out.loss


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: 0 -> 1 over ``warmup_steps``, then 1 -> 0 linearly at ``total_steps``."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return f


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def fit(model: nn.Module, examples: Sequence[Any], collate: Callable[[list], dict], config: TrainConfig,
        loss_fn: Callable[[nn.Module, dict], torch.Tensor] = _default_loss,
        evaluate: Optional[Callable[[nn.Module], float]] = None,
        on_best: Optional[Callable[[nn.Module, float], None]] = None,
        metric_name: str = "dev") -> TrainResult:
    """Train ``model`` in place on ``examples`` (shuffled each epoch with ``config.seed``).

    After every epoch ``evaluate(model)`` (in eval mode, no grad) gives the dev metric; a better one calls
    ``on_best(model, metric)`` (e.g. save a checkpoint) and is remembered; ``config.patience`` epochs without
    improvement stop training; the best weights are loaded back at the end. Without ``evaluate`` the last
    weights are kept (and ``on_best`` is called once at the end with NaN)."""
    if not examples:
        raise ValueError("no training examples")
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    amp = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if (config.grad_checkpointing if config.grad_checkpointing is not None else device.type == "cuda") \
            and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    batches_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = math.ceil(batches_per_epoch / config.grad_accum) * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    opt = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr,
                            fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(int(config.warmup * total), total))
    rng = random.Random(config.seed)
    best: Optional[float] = None
    best_epoch: Optional[int] = None
    best_state: Optional[dict] = None
    history: list[dict] = []
    step, bad_epochs, stopped = 0, 0, "epochs"
    if evaluate is not None and config.eval_before:
        model.eval()
        with torch.no_grad():
            best = float(evaluate(model))
        best_epoch = 0
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        history.append({"epoch": 0, "steps": 0, metric_name: best})
    t0 = time.perf_counter()
    epoch = 0
    with Progress("training", total=total, enabled=config.progress) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = list(range(len(examples)))
            rng.shuffle(order)
            run_loss, run_n = 0.0, 0
            opt.zero_grad(set_to_none=True)
            for b in range(batches_per_epoch):
                batch = _to(collate([examples[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]),
                            device)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {step} (lower the learning rate?)")
                scaled = loss / config.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                run_loss, run_n = run_loss + float(loss.detach()), run_n + 1
                last = b == batches_per_epoch - 1
                if (b + 1) % config.grad_accum == 0 or last:
                    if scaler:
                        scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    if scaler:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    bar.advance(1)
                    bar.set_status(f"epoch {epoch} loss {run_loss / run_n:.4f}"
                                   + (f" {metric_name} {best:.4f}" if best is not None else ""))
                    if config.log_every and step % config.log_every == 0:
                        print(f"step {step}/{total} epoch {epoch} loss {run_loss / run_n:.4f} "
                              f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
                    if config.max_steps and step >= config.max_steps:
                        stopped = "max-steps"
                        break
                if config.time_budget_s and time.perf_counter() - t0 > config.time_budget_s:
                    stopped = "time-budget"
                    break
            entry: dict = {"epoch": epoch, "steps": step, "loss": run_loss / max(1, run_n),
                           "seconds": round(time.perf_counter() - t0, 1)}
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    metric = float(evaluate(model))
                entry[metric_name] = metric
                if best is None or metric > best:
                    best, best_epoch, bad_epochs = metric, epoch, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    if on_best is not None:
                        on_best(model, metric)
                else:
                    bad_epochs += 1
                bar.set_status(f"epoch {epoch} loss {entry['loss']:.4f} {metric_name} {metric:.4f}")
            history.append(entry)
            if stopped != "epochs":
                break
            if evaluate is not None and config.patience is not None and bad_epochs >= config.patience:
                stopped = "early-stop"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if evaluate is None and on_best is not None:
        on_best(model, float("nan"))
    return TrainResult(step, epoch, best, best_epoch, time.perf_counter() - t0, history, stopped)


def save_atomic(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temp folder beside ``folder``, then rename it to ``folder`` (an old one
    is swapped out and removed): readers only ever see a complete checkpoint."""
    out = Path(folder).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["TrainConfig", "TrainResult", "fit", "save_atomic", "seed_everything", "resolve_device",
           "autocast_dtype", "linear_schedule"]
