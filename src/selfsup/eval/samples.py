"""Image grids of a generative method: what it reconstructs, what it samples, what each latent does.

- ``reconstructions.png``: the first ``n`` test images (top row) over their reconstructions (bottom
  row; the VAEs decode the posterior mean, VQ-VAE its quantised map);
- ``samples.png``: images decoded from the prior, z ~ N(0, I) for the VAEs (Kingma & Welling Fig. 5),
  a code grid drawn by the PixelCNN prior for VQ-VAE (van den Oord et al. 2017, Sec. 4.2);
- ``traversals.png`` (VAEs): one test image's posterior mean with one latent dimension at a time
  set to each of ``steps`` values in [-3, 3] (a row per dimension, Higgins et al. 2017 Fig. 7),
  dimensions ordered by their mean KL over the test images, largest first.

Every random draw comes from a generator seeded by ``seed`` and the PNGs are written by PIL without
metadata, so a rerun writes the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from selfsup.augment.views import EvalTransform
from selfsup.data.store import images_tensor
from selfsup.io import atomic_write
from selfsup.methods import Method
from selfsup.methods.vae import VAE
from selfsup.methods.vqvae import VQVAE

SCALE = 2  # every image is drawn at twice its side, nearest neighbour


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> Path:
    """Images (N, 3, s, s) in [0, 1] as one PNG grid, written atomically and deterministically."""
    grid = make_grid(images.float().clamp(0, 1).cpu(), nrow=nrow, padding=1, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array).resize((array.shape[1] * SCALE, array.shape[0] * SCALE), Image.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    atomic_write(Path(path), lambda f: f.write(buf.getvalue()))
    return Path(path)


@torch.no_grad()
def write_samples(method: Method, test_images: np.ndarray, transform: EvalTransform, out_dir: Path, seed: int,
                  n: int = 16, steps: int = 7) -> list[Path]:
    """Write the grids of a generative method to ``out_dir``; returns their paths."""
    if not method.generative:
        raise ValueError(f"{method.name} does not generate images; samples need vae, betavae or vqvae")
    method.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = transform(images_tensor(test_images[:n]))
    recon, _ = method.reconstruct(x)
    written = [save_grid(torch.cat([method.unnormalize(x), recon.float()]), out_dir / "reconstructions.png", n)]
    g = torch.Generator().manual_seed(seed)
    if isinstance(method, VQVAE):
        codes = method.prior.sample(n, method.grid, generator=g)
        written.append(save_grid(method.decode_codes(codes), out_dir / "samples.png", n // 2))
        return written
    assert isinstance(method, VAE)
    z = torch.randn(n, method.knobs.latent_dim, generator=g)
    written.append(save_grid(method.mean_image(z), out_dir / "samples.png", n // 2))
    mu, logvar = method.encode(transform(images_tensor(test_images)))
    kl_per_dim = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean(0)
    dims = torch.argsort(kl_per_dim, descending=True, stable=True)[: min(10, len(kl_per_dim))]
    values = torch.linspace(-3, 3, steps)
    rows = []
    for d in dims:
        z = mu[:1].repeat(steps, 1)
        z[:, d] = values
        rows.append(method.mean_image(z))
    written.append(save_grid(torch.cat(rows), out_dir / "traversals.png", steps))
    return written
