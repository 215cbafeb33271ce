"""Instance Discrimination (Wu et al. 2018): NCE (Eq. 3-7), full softmax (Eq. 2), proximal term
(Eq. 8), the memory bank's momentum update, and the method under the real training loop."""

import math

import pytest
import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.checkpoint import LAST, load_checkpoint
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.instdisc import estimate_z, instance_softmax_loss, nce_loss, proximal_term
from selfsup.methods.memory_bank import MemoryBank, momentum_update
from selfsup.params import load_config
from selfsup.train import image_loop

# A bank of n = 4 unit rows, two anchors f_1 = (1, 0) (image 0) and f_2 = (0.6, 0.8) (image 1).
BANK = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
F_BATCH = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
INDEX = torch.tensor([0, 1])
NOISE_IDX = torch.tensor([[1, 2], [3, 0]])  # m = 2 noise draws per anchor


def slow_nce(f: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, noise_idx: torch.Tensor, z: float,
             tau: float) -> float:
    """Eq. (3)-(6) term by term: P(i|v) = exp(v_i.v / tau) / Z, h = P / (P + m / n)."""
    n, m = len(bank), noise_idx.shape[1]
    f, bank = f.double(), bank.double()

    def h(i: int, v: torch.Tensor) -> float:
        p = math.exp(float(bank[i] @ v) / tau) / z
        return p / (p + m / n)

    total = 0.0
    for a in range(len(f)):
        total -= math.log(h(int(index[a]), f[a]))
        for j in noise_idx[a].tolist():
            total -= math.log(1 - h(j, f[a]))
    return total / len(f)


def test_nce_loss_matches_hand_computed_case() -> None:
    # tau = 1, Z = 2, m P_n = 2/4 = 1/2, so h = (e^s / 2) / (e^s / 2 + 1/2) = sigmoid(s) for a dot product s.
    # Anchor 1: positive s = 1, noise rows 1, 2: s = 0, -1.
    #   -log sigmoid(1) - log(1 - sigmoid(0)) - log(1 - sigmoid(-1)) = 0.31326 + 0.69315 + 0.31326 = 1.31968
    # Anchor 2: positive s = 0.8, noise rows 3, 0: s = -0.8, 0.6.
    #   -log sigmoid(0.8) - log sigmoid(0.8) - log sigmoid(-0.6) = 0.37110 + 0.37110 + 1.03749 = 1.77969
    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    a1 = -math.log(sig(1)) - math.log(1 - sig(0)) - math.log(1 - sig(-1))
    a2 = -2 * math.log(sig(0.8)) - math.log(1 - sig(0.6))
    expected = (a1 + a2) / 2
    assert math.isclose(expected, 1.54968, abs_tol=1e-5)
    loss = nce_loss(F_BATCH, BANK[INDEX], BANK[NOISE_IDX], z=2.0, n=4, temperature=1.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_nce_loss_matches_slow_loop() -> None:
    g = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(10, 5, generator=g), dim=1)
    f = torch.nn.functional.normalize(torch.randn(3, 5, generator=g), dim=1)
    index = torch.tensor([4, 0, 9])
    noise_idx = torch.randint(10, (3, 6), generator=g)
    loss = nce_loss(f, bank[index], bank[noise_idx], z=7.5, n=10, temperature=0.3)
    assert math.isclose(loss.item(), slow_nce(f, bank, index, noise_idx, 7.5, 0.3), rel_tol=1e-5)


def test_z_is_n_times_the_mean_noise_score() -> None:
    # Eq. (7): Z = n * mean(exp(v_j . f_i / tau)) over the noise draws: dots 0, -1 and -0.8, 0.6 with tau = 1:
    # 4 * (1 + e^-1 + e^-0.8 + e^0.6) / 4 = 3.63933
    expected = 1 + math.exp(-1) + math.exp(-0.8) + math.exp(0.6)
    assert math.isclose(expected, 3.63933, abs_tol=1e-5)
    assert math.isclose(estimate_z(F_BATCH, BANK[NOISE_IDX], 4, 1.0).item(), expected, rel_tol=1e-6)


def test_full_softmax_matches_hand_computed_case() -> None:
    # Eq. (2) with tau = 0.5. Anchor 1 (image 0): logits 2, 0, -2, 0 -> -log(e^2 / (e^2 + 2 + e^-2)) = 0.25386.
    # Anchor 2 (image 1): logits 1.2, 1.6, -1.2, -1.6 -> -log(e^1.6 / (e^1.2 + e^1.6 + e^-1.2 + e^-1.6)) = 0.57205.
    e = math.exp
    a1 = -math.log(e(2) / (e(2) + 2 + e(-2)))
    a2 = -math.log(e(1.6) / (e(1.2) + e(1.6) + e(-1.2) + e(-1.6)))
    assert math.isclose(a1, 0.25386, abs_tol=1e-5) and math.isclose(a2, 0.57205, abs_tol=1e-5)
    loss = instance_softmax_loss(F_BATCH, BANK, INDEX, temperature=0.5)
    assert math.isclose(loss.item(), (a1 + a2) / 2, rel_tol=1e-6)


def test_proximal_term_matches_hand_computed_case() -> None:
    # ||(1,0) - (0.6,0.8)||^2 = 0.16 + 0.64 = 0.8 and ||(0,1) - (0,1)||^2 = 0: mean 0.4.
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    previous = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    assert math.isclose(proximal_term(f, previous).item(), 0.4, rel_tol=1e-6)


def test_bank_momentum_update_exact_values() -> None:
    bank = MemoryBank(3, 2)
    bank.bank.copy_(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))
    bank.update(torch.tensor([0, 1]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), momentum=0.5)
    # Row 0: 0.5 (1,0) + 0.5 (0,1) = (0.5, 0.5) -> (1/sqrt 2, 1/sqrt 2).
    # Row 1: 0.5 (0.6,0.8) + 0.5 (1,0) = (0.8, 0.4) -> (0.8, 0.4) / sqrt(0.8) = (0.894427, 0.447214).
    # Row 2: not in the batch, unchanged.
    expected = torch.tensor([[0.707107, 0.707107], [0.894427, 0.447214], [0.0, 1.0]])
    assert torch.allclose(bank.bank, expected, atol=1e-6)
    # m = 0.9: 0.9 (1,0) + 0.1 (0,1) = (0.9, 0.1) -> (0.993884, 0.110432).
    assert torch.allclose(momentum_update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.9),
                          torch.tensor([[0.993884, 0.110432]]), atol=1e-6)


def test_bank_starts_with_random_unit_rows_and_samples_uniformly() -> None:
    torch.manual_seed(0)
    bank = MemoryBank(50, 8)
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(50), atol=1e-6)
    assert (bank.bank > 0).any() and (bank.bank < 0).any() and bank.bank.std(0).min() > 0.1
    draws = bank.sample(5000, torch.Generator().manual_seed(1))
    assert draws.min() == 0 and draws.max() == 49
    assert torch.bincount(draws, minlength=50).min() > 50  # every row drawn, about 100 times each
    per_anchor = bank.sample_for_batch(4, 3, torch.Generator().manual_seed(2))
    assert per_anchor.shape == (4, 3)
    assert torch.equal(per_anchor.flatten(), bank.sample(12, torch.Generator().manual_seed(2)))


def test_forward_is_nce_plus_lambda_proximal_and_softmax_option(project) -> None:
    torch.manual_seed(0)
    info = DataInfo(n_images=10)
    x = Views([torch.randn(4, 3, 16, 16)])
    index = torch.tensor([3, 1, 8, 0])
    for loss_name in ("nce", "softmax"):
        cfg = load_config(write_params(project, method="instdisc", **TINY_RUN, nce_k=5, proximal=2.0,
                                       instdisc_loss=loss_name))
        method = build_method(cfg, info).eval()
        out = method(x, index)
        f = out.embedding
        assert torch.allclose(f.norm(dim=1), torch.ones(4), atol=1e-5)
        prox = proximal_term(f, method.memory.bank[index])
        assert torch.allclose(out.losses["proximal"], prox)
        assert torch.allclose(out.losses["loss"], out.losses[loss_name] + 2.0 * prox, atol=1e-5)
        if loss_name == "softmax":
            assert torch.allclose(out.losses["softmax"], instance_softmax_loss(f, method.memory.bank, index, 0.07))
            assert not method.nce_z_ready
        else:
            assert method.nce_z_ready and method.nce_z.item() > 0


def test_trainer_updates_the_bank_keeps_z_and_resumes_exactly(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, method="instdisc", **TINY_RUN, nce_k=16))
    full = image_loop(cfg, data, project / "ck_full")
    initial_bank = full.task.method.memory.bank.clone()
    full.fit()
    losses = [r["loss"] for r in full.history.rows]
    assert len(losses) == cfg.epochs and all(math.isfinite(v) for v in losses)
    bank = full.task.method.memory.bank
    assert bank.shape == (64, 8)
    assert torch.allclose(bank.norm(dim=1), torch.ones(64), atol=1e-5)
    assert (bank - initial_bank).abs().sum(1).min() > 1e-3  # every image was visited and written
    z = full.task.method.nce_z.item()
    assert full.task.method.nce_z_ready and math.isfinite(z) and z > 0

    state = full.task.method.state_dict()
    assert {"memory.bank", "nce_z", "nce_z_ready"} <= set(state)
    saved = load_checkpoint(project / "ck_full" / LAST)["modules"]["model"]
    assert torch.equal(saved["memory.bank"], bank) and saved["nce_z"].item() == z

    first = image_loop(cfg, data, project / "ck_split")
    first.fit(until=7)
    second = image_loop(cfg, data, project / "ck_split")
    assert second.try_resume() and second.step == 5
    assert second.task.method.nce_z.item() == z  # Z restored, not re-estimated from another batch
    second.fit()
    other = second.task.method.state_dict()
    assert all(torch.equal(state[k], other[k]) for k in state)

    features = full.task.method.feature_extractor()(torch.randn(5, 3, 16, 16))
    assert features.shape == (5, full.task.method.backbone.feature_dim)


@pytest.mark.parametrize("bad", [{"instdisc_loss": "nce_softmax"}, {"bank_momentum": 1.0}, {"nce_k": 0}])
def test_bad_knobs_are_refused(project, bad) -> None:
    from selfsup.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(bad))):
        load_config(write_params(project, method="instdisc", **bad))
