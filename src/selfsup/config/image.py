"""The image sections of the configuration: ``data`` (digits-bg, image folders), ``backbone``,
``projector``, ``views`` (crops, colour, blur, multi-crop, background augmentation), ``segment``,
``optim``, ``train`` and ``eval`` (linear probe, kNN, fine-tuning, the supervised ceiling).

Each section is a frozen dataclass of :func:`~selfsup.schema.knob` fields (default, range or
choices, doc); a ``check`` method holds a rule across fields. Nothing here reads a file or knows
the methods: :mod:`selfsup.params` resolves params.yaml into these.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.errors import ConfigError
from selfsup.schema import knob

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
    bias_norm_lr_ratio: float = knob(1.0, gt=0.0, doc="learning rate of biases and norm parameters relative to "
                                                     "the weights' (Barlow Twins: 0.0048 / 0.2 = 0.024)")
    weight_decay_end: float | None = knob(None, ge=0.0, doc="cosine schedule of the weight decay from weight_decay "
                                                            "to this value (DINO: 0.04 -> 0.4); null: constant")


@dataclass(frozen=True)
class TrainConfig:
    device: str = knob("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = knob(True, doc="mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = knob("bfloat16", choices=("bfloat16", "float16"))
    channels_last: bool = knob(True, doc="channels_last memory format (faster convolutions on CPU and GPU)")
    sync_bn: bool = knob(False, doc="global BatchNorm under DDP: statistics over every process's batch "
                                    "(SyncBatchNorm on CUDA, selfsup.parallel.GlobalBatchNorm on CPU)")
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
class SupervisedConfig:
    """The supervised ceiling of the ``baseline`` stage (see :mod:`selfsup.eval.supervised`): the
    pretraining backbone trained with cross-entropy on every train label, at the pretraining's batch
    size, steps and views; SGD with Nesterov momentum 0.9 and a cosine schedule."""

    enabled: bool = knob(True, doc="also train and report the supervised model in the baseline stage")
    epochs: int | None = knob(None, ge=1, doc="epochs of the pretraining's steps per epoch; null: `epochs`, the "
                                              "pretraining's own budget")
    lr: float = knob(0.1, gt=0.0, doc="SGD rate for a batch of 256, scaled linearly with batch_size")
    weight_decay: float = knob(5e-4, ge=0.0)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = knob(512, ge=1, doc="feature-extraction batch size")
    linear: LinearProbeConfig = knob(LinearProbeConfig())
    knn: KnnConfig = knob(KnnConfig())
    finetune: FinetuneConfig = knob(FinetuneConfig())
    supervised: SupervisedConfig = knob(SupervisedConfig())
