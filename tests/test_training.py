"""The shared training loop (longapps.training): learning, accumulation, schedule, early stopping with the best
weights restored, budgets, seeds, atomic checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from longapps.training import TrainConfig, fit, linear_schedule, save_atomic


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.lin(x), y)


def _data(n: int = 64) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return [(x[i], int(x[i, 0] + x[i, 1] > 0)) for i in range(n)]


def collate(items: list) -> dict:
    return {"x": torch.stack([a for a, _ in items]), "y": torch.tensor([b for _, b in items])}


def _acc(model: Toy, data: list) -> float:
    b = collate(data)
    return float((model.lin(b["x"]).argmax(-1) == b["y"]).float().mean())


def test_fit_learns_and_counts_steps() -> None:
    torch.manual_seed(0)
    model, data = Toy(), _data()
    r = fit(model, data, collate, TrainConfig(epochs=5, lr=0.1, batch_size=8, grad_accum=2, device="cpu"))
    assert r.steps == 5 * 4 and r.epochs == 5 and r.stopped == "epochs"  # 8 batches / 2 per step
    assert r.history[-1]["loss"] < r.history[0]["loss"] and _acc(model, data) > 0.9
    assert not model.training


def test_same_seed_same_weights() -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = Toy()
        fit(m, _data(), collate, TrainConfig(epochs=2, lr=0.05, batch_size=8, seed=3, device="cpu"))
        outs.append(m.lin.weight.detach().clone())
    torch.testing.assert_close(outs[0], outs[1])


def test_early_stopping_restores_the_best_epoch() -> None:
    torch.manual_seed(0)
    model = Toy()
    metrics = iter([0.5, 0.9, 0.7, 0.6, 0.95])
    saved: dict = {}

    def on_best(m: nn.Module, metric: float) -> None:
        saved[metric] = m.lin.weight.detach().clone()

    r = fit(model, _data(), collate, TrainConfig(epochs=5, lr=0.1, batch_size=8, patience=2, device="cpu"),
            evaluate=lambda m: next(metrics), on_best=on_best)
    assert r.stopped == "early-stop" and r.epochs == 4 and r.best_metric == 0.9 and r.best_epoch == 2
    assert sorted(saved) == [0.5, 0.9]
    torch.testing.assert_close(model.lin.weight, saved[0.9])
    assert [h["dev"] for h in r.history] == [0.5, 0.9, 0.7, 0.6]


def test_budgets_stop_training() -> None:
    r = fit(Toy(), _data(), collate, TrainConfig(epochs=10, batch_size=8, max_steps=3, device="cpu"))
    assert r.steps == 3 and r.stopped == "max-steps"
    r = fit(Toy(), _data(), collate, TrainConfig(epochs=10, batch_size=8, time_budget_s=1e-9, device="cpu"))
    assert r.stopped == "time-budget" and r.epochs == 1


def test_schedule_warms_up_then_decays() -> None:
    f = linear_schedule(4, 20)
    vals = [f(s) for s in range(20)]
    assert vals[:4] == [0.25, 0.5, 0.75, 1.0] and vals[4] == 1.0
    assert all(a > b for a, b in zip(vals[4:], vals[5:])) and vals[-1] == pytest.approx(1 / 16)


def test_nan_loss_is_reported() -> None:
    class Bad(Toy):
        def forward(self, x, y):
            return super().forward(x, y) * float("nan")

    with pytest.raises(FloatingPointError, match="loss is nan"):
        fit(Bad(), _data(), collate, TrainConfig(epochs=1, device="cpu"))


def test_save_atomic(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    save_atomic(out, lambda d: (d / "w.txt").write_text("v1"))
    assert (out / "w.txt").read_text() == "v1"

    def broken(d: Path) -> None:
        (d / "w.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomic(out, broken)
    assert (out / "w.txt").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    save_atomic(out, lambda d: (d / "w.txt").write_text("v2"))
    assert (out / "w.txt").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
