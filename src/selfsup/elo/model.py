"""The ELo multi-modal, multi-task model (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1, Eq. 1).

One network per modality with a weight above 0 (RGB always), each trained on its tasks, and the
others distilled into the RGB network:

    L = sum_m sum_t lambda_{m,t} L_{m,t},   lambda = ``elo.weights.<m>.<t>`` in [0, 1],

where the distillation term of modality m is L_{m,distill} = sum_l w_l ||P_l(M_l) - stopgrad(L_l)||^2
over the network stages l, with w = ``elo.distill_layers``, M_l the RGB network's stage map, P_l a
learned 1x1 convolution and L_l modality m's map resized to it (audio: both averaged over space /
frequency and compared along time). A task of weight 0 has no head and is never computed.

Tasks of modality m (each trains m's network and its head; another modality's features enter
as fixed, detached targets):

- reconstruct: decode m's input from its last stage map (MSE);
- predict: encode the first T - N frames, decode the last N (N = ``elo.predict_frames``, MSE);
- cross_predict: decode another modality's input (rgb, gray -> flow; flow -> rgb; MSE);
- order / reverse: BCE of a temporal head on the per-step features of a batch whose clips are
  half shuffled / half played backwards (flow is also negated when reversed); the unchanged half
  reuses the clips' own encoding, only the changed half is encoded again;
- contrastive: InfoNCE between m's projected clip embedding and each other network's embedding;
- align: BCE of a temporal head on [m's steps, another network's steps], half of them circularly
  shifted in time;
- distill (not rgb): the term above, which trains the RGB network.

``forward(batch, generator)`` takes prepared, standardised inputs (see :mod:`selfsup.elo.inputs`):
``batch["rgb"]`` (B, 3, T, S, S), and ``"flow"`` (B, 2, T-1, S, S) / ``"audio"`` (B, 1, A*T, n_mels)
where :attr:`EloModel.inputs` lists them. Labels of the temporal tasks are drawn from
``generator``, in a fixed order. Under DDP every process draws the labels of the global batch from
the same generator and keeps its own rows, and the contrastive task's candidates are every
process's clips, so the update equals one process's on the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import dist
from selfsup.config.video import ELO_TASKS, EloConfig
from selfsup.elo.inputs import AUDIO_STEPS_PER_FRAME, grayscale
from selfsup.elo.losses import binary_task_loss, distill_loss, info_nce, reconstruction_loss
from selfsup.elo.networks import (
    AUDIO_STRIDES,
    VIDEO_STRIDES,
    AudioEncoder,
    Decoder,
    EncoderOutput,
    TemporalHead,
    VideoEncoder,
)
from selfsup.elo.tasks import (
    apply_order,
    apply_reverse,
    apply_shift,
    order_task,
    predict_split,
    reverse_task,
    shift_task,
)
from selfsup.errors import DataError

CHANNELS = {"rgb": 3, "gray": 1, "flow": 2, "audio": 1}
CROSS_TARGET = {"rgb": "flow", "gray": "flow", "flow": "rgb"}
_Full = Callable[[str], EncoderOutput]


def _chunk(modality: str) -> int:
    """Time steps per video frame of a modality's input."""
    return AUDIO_STEPS_PER_FRAME if modality == "audio" else 1


def match_time(steps: torch.Tensor, t: int) -> torch.Tensor:
    """Per-step features (B, T1, D) averaged / repeated to (B, t, D)."""
    if steps.shape[1] == t:
        return steps
    return F.adaptive_avg_pool1d(steps.transpose(1, 2), t).transpose(1, 2)


def match_maps(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring a teacher stage map to the student's (B, C, T, H, W) shape: video teachers are resized
    (adaptive average); an audio teacher (B, C, S, F) is averaged over frequency and resized in time,
    and the student averaged over space, giving two (B, C, T) maps."""
    if teacher.ndim == student.ndim:
        if teacher.shape[2:] != student.shape[2:]:
            teacher = F.adaptive_avg_pool3d(teacher, student.shape[2:])
        return student, teacher
    student = student.mean((3, 4))
    return student, F.adaptive_avg_pool1d(teacher.mean(3), student.shape[2])


class EloModel(nn.Module):
    """The modality networks, their task heads and the distillation projections of one ELo run."""

    def __init__(self, elo: EloConfig) -> None:
        super().__init__()
        self.elo = elo
        self.weights: dict[str, dict[str, float]] = {
            m: {t: w for t in ELO_TASKS if (w := getattr(getattr(elo.weights, m), t)) > 0}
            for m in elo.weights.built()}
        self.encoders = nn.ModuleDict({m: self._encoder(m) for m in self.weights})
        self.heads = nn.ModuleDict()
        self.distill = nn.ModuleDict()
        rgb_widths = self.encoders["rgb"].widths
        for m, tasks in self.weights.items():
            for t in tasks:
                if t != "distill":
                    self.heads[f"{m}_{t}"] = self._head(m, t)
                    continue
                for layer, w in enumerate(elo.distill_layers):
                    if w > 0:
                        self.distill[f"{m}_{layer}"] = nn.Conv3d(rgb_widths[layer], self.encoders[m].widths[layer], 1)
        needed = set(self.weights) | {CROSS_TARGET[m] for m, ts in self.weights.items() if "cross_predict" in ts}
        self.inputs = tuple(m for m in ("rgb", "flow", "audio") if m in needed)  # gray is computed from rgb

    @property
    def rgb(self) -> VideoEncoder:
        return self.encoders["rgb"]

    def _encoder(self, m: str) -> nn.Module:
        if m == "audio":
            return AudioEncoder(self.elo.width, self.elo.embed_dim)
        return VideoEncoder(CHANNELS[m], self.elo.width, self.elo.embed_dim, self.elo.input_size)

    def _head(self, m: str, t: str) -> nn.Module:
        strides = AUDIO_STRIDES if m == "audio" else VIDEO_STRIDES
        top, d = 4 * self.elo.width, self.elo.embed_dim
        if t in ("reconstruct", "predict"):
            return Decoder(strides, top, self.elo.width, CHANNELS[m])
        if t == "cross_predict":
            return Decoder(strides, top, self.elo.width, CHANNELS[CROSS_TARGET[m]])
        if t == "contrastive":
            return nn.Linear(d, d)
        return TemporalHead(2 * d if t == "align" else d, d)  # order, reverse, align

    # -- forward -------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"<modality>/<task>": L_{m,t}, ..., "loss": sum lambda_{m,t} L_{m,t}}`` for the tasks with weight > 0."""
        missing = [m for m in self.inputs if m not in batch]
        if missing:
            raise DataError(f"the ELo weights need the {', '.join(missing)} input(s), but the batch has only "
                            f"{', '.join(sorted(batch))}")
        inputs = {m: batch[m] for m in self.inputs}
        if "gray" in self.encoders:
            inputs["gray"] = grayscale(batch["rgb"])
        cache: dict[str, EncoderOutput] = {}

        def full(m: str) -> EncoderOutput:
            if m not in cache:
                cache[m] = self.encoders[m](inputs[m])
            return cache[m]

        out: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=batch["rgb"].device)
        for m, tasks in self.weights.items():
            for t, w in tasks.items():
                value = getattr(self, f"_{t}")(m, inputs, full, generator)
                out[f"{m}/{t}"] = value
                total = total + w * value
        out["loss"] = total
        return out

    def _partners(self, m: str) -> list[str]:
        return [p for p in self.encoders if p != m]

    @staticmethod
    def _mine(x: torch.Tensor, n: int) -> torch.Tensor:
        """This process's ``n`` rows of labels drawn for the global batch (all of them in one process)."""
        return x[dist.rank() * n : (dist.rank() + 1) * n]

    def _reconstruct(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        x = inputs[m]
        return reconstruction_loss(self.heads[f"{m}_reconstruct"](full(m).stages[-1], x.shape[2:]), x)

    def _predict(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        x, chunk = inputs[m], _chunk(m)
        past, _ = predict_split(x.shape[2] // chunk, self.elo.predict_frames)
        target = x[:, :, past * chunk :]
        z = self.encoders[m](x[:, :, : past * chunk]).stages[-1]
        return reconstruction_loss(self.heads[f"{m}_predict"](z, target.shape[2:]), target)

    def _cross_predict(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        target = inputs[CROSS_TARGET[m]]
        return reconstruction_loss(self.heads[f"{m}_cross_predict"](full(m).stages[-1], target.shape[2:]), target)

    def _mixed_steps(self, m: str, full: _Full, labels: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        """Per-step features of the task batch: the clips with label 1 are the unchanged inputs, whose
        features ``full(m)`` already holds (GroupNorm keeps clips independent, so this equals encoding
        the whole task batch), and ``changed`` holds the clips with label 0, in order."""
        steps = full(m).steps
        if len(changed) == 0:  # a batch of one clip has no changed half
            return steps
        rows = torch.nonzero(labels == 0).flatten().to(steps.device)
        return steps.index_copy(0, rows, self.encoders[m](changed).steps)

    def _order(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        x, chunk = inputs[m], _chunk(m)
        perms, labels = (self._mine(v, len(x)) for v in order_task(len(x) * dist.world_size(), x.shape[2] // chunk, g))
        rows = labels == 0
        steps = self._mixed_steps(m, full, labels, apply_order(x[rows.to(x.device)], perms[rows], chunk))
        return binary_task_loss(self.heads[f"{m}_order"](steps), labels)

    def _reverse(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        x = inputs[m]
        labels = self._mine(reverse_task(len(x) * dist.world_size(), g), len(x))
        rows = labels == 0
        backward = apply_reverse(x[rows.to(x.device)], labels[rows], negate=m == "flow")
        steps = self._mixed_steps(m, full, labels, backward)
        return binary_task_loss(self.heads[f"{m}_reverse"](steps), labels)

    def _contrastive(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        z = self.heads[f"{m}_contrastive"](full(m).embedding)
        terms = [info_nce(z, dist.gather_detached(full(p).embedding), self.elo.temperature, dist.rank() * len(z))
                 for p in self._partners(m)]
        return torch.stack(terms).mean()

    def _align(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        steps = full(m).steps
        terms = []
        for p in self._partners(m):
            shifts, labels = (self._mine(v, len(steps))
                              for v in shift_task(len(steps) * dist.world_size(), steps.shape[1], g))
            other = apply_shift(match_time(full(p).steps.detach(), steps.shape[1]), shifts)
            terms.append(binary_task_loss(self.heads[f"{m}_align"](torch.cat([steps, other], 2)), labels))
        return torch.stack(terms).mean()

    def _distill(self, m: str, inputs: dict, full: _Full, g: torch.Generator | None) -> torch.Tensor:
        students: list[torch.Tensor | None] = []
        teachers: list[torch.Tensor | None] = []
        for layer, (s, t) in enumerate(zip(full("rgb").stages, full(m).stages, strict=True)):
            key = f"{m}_{layer}"
            pair = match_maps(self.distill[key](s), t) if key in self.distill else (None, None)
            students.append(pair[0])
            teachers.append(pair[1])
        return distill_loss(students, teachers, self.elo.distill_layers)
