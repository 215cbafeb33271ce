"""VQ-VAE: nearest-code quantisation, where each term's gradient goes (straight-through to the encoder,
codebook loss to the codebook only, commitment to the encoder only), one EMA codebook step by hand, dead-code
restarts, perplexity, the PixelCNN prior's causality, knob checks, and a SIGKILLed run resumed."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, TINY_RUN, kill_after_first_checkpoint, tiny_dataset, write_params
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, Views, build_method
from selfsup.methods.vqvae import ema_codebook_update, nearest_codes, perplexity, straight_through, vq_losses
from selfsup.models.pixelcnn import MaskedConv2d, PixelCNNPrior
from selfsup.params import load_config

SMALL = {"n_codes": 8, "code_dim": 4, "hidden": 8, "prior_channels": 8, "prior_layers": 2}


def _config(project: Path, **values: object) -> Config:
    return load_config(write_params(project, method="vqvae", **{**TINY_RUN, **SMALL, **values}))


def test_nearest_codes_by_hand() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[0.1, 0.1], [0.9, -0.3], [0.2, 1.4], [0.5, 0.0]])
    # distances^2 to the codes: row 3 is 0.25 from codes 0 and 1 (a tie goes to the lower index)
    assert nearest_codes(z, codebook).tolist() == [0, 1, 2, 0]


def test_straight_through_copies_the_decoder_gradient_to_the_encoder() -> None:
    z_e = torch.tensor([[0.2, -0.4]], requires_grad=True)
    e = torch.tensor([[1.0, 1.0]], requires_grad=True)
    out = straight_through(z_e, e)
    assert out.tolist() == [[1.0, 1.0]]  # the value is z_q's
    (out * torch.tensor([[3.0, 5.0]])).sum().backward()
    assert z_e.grad.tolist() == [[3.0, 5.0]] and e.grad is None


def test_codebook_loss_moves_only_the_codebook_and_commitment_only_the_encoder() -> None:
    z_e = torch.tensor([[0.0, 2.0]], requires_grad=True)
    e = torch.tensor([[1.0, 0.0]], requires_grad=True)
    codebook_loss, commitment = vq_losses(z_e, e)
    # both: mean of (1, 4) = 2.5
    assert codebook_loss.item() == commitment.item() == 2.5
    codebook_loss.backward(retain_graph=True)
    assert z_e.grad is None and e.grad.tolist() == [[1.0, -2.0]]  # d/de mean (e - z)^2 = (e - z)
    e.grad = None
    commitment.backward()
    assert e.grad is None and z_e.grad.tolist() == [[-1.0, 2.0]]


def test_one_ema_codebook_step_on_three_codes_by_hand() -> None:
    # gamma = 0.5; N = (2, 1, 0), m = (2, 2, 0) before; the batch assigns z = (1, 1), (3, 1) to code 0 and (0, 4) to 2
    n, m = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([[2.0, 2.0], [2.0, 2.0], [0.0, 0.0]])
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 4.0]])
    size, total, codebook = ema_codebook_update(n, m, z, torch.tensor([0, 0, 2]), decay=0.5, eps=0.0)
    # N = 0.5 (2, 1, 0) + 0.5 (2, 0, 1) = (2, 0.5, 0.5)
    assert size.tolist() == [2.0, 0.5, 0.5]
    # m_0 = 0.5 (2, 2) + 0.5 (4, 2) = (3, 2); m_1 = (1, 1); m_2 = 0.5 (0, 4) = (0, 2)
    assert total.tolist() == [[3.0, 2.0], [1.0, 1.0], [0.0, 2.0]]
    # e = m / N
    assert codebook.tolist() == [[1.5, 1.0], [2.0, 2.0], [0.0, 4.0]]
    # with Laplace smoothing an unused, empty code divides by a positive count, not by zero
    _, _, smoothed = ema_codebook_update(torch.zeros(3), torch.zeros(3, 2), z[:1], torch.tensor([0]), decay=0.5)
    assert torch.isfinite(smoothed).all() and smoothed[1:].abs().sum() == 0


def test_perplexity_counts_used_codes() -> None:
    assert math.isclose(perplexity(torch.arange(8), 8).item(), 8.0, rel_tol=1e-6)
    assert math.isclose(perplexity(torch.zeros(8, dtype=torch.long), 8).item(), 1.0, rel_tol=1e-6)
    assert math.isclose(perplexity(torch.tensor([0, 0, 1, 1]), 8).item(), 2.0, rel_tol=1e-6)


def test_masked_convolutions_are_causal() -> None:
    for mask, centre in (("A", 0.0), ("B", 1.0)):
        conv = MaskedConv2d(mask, 1, 1, 3)
        m = conv.mask[0, 0]
        assert m.tolist() == [[1.0, 1.0, 1.0], [1.0, centre, 0.0], [0.0, 0.0, 0.0]]
    prior = PixelCNNPrior(5, channels=8, layers=2).eval()
    codes = torch.randint(0, 5, (1, 4, 4), generator=torch.Generator().manual_seed(0))
    base = prior(codes)
    changed = codes.clone()
    changed[0, 2, 1] = (codes[0, 2, 1] + 1) % 5
    diff = (prior(changed) - base).abs().sum(1)[0] > 0
    # a change at (2, 1) reaches only the positions after it in raster order
    order = torch.arange(16).view(4, 4)
    assert not diff[order <= 2 * 4 + 1].any() and diff[order > 2 * 4 + 1].any()
    samples = prior.sample(3, (4, 4), generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, 4, 4) and samples.min() >= 0 and samples.max() < 5


def test_forward_terms_and_gradients(project: Path) -> None:
    torch.manual_seed(0)
    m = build_method(_config(project, commitment=0.5), DataInfo(64)).train()
    x = torch.randn(4, 3, 16, 16)
    out = m(Views([x]), torch.arange(4))
    loss = out.losses
    expected = loss["recon_mse"] + 0.5 * loss["commitment"] + loss["codebook"] + loss["prior_nll"]
    assert torch.allclose(loss["loss"], expected)
    loss["loss"].backward()
    assert m.codebook.grad is not None and m.codebook.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.backbone.parameters())
    assert 1.0 <= loss["perplexity"].item() <= 8.0
    assert m.feature_extractor()(x).shape == (4, 4 * 4 * 4)  # z_e: 4 x 4 grid of D = 4, flattened


def test_ema_mode_updates_the_codebook_without_its_loss(project: Path) -> None:
    torch.manual_seed(0)
    m = build_method(_config(project, ema=True, ema_decay=0.9), DataInfo(64)).train()
    assert not m.codebook.requires_grad
    before = m.codebook.detach().clone()
    out = m(Views([torch.randn(4, 3, 16, 16)]), torch.arange(4))
    expected = out.losses["recon_mse"] + 0.25 * out.losses["commitment"] + out.losses["prior_nll"]
    assert torch.allclose(out.losses["loss"], expected)
    assert not torch.equal(before, m.codebook) and m.cluster_size.sum() > 0
    assert {"codebook", "cluster_size", "embed_sum", "idle_steps", "steps_done"} <= set(m.state_dict())
    assert any(k.startswith("prior.") for k in m.state_dict())


def test_dead_codes_are_restarted_onto_encoder_outputs(project: Path) -> None:
    torch.manual_seed(0)
    m = build_method(_config(project, restart_after=2, n_codes=64), DataInfo(64)).train()
    x = torch.randn(4, 3, 16, 16)
    m(Views([x]), torch.arange(4))
    idle = m.idle_steps.clone()
    assert (idle <= 1).all() and (idle == 1).any()
    m(Views([x]), torch.arange(4))  # unused twice in a row: moved onto encoder outputs, counters reset
    assert (m.idle_steps <= 1).all()
    z = m.backbone(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    restarted = torch.nonzero(idle == 1).flatten()
    assert all(torch.isclose(m.codebook[i], z, atol=1e-6).all(1).any() for i in restarted)


@pytest.mark.parametrize(("values", "match"), [
    ({"n_codes": 1}, "n_codes=1 is not allowed"),
    ({"commitment": -0.1}, "commitment=-0.1 is not allowed"),
    ({"views": {"size": 18}}, "multiple of 4"),
])
def test_bad_knobs_are_config_errors(project: Path, values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method(_config(project, **values), DataInfo(64))


@pytest.mark.slow
def test_sigkilled_vqvae_pretrain_resumes_to_identical_metrics(project: Path) -> None:
    import subprocess

    data = tiny_dataset(project / "data", n_train=256)
    params = yaml.safe_load(_config_path(project).read_text())
    params.update({"epochs": 4, "train": {"checkpoint_every": 4, "log_every": 2, "threads": 1}})
    _config_path(project).write_text(yaml.safe_dump(params))

    def pretrain(out: str) -> list[str]:
        return [sys.executable, str(REPO / "stages/pretrain.py"), "--params", str(project / "params.yaml"),
                "--data", str(data), "--out", str(project / out), "--checkpoints", str(project / out / "ck"),
                "--no-mlflow"]

    subprocess.run(pretrain("full"), cwd=project, check=True, capture_output=True)
    kill_after_first_checkpoint(pretrain("killed"), project, project / "killed/ck/last.pt")
    assert not (project / "killed/metrics.json").exists()
    subprocess.run(pretrain("killed"), cwd=project, check=True, capture_output=True)
    assert json.loads((project / "killed/metrics.json").read_text()) == \
        json.loads((project / "full/metrics.json").read_text())
    history = (project / "full/history.csv").read_text()
    assert "perplexity" in history.split("\n")[0]
    assert (project / "killed/history.csv").read_text() == history


def _config_path(project: Path) -> Path:
    return write_params(project, method="vqvae", ema=True, restart_after=3, **{**TINY_RUN, **SMALL})
