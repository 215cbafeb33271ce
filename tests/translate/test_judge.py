"""The judge network: learns an easy task, trains deterministically, exposes 128-d features; Inception loading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfsup.errors import DataError
from selfsup.translate.judge import (
    INCEPTION_URL,
    JudgeNet,
    _shift,
    inception_features,
    judge_outputs,
    train_judge,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: these small convolutions are faster without a thread pool to synchronise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _patterns(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """White-on-black 3x32x32 images of three classes (horizontal bar, vertical bar, square), placed at random
    within +-4 px of the centre, with noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=gen)
    images = 0.15 * torch.rand(n, 1, 32, 32, generator=gen)
    offsets = torch.randint(-4, 5, (n, 2), generator=gen)
    for i in range(n):
        cy, cx = 16 + int(offsets[i, 0]), 16 + int(offsets[i, 1])
        if labels[i] == 0:
            images[i, 0, cy - 2:cy + 2, cx - 9:cx + 9] = 1.0
        elif labels[i] == 1:
            images[i, 0, cy - 9:cy + 9, cx - 2:cx + 2] = 1.0
        else:
            images[i, 0, cy - 6:cy + 6, cx - 6:cx + 6] = 1.0
    return images.expand(n, 3, 32, 32).contiguous(), labels


def test_judge_learns_an_easy_three_class_task() -> None:
    train_x, train_y = _patterns(300, seed=0)
    test_x, test_y = _patterns(200, seed=1)
    net = train_judge(train_x, train_y, steps=100, batch_size=32, seed=0)
    assert not net.training
    logits, feats = judge_outputs(net, test_x, batch_size=64)
    assert logits.shape == (200, 10) and feats.shape == (200, 128)
    accuracy = (logits.argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.9


def test_judge_training_is_deterministic() -> None:
    x, y = _patterns(64, seed=2)
    state = torch.get_rng_state()
    a = train_judge(x, y, steps=8, batch_size=16, seed=3).state_dict()
    b = train_judge(x, y, steps=8, batch_size=16, seed=3).state_dict()
    c = train_judge(x, y, steps=8, batch_size=16, seed=4).state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_features_and_judge_outputs_agree_with_forward() -> None:
    torch.manual_seed(0)
    net = JudgeNet(n_classes=10).eval()
    x = torch.rand(5, 3, 32, 32)
    assert net.features(x).shape == (5, 128)
    logits, feats = judge_outputs(net, x, batch_size=2)  # three batches
    with torch.no_grad():
        assert torch.allclose(logits, net(x), atol=1e-5)
        assert torch.allclose(feats, net.features(x), atol=1e-6)
    assert not logits.requires_grad


def test_shift_moves_each_image_by_at_most_two_pixels() -> None:
    x = torch.zeros(50, 3, 32, 32)
    x[:, :, 16, 16] = 1.0  # one bright pixel
    out = _shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out.sum((1, 2, 3)), torch.full((50,), 3.0))  # every image keeps its pixel
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = where // 32, where % 32
    assert ((rows - 16).abs() <= 2).all() and ((cols - 16).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # the offsets vary
    assert torch.equal(out[:, 0], out[:, 2])  # the channels move together


def test_train_judge_rejects_bad_labels() -> None:
    x = torch.rand(4, 3, 32, 32)
    with pytest.raises(ValueError, match="class indices"):
        train_judge(x, torch.tensor([0, 1, 2, 10]), steps=1)
    with pytest.raises(ValueError, match="expected 4 labels"):
        train_judge(x, torch.tensor([0, 1]), steps=1)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        train_judge(torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3]), steps=1)


def test_inception_features_need_the_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "inception.pth"
    with pytest.raises(DataError) as err:
        inception_features(torch.rand(2, 3, 32, 32), missing)
    message = str(err.value)
    assert str(missing) in message and INCEPTION_URL in message and "--inception PATH" in message
    assert "IMAGENET1K_V1" in message
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="not an Inception-v3 state dict"):
        inception_features(torch.rand(2, 3, 32, 32), bad)


def test_inception_features_from_a_local_state_dict(tmp_path: Path) -> None:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    feats = inception_features(torch.rand(2, 3, 32, 32), path, batch_size=1)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pooled after a ReLU
    assert not torch.equal(feats[0], feats[1])
