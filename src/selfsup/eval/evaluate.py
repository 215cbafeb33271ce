"""The ``baseline`` and ``evaluate`` stages' library functions.

``evaluate`` measures the frozen features of the trained method's feature extractor with a linear
probe and weighted kNN on the test split, and puts them next to the baselines: the same extractor
randomly initialised, raw pixels and the supervised ceiling (which ``baseline`` computes once per
dataset, together with a random ``backbone``; the supervised model is :mod:`selfsup.eval.supervised`).
Where the dataset records its generative factors (digits-bg), the test features of both extractors
are also scored for disentanglement (:mod:`selfsup.eval.disentangle`: the beta-VAE score and MIG);
a generative method's reconstructions are measured too (:mod:`selfsup.eval.generative`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from selfsup.augment.views import EvalTransform
from selfsup.config import Config
from selfsup.data.store import load_factors, load_meta, load_split
from selfsup.errors import DataError
from selfsup.eval.disentangle import NO_FACTORS, disentanglement
from selfsup.eval.features import extract_features
from selfsup.eval.finetune import finetune_accuracy
from selfsup.eval.generative import generative_metrics
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.linear import linear_probe_accuracy
from selfsup.methods import DataInfo, Method, build_method
from selfsup.model_file import load_model_file
from selfsup.models.backbones import build_backbone

log = logging.getLogger(__name__)


def _labeled(data_dir: Path) -> tuple:
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    if (train.labels < 0).any() or (test.labels < 0).any():
        raise DataError(f"the train and test splits in {data_dir} must be fully labeled for evaluation")
    return train, test


def probe(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
          n_classes: int, cfg: Config) -> dict[str, float]:
    """Linear-probe and kNN top-1 accuracy of the given features."""
    ytr, yte = torch.from_numpy(np.asarray(train_y)), torch.from_numpy(np.asarray(test_y))
    return {
        "linear_top1": linear_probe_accuracy(train_x, ytr, test_x, yte, n_classes, cfg.eval.linear, cfg.seed),
        "knn_top1": knn_accuracy(train_x, ytr, test_x, yte, n_classes, cfg.eval.knn.k, cfg.eval.knn.temperature),
    }


def backbone_metrics(backbone: torch.nn.Module, data_dir: Path, cfg: Config, view_size: int) -> dict[str, float]:
    meta = load_meta(data_dir)
    train, test = _labeled(data_dir)
    transform = EvalTransform(view_size, meta["mean"], meta["std"])
    device = eval_device(cfg)
    ftr = extract_features(backbone, train.images, transform, device, cfg.eval.batch_size, "train features")
    fte = extract_features(backbone, test.images, transform, device, cfg.eval.batch_size, "test features")
    return probe(ftr, train.labels, fte, test.labels, len(meta["classes"]), cfg)


def finetune_metrics(extractor: torch.nn.Module, data_dir: Path, cfg: Config, view_size: int) -> float:
    """Test top-1 after fine-tuning ``extractor`` end to end on ``eval.finetune.label_fraction`` of the labels."""
    ft = cfg.eval.finetune
    meta = load_meta(data_dir)
    train, test = _labeled(data_dir)
    transform = EvalTransform(view_size, meta["mean"], meta["std"])
    return finetune_accuracy(extractor, train.images, train.labels, test.images, test.labels, len(meta["classes"]),
                             transform, ft.label_fraction, ft.epochs, ft.lr, ft.weight_decay, ft.batch_size,
                             cfg.seed, eval_device(cfg))


def eval_device(cfg: Config) -> torch.device:
    """CUDA when there is one and ``train.device`` allows it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")


def baseline(cfg: Config, data_dir: Path) -> dict[str, dict[str, float]]:
    """Random-backbone and raw-pixel accuracies on the test split, and with ``eval.supervised.enabled``
    the supervised model's (``supervised``: its classifier's ``top1``, its frozen features' probes)."""
    from selfsup.eval.supervised import supervised_metrics  # it imports backbone_metrics from here

    torch.manual_seed(cfg.seed)
    random_net = build_backbone(cfg.backbone, cfg.views.size)
    meta = load_meta(data_dir)
    train, test = _labeled(data_dir)

    def pixels(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0)

    metrics = {
        "random_backbone": backbone_metrics(random_net, data_dir, cfg, cfg.views.size),
        "raw_pixels": probe(pixels(train.images), train.labels, pixels(test.images), test.labels,
                            len(meta["classes"]), cfg),
    }
    if cfg.eval.supervised.enabled:
        metrics["supervised"] = supervised_metrics(cfg, data_dir)
    return metrics


def load_method(model_path: Path, random_init: bool = False) -> tuple[Method, int, Config]:
    """The method saved by ``pretrain``, its view size and its config.

    With ``random_init`` the same architecture is returned freshly initialised (the baseline that
    shows what pretraining added).
    """
    state, cfg = load_model_file(model_path, "pretrain")
    info = DataInfo(state["info"]["n_images"], tuple(state["info"]["mean"]), tuple(state["info"]["std"]))
    torch.manual_seed(cfg.seed + 1)
    method = build_method(cfg, info)
    if not random_init:
        method.load_state_dict(state["state"])
    return method, int(state["view_size"]), cfg


def load_model(model_path: Path, random_init: bool = False) -> tuple[torch.nn.Module, int, Config]:
    """The feature extractor of the method saved by ``pretrain`` (see :func:`load_method`)."""
    method, view_size, cfg = load_method(model_path, random_init)
    return method.feature_extractor(), view_size, cfg


def disentanglement_metrics(extractor: torch.nn.Module, data_dir: Path, cfg: Config, view_size: int,
                            prefix: str = "") -> dict[str, float]:
    """The beta-VAE score, its chance level and MIG (overall and per factor) of the extractor's test features,
    as ``<prefix>betavae_score`` etc.; nothing, with a log line, for a dataset without factors."""
    loaded = load_factors(data_dir, "test")
    if loaded is None:
        log.info("no disentanglement metrics: %s (%s)", NO_FACTORS, data_dir)
        return {}
    meta = load_meta(data_dir)
    codes = extract_features(extractor, load_split(data_dir, "test").images,
                             EvalTransform(view_size, meta["mean"], meta["std"]), eval_device(cfg),
                             cfg.eval.batch_size, "test features")
    scores = disentanglement(codes.numpy(), *loaded, seed=cfg.seed)
    out = {f"{prefix}{k}": float(scores[k]) for k in ("betavae_score", "betavae_chance", "mig")
           if scores.get(k) is not None}
    out.update({f"{prefix}mig_{name}": float(gap) for name, gap in scores["mig_per_factor"].items()})
    return out


def summary(metrics: dict[str, float]) -> str:
    """The headline numbers of an evaluation in one line (an MLflow run's description)."""
    def pct(key: str) -> str:
        return f"{100 * metrics[key]:.1f}%"

    text = (f"linear probe {pct('linear_top1')}, kNN {pct('knn_top1')} on the test split; the same network randomly "
            f"initialised {pct('random_linear_top1')} / {pct('random_knn_top1')}")
    if "pixels_linear_top1" in metrics:
        text += f"; raw pixels {pct('pixels_linear_top1')} / {pct('pixels_knn_top1')}"
    if "supervised_top1" in metrics:
        text += (f"; supervised {pct('supervised_top1')} (its frozen features {pct('supervised_linear_top1')} / "
                 f"{pct('supervised_knn_top1')})")
    if "chance_top1" in metrics:
        text += f"; chance {pct('chance_top1')}"
    return text


def evaluate(cfg: Config, data_dir: Path, model_path: Path, baseline_metrics: dict) -> dict:
    """Trained-extractor accuracies, a randomly initialised extractor of the same architecture,
    raw pixels, and the gaps between them; where ``baseline_metrics`` has the supervised model, its
    accuracies and ``linear_fraction_of_supervised`` (the linear probe over the supervised top-1);
    disentanglement of both extractors where the data have factors (``random_`` for the random one);
    reconstruction metrics of a generative method."""
    method, view_size, _ = load_method(model_path)
    extractor = method.feature_extractor()
    trained = backbone_metrics(extractor, data_dir, cfg, view_size)
    random_extractor, _, _ = load_model(model_path, random_init=True)
    rand = backbone_metrics(random_extractor, data_dir, cfg, view_size)
    factors = {**disentanglement_metrics(extractor, data_dir, cfg, view_size),
               **disentanglement_metrics(random_extractor, data_dir, cfg, view_size, prefix="random_")}
    generated = {}
    if method.generative:
        meta = load_meta(data_dir)
        generated = generative_metrics(method, load_split(data_dir, "train").images,
                                       load_split(data_dir, "test").images,
                                       EvalTransform(view_size, meta["mean"], meta["std"]), eval_device(cfg),
                                       cfg.eval.batch_size)
    n_classes = len(load_meta(data_dir)["classes"])
    if trained["linear_top1"] < rand["linear_top1"]:
        log.warning("the pretrained features score below the same extractor randomly initialised (linear probe "
                    "%.1f%% < %.1f%%): the method did not learn here", 100 * trained["linear_top1"],
                    100 * rand["linear_top1"])
    finetuned = {}
    if cfg.eval.finetune.enabled:
        finetuned = {"finetune_top1": finetune_metrics(extractor, data_dir, cfg, view_size),
                     "random_finetune_top1": finetune_metrics(random_extractor, data_dir, cfg, view_size)}
    supervised = {}
    if "supervised" in baseline_metrics:
        sup = baseline_metrics["supervised"]
        supervised = {"supervised_top1": sup["top1"], "supervised_linear_top1": sup["linear_top1"],
                      "supervised_knn_top1": sup["knn_top1"]}
        if sup["top1"] > 0:
            supervised["linear_fraction_of_supervised"] = trained["linear_top1"] / sup["top1"]
    return {
        **trained,
        **finetuned,
        "random_linear_top1": rand["linear_top1"],
        "random_knn_top1": rand["knn_top1"],
        "pixels_linear_top1": baseline_metrics["raw_pixels"]["linear_top1"],
        "pixels_knn_top1": baseline_metrics["raw_pixels"]["knn_top1"],
        **supervised,
        "gain_linear": trained["linear_top1"] - rand["linear_top1"],
        "gain_knn": trained["knn_top1"] - rand["knn_top1"],
        "chance_top1": 1.0 / n_classes,
        **factors,
        **generated,
    }
