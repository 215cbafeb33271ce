"""NT-Xent (SimCLR Eq. 1) against a hand-computed case and a slow loop over the equation."""

import math

import torch
import torch.nn.functional as F

from selfsup.methods.simclr import nt_xent


def slow_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Eq. (1) term by term: l(i, j) for every anchor i, averaged over the 2N anchors."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    n = n2 // 2

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(z[i], z[j]) / tau) / denom)
    return total / n2


def test_nt_xent_matches_hand_computed_case() -> None:
    # Views: a1=(1,0), a2=(0,1) and their positives b1=(1,0), b2=(-1,0), tau = 1.
    # Cosines: a1.a2=0, a1.b1=1, a1.b2=-1, a2.b1=0, a2.b2=0, b1.b2=-1.
    e = math.exp
    l_a1 = -math.log(e(1) / (e(0) + e(1) + e(-1)))
    l_a2 = math.log(3.0)
    l_b1 = -math.log(e(1) / (e(1) + e(0) + e(-1)))
    l_b2 = -math.log(e(0) / (e(-1) + e(0) + e(-1)))
    expected = (l_a1 + l_a2 + l_b1 + l_b2) / 4
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    assert math.isclose(nt_xent(z, temperature=1.0).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.6163, abs_tol=1e-3)


def test_nt_xent_matches_slow_loop_and_is_scale_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = nt_xent(torch.cat([z1, z2]), temperature=0.3).item()
    assert math.isclose(loss, slow_nt_xent(z1, z2, 0.3), rel_tol=1e-5)
    scaled = nt_xent(torch.cat([3 * z1, 0.5 * z2]), temperature=0.3).item()
    assert math.isclose(loss, scaled, rel_tol=1e-5)


def test_nt_xent_with_gathered_candidates_equals_global_loss() -> None:
    """Rank-local anchors against all-gathered candidates average to the global loss."""
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    global_loss = nt_xent(torch.cat([z1, z2]), temperature=0.5)
    blocks = [torch.cat([z1[:4], z2[:4]]), torch.cat([z1[4:], z2[4:]])]
    candidates = torch.cat(blocks)
    per_rank = [nt_xent(b, candidates, offset=r * 8, temperature=0.5) for r, b in enumerate(blocks)]
    assert torch.allclose(torch.stack(per_rank).mean(), global_loss, atol=1e-6)


def test_nt_xent_learns_a_toy_problem() -> None:
    """A linear encoder trained with NT-Xent separates noisy copies of 16 prototypes."""
    torch.manual_seed(0)
    protos = torch.randn(16, 8)
    enc = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    losses = []
    for _ in range(150):
        x1 = protos + 0.3 * torch.randn_like(protos)
        x2 = protos + 0.3 * torch.randn_like(protos)
        loss = nt_xent(torch.cat([enc(x1), enc(x2)]), temperature=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    z = F.normalize(enc(protos + 0.3 * torch.randn_like(protos)), dim=1)
    nearest = (z @ F.normalize(enc(protos), dim=1).T).argmax(1)
    assert (nearest == torch.arange(16)).float().mean() > 0.9
