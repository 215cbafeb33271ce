"""VAE and beta-VAE: the closed-form KL against Monte Carlo, the reparameterised gradient, the likelihoods
and objectives by hand, the capacity schedule, knob checks, and the posterior mean as the extractor."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_RUN, write_params
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.vae import bernoulli_nll, capacity_at, gaussian_kl, gaussian_nll, reparameterise
from selfsup.params import load_config


def _config(project: Path, method: str = "vae", **values: object) -> Config:
    return load_config(write_params(project, method=method, **{**TINY_RUN, **values}))


def test_gaussian_kl_matches_hand_case_and_monte_carlo() -> None:
    # one dimension, mu = 1, sigma^2 = e: -1/2 (1 + 1 - 1 - e) = (e - 1)/2
    assert math.isclose(gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[1.0]])).item(), (math.e - 1) / 2,
                        rel_tol=1e-6)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).tolist() == [0.0, 0.0]  # q = p
    # Monte Carlo: E_q[log q(z) - log p(z)] with 400k samples per row
    mu, logvar = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[-0.5, 0.3, -2.0]])
    g = torch.Generator().manual_seed(0)
    z = reparameterise(mu.expand(400_000, 3), logvar.expand(400_000, 3), generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean().item()
    assert math.isclose(gaussian_kl(mu, logvar).item(), mc, rel_tol=5e-3)


def test_reparameterised_gradient_reaches_mu_and_logvar() -> None:
    mu = torch.tensor([[0.3, -0.2]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    g = torch.Generator().manual_seed(3)
    z = reparameterise(mu, logvar, generator=g)
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(z, mu + torch.tensor([[1.0, 2.0]]) * eps)
    z.sum().backward()
    # dz/dmu = 1; dz/dlogvar = eps * sigma / 2
    assert mu.grad.tolist() == [[1.0, 1.0]]
    assert torch.allclose(logvar.grad, eps * torch.tensor([[1.0, 2.0]]) / 2)


def test_likelihoods_by_hand() -> None:
    x, x_hat = torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[0.5, 0.5]]]])
    sigma = 0.5
    # each value: 0.25 / (2 * 0.25) + log(0.5 sqrt(2 pi)) = 0.5 + log(0.5 sqrt(2 pi))
    each = 0.5 + math.log(sigma * math.sqrt(2 * math.pi))
    assert math.isclose(gaussian_nll(x_hat, x, sigma).item(), 2 * each, rel_tol=1e-6)
    # Bernoulli with logit 0: each value costs log 2
    assert math.isclose(bernoulli_nll(torch.zeros(1, 1, 1, 2), x).item(), 2 * math.log(2), rel_tol=1e-6)


def test_capacity_rises_linearly_then_holds() -> None:
    assert capacity_at(0, 100, 25.0, 0.5) == 0.0
    assert capacity_at(25, 100, 25.0, 0.5) == 12.5
    assert capacity_at(50, 100, 25.0, 0.5) == capacity_at(99, 100, 25.0, 0.5) == 25.0


def _recomputed(method: torch.nn.Module, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's two terms recomputed from the method's sub-modules with the same noise."""
    mu, logvar = method.encode(x)
    torch.manual_seed(seed)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape)
    target = method.unnormalize(x).clamp(0, 1)
    nll = ((target - method.decode(z)) ** 2 / (2 * 0.1**2) + math.log(0.1 * math.sqrt(2 * math.pi))).flatten(1).sum(1)
    return nll, -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)


@pytest.mark.parametrize(("method", "beta"), [("vae", 1.0), ("betavae", 4.0)])
def test_forward_is_the_negative_elbo_weighted_by_beta(project: Path, method: str, beta: float) -> None:
    m = build_method(_config(project, method), DataInfo(64)).eval()
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(7)
    out = m(Views([x]), torch.arange(4))
    nll, kl = _recomputed(m, x, 7)
    assert torch.allclose(out.losses["loss"], (nll + beta * kl).mean(), rtol=1e-5)
    assert torch.allclose(out.losses["kl"], kl.mean(), rtol=1e-5)
    assert torch.equal(out.embedding, m.encode(x)[0].detach())


def test_capacity_objective_reads_the_saved_progress(project: Path) -> None:
    m = build_method(_config(project, "betavae", capacity=True, capacity_max=10.0, gamma=2.0), DataInfo(64)).eval()
    m.on_step_end(24, 100)  # 25 steps done of 100: C = 10 * 25 / 50 = 5
    assert m.progress.tolist() == [25, 100] and "progress" in m.state_dict()
    assert m.scheduled_values(25, 100)["capacity"] == 5.0
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(1)
    out = m(Views([x]), torch.arange(4))
    nll, kl = _recomputed(m, x, 1)
    assert torch.allclose(out.losses["loss"], (nll + 2.0 * (kl - 5.0).abs()).mean(), rtol=1e-5)


def test_extractor_is_the_posterior_mean(project: Path) -> None:
    m = build_method(_config(project, "betavae"), DataInfo(64)).eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(m.feature_extractor()(x), m.encode(x)[0])
    assert m.feature_extractor()(x).shape == (3, 10)


@pytest.mark.parametrize(("values", "match"), [
    ({"method": "betavae", "beta": 0.0}, "beta=0.0 is not allowed"),
    ({"method": "betavae", "beta": -1.0}, "beta=-1.0 is not allowed"),
    ({"method": "vae", "decoder_std": 0.0}, "decoder_std=0.0 is not allowed"),
    ({"method": "vae", "views": {"size": 20}}, "multiple of 8"),
])
def test_bad_knobs_are_config_errors(project: Path, values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method(_config(project, **values), DataInfo(64))


def test_bernoulli_forward_uses_logits(project: Path) -> None:
    m = build_method(_config(project, "vae", likelihood="bernoulli"), DataInfo(64)).eval()
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(2)
    out = m(Views([x]), torch.arange(2))
    mu, logvar = m.encode(x)
    torch.manual_seed(2)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape)
    target = m.unnormalize(x).clamp(0, 1)
    nll = F.binary_cross_entropy_with_logits(m.decode(z), target, reduction="none").flatten(1).sum(1)
    assert torch.allclose(out.losses["nll"], nll.mean(), rtol=1e-5)
