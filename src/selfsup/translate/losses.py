"""Losses of CUT / FastCUT, DCLGAN / SimDCL and CycleGAN, as pure functions.

PatchNCE (Park et al., "Contrastive Learning for Unpaired Image-to-Image Translation", ECCV 2020,
Eq. 2-3 and the official ``PatchNCELoss``). With query embeddings q_i (patches of the translated image)
and key embeddings k_j (the same locations of the input image), all L2-normalised,

    l(i) = -log( exp(q_i . k_i / tau) / ( exp(q_i . k_i / tau) + sum_{j in neg(i)} exp(q_i . k_j / tau) ) ),

averaged over every location of every image. ``neg(i)`` are the other N - 1 locations of the same
image ("internal", CUT's default) or the other B * N - 1 locations of the whole batch ("batch", CUT's
``--nce_includes_all_negatives_from_minibatch``). The keys are detached. The official code masks the
positive out of the negatives with a logit of -10 / tau; here it is left out exactly, which makes l(i)
the cross-entropy of a softmax over all candidates with target i.

LSGAN (Mao et al. 2017; CycleGAN's and CUT's ``--gan_mode lsgan``), with D's raw patch scores:

    L_D = 0.5 * ( mean (D(y) - 1)^2 + mean D(G(x))^2 ),    L_G = mean (D(G(x)) - 1)^2.

CycleGAN's cycle-consistency (Zhu et al. 2017, Eq. 2) and identity losses (Sec. 5.2) and DCLGAN's
identity loss (Han et al. 2021) are L1 distances: mean |a - b|.

SimDCL's similarity loss (Han et al. 2021, the SimDCL variant of DCLGAN) pulls together the
embeddings of two images of one domain, a real one and a translated one:
L_sim = mean |pool(f_a) - pool(f_b)|, see :func:`similarity_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.precision import float32_loss

NEGATIVES = ("internal", "batch")


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"{what} needs tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


@float32_loss
def patch_nce(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.07,
              negatives: str = "internal") -> torch.Tensor:
    """PatchNCE loss (CUT Eq. 3) of (B, N, C) L2-normalised queries against keys at the same locations.

    The positive of query ``(b, i)`` is key ``(b, i)``. Negatives: the other keys of image ``b``
    (``negatives="internal"``) or every other key of the batch (``"batch"``). Keys get no gradient.
    Returns the mean loss over the B * N queries.
    """
    if negatives not in NEGATIVES:
        raise ConfigError(f"unknown PatchNCE negatives {negatives!r}; choose one of {NEGATIVES}")
    _check_same_shape(query, key, "patch_nce")
    if query.ndim != 3:
        raise ConfigError(f"patch_nce needs (B, N, C) embeddings, got shape {tuple(query.shape)}")
    key = key.detach()
    if negatives == "batch":
        query, key = query.flatten(0, 1)[None], key.flatten(0, 1)[None]
    logits = torch.bmm(query, key.transpose(1, 2)) / temperature  # (B', N', N'): row i, candidate j
    targets = torch.arange(logits.shape[1], device=logits.device).repeat(logits.shape[0])
    return F.cross_entropy(logits.flatten(0, 1), targets)


def lsgan_discriminator_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """``0.5 * (mean((real_pred - 1)^2) + mean(fake_pred^2))``; detach the fakes before scoring them."""
    return 0.5 * ((real_pred - 1).pow(2).mean() + fake_pred.pow(2).mean())


def lsgan_generator_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """``mean((fake_pred - 1)^2)``: the generator wants its outputs scored as real."""
    return (fake_pred - 1).pow(2).mean()


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN's cycle-consistency loss: mean |F(G(x)) - x| (L1)."""
    _check_same_shape(reconstructed, original, "cycle_loss")
    return (reconstructed - original).abs().mean()


def identity_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Identity loss mean |G(y) - y| (L1) of a generator fed an image of its own output domain."""
    _check_same_shape(output, target, "identity_loss")
    return (output - target).abs().mean()


def similarity_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SimDCL's similarity loss: L1 between the location-averaged embeddings of two same-domain images.

    ``a`` and ``b`` are (B, N_a, C) and (B, N_b, C) patch embeddings of one domain, both from the same
    encoder and :class:`~selfsup.translate.networks.PatchHead`: e.g. real images of domain A and
    images translated into A (``G_B(y)``), each encoded by ``G_A``'s encoder, and likewise real vs
    translated domain-B images through ``G_B``'s encoder. Each is averaged over its locations to
    (B, C) and the loss is ``mean |mean_n a[:, n] - mean_n b[:, n]|`` over images and channels.
    Gradients reach both arguments.

    The official ``models/simdcl_model.py`` instead stacks the sampled embeddings of every tapped
    layer and passes each of the four image sets through its own learned mapping MLP before the L1
    (its ``nn.L1Loss('sum')`` sets the legacy ``size_average`` argument, so that L1 is also a mean);
    this parameter-free mean pooling replaces those mapping networks.
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ConfigError(f"similarity_loss needs (B, N, C) embeddings with one B and C, got "
                          f"{tuple(a.shape)} and {tuple(b.shape)}")
    return (a.mean(dim=1) - b.mean(dim=1)).abs().mean()
