"""Semi-supervised evaluation: fine-tune the whole pretrained network on a fraction of the labels.

SimCLR (Chen et al., 2020, arXiv:2002.05709, Sec. 4.2 and Appendix B.5) fine-tunes the pretrained
encoder together with a new linear classifier on a class-balanced 1% or 10% of the ImageNet labels,
with Nesterov momentum SGD, no weight decay and only random cropping as augmentation. SimCLR v2
(Chen et al., NeurIPS 2020, arXiv:2006.10029, Sec. 2) fine-tunes from a middle layer of the
projection head instead of its input; here the extractor passed in already ends at the chosen
projector layer, so the classifier is simply put on its output.

Here the schedule is a cosine decay without warm-up (``selfsup.schedules.warmup_cosine``), BatchNorm
layers run in train mode, and the only augmentation is a random resized crop of scale (0.5, 1)
without flips (digits must not be mirrored). The returned number is the test top-1 accuracy.
"""

from __future__ import annotations

import copy

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup.augment.views import EvalTransform
from selfsup.data.store import images_tensor
from selfsup.errors import ConfigError, DataError
from selfsup.fewlabel.subsets import balanced_subset
from selfsup.schedules import warmup_cosine

CROP_SCALE = (0.5, 1.0)


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Mini-batches of ``order``; a trailing batch of one joins the previous one (BatchNorm needs two)."""
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


@torch.no_grad()
def _accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, transform: EvalTransform,
              batch_size: int, device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = images_tensor(images[start : start + batch_size]).to(device, non_blocking=True)
        y = torch.as_tensor(np.asarray(labels[start : start + batch_size]), dtype=torch.int64, device=device)
        correct += int((model(transform(x)).argmax(1) == y).sum())
    return correct / max(len(images), 1)


def finetune_accuracy(extractor: nn.Module, train_images: np.ndarray, train_labels: np.ndarray,
                      test_images: np.ndarray, test_labels: np.ndarray, n_classes: int,
                      transform: EvalTransform, label_fraction: float, epochs: int, lr: float,
                      weight_decay: float, batch_size: int, seed: int, device: torch.device,
                      augment: bool = True) -> float:
    """Test top-1 accuracy (a fraction in [0, 1]) after fine-tuning a copy of ``extractor`` plus a
    linear classifier end to end on a class-balanced ``label_fraction`` of the train labels.

    Images are uint8 (N, H, W, 3). ``extractor`` itself is left untouched, and the global RNG state
    is restored afterwards; the result is deterministic for a given ``seed`` on the CPU.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0:
        raise ConfigError(f"fine-tuning needs epochs >= 1, batch_size >= 1, lr > 0 and weight_decay >= 0; "
                          f"got {epochs}, {batch_size}, {lr}, {weight_decay}")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    for name, y in (("train", train_labels), ("test", test_labels)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(f"{name} labels must lie in [0, {n_classes}) for fine-tuning; "
                            f"got [{y.min()}, {y.max()}]")
    subset = balanced_subset(train_labels, label_fraction, seed)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        transform = transform.to(device)
        backbone = copy.deepcopy(extractor).to(device).requires_grad_(True)
        with torch.no_grad():
            probe = images_tensor(train_images[subset[:2]]).to(device)
            out_dim = backbone.eval()(transform(probe)).flatten(1).shape[1]
        head = nn.Linear(out_dim, n_classes).to(device)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        model = nn.Sequential(backbone, nn.Flatten(), head)
        crop = K.RandomResizedCrop(tuple(train_images.shape[1:3]), scale=CROP_SCALE).to(device)

        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
        g = torch.Generator().manual_seed(seed)
        steps_per_epoch = len(_batches(torch.arange(len(subset)), batch_size))
        lrs = warmup_cosine(lr, epochs * steps_per_epoch)
        step = 0
        for _ in tqdm(range(epochs), desc="finetune", leave=False):
            model.train()
            for batch in _batches(torch.randperm(len(subset), generator=g), batch_size):
                ids = subset[batch.numpy()]
                x = images_tensor(train_images[ids]).to(device, non_blocking=True).float()
                y = torch.as_tensor(train_labels[ids], dtype=torch.int64, device=device)
                if augment:
                    x = crop(x)
                for group in opt.param_groups:
                    group["lr"] = float(lrs[step])
                loss = F.cross_entropy(model(transform(x)).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        return _accuracy(model, test_images, test_labels, transform, batch_size, device)
