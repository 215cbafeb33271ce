"""train_elo through the generic loop: deterministic, resumable from its checkpoints, stopped by a NaN loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.checkpoint import LAST, load_checkpoint
from selfsup.config import Config
from selfsup.elo import rgb_features, train_elo
from selfsup.errors import ConfigError, DataError, TrainingError
from selfsup.schema import build

TINY = {"width": 4, "embed_dim": 8, "input_size": 8, "predict_frames": 2, "batch_size": 4, "epochs": 2}


def _cfg(**elo: object) -> Config:
    return build(Config, {"elo": {**TINY, **elo}, "train": {"threads": 1}})


def _clips(n: int = 8, t: int = 6, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright 4x4 square moving 1 px/frame right or down over noise, its flow, and a fake log-mel."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (n, t, size, size, 3), dtype=np.uint8)
    flow = np.zeros((n, t - 1, size, size, 2), np.float32)
    logmel = rng.standard_normal((n, 8, 20)).astype(np.float32)
    for i in range(n):
        d = i % 2
        for f in range(t):
            y, x = 2 + f * d, 2 + f * (1 - d)
            frames[i, f, y : y + 4, x : x + 4] = 230
            if f < t - 1:
                flow[i, f, y : y + 4, x : x + 4, 1 - d] = 1.0
        logmel[i, 4 * d : 4 * d + 4] += 2.0
    return frames, flow, logmel


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_two_runs_are_identical_and_record_every_task() -> None:
    frames, flow, logmel = _clips()
    first = train_elo(_cfg(), frames, flow, logmel, progress=False)
    second = train_elo(_cfg(), frames, flow, logmel, progress=False)
    assert _same_weights(first.rgb, second.rgb) and first.history == second.history
    assert not first.rgb.training and first.seconds > 0
    row = first.history[-1]
    assert [r["epoch"] for r in first.history] == [1, 2]
    assert {"loss", "rgb/reconstruct", "rgb/order", "flow/distill", "audio/align", "collapse_std",
            "lr"} <= set(row)
    feats = rgb_features(first.rgb, frames, batch_size=3)
    assert feats.shape == (8, 8) and feats.dtype == np.float32
    assert np.array_equal(feats, rgb_features(second.rgb, frames))
    other = train_elo(build(Config, {"seed": 1, "elo": TINY, "train": {"threads": 1}}), frames, flow, logmel,
                      progress=False)
    assert not _same_weights(first.rgb, other.rgb)


def test_resuming_two_epochs_to_three_equals_three_straight(tmp_path: Path) -> None:
    frames, flow, logmel = _clips()
    train_elo(_cfg(epochs=2), frames, flow, logmel, tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / LAST)["step"] == 4
    resumed = train_elo(_cfg(epochs=3), frames, flow, logmel, tmp_path / "split", progress=False)
    straight = train_elo(_cfg(epochs=3), frames, flow, logmel, tmp_path / "straight", progress=False)
    assert load_checkpoint(tmp_path / "split" / LAST)["step"] == 6
    assert _same_weights(resumed.rgb, straight.rgb)
    assert resumed.history == straight.history and len(resumed.history) == 3


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    frames, flow, logmel = _clips()
    train_elo(_cfg(epochs=1), frames, flow, logmel, tmp_path, progress=False)
    changed = train_elo(_cfg(epochs=1, lr=3e-3), frames, flow, logmel, tmp_path, progress=False)
    fresh = train_elo(_cfg(epochs=1, lr=3e-3), frames, flow, logmel, progress=False)
    assert _same_weights(changed.rgb, fresh.rgb) and len(changed.history) == 1


def test_rgb_only_weights_need_no_flow_or_audio() -> None:
    frames, _, _ = _clips()
    zero = {"flow": {"reconstruct": 0.0, "order": 0.0, "contrastive": 0.0, "distill": 0.0},
            "audio": {"reconstruct": 0.0, "contrastive": 0.0, "align": 0.0, "distill": 0.0},
            "rgb": {"contrastive": 0.0, "align": 0.0}}
    result = train_elo(_cfg(epochs=1, weights=zero), frames, progress=False)
    assert list(result.history[0]) == ["epoch", "step", "loss", "rgb/reconstruct", "rgb/predict", "rgb/order",
                                       "rgb/reverse", "collapse_std", "lr"]


def test_missing_or_mismatched_inputs_are_data_errors() -> None:
    frames, flow, logmel = _clips()
    with pytest.raises(DataError, match="no flow"):
        train_elo(_cfg(), frames, None, logmel, progress=False)
    with pytest.raises(DataError, match="no log-mel"):
        train_elo(_cfg(), frames, flow, None, progress=False)
    with pytest.raises(DataError, match="T-1"):
        train_elo(_cfg(), frames, flow[:, :-1], logmel, progress=False)


def test_impossible_sizes_are_config_errors() -> None:
    frames, flow, logmel = _clips()
    with pytest.raises(ConfigError, match="elo.predict_frames"):
        train_elo(_cfg(predict_frames=6), frames, flow, logmel, progress=False)
    with pytest.raises(ConfigError, match="elo.batch_size"):
        train_elo(_cfg(batch_size=16), frames, flow, logmel, progress=False)


def test_a_nan_loss_is_a_training_error_and_writes_no_checkpoint(tmp_path: Path) -> None:
    frames, flow, logmel = _clips()
    logmel[0, 0, 0] = np.nan
    with pytest.raises(TrainingError, match=r"non-finite: .*audio/reconstruct.*lower elo\.lr"):
        train_elo(_cfg(), frames, flow, logmel, tmp_path, progress=False)
    assert not (tmp_path / LAST).exists()
