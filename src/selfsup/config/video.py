"""The video sections of the configuration: ``video`` (synthetic-actions, video folders and what
``extract`` computes), ``zipf`` (the Zipf-KL fitness), ``elo`` (Evolving Losses and its task weights
per modality, :data:`ELO_TASKS` x :data:`ELO_MODALITIES`) and ``search`` (the loss-weight study and
its :data:`SAMPLERS`).

Like :mod:`selfsup.config.image`: frozen dataclasses of :func:`~selfsup.schema.knob` fields with
their cross-field checks, and nothing that reads a file or knows the methods.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from selfsup.errors import ConfigError
from selfsup.schema import knob

VIDEO_DATASETS = ("synthetic-actions", "videofolder")
ELO_MODALITIES = ("rgb", "flow", "audio", "gray")


@dataclass(frozen=True)
class SyntheticActionsConfig:
    """How synthetic-actions clips are drawn (the classes are in :mod:`selfsup.data.synthetic_actions`)."""

    clips_per_class: int = knob(64, ge=4, doc="clips per action class, train and test together")
    test_fraction: float = knob(0.25, gt=0.0, lt=1.0, doc="share of the digit scans kept for the test split")
    frames: int = knob(16, ge=4)
    size: int = knob(64, ge=16, doc="side of the square frames, pixels")
    fps: int = knob(8, ge=1)
    sample_rate: int = knob(16000, ge=8000, doc="audio sample rate, Hz")


@dataclass(frozen=True)
class VideoFolderConfig:
    """Class-per-folder videos (UCF101 / HMDB51 layout): ``<path>/<class>/<clip>.<ext>``."""

    path: str | None = knob(None, doc="the class-per-folder tree; a train/ and test/ pair or one tree to split")
    test_fraction: float = knob(0.2, gt=0.0, lt=1.0)


@dataclass(frozen=True)
class ExtractConfig:
    """What the ``extract`` stage decodes and computes from every clip."""

    frames: int = knob(16, ge=2, doc="frames sampled evenly over each clip")
    size: int = knob(64, ge=16, doc="frames are scaled to size x size")
    flow: str = knob("farneback", choices=("farneback", "dis", "tvl1"),
                     doc="OpenCV optical flow; tvl1 needs opencv-contrib")
    flow_storage: str = knob("uint8", choices=("uint8", "float16"),
                             doc="uint8: clipped to +-flow_bound and quantised (the two-channel JPEG practice)")
    flow_bound: float = knob(20.0, gt=0.0, doc="pixels per frame; uint8 flow is clipped to this")
    sample_rate: int = knob(16000, ge=8000, doc="audio is resampled by ffmpeg to mono at this rate")
    n_mels: int = knob(40, ge=8)
    n_fft: int = knob(512, ge=64)
    hop_length: int = knob(160, ge=16)
    audio_seconds: float | None = knob(None, gt=0.0, doc="audio kept per clip (padded or cut); null: the clip "
                                                          "length synthetic-actions declares, 10 s for a video folder")
    on_corrupt: str = knob("skip", choices=("skip", "fail"),
                           doc="a clip that fails to decode: listed in the report and skipped, or fatal")


@dataclass(frozen=True)
class VideoConfig:
    dataset: str = knob("synthetic-actions", choices=VIDEO_DATASETS)
    synthetic_actions: SyntheticActionsConfig = knob(SyntheticActionsConfig())
    videofolder: VideoFolderConfig = knob(VideoFolderConfig())
    extract: ExtractConfig = knob(ExtractConfig())


@dataclass(frozen=True)
class ZipfConfig:
    """Zipf-KL fitness (Piergiovanni et al. 2020, Sec. 3.3): k-means, then KL to a Zipf prior."""

    k: int = knob(8, ge=2, doc="k-means clusters")
    exponent: float = knob(1.0, gt=0.0, doc="Zipf exponent s")
    seed: int = knob(0, ge=0)
    n_init: int = knob(10, ge=1, doc="k-means restarts (scikit-learn n_init); the best inertia is kept")


ELO_TASKS = ("reconstruct", "predict", "cross_predict", "order", "reverse", "contrastive", "align", "distill")


def _weight(doc: str) -> Any:
    return knob(0.0, ge=0.0, le=1.0, doc=doc)


@dataclass(frozen=True)
class EloTaskWeights:
    """One modality network's task weights in [0, 1] (Piergiovanni et al. 2020, Sec. 3.1); 0 skips the task."""

    reconstruct: float = _weight("reconstruct the input frames through a decoder")
    predict: float = _weight("predict the last elo.predict_frames frames from the others")
    cross_predict: float = _weight("predict another modality's input (e.g. flow from RGB) from this one")
    order: float = _weight("binary: frames in order vs shuffled")
    reverse: float = _weight("binary: clip played forward vs reversed")
    contrastive: float = _weight("InfoNCE: same clip and time in another modality close, other clips far")
    align: float = _weight("binary: this modality and another aligned in time vs shifted")
    distill: float = _weight("L2 between this network's layers and the RGB network's (not for rgb itself)")


@dataclass(frozen=True)
class EloWeightsConfig:
    """The whole loss-weight vector: ``elo.weights.<modality>.<task>``; a modality with all 0 is not built."""

    rgb: EloTaskWeights = knob(EloTaskWeights(reconstruct=0.5, predict=0.5, order=0.5, reverse=0.5,
                                              contrastive=0.5, align=0.5))
    flow: EloTaskWeights = knob(EloTaskWeights(reconstruct=0.5, order=0.5, contrastive=0.5, distill=1.0))
    audio: EloTaskWeights = knob(EloTaskWeights(reconstruct=0.5, contrastive=0.5, align=0.5, distill=1.0))
    gray: EloTaskWeights = knob(EloTaskWeights())

    def built(self) -> tuple[str, ...]:
        """The modalities whose network is built: rgb, and every other one with a weight above 0."""
        return tuple(m for m in ELO_MODALITIES if m == "rgb" or any(dataclasses.astuple(getattr(self, m))))

    def check(self, prefix: str) -> None:
        if self.rgb.distill > 0:
            raise ConfigError(f"{prefix}rgb.distill={self.rgb.distill}: the RGB network is what the others are "
                              f"distilled into; set distill on flow, audio or gray instead")
        if not any(dataclasses.astuple(self.rgb)):
            raise ConfigError(f"{prefix}rgb: every RGB task weight is 0, so the RGB network would not train; "
                              f"give at least one task a weight above 0")
        if self.audio.cross_predict > 0:
            raise ConfigError(f"{prefix}audio.cross_predict={self.audio.cross_predict}: there is no other "
                              f"modality to predict from audio; allowed: 0 (cross_predict exists for rgb and gray "
                              f"(-> flow) and flow (-> rgb))")
        built = self.built()
        for m in built:
            for task in ("contrastive", "align"):
                if getattr(getattr(self, m), task) > 0 and len(built) < 2:
                    raise ConfigError(f"{prefix}{m}.{task}={getattr(getattr(self, m), task)} pairs {m} with another "
                                      f"modality, but only {m} is built; give flow, audio or gray a weight above 0 "
                                      f"or set it to 0")


@dataclass(frozen=True)
class EloConfig:
    """Evolving Losses (Piergiovanni, Angelova, Ryoo, CVPR 2020): multi-modal, multi-task video learning."""

    epochs: int = knob(20, ge=1, doc="where training stops; a finished run resumes to a larger value")
    batch_size: int = knob(32, ge=4)
    lr: float = knob(1e-3, gt=0.0, doc="AdamW learning rate (constant)")
    weight_decay: float = knob(1e-4, ge=0.0)
    width: int = knob(16, ge=4, doc="channels of each modality network's first stage (x2, x4 in the next two)")
    embed_dim: int = knob(128, ge=8, doc="clip representation size")
    input_size: int = knob(32, ge=8, doc="frames and flow are resized to input_size x input_size first")
    predict_frames: int = knob(4, ge=1, doc="frames the predict task forecasts")
    temperature: float = knob(0.1, gt=0.0, doc="contrastive task")
    distill_layers: tuple[float, ...] = knob((0.0, 0.5, 1.0), ge=0.0,
                                             doc="distillation weight of each of the 3 network stages, shallow "
                                                 "to deep")
    crop_min: float = knob(0.8, gt=0.0, le=1.0,
                           doc="augmentation: side of a clip's random crop (same for all its frames and its flow), "
                               "as a fraction drawn from [crop_min, 1]; 1 turns cropping off")
    brightness: float = knob(0.2, ge=0.0, le=1.0,
                             doc="augmentation: per-clip contrast x(1 +- b) and brightness +- b on the RGB frames")
    weights: EloWeightsConfig = knob(EloWeightsConfig())

    def check(self, prefix: str) -> None:
        if len(self.distill_layers) != 3:
            raise ConfigError(f"{prefix}distill_layers={list(self.distill_layers)}: every modality network has "
                              f"3 stages; give 3 weights, shallow to deep")
        distilled = [m for m in ELO_MODALITIES if getattr(self.weights, m).distill > 0]
        if distilled and not any(self.distill_layers):
            raise ConfigError(f"{prefix}distill_layers={list(self.distill_layers)} leaves nothing to distill, but "
                              f"{prefix}weights.{distilled[0]}.distill > 0; give a stage a weight above 0 or set "
                              f"the distill weights to 0")


SAMPLERS = ("cmaes", "random", "tpe", "grid")


@dataclass(frozen=True)
class SearchConfig:
    """Loss-weight search (Piergiovanni et al. 2020, Sec. 3.3): Optuna over ``space``, fitness Zipf-KL, no labels."""

    target: str = knob("elo", choices=("elo", "image"),
                       doc="what a trial trains: the ELo video model, or `method` on the image dataset")
    space: dict = knob({"elo.weights.rgb.reconstruct": [0.0, 1.0], "elo.weights.rgb.order": [0.0, 1.0],
                        "elo.weights.flow.distill": [0.0, 1.0], "elo.weights.audio.distill": [0.0, 1.0]},
                       doc="searched params: dotted key -> [low, high] or [low, high, log]")
    sampler: str = knob("cmaes", choices=SAMPLERS)
    n_trials: int = knob(6, ge=1, doc="completed trials the study ends with (a resumed study continues to it)")
    population: int | None = knob(None, ge=2, doc="cmaes population size (null: Optuna's 4 + 3 ln d)")
    sigma: float | None = knob(None, gt=0.0, doc="cmaes initial step in the searched units (null: range / 6)")
    grid_points: int = knob(3, ge=2, doc="grid: values per searched param")
    epochs: int = knob(3, ge=1, doc="training epochs of each trial")
    n_workers: int = knob(1, ge=1, doc="trials run in parallel processes on this machine")
    storage: str | None = knob(None, doc="an RDB URL several machines share (postgresql://user@host/db); null: a "
                                         "journal file in the output")
    study_name: str = knob("selfsup-search")
    seed: int = knob(0, ge=0, doc="sampler seed")
    heartbeat_interval: int = knob(30, ge=1, doc="RDB storages: seconds between a running trial's heartbeats")
    grace_period: int | None = knob(None, ge=1, doc="RDB storages: seconds without a heartbeat after which a "
                                                    "running trial is failed and retried; null: twice the interval")
    max_retry: int = knob(3, ge=0, doc="RDB storages: how often the params of a trial whose worker died run again")

    def check(self, prefix: str) -> None:
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"{prefix}grace_period={self.grace_period} must exceed {prefix}heartbeat_interval="
                              f"{self.heartbeat_interval}: a live trial would be failed between two heartbeats")
