"""The configuration schema of a run: :class:`Config`, the top-level params over the image
sections (:mod:`selfsup.config.image`), the video sections (:mod:`selfsup.config.video`), the
few-label sections (:mod:`selfsup.config.fewlabel`) and image translation (:mod:`selfsup.config.translate`).

This package holds the dataclasses, their defaults and their checks only: it reads no file and
imports no method, so the methods can import it. :mod:`selfsup.params` layers the method's paper
defaults, the preset and params.yaml over these defaults into a validated :class:`Config`, with
the chosen method's knobs filled in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from selfsup.config.fewlabel import DistillConfig, FinetuneStageConfig, SelftrainConfig, SubsetsConfig
from selfsup.config.image import (
    DATASETS,
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    ProjectorConfig,
    SegmentConfig,
    TrainConfig,
    ViewsConfig,
)
from selfsup.config.translate import TranslateConfig
from selfsup.config.video import EloConfig, SearchConfig, VideoConfig, ZipfConfig
from selfsup.errors import ConfigError
from selfsup.schema import Omitted, flatten, knob, param_key, to_dict


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one run. ``knobs`` holds the method's own knobs."""

    seed: int = knob(0, ge=0)
    dataset: str = knob("digits-bg", choices=DATASETS)
    method: str = knob("simclr")
    preset: str = knob("paper")
    epochs: int = knob(100, ge=1)
    batch_size: int = knob(256, ge=2)
    lr: float = knob(0.3, gt=0.0, doc="base learning rate, scaled by optim.lr_scaling")
    data: DataConfig = knob(DataConfig())
    backbone: BackboneConfig = knob(BackboneConfig())
    projector: ProjectorConfig = knob(ProjectorConfig())
    views: ViewsConfig = knob(ViewsConfig())
    segment: SegmentConfig = knob(SegmentConfig())
    optim: OptimConfig = knob(OptimConfig())
    train: TrainConfig = knob(TrainConfig())
    eval: EvalConfig = knob(EvalConfig())
    video: VideoConfig = knob(VideoConfig())
    elo: EloConfig = knob(EloConfig())
    zipf: ZipfConfig = knob(ZipfConfig())
    search: SearchConfig = knob(SearchConfig())
    subsets: SubsetsConfig = knob(SubsetsConfig())
    finetune: FinetuneStageConfig = knob(FinetuneStageConfig())
    distill: DistillConfig = knob(DistillConfig())
    selftrain: SelftrainConfig = knob(SelftrainConfig())
    translate: TranslateConfig = knob(TranslateConfig())
    knobs: Any = dataclasses.field(default=None, metadata={"internal": True})

    def check(self, prefix: str) -> None:
        """Rules across sections: the fine-tuned subset must be one the ``subsets`` stage writes."""
        if self.finetune.label_fraction not in self.subsets.fractions:
            raise ConfigError(f"{prefix}finetune.label_fraction={self.finetune.label_fraction} is not among "
                              f"{prefix}subsets.fractions={list(self.subsets.fractions)}; add it there or pick one of "
                              f"them")

    def to_dict(self) -> dict:
        """Params-file form: sections as mappings, method knobs back at the top level."""
        out = {param_key(f): to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)
               if not f.metadata.get("internal") and not isinstance(getattr(self, f.name), Omitted)}
        if self.knobs is not None and not isinstance(self.knobs, Omitted):
            out.update(to_dict(self.knobs))
        return out

    def flat(self) -> dict[str, Any]:
        """Dotted params, as logged to MLflow."""
        return flatten(self.to_dict())
