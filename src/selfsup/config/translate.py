"""The ``translate`` section: unpaired image translation from digits-bg to plain digits.

CUT and FastCUT (Park et al. 2020), DCLGAN with its SimDCL switch (Han et al. 2021) and the CycleGAN
baseline (Zhu et al. 2017) train in stage ``translate`` and are scored by ``translate_eval``
(:mod:`selfsup.translate`). The loss weights left ``null`` take the method's paper value
(:func:`selfsup.translate.objectives.weights` lists them); this dataclass holds values and ranges only.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.errors import ConfigError
from selfsup.schema import knob

TRANSLATE_METHODS = ("cut", "fastcut", "dclgan", "cyclegan")
PATCHNCE_METHODS = ("cut", "fastcut", "dclgan")


@dataclass(frozen=True)
class TranslateConfig:
    """One translation run: the method, its networks, its optimiser and schedule, PatchNCE's settings."""

    method: str = knob("cut", choices=TRANSLATE_METHODS,
                       doc="cut, fastcut (Park et al. 2020), dclgan (Han et al. 2021), cyclegan (Zhu et al. 2017)")
    steps: int = knob(2000, ge=1, doc="optimiser steps of generator(s) and discriminator(s)")
    batch_size: int = knob(8, ge=1, doc="images of each domain per step")
    lr: float = knob(2e-4, gt=0.0, doc="Adam rate of every network (the papers' 0.0002)")
    beta1: float = knob(0.5, ge=0.0, lt=1.0, doc="Adam beta1 (the papers' 0.5)")
    beta2: float = knob(0.999, ge=0.0, lt=1.0)
    decay_fraction: float = knob(0.5, ge=0.0, le=1.0,
                                 doc="final fraction of the steps over which the rate decays linearly to 0 "
                                     "(the papers: the second half)")
    width: int = knob(32, ge=4, doc="generator channels after its stem (doubled at each downsampling)")
    n_blocks: int = knob(4, ge=1, doc="residual blocks of the generator")
    disc_width: int = knob(64, ge=4, doc="PatchGAN discriminator's first-layer channels")
    disc_layers: int = knob(2, ge=1, le=3, doc="strided layers of the PatchGAN discriminator")
    lambda_gan: float = knob(1.0, ge=0.0, doc="weight of the LSGAN generator loss")
    lambda_nce: float | None = knob(None, ge=0.0,
                                    doc="weight of PatchNCE; null: the method's (cut 1, fastcut 10, dclgan 2)")
    nce_identity: bool | None = knob(None, doc="CUT's identity PatchNCE on domain-B images; null: on for cut, "
                                               "off for fastcut")
    lambda_identity: float | None = knob(None, ge=0.0,
                                         doc="weight of the L1 identity loss G(b) ~ b; null: dclgan 1, cyclegan 5 "
                                             "(0.5 x lambda_cycle), 0 for cut/fastcut")
    flip_equivariance: bool | None = knob(None, doc="FastCUT's flip-equivariance augmentation; null: on for fastcut")
    lambda_cycle: float = knob(10.0, ge=0.0, doc="CycleGAN's cycle-consistency weight")
    similarity: bool = knob(False, doc="SimDCL: DCLGAN plus the similarity loss of Han et al. 2021, Sec. 3.3")
    lambda_similarity: float = knob(10.0, ge=0.0, doc="weight of SimDCL's similarity loss")
    temperature: float = knob(0.07, gt=0.0, doc="PatchNCE temperature tau")
    n_patches: int = knob(256, ge=2, doc="locations sampled per layer and image for PatchNCE")
    head_dim: int = knob(256, ge=2, doc="output size of each layer's two-layer MLP head")
    nce_layers: str = knob("all", choices=("all", "last"),
                           doc="all: every tapped encoder layer (the paper); last: the deepest only (ablation)")
    negatives: str = knob("internal", choices=("internal", "batch"),
                          doc="internal: other locations of the same image (the paper); batch: of every image")
    split_seed: int = knob(0, ge=0, doc="which train scans feed domain A and which domain B")
    sample_every: int = knob(500, ge=1, doc="steps between grids of sample translations (MLflow artifacts)")
    checkpoint_every: int = knob(250, ge=1, doc="steps between resumable checkpoints")
    eval_panel: int = knob(8, ge=1, doc="test images in each sample grid and in the paper's panel")
    judge_steps: int = knob(400, ge=1, doc="training steps of translate_eval's judge on real domain-B digits")

    def check(self, prefix: str) -> None:
        if self.similarity and self.method != "dclgan":
            raise ConfigError(f"{prefix}similarity=true is SimDCL, a DCLGAN variant, but {prefix}method="
                              f"{self.method!r}; set {prefix}method=dclgan or similarity=false")
        if self.method == "cyclegan":
            for name in ("lambda_nce", "nce_identity", "flip_equivariance"):
                if getattr(self, name) not in (None, 0, False):
                    raise ConfigError(f"{prefix}{name}={getattr(self, name)!r} has no effect on cyclegan, which has "
                                      f"no PatchNCE; leave it null or pick cut, fastcut or dclgan")
        if self.method == "dclgan" and self.flip_equivariance:
            raise ConfigError(f"{prefix}flip_equivariance is FastCUT's (one generator); DCLGAN does not use it. "
                              f"Leave it null for dclgan")
