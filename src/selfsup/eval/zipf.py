"""Zipf-KL: an unsupervised fitness of a representation by distribution matching.

Piergiovanni, Angelova, Ryoo, "Evolving Losses for Unsupervised Video Representation Learning",
CVPR 2020, https://arxiv.org/abs/2002.12177, Sec. 3.3 ("Unsupervised loss via Zipf distribution
matching"). The features of an unlabeled set V are clustered with k-means into centroids
c_1..c_k. Assuming every cluster is an isotropic Gaussian of the same variance with 2 sigma^2 = 1,
Bayes' rule gives the soft assignment

    p(c_i | x) = exp(-||x - c_i||^2) / sum_j exp(-||x - c_j||^2),

the cluster masses are p(c_i) = 1/|V| sum_{x in V} p(c_i | x), ranked so that p(c_1) is the
largest, and the fitness is their KL divergence to a Zipf prior over the ranks,

    q(c_i) = (1 / i^s) / H_{k,s},   H_{k,s} = sum_{n=1..k} 1 / n^s,
    KL(p || q) = sum_i p(c_i) log(p(c_i) / q(c_i))     (lower is better).

Feature scale. The soft assignment depends on the scale of the features: large features make it
a hard count, tiny ones make every mass 1/k whatever the structure. :func:`zipf_kl` therefore
(1) l2-normalises every feature (the cosine geometry that kNN and the contrastive objectives use;
a feature's norm carries no cluster identity) and (2) after k-means, divides the features and
centroids by sqrt(2 sigma^2), where sigma^2 is the pooled within-cluster variance per dimension
(k-means inertia / (N D)). In those units the paper's assumption 2 sigma^2 = 1 holds, so p(c|x)
is the posterior of the fitted isotropic mixture, and the result does not change when the features
are scaled. Centroids that k-means duplicates (fewer distinct points than k) are one
cluster; the missing clusters have mass 0. If every point sits on its centroid (sigma = 0), the
assignment is the hard one, its limit; a fully collapsed representation thus has all its mass in
one cluster and scores log H_{k,s}, the worst value.

Note that the prior is a claim about the data: on a set with k balanced classes a perfect
representation has uniform masses and scores KL(uniform || Zipf) > 0; ``exponent`` -> 0 turns the
prior into the uniform one.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

# Below this pooled within-cluster variance (features are unit vectors) the points sit on their
# centroids, and the soft assignment is taken at its limit, the hard one.
_HARD_VARIANCE = 1e-12


def zipf_prior(k: int, s: float) -> np.ndarray:
    """The Zipf distribution over ranks 1..k: q_i = i^-s / H_{k,s}, shape (k,), descending."""
    if k < 1:
        raise ValueError(f"k={k}: the Zipf prior needs at least one rank")
    weights = np.arange(1, k + 1, dtype=np.float64) ** -float(s)
    return weights / weights.sum()


def cluster_masses(features: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Cluster masses p(c_i) (k,) of ``features`` (N, D) under ``centers`` (k, D), sorted descending.

    p(c | x) is the softmax over clusters of -||x - c||^2 (Sec. 3.3, 2 sigma^2 = 1); the masses
    are its mean over the N samples, ranked largest first.
    """
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    d2 = (x * x).sum(1, keepdims=True) - 2.0 * x @ c.T + (c * c).sum(1)
    logits = -np.maximum(d2, 0.0)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    return np.sort(p.mean(0))[::-1]


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum_i p_i log(p_i / q_i), with 0 log 0 = 0; ``q`` must be > 0 where p > 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p has shape {p.shape} and q {q.shape}; they must match")
    support = p > 0
    if (q[support] <= 0).any():
        raise ValueError("q is 0 where p is not: KL(p || q) is infinite")
    return float((p[support] * np.log(p[support] / q[support])).sum())


def _distinct(centers: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge duplicated centroids: (distinct centres, labels relabelled to them)."""
    distinct, inverse = np.unique(np.round(centers, 12), axis=0, return_inverse=True)
    return distinct, inverse.reshape(-1)[labels]


def ranked_masses(features: np.ndarray, k: int = 8, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Soft cluster masses of ``features`` (N, D), sorted by rank (largest first); they sum to 1.

    Features are l2-normalised, clustered by scikit-learn's k-means (``n_init`` restarts, seeded),
    and scaled so that 2 sigma^2 = 1 (see the module docstring) before the soft assignment.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"features of shape {x.shape}: need (N, D) with N >= k = {k}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    with warnings.catch_warnings():  # fewer distinct points than k: duplicated centroids are merged below
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    centers, labels = _distinct(km.cluster_centers_, km.labels_)
    variance = float(((x - centers[labels]) ** 2).sum()) / x.size
    if variance <= _HARD_VARIANCE:
        masses = np.bincount(labels, minlength=len(centers)) / len(x)
    else:
        scale = 1.0 / np.sqrt(2.0 * variance)
        masses = cluster_masses(x * scale, centers * scale)
    return np.sort(np.pad(masses, (0, k - len(masses))))[::-1]


def zipf_kl(features: np.ndarray, k: int = 8, exponent: float = 1.0, seed: int = 0, n_init: int = 10) -> float:
    """KL(ranked cluster masses || Zipf(k, exponent)) of ``features`` (N, D); deterministic for a ``seed``."""
    return kl_divergence(ranked_masses(features, k, seed, n_init), zipf_prior(k, exponent))
