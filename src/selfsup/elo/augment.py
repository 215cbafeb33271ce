"""Class-preserving augmentation of ELo training clips (Piergiovanni et al. 2020, arXiv:2002.12177).

Only what keeps an action's identity: one random crop per clip (the same for all its frames and
its flow, which is rescaled to the crop's pixels) resized back to the input size, and a per-clip
contrast and brightness change of the RGB frames. No horizontal flips and no time reversal: on
the embedded data left/right and forward/backward motions are different classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(rgb: torch.Tensor, flow: torch.Tensor | None, crop_min: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop every clip to a random square of side f in [crop_min, 1] (fraction of the frame) at a
    random position, resized back to the frame size.

    ``rgb`` (B, C, T, S, S); ``flow`` (B, 2, T', S, S) in pixels/frame or None. The flow gets the
    same crop and is multiplied by 1/f, the magnification of the resize. ``crop_min`` = 1 is the
    identity (and draws nothing from ``generator``).
    """
    if crop_min >= 1.0:
        return rgb, flow
    b = len(rgb)
    side = crop_min + (1.0 - crop_min) * torch.rand(b, generator=generator)
    centre = (1.0 - side).unsqueeze(1) * (2.0 * torch.rand(b, 2, generator=generator) - 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = centre
    theta = theta.to(rgb.device, rgb.dtype)

    def warp(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1, 2)
        grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
        out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.view_as(x)

    cropped_flow = None if flow is None else warp(flow) / side.to(flow).view(b, 1, 1, 1, 1)
    return warp(rgb), cropped_flow


def jitter(rgb: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Per clip: x * (1 + c) + d with c, d uniform in [-amount, amount], clamped to [-1, 1].

    ``rgb`` (B, C, T, H, W) in [-1, 1]; the same change for all frames of a clip. ``amount`` = 0 is
    the identity (and draws nothing from ``generator``).
    """
    if amount <= 0.0:
        return rgb
    b = len(rgb)
    c, d = (amount * (2.0 * torch.rand(2, b, generator=generator) - 1.0)).to(rgb).view(2, b, 1, 1, 1, 1)
    return (rgb * (1.0 + c) + d).clamp(-1.0, 1.0)
