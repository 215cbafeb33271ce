"""Load ``params.yaml`` with its preset and the method's paper defaults, validated.

Precedence, lowest first: the schema defaults below, ``params/methods/<method>.yaml`` (the
paper's defaults), ``params/presets/<preset>.yaml`` (its general keys, then its
``per_method.<method>`` keys), then what ``params.yaml`` (or ``dvc exp run -S``) sets. A
``null`` in params.yaml means "not set here", so the layers below it show through.

``method`` and the knobs users sweep (``epochs``, ``batch_size``, ``lr`` and each method's own
knobs such as ``temperature`` or ``lambda``) are top-level keys. Everything is checked before
any data is touched; a bad value raises one :class:`ConfigError` naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selfsup.errors import ConfigError
from selfsup.io import atomic_write_text
from selfsup.schema import Omitted, build, flatten, knob, param_key, to_dict

log = logging.getLogger(__name__)


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``5e-3`` and ``1e-6`` as floats.

    PyYAML follows YAML 1.1, where a float needs a dot; YAML 1.2 (which DVC writes with) and
    every user typing ``-S lambda=5e-3`` mean a number.
    """


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_params_yaml(text: str) -> Any:
    """Parse params-file text (params.yaml, presets, method defaults, ``-S`` values)."""
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 - a SafeLoader subclass

DATASETS = ("digits-bg", "cifar10", "cifar100", "stl10", "imagefolder")
BACKBONES = ("small_cnn", "resnet18", "resnet50", "vit_tiny", "vit_small")


@dataclass(frozen=True)
class DigitsBgConfig:
    """How digits-bg composites are drawn; sizes are pixels of the square output image."""

    image_size: int = knob(32, ge=16, le=256)
    digit_min: int = knob(14, ge=4)
    digit_max: int = knob(28, ge=4)
    train_per_scan: int = knob(4, ge=1)
    test_per_scan: int = knob(2, ge=1)
    test_fraction: float = knob(0.3, gt=0.0, lt=1.0)
    background_zoom: tuple[float, float] = knob((1.0, 4.0), gt=0.0,
                                                doc="photo crop side as a multiple of image_size (range)")
    background_pool: int = knob(64, ge=0, doc="distinct background crops per split; 0: one per image")
    background: str = knob("photo", choices=("photo", "black"),
                           doc="photo: crops of the bundled photographs; black: no background (a control)")
    digit_colour: str = knob("random", choices=("random", "white"),
                             doc="random: an RGB colour per composite; white: every digit white (a control)")
    stroke_gain: float = knob(3.0, gt=0.0, doc="contrast of the digit's alpha; >1 makes strokes opaque")

    def check(self, prefix: str) -> None:
        if not self.digit_min <= self.digit_max <= self.image_size:
            raise ConfigError(f"{prefix}digit_min={self.digit_min}, {prefix}digit_max={self.digit_max}: "
                              f"need digit_min <= digit_max <= image_size ({self.image_size})")


@dataclass(frozen=True)
class ImageFolderConfig:
    path: str | None = knob(None, doc="class-per-folder tree; a train/ and test/ pair or one tree to split")
    image_size: int = knob(64, ge=8)
    test_fraction: float = knob(0.2, gt=0.0, lt=1.0)
    on_corrupt: str = knob("fail", choices=("fail", "skip"))


@dataclass(frozen=True)
class DataConfig:
    root: str = knob("data/raw", doc="where real datasets are found or downloaded to")
    download: bool = knob(True)
    digits_bg: DigitsBgConfig = knob(DigitsBgConfig())
    imagefolder: ImageFolderConfig = knob(ImageFolderConfig())


@dataclass(frozen=True)
class BackboneConfig:
    name: str = knob("small_cnn", choices=BACKBONES)
    width: int = knob(32, ge=4, doc="small_cnn: channels of the first stage")
    cifar_stem: bool = knob(True, doc="resnets: 3x3 stride-1 first conv and no max-pool")
    norm: str = knob("bn", choices=("bn", "gn", "gn_ws", "none"),
                     doc="convnets: BatchNorm, GroupNorm, GroupNorm + weight-standardised convs, or none")
    patch_size: int = knob(4, ge=1, doc="vits: side of the square patches")
    drop_path: float = knob(0.0, ge=0.0, lt=1.0, doc="vits: stochastic depth rate")


@dataclass(frozen=True)
class ProjectorConfig:
    layers: int = knob(2, ge=1, le=4)
    hidden_dim: int = knob(2048, ge=1)
    out_dim: int = knob(128, ge=1)
    hidden_bn: bool = knob(True)
    last_bn: bool = knob(False)


@dataclass(frozen=True)
class ColorJitterConfig:
    p: float = knob(0.8, ge=0.0, le=1.0)
    brightness: float = knob(0.4, ge=0.0)
    contrast: float = knob(0.4, ge=0.0)
    saturation: float = knob(0.4, ge=0.0)
    hue: float = knob(0.1, ge=0.0, le=0.5)


@dataclass(frozen=True)
class BlurConfig:
    p: float = knob(0.0, ge=0.0, le=1.0)
    sigma: tuple[float, float] = knob((0.1, 2.0), gt=0.0)
    kernel_fraction: float = knob(0.1, gt=0.0, le=1.0, doc="kernel size as a fraction of the view size")


@dataclass(frozen=True)
class MultiCropConfig:
    """Extra small crops (SwAV, Caron et al. 2020, Sec. 3.2): ``n_small`` views of side ``size``."""

    n_small: int = knob(0, ge=0, doc="small crops per image, after the large views; 0 turns multi-crop off")
    size: int = knob(8, ge=4)
    crop_scale: tuple[float, float] = knob((0.05, 0.2), gt=0.0, le=1.0)


@dataclass(frozen=True)
class BackgroundConfig:
    """Background augmentations (Ryali, Schwab, Morcos 2021, Sec. 3), each drawn per image and view.

    They read the foreground masks of the ``segment`` stage and the foreground-free backgrounds of
    the ``backgrounds`` stage; all probabilities 0 turns them off.
    """

    rm: float = knob(0.0, ge=0.0, le=1.0, doc="BG_RM: probability that a view's background is replaced by `fill`")
    random: float = knob(0.0, ge=0.0, le=1.0,
                         doc="BG_Random: probability that a view's foreground is pasted on another image's "
                             "foreground-free background")
    swaps: float = knob(0.0, ge=0.0, le=1.0,
                        doc="BG_Swaps (methods with negatives): probability that an image's positive gets a "
                            "random background and a hard negative (another foreground on the anchor's "
                            "background) is added")
    fill: float = knob(0.5, ge=0.0, le=1.0, doc="BG_RM grey level of the removed background, in [0, 1]")

    @property
    def enabled(self) -> bool:
        return self.rm > 0 or self.random > 0 or self.swaps > 0

    def check(self, prefix: str) -> None:
        if self.rm + self.random > 1.0:
            raise ConfigError(f"{prefix}rm={self.rm} + {prefix}random={self.random} exceeds 1: a view gets at most "
                              f"one of BG_RM and BG_Random; lower one of them")


@dataclass(frozen=True)
class ViewsConfig:
    backend: str = knob("batched", choices=("batched", "per_sample"),
                        doc="batched: kornia on the training device; per_sample: torchvision v2 loop")
    size: int = knob(32, ge=8)
    crop_scale: tuple[float, float] = knob((0.2, 1.0), gt=0.0, le=1.0)
    crop_ratio: tuple[float, float] = knob((0.75, 4 / 3), gt=0.0)
    hflip: float = knob(0.5, ge=0.0, le=1.0)
    color_jitter: ColorJitterConfig = knob(ColorJitterConfig())
    grayscale: float = knob(0.2, ge=0.0, le=1.0)
    blur: BlurConfig = knob(BlurConfig())
    solarize: float = knob(0.0, ge=0.0, le=1.0)
    multi_crop: MultiCropConfig = knob(MultiCropConfig())
    background: BackgroundConfig = knob(BackgroundConfig())


@dataclass(frozen=True)
class SegmentConfig:
    """How the ``segment`` stage finds foreground masks (see :mod:`selfsup.prep.segment`)."""

    source: str = knob("boundary", choices=("boundary", "spectral_residual", "deeplabv3", "ground_truth"),
                       doc="boundary: background-prior colour contrast; spectral_residual: Hou & Zhang 2007; "
                           "deeplabv3: torchvision's pretrained network; ground_truth: the dataset's masks")
    grabcut: bool = knob(False, doc="refine classical masks with GrabCut")
    grabcut_iterations: int = knob(5, ge=1)
    border: int = knob(1, ge=1, doc="boundary/GrabCut: width of the border ring taken as background")
    nearest: int = knob(16, ge=1, doc="boundary: saliency is the mean distance to this many nearest border colours")
    weights: str | None = knob(None, doc="deeplabv3: weights file; null: the torch hub cache")
    network_size: int = knob(256, ge=32, doc="deeplabv3: images are resized to this side first")
    batch_size: int = knob(256, ge=1)
    inpaint_radius: int = knob(3, ge=1, doc="backgrounds: cv2.inpaint radius filling the removed foreground")
    dilate: int = knob(1, ge=0, doc="backgrounds: pixels the mask is grown by before in-painting")


@dataclass(frozen=True)
class OptimConfig:
    name: str = knob("lars", choices=("lars", "sgd", "adamw"))
    momentum: float = knob(0.9, ge=0.0, lt=1.0)
    weight_decay: float = knob(1e-6, ge=0.0)
    betas: tuple[float, float] = knob((0.9, 0.999), ge=0.0, lt=1.0)
    lr_scaling: str = knob("linear", choices=("linear", "sqrt", "none"),
                           doc="lr = base lr x batch_size/256 (linear) or sqrt(batch_size/256)")
    schedule: str = knob("cosine", choices=("cosine", "step"),
                         doc="after warm-up: cosine decay, or x0.1 steps at the fractions in lr_steps")
    lr_steps: tuple[float, ...] = knob((0.6, 0.8), gt=0.0, lt=1.0,
                                       doc="step schedule: fractions of training where lr drops x0.1")
    warmup_epochs: float = knob(10.0, ge=0.0)
    min_lr_ratio: float = knob(0.0, ge=0.0, le=1.0)
    trust_coefficient: float = knob(1e-3, gt=0.0, doc="LARS eta")
    exclude_bias_and_norm: bool = knob(True, doc="no weight decay / LARS adaptation for biases and norms")


@dataclass(frozen=True)
class TrainConfig:
    device: str = knob("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = knob(True, doc="mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = knob("bfloat16", choices=("bfloat16", "float16"))
    channels_last: bool = knob(True, doc="channels_last memory format (faster convolutions on CPU and GPU)")
    sync_bn: bool = knob(False, doc="SyncBatchNorm under DDP (global batch statistics)")
    clip_grad_norm: float = knob(0.0, ge=0.0, doc="clip each optimiser step's gradient norm to this; 0: no clipping")
    checkpoint_every: int = knob(100, ge=1, doc="steps between checkpoints")
    log_every: int = knob(10, ge=1, doc="steps between logged step metrics")
    threads: int = knob(0, ge=0, doc="torch CPU threads; 0 keeps torch's default")


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = knob(100, ge=1)
    lr: float = knob(1e-2, gt=0.0)
    weight_decay: float = knob(1e-4, ge=0.0)
    batch_size: int = knob(256, ge=1)


@dataclass(frozen=True)
class KnnConfig:
    k: int = knob(20, ge=1)
    temperature: float = knob(0.07, gt=0.0)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning the whole extractor with a fraction of the labels (SimCLR Sec. 4.2, B.5)."""

    enabled: bool = knob(False, doc="also report fine-tuned accuracy (slower than the linear probe)")
    label_fraction: float = knob(0.1, gt=0.0, le=1.0, doc="class-balanced fraction of the train labels")
    epochs: int = knob(30, ge=1)
    lr: float = knob(0.05, gt=0.0)
    weight_decay: float = knob(0.0, ge=0.0)
    batch_size: int = knob(64, ge=1)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = knob(512, ge=1, doc="feature-extraction batch size")
    linear: LinearProbeConfig = knob(LinearProbeConfig())
    knn: KnnConfig = knob(KnnConfig())
    finetune: FinetuneConfig = knob(FinetuneConfig())


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
    storage: str | None = knob(None, doc="an RDB URL several machines share; null: a journal file in the output")
    study_name: str = knob("selfsup-search")
    seed: int = knob(0, ge=0, doc="sampler seed")


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
    knobs: Any = dataclasses.field(default=None, metadata={"internal": True})

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


def _read_yaml(path: Path, what: str) -> dict:
    try:
        data = load_params_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _drop_nulls(d: dict) -> dict:
    return {k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def deep_merge(*layers: dict) -> dict:
    """Merge mappings; later layers win, nested mappings merge key by key."""
    out: dict = {}
    for layer in layers:
        for k, v in layer.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = v
    return out


def _available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def parse_overrides(pairs: list[str]) -> dict:
    """``["views.background.rm=0.2", "method=moco"]`` as a nested overrides mapping (values parsed as YAML)."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-S expects KEY=VALUE (e.g. -S method=moco), got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"-S {pair!r}: {parent} was already set to a value, not a section")
        node[leaf] = load_params_yaml(value)
    return out


def read_overlay(path: Path) -> dict:
    """A params-form YAML file applied over params.yaml (``--overlay``), e.g. the search's best weights."""
    if not Path(path).is_file():
        raise ConfigError(f"overlay {path} not found; run the stage that writes it (e.g. `dvc repro search`)")
    return _read_yaml(Path(path), "overlay")


def params_dir(params_path: Path) -> Path:
    return Path(params_path).resolve().parent / "params"


@dataclass(frozen=True)
class Layer:
    """One source of params, in the order they resolve: what it is called and what it sets."""

    name: str
    values: dict


def resolve_layers(params_path: str | Path = "params.yaml", overrides: dict | None = None) -> list[Layer]:
    """The layers that resolve ``params_path``, lowest first: the method's paper defaults, the preset,
    the preset's ``per_method`` entry, params.yaml, and ``overrides`` (each with its nulls dropped).

    The schema defaults in this module lie beneath them all.
    """
    from selfsup.methods import REGISTRY

    params_path = Path(params_path)
    if not params_path.is_file():
        raise ConfigError(f"params file {params_path} not found; run from the repository root")
    params = _drop_nulls(_read_yaml(params_path, "params file"))
    extra = _drop_nulls(overrides or {})
    user = deep_merge(params, extra)
    folder = params_dir(params_path)

    method = user.get("method", Config.method)
    if method not in REGISTRY:
        raise ConfigError(f"method={method!r} is not known; allowed: {', '.join(sorted(REGISTRY))}. "
                          f"Set it with `dvc exp run -S method=<name>`")
    preset = user.get("preset", Config.preset)
    preset_path = folder / "presets" / f"{preset}.yaml"
    if not preset_path.is_file():
        raise ConfigError(f"preset={preset!r} is not known; allowed: "
                          f"{', '.join(_available(folder / 'presets'))} (files in {folder / 'presets'})")
    method_path = folder / "methods" / f"{method}.yaml"
    if not method_path.is_file():
        raise ConfigError(f"method {method!r} has no paper defaults file {method_path}")

    preset_data = _drop_nulls(_read_yaml(preset_path, "preset"))
    per_method = preset_data.pop("per_method", {}) or {}
    unknown_methods = sorted(set(per_method) - set(REGISTRY))
    if unknown_methods:
        raise ConfigError(f"preset {preset_path}: per_method.{unknown_methods[0]} names no method; "
                          f"allowed: {', '.join(sorted(REGISTRY))}")
    for key in sorted(set(user) & set(REGISTRY)):
        if isinstance(user[key], dict):
            raise ConfigError(f"{key}: method knobs are top-level keys; write e.g. "
                              f"`-S {next(iter(user[key]), 'knob')}=...` instead of `-S {key}.<knob>=...`")
    return [Layer(f"params/methods/{method}.yaml", _drop_nulls(_read_yaml(method_path, "method defaults"))),
            Layer(f"params/presets/{preset}.yaml", preset_data),
            Layer(f"params/presets/{preset}.yaml per_method.{method}", per_method.get(method, {})),
            Layer(params_path.name, params), Layer("-S", extra)]


def load_config(params_path: str | Path = "params.yaml", overrides: dict | None = None) -> Config:
    """Resolve and validate the configuration described by ``params_path``.

    ``overrides`` (nested, same form as params.yaml) are applied last; tests and the search use it.
    """
    layers = resolve_layers(params_path, overrides)
    user = deep_merge(layers[-2].values, layers[-1].values)
    return config_from_dict(deep_merge(*(layer.values for layer in layers)), warn_about=set(user))


def knob_keys(method: str) -> set[str]:
    """The top-level params keys that ``method`` reads as its own knobs."""
    from selfsup.methods import REGISTRY

    return {param_key(f) for f in dataclasses.fields(REGISTRY[method].Knobs)}


def check_foreign_knob(key: str, value: Any, method: str) -> None:
    """A knob ``method`` ignores must still be valid for a method that reads it, so that a bad value
    fails now rather than after a later switch of method, and never passes unnoticed."""
    from selfsup.methods import REGISTRY

    owners = [m for m in sorted(REGISTRY) if key in knob_keys(m)]
    errors = []
    for owner in owners:
        try:
            build(REGISTRY[owner].Knobs, {key: value})
            return
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(f"{errors[0]} ({key} is read by {', '.join(owners)}; method {method!r} ignores it, but "
                      f"every knob is checked whichever method runs)")


def config_from_dict(merged: dict, warn_about: set[str] = frozenset()) -> Config:
    """Build and validate a :class:`Config` from one merged mapping (e.g. a saved ``config.yaml``).

    Knobs of other methods are dropped; those named in ``warn_about`` (what the user set) are
    reported with a warning naming them.
    """
    from selfsup.methods import REGISTRY

    merged = dict(merged)
    method = merged.get("method", Config.method)
    if method not in REGISTRY:
        raise ConfigError(f"method={method!r} is not known; allowed: {', '.join(sorted(REGISTRY))}")
    own = knob_keys(method)
    others = set().union(*(knob_keys(m) for m in REGISTRY)) - own
    for key in sorted(others & set(merged)):
        check_foreign_knob(key, merged[key], method)
        if key in warn_about:
            log.warning("%s=%r is ignored: method %r does not use it", key, merged[key], method)
        merged.pop(key)
    knob_values = {k: merged.pop(k) for k in own if k in merged}
    config = build(Config, merged)
    return dataclasses.replace(config, knobs=build(REGISTRY[method].Knobs, knob_values))


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML next to a stage's outputs (atomically)."""
    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
