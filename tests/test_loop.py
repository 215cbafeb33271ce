"""The generic loop with a model that is not an SSL method: a tiny GAN on 2-D points, two networks and
two optimisers stepping in turn (the shape CUT / DCLGAN need), trains, logs and resumes bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.checkpoint import LAST, load_checkpoint
from selfsup.errors import TrainingError
from selfsup.loop import Loop, Optimisation, StepOutput, TrainingTask

CENTRE = torch.tensor([2.0, -1.0])
BATCH = 32


class TinyGan(TrainingTask):
    """Generator z (2-D normal) -> x, discriminator x -> logit; non-saturating GAN loss (Goodfellow et al.
    2014, Sec. 3): a discriminator step on real and detached fake points, then a generator step."""

    name = "tiny gan"

    def __init__(self, epochs: int, seed: int = 0, lr: float = 1e-2) -> None:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        self.data = CENTRE + 0.3 * torch.randn(256, 2, generator=g)
        self.generator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
                           for name, m in self.modules.items()}
        self.device = torch.device("cpu")
        self.seed = seed
        self.steps_per_epoch = len(self.data) // BATCH
        self.total_steps = epochs * self.steps_per_epoch
        self.settings = {"seed": seed, "lr": lr, "epochs": epochs}
        self.nan_hint = f"lower the learning rate (now {lr})"

    def real_batch(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        return self.data[perm[i * BATCH : (i + 1) * BATCH]]

    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        real, z = self.real_batch(step), torch.randn(BATCH, 2)  # z from the global RNG the loop checkpoints
        ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)
        with opt.autocast():
            fake = self.generator(z)
            d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                      + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros))
        opt.step(d_loss, self.optimizers["discriminator"])
        with opt.autocast():
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        opt.step(g_loss, self.optimizers["generator"])
        return StepOutput({"loss": (d_loss + g_loss).detach(), "discriminator": d_loss.detach(),
                           "generator": g_loss.detach()})

    def scheduled_values(self, step: int) -> dict[str, float]:
        return {"lr": self.optimizers["generator"].param_groups[0]["lr"]}

    @torch.no_grad()
    def sample_mean(self) -> torch.Tensor:
        return self.generator(torch.randn(2048, 2, generator=torch.Generator().manual_seed(1))).mean(0)


def _loop(task: TrainingTask, checkpoint_dir: Path | None, every: int = 8, clip: float = 0.0) -> Loop:
    return Loop(task, checkpoint_dir, checkpoint_every=every, log_every=4, opt=Optimisation(task.device, False,
                                                                                             clip_norm=clip),
                progress=False)


def _weights(task: TrainingTask) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.clone() for name, m in task.modules.items() for k, v in m.state_dict().items()}


def test_a_two_optimiser_gan_learns_the_data_through_the_loop() -> None:
    task = TinyGan(epochs=20)
    before = (task.sample_mean() - CENTRE).norm().item()
    history = _loop(task, None).fit()
    after = (task.sample_mean() - CENTRE).norm().item()
    assert before > 1.5 and after < 0.25 * before, (before, after)
    assert [r["epoch"] for r in history.rows] == list(range(1, 21))
    row = history.rows[-1]
    assert list(row) == ["epoch", "step", "loss", "discriminator", "generator", "lr"]
    assert row["loss"] == pytest.approx(row["discriminator"] + row["generator"], rel=1e-5)
    # at equilibrium the discriminator cannot tell: ~2 ln 2 for it, ~ln 2 for the generator
    assert 1.2 < row["discriminator"] < 1.6 and 0.5 < row["generator"] < 0.9


def test_a_resumed_gan_ends_with_the_weights_and_history_of_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = TinyGan(epochs=4)
    straight_history = _loop(straight, tmp_path / "straight").fit()

    first = _loop(TinyGan(epochs=4), tmp_path / "split")
    first.fit(until=13)                                   # checkpoints every 8 steps: the last one at 8
    assert load_checkpoint(tmp_path / "split" / LAST)["step"] == 8
    torch.randn(100)                                      # what ran in between must not matter
    resumed_task = TinyGan(epochs=4)
    resumed = _loop(resumed_task, tmp_path / "split")
    assert resumed.try_resume() and resumed.step == 8
    resumed_history = resumed.fit()

    a, b = _weights(straight), _weights(resumed_task)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_history.rows == straight_history.rows
    both = resumed_task.optimizers
    assert all(o.state_dict()["state"] for o in both.values())  # both optimisers' moments were restored and used


def test_clipping_bounds_each_optimiser_step() -> None:
    task = TinyGan(epochs=1, lr=1.0)
    opt = Optimisation(task.device, False, clip_norm=1e-3)
    seen: list[float] = []
    params = list(task.discriminator.parameters())
    loss = task.discriminator(task.data).square().mean() * 1e3
    opt.step(loss, task.optimizers["discriminator"],
             before_step=lambda: seen.append(torch.cat([p.grad.flatten() for p in params]).norm().item()))
    clipped = torch.cat([p.grad.flatten() for p in params]).norm().item()
    assert seen[0] > 1.0 and clipped == pytest.approx(1e-3, rel=1e-4)


def test_a_non_finite_term_is_named_and_no_checkpoint_is_written(tmp_path: Path) -> None:
    task = TinyGan(epochs=2)
    task.data[:] = float("nan")
    with pytest.raises(TrainingError, match=r"non-finite: discriminator.*lower the learning rate \(now 0.01\)"):
        _loop(task, tmp_path).fit()
    assert not (tmp_path / LAST).exists()
