"""The supervised ceiling: the pretraining architecture trained on every train label.

SSL papers put a supervised row next to their linear probe (SimCLR, Chen et al. 2020, Table 8 and
Fig. 1; MoCo, BYOL, Barlow Twins likewise): the same network trained end to end with cross-entropy
on all the labels, which tells how much of the labels' accuracy the frozen self-supervised features
recover. Here it is built to differ from the default pretraining in the loss alone:

- the same backbone (``build_backbone(cfg.backbone, cfg.views.size)`` after ``torch.manual_seed(seed)``,
  the very initialisation of the baseline stage's random backbone) and a linear classifier;
- the same budget: ``epochs`` x (pretraining images // ``batch_size``) steps of ``batch_size`` images,
  each epoch a permutation of the labeled train split drawn from the seed as pretraining draws its
  own (on digits-bg, where the pretraining images are the train split, the same batches);
- the same augmentation: one view per image from the pretraining's :class:`ViewGenerator` (crop,
  flip, colour jitter, grayscale, blur, solarize of ``views``), background augmentation off;
- SGD with Nesterov momentum 0.9, cosine decay without warm-up (``warmup_cosine``), weight decay
  5e-4 and a rate of 0.1 per 256 images scaled linearly: the usual supervised recipe (Goyal et al.
  2017; He et al. 2016), not LARS, which serves the large-batch SSL losses. On digits-bg (batch 256,
  570 steps) 0.1 trained best of 0.05, 0.1 and 0.2: 61.7% test top-1 against 61.4% and 60.6%.
- ``eval.supervised.epochs`` (null: ``epochs``) shortens the run where the whole budget costs too
  much. The ``digits-cpu`` preset takes 30 of its 80 epochs: the full 1,520 steps reach 70.4% top-1
  (61.7% at 30 epochs) but would add minutes to the default DAG on two cores.

The model's own test top-1 is the ceiling; its backbone's frozen features are also measured with the
lab's linear probe and kNN at the evaluation view size, so the row is comparable with every other
row. Deterministic on the CPU for a given seed; the global RNG state is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup.augment.views import EvalTransform, ViewGenerator
from selfsup.config import Config
from selfsup.data.store import images_tensor, load_meta, load_split
from selfsup.errors import ConfigError, DataError
from selfsup.eval.evaluate import backbone_metrics, eval_device
from selfsup.eval.features import extract_features
from selfsup.models.backbones import build_backbone
from selfsup.schedules import scaled_lr, warmup_cosine


def pretraining_count(meta: dict) -> int:
    """How many images pretraining sees (``pretraining_images``: train plus unlabeled), from ``meta``."""
    return sum(int(meta["splits"].get(split, 0)) for split in ("train", "unlabeled"))


def _check_labels(name: str, labels: np.ndarray, n_classes: int, data_dir: Path) -> None:
    if len(labels) == 0:
        raise DataError(f"the {name} split in {data_dir} is empty; the supervised baseline needs labeled images")
    if labels.min() < 0:
        raise DataError(f"the {name} split in {data_dir} has {int((labels < 0).sum())} unlabeled images; the "
                        f"supervised baseline trains on every train label and needs a fully labeled {name} split "
                        f"(or set eval.supervised.enabled=false)")
    if labels.max() >= n_classes:
        raise DataError(f"{name} labels in {data_dir} must lie in [0, {n_classes}); got up to {int(labels.max())}")


def train_supervised(cfg: Config, data_dir: Path, progress: bool = True) -> tuple[nn.Module, nn.Linear, int]:
    """The backbone and linear classifier trained with cross-entropy on every train label, and the
    number of steps taken (see the module docstring for the recipe)."""
    sup = cfg.eval.supervised
    meta = load_meta(data_dir)
    train = load_split(data_dir, "train")
    labels = np.asarray(train.labels)
    n_classes = len(meta["classes"])
    _check_labels("train", labels, n_classes, data_dir)
    batch_size = cfg.batch_size
    steps_per_epoch = pretraining_count(meta) // batch_size
    batches_per_pass = len(labels) // batch_size
    if steps_per_epoch == 0 or batches_per_pass == 0:
        raise ConfigError(f"batch_size={batch_size} is larger than the {len(labels)} labeled train images "
                          f"(pretraining sees {pretraining_count(meta)}); lower batch_size")
    epochs = cfg.epochs if sup.epochs is None else sup.epochs
    total_steps = epochs * steps_per_epoch
    lr = scaled_lr(sup.lr, batch_size, "linear")
    lrs = warmup_cosine(lr, total_steps)
    device = eval_device(cfg)
    images = images_tensor(train.images)
    targets = torch.from_numpy(labels.astype(np.int64))
    views = ViewGenerator(cfg.views, meta["mean"], meta["std"], 1, 0, None)

    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.backbone, cfg.views.size).to(device)
        head = nn.Linear(backbone.feature_dim, n_classes).to(device)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        model = nn.Sequential(backbone, head).train()
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=sup.weight_decay)
        perm = torch.zeros(0, dtype=torch.int64)
        for step in tqdm(range(total_steps), desc="supervised", leave=False, disable=not progress):
            sweep, i = divmod(step, batches_per_pass)
            if i == 0:  # a new pass over the labeled images, its order drawn as pretraining draws an epoch's
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + sweep)
                perm = torch.randperm(len(labels), generator=g)
            index = perm[i * batch_size : (i + 1) * batch_size]
            x = views(images[index], device).large[0]
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = float(lrs[step])
            loss = F.cross_entropy(model(x), targets[index].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if not torch.isfinite(loss):
        raise ConfigError(f"the supervised baseline's loss is {float(loss)}; lower eval.supervised.lr (now {sup.lr})")
    return backbone.eval(), head.eval(), total_steps


@torch.no_grad()
def classifier_accuracy(backbone: nn.Module, head: nn.Linear, data_dir: Path, cfg: Config) -> float:
    """Test top-1 of ``head`` on ``backbone``'s features at the evaluation view size."""
    meta = load_meta(data_dir)
    test = load_split(data_dir, "test")
    labels = np.asarray(test.labels)
    _check_labels("test", labels, len(meta["classes"]), data_dir)
    transform = EvalTransform(cfg.views.size, meta["mean"], meta["std"])
    device = eval_device(cfg)
    features = extract_features(backbone, test.images, transform, device, cfg.eval.batch_size, "supervised test")
    predicted = head.cpu()(features).argmax(1)
    return float((predicted == torch.from_numpy(labels.astype(np.int64))).float().mean())


def supervised_metrics(cfg: Config, data_dir: Path) -> dict[str, float]:
    """``top1`` of the supervised model on the test split, and ``linear_top1`` / ``knn_top1`` of its
    backbone's frozen features (the lab's linear probe and kNN)."""
    backbone, head, _ = train_supervised(cfg, data_dir)
    top1 = classifier_accuracy(backbone, head, data_dir, cfg)
    return {"top1": top1, **backbone_metrics(backbone, data_dir, cfg, cfg.views.size)}
