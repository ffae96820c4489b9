"""Fine-tune a causal LM for full-list ranking ("Sliding Windows Are Not the End", Liu et al. 2024).

Training lists carry complete listwise labels: the judged passages ordered by grade, then every other
candidate in a teacher's order (by default the order the candidates are given in, e.g. `longapps rank
--json`'s first stage), so the target is a full permutation "[a] > [b] > ...". The importance-aware loss is
token-level cross-entropy on that target where the tokens of the id at output position i weigh
w_i = 1 + alpha / (i + 1) ("inverse") or 1 + alpha / log2(i + 2) ("log", DCG-like); separators and the end
token weigh 1; the sum is normalised by the total weight. alpha = 0 gives the plain language-modelling loss.

The prompts are exactly those `Ranker` uses at ranking time (rank_prompt), so the checkpoint is used with
`longapps rank --method llm-full --llm OUT`.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from longapps.pipelines.rank_prompt import (ANSWER_PREFIX, SYSTEM, clean_passage, permutation_text, plan_budget,
                                            truncate_tokens, user_message)
from longapps.pipelines.ranking import Passage, as_passages
from longapps.progress import Progress
from longapps.resources import LongappsError

log = logging.getLogger(__name__)


@dataclass
class TrainExample:
    query: str
    passages: list[Passage]
    qrels: dict[str, float] = field(default_factory=dict)     # passage id -> grade (> 0 = relevant)
    teacher: list[str] | None = None                           # a full or partial ordering of passage ids


@dataclass
class TrainConfig:
    llm: str | None = None
    epochs: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.0
    alpha: float = 1.0
    schedule: str = "log"               # inverse | log
    max_passages: int = 100
    passage_tokens: int | None = None
    max_passage_tokens: int = 128
    context: int | None = None
    grad_accum: int = 1
    seed: int = 0
    max_grad_norm: float = 1.0


@dataclass
class TrainResult:
    examples: int
    steps: int
    losses: list[float]
    seconds: float

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


# -- labels ---------------------------------------------------------------------------------------

def target_order(ex: TrainExample, n: int | None = None) -> list[int]:
    """Complete listwise label over the first n passages (indices): relevant ones by grade (ties in teacher
    order), then the rest in teacher order, then anything the teacher did not mention in input order."""
    passages = ex.passages[:n] if n else ex.passages
    pos = {p.id: i for i, p in enumerate(passages)}
    teacher = [pos[t] for t in (ex.teacher or []) if t in pos]
    seen = set(teacher)
    teacher += [i for i in range(len(passages)) if i not in seen]
    tpos = {i: r for r, i in enumerate(teacher)}
    relevant = [i for i in range(len(passages)) if ex.qrels.get(passages[i].id, 0) > 0]
    relevant.sort(key=lambda i: (-ex.qrels[passages[i].id], tpos[i]))
    rel = set(relevant)
    return relevant + [i for i in teacher if i not in rel]


def position_weights(n: int, alpha: float, schedule: str = "log") -> list[float]:
    """Weight of the id at output position i (0-based)."""
    if schedule == "inverse":
        return [1.0 + alpha / (i + 1) for i in range(n)]
    if schedule == "log":
        return [1.0 + alpha / math.log2(i + 2) for i in range(n)]
    raise LongappsError(f"unknown weight schedule '{schedule}' (inverse | log)")


def target_text(order: Sequence[int]) -> str:
    """The answer after the prompt's ANSWER_PREFIX ('['): '3] > [1] > [2]' for order [2, 0, 1]."""
    text = permutation_text([i + 1 for i in order])
    return text[len(ANSWER_PREFIX):] if text.startswith(ANSWER_PREFIX) else text


def token_weights(tokenizer: Any, text: str, order: Sequence[int],
                  weights: Sequence[float]) -> tuple[list[int], list[float]]:
    """Tokenize the target and give each token the weight of the id it spells (1.0 for separators).

    Uses character offsets (fast tokenizers); otherwise tokenizes piece by piece."""
    # character span of each id's digits and brackets in `text`
    spans, cursor = [], 0
    for i in order:
        label = f"{i + 1}]"
        at = text.index(label, cursor)
        start = at - 1 if at > 0 and text[at - 1] == "[" else at
        spans.append((start, at + len(label)))
        cursor = at + len(label)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, w = list(enc["input_ids"]), []
        k = 0
        for a, b in enc["offset_mapping"]:
            while k < len(spans) and spans[k][1] <= a:
                k += 1
            inside = k < len(spans) and a < spans[k][1] and b > spans[k][0]
            w.append(weights[k] if inside else 1.0)
        return ids, w
    ids, w, last = [], [], 0
    for k, (a, b) in enumerate(spans):
        for piece, weight in ((text[last:a], 1.0), (text[a:b], weights[k])):
            if piece:
                t = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids.extend(t)
                w.extend([weight] * len(t))
        last = b
    return ids, w


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]          # -100 on the prompt
    weights: list[float]       # 0 on the prompt


def build_sample(lm: Any, ex: TrainExample, cfg: TrainConfig) -> Sample:
    """Prompt (same as at ranking time) + weighted full-permutation target + end token."""
    passages = ex.passages[: cfg.max_passages]
    context = cfg.context or lm.context_length
    query = truncate_tokens(" ".join(ex.query.split()), 256, lm.tokenizer)
    overhead = len(lm.chat_ids(SYSTEM, user_message(query, []), ANSWER_PREFIX)) + 8
    budget = plan_budget(len(passages), context, overhead, lm.count_tokens,
                         max_passage_tokens=cfg.max_passage_tokens, min_passage_tokens=4)
    passages = passages[: budget.n]
    sub = TrainExample(ex.query, passages, ex.qrels, ex.teacher)
    order = target_order(sub)
    per = cfg.passage_tokens or budget.passage_tokens
    texts = [truncate_tokens(clean_passage(p.text), per, lm.tokenizer) for p in passages]
    prompt = lm.chat_ids(SYSTEM, user_message(query, texts), ANSWER_PREFIX)
    text = target_text(order)
    t_ids, t_w = token_weights(lm.tokenizer, text, order, position_weights(len(order), cfg.alpha, cfg.schedule))
    eos = lm.tokenizer.eos_token_id
    if isinstance(eos, int):
        t_ids, t_w = t_ids + [eos], t_w + [1.0]
    while len(prompt) + len(t_ids) > context and per > 1:  # tokenisation in context came out longer
        per = max(1, int(per * 0.85))
        texts = [truncate_tokens(clean_passage(p.text), per, lm.tokenizer) for p in passages]
        prompt = lm.chat_ids(SYSTEM, user_message(query, texts), ANSWER_PREFIX)
    return Sample(prompt + t_ids, [-100] * len(prompt) + t_ids, [0.0] * len(prompt) + t_w)


def weighted_loss(logits: Any, labels: Any, weights: Any) -> Any:
    """Importance-weighted token cross-entropy (next-token shift), normalised by the total weight."""
    import torch.nn.functional as F

    logits = logits[:, :-1, :].float()
    labels = labels[:, 1:]
    weights = weights[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                         reduction="none").view_as(labels)
    return (ce * weights).sum() / weights.sum().clamp_min(1e-9)


# -- data + loop ----------------------------------------------------------------------------------

def load_examples(path: str | Path) -> list[TrainExample]:
    """JSONL lines: {"query", "passages": [{"id", "text"}], "qrels": {id: grade}, "teacher": [ids]}."""
    path = Path(path)
    if not path.is_file():
        raise LongappsError(f"training data not found: {path}")
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                query = str(obj["query"]).strip()
                passages = as_passages(obj["passages"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise LongappsError(f"{path.name}:{ln}: expected {{query, passages, qrels}} ({err})") from err
            if not query or len(passages) < 2:
                raise LongappsError(f"{path.name}:{ln}: needs a query and at least 2 passages")
            qrels = {str(k): float(v) for k, v in (obj.get("qrels") or {}).items()}
            for p in obj["passages"]:  # grades may also sit on the passages
                if isinstance(p, dict) and "grade" in p:
                    qrels.setdefault(str(p.get("id")), float(p["grade"]))
            teacher = [str(t) for t in obj["teacher"]] if obj.get("teacher") else None
            out.append(TrainExample(query, passages, qrels, teacher))
    if not out:
        raise LongappsError(f"no training examples in {path}")
    return out


def train(examples: Sequence[TrainExample], out_dir: str | Path, cfg: TrainConfig | None = None, *,
          lm: Any = None, progress: bool = False) -> TrainResult:
    """Fine-tune (full parameters) and save model + tokenizer (safetensors) to out_dir."""
    import torch

    cfg = cfg or TrainConfig()
    if lm is None:
        from longapps.models.causal_lm import load_causal_lm

        lm = load_causal_lm(cfg.llm)
    torch.manual_seed(cfg.seed)
    samples = [build_sample(lm, ex, cfg) for ex in examples]
    model = lm.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    steps = 0
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    with Progress("training", total=cfg.epochs * len(samples), enabled=progress) as bar:
        for _ in range(cfg.epochs):
            order = list(range(len(samples)))
            rng.shuffle(order)
            opt.zero_grad(set_to_none=True)
            for j, si in enumerate(order):
                s = samples[si]
                ids = torch.tensor([s.input_ids], device=device)
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
                loss = weighted_loss(out.logits, torch.tensor([s.labels], device=device),
                                     torch.tensor([s.weights], device=device))
                (loss / cfg.grad_accum).backward()
                losses.append(float(loss.detach()))
                if (j + 1) % cfg.grad_accum == 0 or j == len(order) - 1:
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    steps += 1
                bar.advance()
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    lm.tokenizer.save_pretrained(out)
    (out / "rank_train.json").write_text(json.dumps({"config": asdict(cfg), "examples": len(samples),
                                                     "steps": steps, "losses": losses}, indent=1))
    return TrainResult(len(samples), steps, losses, time.perf_counter() - t0)
