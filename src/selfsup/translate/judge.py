"""The judge: a small digit classifier that scores translated images.

Inception-v3 weights, the usual feature space for FID and KID, cannot be downloaded offline, so
the lab trains its own judge on real domain-B digits (white on black, 3x32x32 in [0, 1]). It
provides

- the *content-kept accuracy*: the share of translated A images that the judge reads as the digit
  the source image showed, and
- the feature space for FID and KID (:mod:`selfsup.translate.metrics`): the 128-d penultimate
  layer, after global average pooling.

Values in this space are comparable within the project only. Where torchvision's Inception-v3
ImageNet weights are at hand as a local file, :func:`inception_features` gives the usual 2048-d
pool features instead.

Training is deterministic on the CPU: the weights are initialised under ``torch.manual_seed(seed)``
in a forked RNG (the global RNG is left as it was) and the batches and the augmentation (a random
shift of up to ``shift`` pixels: zero padding, then a random crop) are drawn from a
``torch.Generator`` seeded with ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup.errors import DataError

FEATURE_DIM = 128
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = f"https://download.pytorch.org/models/{INCEPTION_FILE}"  # Inception_V3_Weights.IMAGENET1K_V1
INCEPTION_SIZE = 299
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class JudgeNet(nn.Module):
    """Three conv blocks (32-64-128 channels; conv3x3, BN, ReLU, max-pool 2), global average pooling, linear."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(3, 32), _block(32, 64), _block(64, FEATURE_DIM))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128) of images (N, 3, H, W) in [0, 1]."""
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes)."""
        return self.head(self.features(x))


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")


def _shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset in [-shift, shift]^2 (zero padding, then crop)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen)
    rows = (dy + torch.arange(h)).unsqueeze(2)  # (B, H, 1)
    cols = (dx + torch.arange(w)).unsqueeze(1)  # (B, 1, W)
    return padded.permute(0, 2, 3, 1)[torch.arange(b).view(b, 1, 1), rows, cols].permute(0, 3, 1, 2)


def train_judge(images: torch.Tensor, labels: torch.Tensor, steps: int = 400, batch_size: int = 64,
                lr: float = 1e-3, seed: int = 0, progress: bool = False, n_classes: int = 10,
                shift: int = 2) -> JudgeNet:
    """A :class:`JudgeNet` trained with Adam on ``images`` (N, 3, H, W) in [0, 1] and ``labels`` (N,).

    Each step draws ``batch_size`` random images (with replacement) and shifts each by up to
    ``shift`` pixels (0: no augmentation). Deterministic for a given ``seed``; returned in eval mode.
    """
    _check_images(images)
    labels = labels.long().cpu()
    if labels.shape != (len(images),):
        raise ValueError(f"expected {len(images)} labels, got shape {tuple(labels.shape)}")
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be class indices in [0, {n_classes}), got none or values outside")
    images = images.detach().float().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = JudgeNet(n_classes)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in tqdm(range(steps), desc="judge", disable=not progress):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        x = images[idx]
        if shift > 0:
            x = _shift(x, shift, gen)
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def judge_outputs(net: JudgeNet, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, n_classes), features (N, 128)) of ``images`` on the CPU; puts ``net`` in eval mode."""
    _check_images(images)
    net.eval()
    device = next(net.parameters()).device
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        f = net.features(images[start:start + batch_size].float().to(device))
        feats.append(f.cpu())
        logits.append(net.head(f).cpu())
    return torch.cat(logits), torch.cat(feats)


def load_inception(weights_path: str | Path) -> nn.Module:
    """torchvision's Inception-v3 with the state dict at ``weights_path``, ``fc`` replaced by Identity, eval mode.

    ``transform_input=True`` as torchvision sets for its pretrained weights: the model takes
    ImageNet-normalised input and converts it to the [-1, 1] scaling the Google weights expect.
    """
    from torchvision.models import inception_v3

    path = Path(weights_path)
    if not path.is_file():
        raise DataError(f"Inception-v3 weights {path} not found; on a machine that is online download "
                        f"torchvision's Inception_V3_Weights.IMAGENET1K_V1 ({INCEPTION_URL}), copy the file "
                        f"here and pass it with the stage's --inception PATH option (or leave the option out "
                        f"to use the judge's features)")
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not an Inception-v3 state dict ({exc}); download {INCEPTION_URL} again") from exc
    model.fc = nn.Identity()
    return model.eval()


@torch.no_grad()
def inception_features(images: torch.Tensor, weights_path: str | Path, batch_size: int = 64,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """2048-d Inception-v3 pool features (N, 2048), on the CPU, of images (N, 3, H, W) in [0, 1].

    Images are resized to 299x299 (bilinear) and ImageNet-normalised; see :func:`load_inception`.
    """
    _check_images(images)
    model = load_inception(weights_path).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    feats = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float().to(device)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        feats.append(model((x - mean) / std).cpu())
    return torch.cat(feats)
