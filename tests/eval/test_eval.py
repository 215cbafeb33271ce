"""Weighted kNN and the linear probe on hand-made features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.config import Config
from selfsup.config.image import EvalConfig, KnnConfig, LinearProbeConfig
from selfsup.eval.evaluate import probe
from selfsup.eval.knn import knn_accuracy, knn_predict
from selfsup.eval.linear import linear_probe_accuracy, train_linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread

# four unit train vectors on the axes: +x is class 0, +y and -y are class 1, -x is class 2
TRAIN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
TRAIN_Y = torch.tensor([0, 1, 1, 2])


def test_knn_weighted_vote_by_hand() -> None:
    queries = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.1, 1.0]])
    # query (1, 0): cosines 1, 0, 0, -1; the k=3 nearest are +x, +y, -y.
    #   T=1: class 0 gets e^1 = 2.718, class 1 gets e^0 + e^0 = 2  -> class 0 (one close neighbour wins)
    # query (-1, 0.1)/|.|: cosines -0.995, 0.0995, -0.0995, 0.995; nearest -x, +y, -y.
    #   class 2 gets e^0.995 = 2.705, class 1 gets e^0.0995 + e^-0.0995 = 2.010 -> class 2
    # query (0.1, 1)/|.|: cosines 0.0995, 0.995, -0.995, -0.0995; nearest +y, +x, -x.
    #   class 1 gets e^0.995 = 2.705, class 0 e^0.0995 = 1.105, class 2 e^-0.0995 = 0.905 -> class 1
    pred = knn_predict(TRAIN, TRAIN_Y, queries, n_classes=3, k=3, temperature=1.0)
    assert pred.tolist() == [0, 2, 1]
    assert pred.dtype == torch.int64


def test_knn_temperature_turns_weights_into_a_majority_vote() -> None:
    # query (1, 0) again: at T=100, class 0 gets e^0.01 = 1.01 and class 1 gets 2 * e^0 = 2 -> class 1
    assert math.exp(1 / 100) < 2 * math.exp(0)
    pred = knn_predict(TRAIN, TRAIN_Y, torch.tensor([[1.0, 0.0]]), n_classes=3, k=3, temperature=100.0)
    assert pred.tolist() == [1]
    # with k=1 only the nearest neighbour votes, whatever the temperature
    assert knn_predict(TRAIN, TRAIN_Y, torch.tensor([[1.0, 0.0]]), 3, k=1, temperature=100.0).tolist() == [0]


def test_knn_uses_cosine_similarity() -> None:
    queries = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.1, 1.0]])
    scales = torch.tensor([[5.0], [0.1], [3.0], [70.0]])
    scaled = knn_predict(TRAIN * scales, TRAIN_Y, queries * 100.0, n_classes=3, k=3, temperature=1.0)
    assert scaled.tolist() == [0, 2, 1]
    # Euclidean distance would pick the short +y vector (0, 0.1) as nearest to (0.2, 0.1); cosine picks +x
    assert knn_predict(TRAIN * scales, TRAIN_Y, torch.tensor([[0.2, 0.1]]), 3, k=1).tolist() == [0]


def test_knn_chunks_and_k_larger_than_train_set() -> None:
    g = torch.Generator().manual_seed(0)
    train, labels = torch.randn(30, 5, generator=g), torch.randint(0, 4, (30,), generator=g)
    test = torch.randn(17, 5, generator=g)
    whole = knn_predict(train, labels, test, 4, k=5, temperature=0.1)
    assert torch.equal(knn_predict(train, labels, test, 4, k=5, temperature=0.1, chunk=4), whole)
    # k is clamped to the train set size: with k=100 every train point votes
    big = knn_predict(train, labels, test, 4, k=100, temperature=0.5)
    assert torch.equal(big, knn_predict(train, labels, test, 4, k=30, temperature=0.5))


def test_knn_accuracy_counts_matches() -> None:
    queries = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.1, 1.0], [0.0, -2.0]])
    # predictions are 0, 2, 1, 1: three of the four labels below match
    acc = knn_accuracy(TRAIN, TRAIN_Y, queries, torch.tensor([0, 2, 0, 1]), n_classes=3, k=3, temperature=1.0)
    assert acc == pytest.approx(0.75)


def _blobs(n_per_class: int, seed: int, spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian blobs in 8-D centred at +-8 on the first two axes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(4, 8)
    centres[0, 0], centres[1, 0], centres[2, 1], centres[3, 1] = 8.0, -8.0, 8.0, -8.0
    labels = torch.arange(4).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), 8, generator=g), labels


PROBE = LinearProbeConfig(epochs=50, lr=0.1, weight_decay=1e-4, batch_size=64)



def test_linear_probe_separates_blobs() -> None:
    xtr, ytr = _blobs(50, seed=0)
    xte, yte = _blobs(25, seed=1)
    assert linear_probe_accuracy(xtr, ytr, xte, yte, 4, PROBE, seed=0) == 1.0


def test_linear_probe_is_at_chance_on_random_labels() -> None:
    g = torch.Generator().manual_seed(2)
    xtr, ytr = torch.randn(200, 8, generator=g), torch.randint(0, 4, (200,), generator=g)
    xte, yte = torch.randn(400, 8, generator=g), torch.randint(0, 4, (400,), generator=g)
    acc = linear_probe_accuracy(xtr, ytr, xte, yte, 4, PROBE, seed=0)
    # chance is 0.25; the binomial std over 400 test points is 0.022
    assert acc < 0.45


def test_linear_probe_is_deterministic_for_a_seed() -> None:
    xtr, ytr = _blobs(20, seed=3, spread=6.0)  # overlapping blobs, so the weights matter
    a, mean_a, std_a = train_linear_probe(xtr, ytr, 4, PROBE, seed=5)
    b, _, _ = train_linear_probe(xtr, ytr, 4, PROBE, seed=5)
    c, _, _ = train_linear_probe(xtr, ytr, 4, PROBE, seed=6)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)
    # features are standardised with the train statistics
    torch.testing.assert_close(mean_a, xtr.mean(0))
    torch.testing.assert_close(std_a, xtr.std(0) + 1e-6)
    xte, yte = _blobs(20, seed=4, spread=6.0)
    assert (linear_probe_accuracy(xtr, ytr, xte, yte, 4, PROBE, seed=5)
            == linear_probe_accuracy(xtr, ytr, xte, yte, 4, PROBE, seed=5))


def test_probe_returns_both_accuracies() -> None:
    cfg = Config(eval=EvalConfig(linear=PROBE, knn=KnnConfig(k=5, temperature=0.1)))
    xtr, ytr = _blobs(30, seed=0)
    xte, yte = _blobs(10, seed=1)
    out = probe(xtr, ytr.numpy(), xte, yte.numpy(), 4, cfg)
    assert out == {"linear_top1": 1.0, "knn_top1": 1.0}
    # flipped test labels: both probes are now always wrong
    flipped = probe(xtr, ytr.numpy(), xte, np.asarray((yte.numpy() + 1) % 4), 4, cfg)
    assert flipped == {"linear_top1": 0.0, "knn_top1": 0.0}
