"""Barlow Twins loss (Eq. 1) against a hand-computed case and a slow loop."""

import math

import torch

from selfsup.methods.barlow import barlow_twins, standardize


def slow_barlow(z_a: torch.Tensor, z_b: torch.Tensor, lam: float, eps: float = 1e-5) -> float:
    n, d = z_a.shape
    za, zb = z_a.double(), z_b.double()

    def col(z: torch.Tensor, i: int) -> list[float]:
        m = sum(float(z[b, i]) for b in range(n)) / n
        v = sum((float(z[b, i]) - m) ** 2 for b in range(n)) / n
        return [(float(z[b, i]) - m) / math.sqrt(v + eps) for b in range(n)]

    a = [col(za, i) for i in range(d)]
    b = [col(zb, j) for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def test_barlow_matches_hand_computed_case() -> None:
    # z_a's columns are already standardised: (1,-1,1,-1) and (1,1,-1,-1).
    # z_b = columns (1,-1,1,-1) and (1,1,1,-1); the latter standardises to (1,1,1,-3)/sqrt(3).
    # C11 = 1, C12 = 4/(4 sqrt 3) = 1/sqrt 3, C21 = 0, C22 = 1/sqrt 3.
    z_a = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    z_b = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    lam = 0.5
    s = 1 / math.sqrt(3)
    expected = (1 - 1) ** 2 + (1 - s) ** 2 + lam * (s**2 + 0.0)
    assert math.isclose(barlow_twins(z_a, z_b, lam).item(), expected, abs_tol=1e-4)
    assert math.isclose(expected, 0.345299, abs_tol=1e-5)


def test_barlow_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    assert math.isclose(barlow_twins(z_a, z_b, 5e-3).item(), slow_barlow(z_a, z_b, 5e-3), rel_tol=1e-5)


def test_identical_decorrelated_views_give_zero_loss() -> None:
    # Orthogonal +-1 columns: standardised, uncorrelated, so C is (almost) the identity.
    z = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    assert barlow_twins(z, z, 1.0).item() < 1e-4
    assert torch.allclose(standardize(z), z / math.sqrt(1 + 1e-5))


def test_barlow_learns_a_toy_problem() -> None:
    torch.manual_seed(0)
    enc = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(enc.parameters(), lr=0.05)
    base = torch.randn(64, 8) @ torch.randn(8, 8)
    losses = []
    for _ in range(200):
        loss = barlow_twins(enc(base + 0.1 * torch.randn_like(base)), enc(base + 0.1 * torch.randn_like(base)), 5e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
