"""What one training step of each translation method optimises, and with which networks.

- **CUT** (Park et al. 2020, Eq. 5): ``L_GAN(G, D) + lambda_X PatchNCE(G, H, X) + lambda_Y PatchNCE(G, H, Y)``
  with lambda_X = lambda_Y = 1; the second term is the identity PatchNCE between ``b`` and ``G(b)``.
  The queries are the encoder features of the translated image, the keys those of its input at the
  same sampled locations, averaged over the tapped layers (official ``calculate_NCE_loss``).
- **FastCUT**: lambda_X = 10, no identity term, and flip-equivariance: with probability 1/2 a step
  flips its inputs horizontally and flips the translated image's features back before PatchNCE.
- **DCLGAN** (Han et al. 2021, Eq. 5): two generators ``G_A: A -> B`` and ``G_B: B -> A``, two
  discriminators, two heads ``H_1``, ``H_2``. ``PatchNCE_1`` compares ``G_A``'s encoding of ``a`` (keys,
  head ``H_1``) with ``G_B``'s encoding of ``G_A(a)`` (queries, head ``H_2``); ``PatchNCE_2`` mirrors it
  (``G_B``'s encoding of ``b`` through ``H_2`` against ``G_A``'s encoding of ``G_B(b)`` through ``H_1``),
  as the official ``calculate_NCE_loss1/2``. Total ``0.5 (L_GAN_A + L_GAN_B) + 0.5 lambda_NCE
  (NCE_1 + NCE_2) + 0.5 lambda_idt (L1(G_A(b), b) + L1(G_B(a), a))`` with lambda_NCE = 2 and
  lambda_idt = 1. **SimDCL** adds lambda_sim times the similarity loss of real and translated images
  of each domain (:func:`~selfsup.translate.losses.similarity_loss`).
- **CycleGAN** (Zhu et al. 2017, Eq. 3 and Sec. 5.2): ``L_GAN_A + L_GAN_B + lambda_cyc (|G_B(G_A(a)) - a|
  + |G_A(G_B(b)) - b|) + 0.5 lambda_cyc (|G_A(b) - b| + |G_B(a) - a|)``, lambda_cyc = 10; no image pool.

Every discriminator minimises the LSGAN loss on real images of its domain against the detached fakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.config.translate import PATCHNCE_METHODS, TranslateConfig
from selfsup.translate.losses import (
    cycle_loss,
    identity_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    patch_nce,
    similarity_loss,
)
from selfsup.translate.networks import PatchGANDiscriminator, PatchHead, ResnetGenerator, init_weights

PAPER_NCE = {"cut": 1.0, "fastcut": 10.0, "dclgan": 2.0, "cyclegan": 0.0}


@dataclass(frozen=True)
class Weights:
    """The resolved weight of every term (0: the term is not computed) and FastCUT's flip switch."""

    gan: float
    nce: float
    nce_identity: float
    identity: float
    cycle: float
    similarity: float
    flip: bool


def weights(cfg: TranslateConfig) -> Weights:
    """``cfg``'s weights, the method's paper values where ``cfg`` leaves them null."""
    m = cfg.method
    nce = PAPER_NCE[m] if cfg.lambda_nce is None else cfg.lambda_nce
    nce_identity = (m == "cut") if cfg.nce_identity is None else cfg.nce_identity
    paper_identity = {"dclgan": 1.0, "cyclegan": 0.5 * cfg.lambda_cycle}.get(m, 0.0)
    return Weights(
        gan=cfg.lambda_gan,
        nce=nce if m in PATCHNCE_METHODS else 0.0,
        nce_identity=nce if nce_identity and m in ("cut", "fastcut") else 0.0,
        identity=paper_identity if cfg.lambda_identity is None else cfg.lambda_identity,
        cycle=cfg.lambda_cycle if m == "cyclegan" else 0.0,
        similarity=cfg.lambda_similarity if cfg.similarity else 0.0,
        flip=(m == "fastcut") if cfg.flip_equivariance is None else cfg.flip_equivariance,
    )


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class Translator(nn.Module):
    """The networks of one method and its two losses: :meth:`discriminator_loss` and :meth:`generator_loss`.

    ``g_ab`` translates A -> B (the evaluated direction); two-sided methods add ``g_ba`` and ``d_a``.
    Images are float (B, 3, H, W) in [0, 1].
    """

    def __init__(self, cfg: TranslateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.w = weights(cfg)
        self.two_sided = cfg.method in ("dclgan", "cyclegan")
        self.g_ab = ResnetGenerator(width=cfg.width, n_blocks=cfg.n_blocks)
        self.d_b = PatchGANDiscriminator(width=cfg.disc_width, n_layers=cfg.disc_layers)
        taps = self.g_ab.nce_layers
        self.nce_layers = taps[-1:] if cfg.nce_layers == "last" else taps
        if self.two_sided:
            self.g_ba = ResnetGenerator(width=cfg.width, n_blocks=cfg.n_blocks)
            self.d_a = PatchGANDiscriminator(width=cfg.disc_width, n_layers=cfg.disc_layers)
        if self.w.nce > 0:
            channels = self.g_ab.channels(self.nce_layers)
            self.head_1 = PatchHead(channels, cfg.head_dim)
            if cfg.method == "dclgan":
                self.head_2 = PatchHead(channels, cfg.head_dim)
        init_weights(self)

    def generator_parameters(self) -> list[nn.Parameter]:
        """Generators and heads: the generator optimiser's parameters."""
        return [p for name, p in self.named_parameters() if not name.startswith("d_")]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name.startswith("d_")]

    def discriminators(self) -> list[nn.Module]:
        return [self.d_b, self.d_a] if self.two_sided else [self.d_b]

    @torch.no_grad()
    def translate(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """A -> B translations of uint8 or float images (float [0, 1] on the CPU), in eval mode."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device)
            out.append(self.g_ab(x.float() / 255 if x.dtype == torch.uint8 else x).cpu())
        self.train(was)
        return torch.cat(out)

    # -- one step ------------------------------------------------------------------------------
    def fakes(self, a: torch.Tensor, b: torch.Tensor, seed: int, step: int) -> dict[str, torch.Tensor]:
        """The step's translations (and FastCUT's flip decision); shared by both losses."""
        flipped = self.w.flip and bool(torch.rand((), generator=_step_generator(seed, step)) < 0.5)
        if flipped:
            a, b = a.flip(3), b.flip(3)
        out = {"a": a, "b": b, "fake_b": self.g_ab(a), "flipped": torch.tensor(flipped)}
        if self.two_sided:
            out["fake_a"] = self.g_ba(b)
        return out

    def discriminator_loss(self, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = {"d_b": lsgan_discriminator_loss(self.d_b(f["b"]), self.d_b(f["fake_b"].detach()))}
        if self.two_sided:
            terms["d_a"] = lsgan_discriminator_loss(self.d_a(f["a"]), self.d_a(f["fake_a"].detach()))
        terms["loss"] = sum(terms.values())
        return terms

    def generator_loss(self, f: dict[str, torch.Tensor], seed: int, step: int) -> dict[str, torch.Tensor]:
        w, m = self.w, self.cfg.method
        a, b, fake_b = f["a"], f["b"], f["fake_b"]
        g = _step_generator(seed, step + 1)
        terms: dict[str, torch.Tensor] = {"g_gan_b": lsgan_generator_loss(self.d_b(fake_b))}
        if self.two_sided:
            terms["g_gan_a"] = lsgan_generator_loss(self.d_a(f["fake_a"]))
        scale = 0.5 if m == "dclgan" else 1.0  # DCLGAN averages its two directions
        total = w.gan * scale * sum(terms.values())
        flipped = bool(f["flipped"])
        if m in ("cut", "fastcut") and w.nce > 0:
            terms["nce"] = self._nce(self.g_ab, self.g_ab, self.head_1, self.head_1, a, fake_b, g, flipped)
            nce = terms["nce"]
            if w.nce_identity > 0:
                terms["nce_identity"] = self._nce(self.g_ab, self.g_ab, self.head_1, self.head_1, b, self.g_ab(b), g,
                                                  flipped)
                nce = 0.5 * (nce + terms["nce_identity"])
            total = total + w.nce * nce
        if m == "dclgan" and w.nce > 0:
            terms["nce_ab"] = self._nce(self.g_ab, self.g_ba, self.head_1, self.head_2, a, fake_b, g, False)
            terms["nce_ba"] = self._nce(self.g_ba, self.g_ab, self.head_2, self.head_1, b, f["fake_a"], g, False)
            total = total + w.nce * 0.5 * (terms["nce_ab"] + terms["nce_ba"])
        if w.identity > 0:
            terms["identity_b"] = identity_loss(self.g_ab(b), b)
            identity = terms["identity_b"]
            if self.two_sided:
                terms["identity_a"] = identity_loss(self.g_ba(a), a)
                identity = identity + terms["identity_a"]
            total = total + w.identity * (0.5 if m == "dclgan" else 1.0) * identity
        if w.cycle > 0:
            terms["cycle_a"] = cycle_loss(self.g_ba(fake_b), a)
            terms["cycle_b"] = cycle_loss(self.g_ab(f["fake_a"]), b)
            total = total + w.cycle * (terms["cycle_a"] + terms["cycle_b"])
        if w.similarity > 0:
            terms["similarity"] = self._similarity(a, b, fake_b, f["fake_a"], g)
            total = total + w.similarity * terms["similarity"]
        terms["loss"] = total
        return terms

    def _nce(self, key_net: ResnetGenerator, query_net: ResnetGenerator, key_head: PatchHead, query_head: PatchHead,
             source: torch.Tensor, translated: torch.Tensor, g: torch.Generator, flipped: bool) -> torch.Tensor:
        """PatchNCE between ``source`` (keys) and its translation (queries), averaged over the tapped layers."""
        queries = query_net.encode(translated, self.nce_layers)
        if flipped:  # FastCUT: the step's inputs were flipped; compare in the source's frame
            queries = [q.flip(3) for q in queries]
            source = source.flip(3)
        keys, ids = key_head(key_net.encode(source, self.nce_layers), self.cfg.n_patches, generator=g)
        queries, _ = query_head(queries, self.cfg.n_patches, patch_ids=ids)
        losses = [patch_nce(q, k, self.cfg.temperature, self.cfg.negatives) for q, k in zip(queries, keys, strict=True)]
        return torch.stack(losses).mean()

    def _similarity(self, a: torch.Tensor, b: torch.Tensor, fake_b: torch.Tensor, fake_a: torch.Tensor,
                    g: torch.Generator) -> torch.Tensor:
        """SimDCL: real and translated images of one domain embed alike, through that domain's encoder and head
        (``G_A`` with ``H_1`` for domain A, ``G_B`` with ``H_2`` for B), averaged over layers and domains."""
        losses = []
        for net, head, real, fake in ((self.g_ab, self.head_1, a, fake_a), (self.g_ba, self.head_2, b, fake_b)):
            real_e, ids = head(net.encode(real, self.nce_layers), self.cfg.n_patches, generator=g)
            fake_e, _ = head(net.encode(fake, self.nce_layers), self.cfg.n_patches, patch_ids=ids)
            losses += [similarity_loss(r, f) for r, f in zip(real_e, fake_e, strict=True)]
        return torch.stack(losses).mean()
