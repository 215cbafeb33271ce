"""Translation losses (CUT PatchNCE, LSGAN, CycleGAN L1 terms, SimDCL similarity) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.translate.losses import (
    cycle_loss,
    identity_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    patch_nce,
    similarity_loss,
)

# B=1, N=3, C=2 unit vectors. Queries q1=(1,0), q2=(0,1), q3=(0.6,0.8); keys k1=(0.8,0.6), k2=(0,1),
# k3=(-0.6,0.8). Dot products q_i . k_j (row i, column j), worked out by hand:
#   q1: 0.8, 0, -0.6     q2: 0.6, 1, 0.8     q3: 0.48+0.48=0.96, 0.8, -0.36+0.64=0.28
QUERY = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
KEY = torch.tensor([[[0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]])
SIMS = [[0.8, 0.0, -0.6], [0.6, 1.0, 0.8], [0.96, 0.8, 0.28]]


def explicit_nce(pos: float, negs: list[float], tau: float) -> float:
    """-log(exp(q.k_i/tau) / (exp(q.k_i/tau) + sum_{j != i} exp(q.k_j/tau))), the positive kept out of negs."""
    return -math.log(math.exp(pos / tau) / (math.exp(pos / tau) + sum(math.exp(s / tau) for s in negs)))


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("tau", [1.0, 0.07])
def test_patch_nce_3_patches_by_hand(tau: float) -> None:
    per_location = [explicit_nce(row[i], [s for j, s in enumerate(row) if j != i], tau) for i, row in enumerate(SIMS)]
    expected = sum(per_location) / 3
    assert patch_nce(QUERY, KEY, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    # the same number as a softmax over all N keys with the diagonal as target
    softmax_form = F.cross_entropy(torch.tensor(SIMS, dtype=torch.float64) / tau, torch.arange(3)).item()
    assert softmax_form == pytest.approx(expected, rel=1e-12)


def test_patch_nce_tau_1_literal_values() -> None:
    # l1 = log(1 + e^-0.8 + e^-1.4) = 0.528229, l2 = log(e^-0.4 + 1 + e^-0.2) = 0.911901,
    # l3 = log(e^0.68 + e^0.52 + 1) = 1.538136; mean 0.992756
    expected = (math.log(1 + math.exp(-0.8) + math.exp(-1.4)) + math.log(math.exp(-0.4) + 1 + math.exp(-0.2))
                + math.log(math.exp(0.68) + math.exp(0.52) + 1)) / 3
    assert expected == pytest.approx(0.992756, abs=1e-6)
    assert patch_nce(QUERY, KEY, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)


def test_patch_nce_positives_are_the_same_location() -> None:
    # permuting the key locations changes which key is the positive, hence the loss
    assert patch_nce(QUERY, KEY[:, [2, 0, 1]], temperature=1.0).item() != pytest.approx(
        patch_nce(QUERY, KEY, temperature=1.0).item(), rel=1e-3)
    # orthonormal q = k: positive 1, two negatives 0 -> -log(e^(1/tau) / (e^(1/tau) + 2))
    # a derangement of the keys: positive 0, negatives 1 and 0 -> -log(1 / (1 + e^(1/tau) + 1))
    eye = torch.eye(3)[None]
    aligned = patch_nce(eye, eye, temperature=0.5).item()
    shuffled = patch_nce(eye, eye[:, [1, 2, 0]], temperature=0.5).item()
    assert aligned == pytest.approx(explicit_nce(1.0, [0.0, 0.0], 0.5), rel=1e-5)
    assert shuffled == pytest.approx(explicit_nce(0.0, [1.0, 0.0], 0.5), rel=1e-5)
    assert aligned < shuffled


def test_patch_nce_keys_get_no_gradient() -> None:
    query = QUERY.clone().requires_grad_(True)
    key = KEY.clone().requires_grad_(True)
    patch_nce(query, key).backward()
    assert key.grad is None or not key.grad.any()
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_patch_nce_batch_negatives_by_hand() -> None:
    # B=2, N=2: image 0 has q=(1,0),(0,1) and k=(1,0),(0.6,0.8); image 1 has q=(0.6,0.8),(0.8,0.6) and
    # k=(0,1),(0.8,0.6).
    q = [[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [0.8, 0.6]]]
    k = [[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, 0.6]]]
    query, key = torch.tensor(q), torch.tensor(k)
    tau = 0.5
    internal = [explicit_nce(dot(q[b][i], k[b][i]), [dot(q[b][i], k[b][j]) for j in range(2) if j != i], tau)
                for b in range(2) for i in range(2)]
    flat_k = [k[b][j] for b in range(2) for j in range(2)]
    batch = [explicit_nce(dot(q[b][i], k[b][i]), [dot(q[b][i], kk) for n, kk in enumerate(flat_k) if n != 2 * b + i],
                          tau) for b in range(2) for i in range(2)]
    got_internal = patch_nce(query, key, temperature=tau, negatives="internal").item()
    got_batch = patch_nce(query, key, temperature=tau, negatives="batch").item()
    assert got_internal == pytest.approx(sum(internal) / 4, rel=1e-5)
    assert got_batch == pytest.approx(sum(batch) / 4, rel=1e-5)
    assert got_batch > got_internal + 0.1  # two more negatives per query
    # "internal" treats the images independently: the mean of the two one-image losses
    per_image = [patch_nce(query[b:b + 1], key[b:b + 1], temperature=tau).item() for b in range(2)]
    assert got_internal == pytest.approx(sum(per_image) / 2, rel=1e-6)


def test_patch_nce_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="negatives"):
        patch_nce(QUERY, KEY, negatives="external")
    with pytest.raises(ConfigError, match="shape"):
        patch_nce(QUERY, KEY[:, :2])


def test_lsgan_losses_by_hand() -> None:
    assert lsgan_discriminator_loss(torch.ones(2, 1, 6, 6), torch.zeros(2, 1, 6, 6)).item() == 0.0
    assert lsgan_generator_loss(torch.ones(2, 1, 6, 6)).item() == 0.0
    half = torch.full((2, 1, 6, 6), 0.5)
    assert lsgan_discriminator_loss(half, half).item() == pytest.approx(0.25)  # 0.5 * (0.25 + 0.25)
    assert lsgan_generator_loss(half).item() == pytest.approx(0.25)
    # real [2, 1]: mean((1, 0)) = 0.5; fake [0.5, -1.5]: mean(0.25, 2.25) = 1.25; D loss 0.5 * 1.75 = 0.875
    real = torch.tensor([2.0, 1.0], requires_grad=True)
    fake = torch.tensor([0.5, -1.5], requires_grad=True)
    lsgan_discriminator_loss(real, fake).backward()
    assert real.grad.tolist() == pytest.approx([0.5, 0.0])  # d/dr = (r - 1) / 2
    assert fake.grad.tolist() == pytest.approx([0.25, -0.75])  # d/df = f / 2
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.875)


def test_lsgan_generator_gradient_reaches_the_fake_scores_only() -> None:
    # mean((f - 1)^2) with f = [0.5, -1.5]: (0.25 + 6.25) / 2 = 3.25, d/df = (f - 1) = [-0.5, -2.5]
    real = torch.tensor([2.0, 1.0], requires_grad=True)
    fake = torch.tensor([0.5, -1.5], requires_grad=True)
    loss = lsgan_generator_loss(fake)
    assert loss.item() == pytest.approx(3.25)
    loss.backward()
    assert fake.grad.tolist() == pytest.approx([-0.5, -2.5])
    assert real.grad is None


def test_cycle_and_identity_are_l1_by_hand() -> None:
    # |0-1| + |1-1| + |2-0| + |3-3.5| = 3.5 over 4 entries
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 3.5]])
    assert cycle_loss(a, b).item() == pytest.approx(0.875)
    assert identity_loss(a, b).item() == pytest.approx(0.875)
    with pytest.raises(ConfigError, match="shape"):
        cycle_loss(a, b[:1])


def test_similarity_loss_compares_location_means() -> None:
    # a: locations (1,2), (3,4) -> mean (2,3); b: (0,0), (0,3), (3,0) -> mean (1,1); mean |(1, 2)| = 1.5
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    b = torch.tensor([[[0.0, 0.0], [0.0, 3.0], [3.0, 0.0]]], requires_grad=True)
    loss = similarity_loss(a, b)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    # d/da[n, c] = sign(diff_c) / (C * N_a) = 1/4; d/db[n, c] = -1 / (C * N_b) = -1/6
    assert torch.allclose(a.grad, torch.full_like(a, 0.25))
    assert torch.allclose(b.grad, torch.full_like(b, -1 / 6))
    # the order of the locations does not matter
    assert similarity_loss(a.detach().flip(1), b.detach()).item() == pytest.approx(1.5)
    with pytest.raises(ConfigError):
        similarity_loss(a, torch.zeros(1, 2, 3))
