"""Disentanglement metrics against ground-truth generative factors: the beta-VAE score and MIG.

Both read codes z (N, d), one row per image, and the images' factors v (N, K) with each factor's
type (``categorical``, ``discrete`` or ``continuous``, as :mod:`selfsup.data.store` records them).

beta-VAE score. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR 2017, https://openreview.net/forum?id=Sy2fzU9gl, Sec. 3 and
Appendix A.4. One point for a linear classifier is made by

    1. choosing a factor y uniformly among the K factors;
    2. for l = 1..L, drawing two images x_{1,l}, x_{2,l} with the same value of factor y and
       taking z_diff^l = |z_{1,l} - z_{2,l}|;
    3. averaging, z_diff^b = 1/L sum_l z_diff^l, with label y.

The score is the accuracy of a linear classifier that predicts y from z_diff^b, on points it was
not trained on; chance is 1/K. The paper renders each pair from a simulator; here both images come
from the dataset itself: the first uniformly among the images whose (binned) value of factor y
some other image shares, the second uniformly among those other images. The factors not fixed
thus follow the data's own distribution. Continuous factors are binned into ``n_bins``
equal-width bins so that a value can be shared. The images are split at random, in proportion
to the training and test points, and each set of points draws its pairs from its own images:
with a finite dataset the pairs that fix a factor are a fixed sample, and a classifier of many
code dimensions could otherwise learn that sample's quirks even from codes that ignore the
factors (random 512-d codes score 0.26 against a chance of 0.17 on digits-bg's test split when
both sets share the images). The classifier is an l2-regularised logistic regression on
standardised z_diff^b (the scaling changes no linear decision, only the regulariser's reach).

MIG. Chen, Li, Grosse, Duvenaud, "Isolating Sources of Disentanglement in Variational
Autoencoders", NeurIPS 2018, https://arxiv.org/abs/1802.04942, Sec. 4.1, Eq. 6:

    MIG = 1/K sum_k ( I(z_{j(k)}; v_k) - max_{j != j(k)} I(z_j; v_k) ) / H(v_k),
    j(k) = argmax_j I(z_j; v_k).

The paper estimates I(z_j; v_k) through the encoder's distribution q(z_j | x); for deterministic
codes we use the histogram estimate of Locatello et al. 2019 (https://arxiv.org/abs/1811.12359):
each code dimension is cut into ``n_bins`` equal-width bins, continuous factors likewise, and I and
H are plug-in estimates in nats from the empirical joint distribution (H(v) = I(v; v)).
Categorical and discrete factors keep their own values.

A factor with one value in the data (hue when every digit is white) is skipped by both metrics,
and one whose values no two images share by the beta-VAE score; the reason is returned.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CONSTANT = "constant: it takes one value in these images"
UNSHARED = "beta-VAE score only: no two training (or test) images share a value, so no pair can fix it"
NO_FACTORS = "the dataset has no ground-truth factors"


def discretise(values: np.ndarray, factor_type: str, n_bins: int) -> np.ndarray:
    """Integer codes (N,) of one factor or code dimension (N,): ``n_bins`` equal-width bins where
    ``factor_type`` is continuous, the distinct values otherwise."""
    values = np.asarray(values, dtype=np.float64)
    if factor_type == "continuous":
        return np.digitize(values, np.histogram_bin_edges(values, bins=n_bins)[1:-1])
    return np.unique(values, return_inverse=True)[1].reshape(-1)


def _check(codes: np.ndarray, factors: np.ndarray, factor_types: list[str]) -> None:
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, d) and factors (N, K) must have one row per image, "
                         f"got {codes.shape} and {factors.shape}")
    if factors.shape[1] != len(factor_types):
        raise ValueError(f"{factors.shape[1]} factor columns for {len(factor_types)} factor types")


def _pairs(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (n,) of image pairs i != j with labels[i] == labels[j], i uniform among the
    images whose label another image shares, j uniform among those others."""
    counts = np.bincount(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - starts[labels[order]]
    first = rng.choice(np.flatnonzero(counts[labels] >= 2), size=n)
    offset = rng.integers(0, counts[labels[first]] - 1)
    offset += offset >= rank[first]
    return first, order[starts[labels[first]] + offset]


def betavae_score(codes: np.ndarray, factors: np.ndarray, factor_types: list[str], rng: np.random.Generator,
                  n_train: int = 2000, n_test: int = 1000, batch: int = 64, n_bins: int = 20) -> dict:
    """The beta-VAE disentanglement score (Higgins et al. 2017) of ``codes`` (N, d).

    ``n_train`` and ``n_test`` points of ``batch`` (L) pairs each train and test the classifier,
    drawn from disjoint random parts of the N images. Returns ``{"score", "chance", "skipped"}``;
    ``skipped`` maps a factor's column to why it was left out, and ``score`` is None when fewer
    than two factors remain to tell apart.
    """
    codes = np.asarray(codes, dtype=np.float64)
    _check(codes, factors, factor_types)
    labels = [discretise(factors[:, k], t, n_bins) for k, t in enumerate(factor_types)]
    order = rng.permutation(len(codes))
    cut = int(round(len(codes) * n_train / (n_train + n_test)))
    parts = [(order[:cut], n_train), (order[cut:], n_test)]
    skipped: dict[int, str] = {}
    for k, v in enumerate(labels):
        if len(np.unique(v)) < 2:
            skipped[k] = CONSTANT
        elif any(len(part) == 0 or np.bincount(v[part]).max() < 2 for part, _ in parts):
            skipped[k] = UNSHARED
    kept = [k for k in range(len(labels)) if k not in skipped]
    if len(kept) < 2:
        return {"score": None, "chance": None, "skipped": skipped}
    y = np.concatenate([rng.choice(kept, size=n) for _, n in parts])
    first = np.empty((len(y), batch), dtype=np.int64)
    second = np.empty_like(first)
    for (part, _), rows in zip(parts, (np.arange(n_train), np.arange(n_train, len(y))), strict=True):
        for k in kept:
            mine = rows[y[rows] == k]
            i, j = _pairs(labels[k][part], len(mine) * batch, rng)
            first[mine], second[mine] = part[i].reshape(-1, batch), part[j].reshape(-1, batch)
    z_diff = np.concatenate([np.abs(codes[first[s : s + 256]] - codes[second[s : s + 256]]).mean(axis=1)
                             for s in range(0, len(y), 256)])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    classifier.fit(z_diff[:n_train], y[:n_train])
    score = float((classifier.predict(z_diff[n_train:]) == y[n_train:]).mean())
    return {"score": score, "chance": 1.0 / len(kept), "skipped": skipped}


def mig(codes: np.ndarray, factors: np.ndarray, factor_types: list[str], n_bins: int = 20) -> dict:
    """The mutual information gap (Chen et al. 2018, Eq. 6) of ``codes`` (N, d), d >= 2.

    Returns ``{"mig", "per_factor", "skipped"}``: ``per_factor`` maps a factor's column to its
    normalised gap, ``mig`` is their mean (None when every factor is skipped), ``skipped`` maps a
    column to why it was left out.
    """
    codes = np.asarray(codes, dtype=np.float64)
    _check(codes, factors, factor_types)
    if codes.shape[1] < 2:
        raise ValueError(f"MIG compares the two most informative code dimensions; codes have {codes.shape[1]}")
    binned = [discretise(codes[:, j], "continuous", n_bins) for j in range(codes.shape[1])]
    gaps: dict[int, float] = {}
    skipped: dict[int, str] = {}
    for k, t in enumerate(factor_types):
        v = discretise(factors[:, k], t, n_bins)
        entropy = mutual_info_score(v, v)
        if entropy <= 0.0:
            skipped[k] = CONSTANT
            continue
        top = np.sort([mutual_info_score(v, z) for z in binned])[::-1]
        gaps[k] = float((top[0] - top[1]) / entropy)
    return {"mig": float(np.mean(list(gaps.values()))) if gaps else None, "per_factor": gaps, "skipped": skipped}


def disentanglement(codes: np.ndarray, factors: np.ndarray | None, factor_meta: list[dict] | None,
                    seed: int, n_bins: int = 20) -> dict:
    """Both metrics of ``codes`` (N, d), one row per image of a split, against that split's factors.

    ``factors`` (N, K) and ``factor_meta`` (K entries with ``name`` and ``type``) are what
    :func:`selfsup.data.store.load_factors` returns; ``seed`` draws the beta-VAE score's pairs.
    Returns ``{"betavae_score", "betavae_chance", "mig", "mig_per_factor", "skipped"}`` with
    factors named, or ``{"reason": ...}`` when the dataset has no factors.
    """
    if factors is None or factor_meta is None:
        return {"reason": NO_FACTORS}
    names = [f["name"] for f in factor_meta]
    types = [f["type"] for f in factor_meta]
    beta = betavae_score(codes, factors, types, np.random.default_rng(seed), n_bins=n_bins)
    gap = mig(codes, factors, types, n_bins=n_bins)
    return {
        "betavae_score": beta["score"],
        "betavae_chance": beta["chance"],
        "mig": gap["mig"],
        "mig_per_factor": {names[k]: g for k, g in gap["per_factor"].items()},
        "skipped": {names[k]: reason for k, reason in sorted({**beta["skipped"], **gap["skipped"]}.items())},
    }
