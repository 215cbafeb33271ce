"""Labels of the ELo self-supervised tasks (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1).

Pure functions: each draws a task's labels from a ``torch.Generator`` and applies them to a batch
whose time axis is dim 2 (clips (B, C, T, ...)) or dim 1 (per-step features (B, T', D)). Binary
labels are balanced within the batch: 1 for the unchanged clip, 0 for the changed one.

- order (Shuffle and Learn, Misra et al. 2016): frames in order (1) vs shuffled (0).
- reverse (arrow of time, Wei et al. 2018): played forward (1) vs backward (0).
- align (audio-visual synchronisation): another modality aligned in time (1) vs shifted (0).
- predict: the first T - N frames are the input, the last N the target.

Audio has ``chunk`` = A steps per video frame (see :mod:`selfsup.elo.inputs`); shuffling moves
whole chunks, so a "frame" of audio is the sound during that video frame.
"""

from __future__ import annotations

import torch

from selfsup.errors import ConfigError


def balanced_labels(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) float labels, floor(n/2) zeros and the rest ones, in random positions."""
    labels = torch.ones(n)
    labels[torch.randperm(n, generator=generator)[: n // 2]] = 0.0
    return labels


def order_task(n: int, t: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame permutations (n, t) and labels (n,): identity for label 1, a random non-identity
    permutation for label 0. Needs t >= 2."""
    if t < 2:
        raise ValueError(f"t={t}: shuffling needs at least 2 frames")
    labels = balanced_labels(n, generator)
    identity = torch.arange(t)
    perms = identity.repeat(n, 1)
    for i in torch.nonzero(labels == 0).flatten().tolist():
        perm = torch.randperm(t, generator=generator)
        perms[i] = perm if not torch.equal(perm, identity) else identity.roll(1)
    return perms, labels


def reverse_task(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Labels (n,): 1 plays forward, 0 backward."""
    return balanced_labels(n, generator)


def shift_task(n: int, t: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Time shifts (n,) and labels (n,): shift 0 for label 1 (aligned), uniform in 1..t-1 for label 0."""
    if t < 2:
        raise ValueError(f"t={t}: shifting needs at least 2 time steps")
    labels = balanced_labels(n, generator)
    shifts = torch.randint(1, t, (n,), generator=generator) * (labels == 0)
    return shifts, labels


def predict_split(t: int, predict_frames: int) -> tuple[int, int]:
    """(past, future) frame counts for forecasting the last ``predict_frames`` of ``t`` frames."""
    if not 1 <= predict_frames < t:
        raise ConfigError(f"elo.predict_frames={predict_frames}: the clips have {t} frames, so it must be "
                          f"between 1 and {t - 1}")
    return t - predict_frames, predict_frames


def apply_order(x: torch.Tensor, perms: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """Reorder the frames of clips ``x`` (B, C, T*chunk, ...): frame j of clip i becomes its frame
    perms[i, j]; a frame is ``chunk`` consecutive time steps."""
    b, t = perms.shape
    frames = x.unflatten(2, (t, chunk)).transpose(1, 2)                   # (B, T, C, chunk, ...)
    shuffled = frames[torch.arange(b, device=x.device).unsqueeze(1), perms.to(x.device)]
    return shuffled.transpose(1, 2).flatten(2, 3)


def apply_reverse(x: torch.Tensor, labels: torch.Tensor, negate: bool = False) -> torch.Tensor:
    """Play clips ``x`` (B, C, T, ...) backwards where ``labels`` is 0; ``negate`` also flips the sign
    there (optical flow: a reversed video moves the other way)."""
    keep = (labels.to(x.device) == 1).view(-1, *([1] * (x.ndim - 1)))
    backward = x.flip(2)
    return torch.where(keep, x, -backward if negate else backward)


def apply_shift(steps: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Circularly shift per-step features ``steps`` (B, T', D) in time: row i moves by shifts[i]."""
    t = steps.shape[1]
    index = (torch.arange(t, device=steps.device) - shifts.to(steps.device).unsqueeze(1)) % t
    return steps.gather(1, index.unsqueeze(2).expand_as(steps))
