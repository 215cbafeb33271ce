"""CPC: InfoNCE (Eq. 4) by hand, the overlapping patch grid, the causal context network, a training-loop run."""

import math

import pytest
import torch

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.errors import ConfigError
from selfsup.methods import DataInfo, build_method
from selfsup.methods.cpc import cpc_infonce, encode_patches, extract_patches, patch_grid
from selfsup.params import load_config
from selfsup.train import image_loop


def test_cpc_infonce_matches_hand_computed_case() -> None:
    # Scores z_l^T (W_k c_t) = predictions @ targets.T:
    #   p0=(1,0): [1, 0, 1]   p1=(0,1): [0, 2, -1]   p2=(1,1): [1, 2, 0]; positives on the diagonal.
    #   l0 = -1 + log(e + 1 + e)        = 0.861995
    #   l1 = -2 + log(1 + e^2 + e^-1)   = 0.169846
    #   l2 = -0 + log(e + e^2 + 1)      = 2.407606      mean = 1.146482
    predictions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    e = math.exp
    expected = ((math.log(2 * e(1) + 1) - 1) + (math.log(1 + e(2) + e(-1)) - 2) + math.log(e(1) + e(2) + 1)) / 3
    assert math.isclose(expected, 1.146482, abs_tol=1e-6)
    assert math.isclose(cpc_infonce(predictions, targets).item(), expected, rel_tol=1e-6)


def test_cpc_infonce_with_gathered_targets_averages_to_the_global_loss() -> None:
    g = torch.Generator().manual_seed(0)
    preds, targets = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    whole = cpc_infonce(preds, targets)
    per_rank = [cpc_infonce(preds[r * 4:(r + 1) * 4], targets, offset=r * 4) for r in range(2)]
    assert torch.allclose(torch.stack(per_rank).mean(), whole, atol=1e-6)


def test_patch_grid_of_a_known_image() -> None:
    # x[c, i, j] = 100 c + 8 i + j; 4x4 patches with stride 2 give (8 - 4) / 2 + 1 = 3 per side.
    x = (100 * torch.arange(3)[:, None, None] + 8 * torch.arange(8)[:, None] + torch.arange(8)).float()[None]
    p = extract_patches(x, 4, 2)
    assert p.shape == (1, 3, 3, 3, 4, 4) and patch_grid(8, 4, 2) == 3
    assert p[0, 1, 2, 0].tolist() == [[20, 21, 22, 23], [28, 29, 30, 31], [36, 37, 38, 39], [44, 45, 46, 47]]
    assert p[0, 0, 0, 2].tolist() == [[200, 201, 202, 203], [208, 209, 210, 211],
                                      [216, 217, 218, 219], [224, 225, 226, 227]]
    assert p[0, 2, 2, 1, 3, 3].item() == 100 + 8 * 7 + 7
    # Neighbours share half a patch: columns 2-3 of (0, 0) are columns 0-1 of (0, 1), rows likewise.
    assert torch.equal(p[0, 0, 0, :, :, 2:], p[0, 0, 1, :, :, :2])
    assert torch.equal(p[0, 0, 0, :, 2:, :], p[0, 1, 0, :, :2, :])
    # Stride = size tiles the image without overlap: 2x2 patches holding every pixel once.
    tiles = extract_patches(x, 4, 4)
    assert tiles.shape[1:3] == (2, 2) and tiles.sum().item() == x.sum().item()
    assert patch_grid(32, 8, 4) == 7 and patch_grid(16, 8, 4) == 3 and patch_grid(6, 8, 4) == 0


def _method(project, **knobs):
    params = {**TINY_RUN, "method": "cpc", "views": {"size": 32}, "prediction_steps": 2, "context_layers": 2,
              **knobs}
    return build_method(load_config(write_params(project, **params)), DataInfo(64))


@pytest.mark.parametrize("directions", [1, 4])
def test_context_of_row_i_does_not_see_lower_rows(project, directions) -> None:
    torch.manual_seed(0)
    method = _method(project, directions=directions).eval()  # eval: BatchNorm must not mix patches
    patches = extract_patches(torch.randn(2, 3, 32, 32), 8, 4)  # 7x7 grid
    assert patches.shape[1:3] == (7, 7)
    changed = patches.clone()
    changed[:, 4] = torch.randn_like(changed[:, 4])  # new patches in row 4 only

    with torch.no_grad():
        z, z2 = encode_patches(method.backbone, patches), encode_patches(method.backbone, changed)
        c, c2 = method.contexts(z, 0), method.contexts(z2, 0)
    assert torch.equal(c[:, :, :4], c2[:, :, :4])              # rows 0..3 never see row 4
    assert not torch.allclose(c[:, :, 4:7], c2[:, :, 4:7])     # rows 4..6 (within 2 blocks' reach) do
    assert (c[:, :, 5] - c2[:, :, 5]).abs().amax() > 1e-4      # the row below sees row 4 through the context net

    if directions == 4:  # bottom-up (rotated by half a turn): rows 5..6 are its past, rows 0..4 see row 4
        with torch.no_grad():
            up, up2 = (torch.rot90(method.contexts(t, 1), -2, (2, 3)) for t in (z, z2))
        assert torch.equal(up[:, :, 5:], up2[:, :, 5:])
        assert (up[:, :, 3] - up2[:, :, 3]).abs().amax() > 1e-4


def test_too_small_a_grid_is_a_config_error(project) -> None:
    cfg = load_config(write_params(project, **{**TINY_RUN, "method": "cpc", "prediction_steps": 2}))
    with pytest.raises(ConfigError, match=r"3x3 grid, but prediction_steps=2 needs at least 4 rows.*"
                                          r"lower prediction_steps to 1"):
        build_method(cfg, DataInfo(64))


def test_trainer_smoke_run_updates_every_part_and_features_are_pooled_patches(project) -> None:
    data = tiny_dataset(project / "data")
    cfg = load_config(write_params(project, **{**TINY_RUN, "method": "cpc", "prediction_steps": 1,
                                                "directions": 4, "color_drop": 0.5}))
    trainer = image_loop(cfg, data, project / "ck")
    before = {k: v.clone() for k, v in trainer.task.method.state_dict().items()}
    history = trainer.fit()
    assert trainer.step == 12 and all(math.isfinite(r["loss"]) for r in history.rows)
    after = trainer.task.method.state_dict()
    for key in ("backbone.features.0.0.weight", "context.0.0.body.1.weight", "context.3.0.body.3.weight",
                "predictors.0.0.weight", "predictors.3.0.weight"):
        assert key in after and not torch.equal(before[key], after[key]), key

    method = trainer.task.method.eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        features = method.feature_extractor()(x)
        by_hand = torch.stack([torch.stack([method.backbone(x[:, :, 4 * r:4 * r + 8, 4 * s:4 * s + 8])
                                            for s in range(3)]).mean(0) for r in range(3)]).mean(0)
    assert features.shape == (5, 32)
    assert torch.allclose(features, by_hand, atol=1e-5)
