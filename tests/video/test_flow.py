"""Optical flow of a texture moved by a known amount."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from video_clips import drifting_texture

from selfsup.errors import ConfigError
from selfsup.prep.flow import flow_function, optical_flow


@pytest.mark.parametrize("method", ["farneback", "dis"])
@pytest.mark.parametrize(("dx", "dy"), [(2, 0), (0, -1), (-1, 1)])
def test_flow_of_a_known_translation_has_its_sign_and_magnitude(method: str, dx: int, dy: int) -> None:
    frames = drifting_texture(5, 48, dx=dx, dy=dy)
    flow = optical_flow(frames, method)
    assert flow.shape == (4, 48, 48, 2) and flow.dtype == np.float32
    inner = flow[:, 8:-8, 8:-8].reshape(-1, 2)  # away from the borders, where content enters and leaves
    np.testing.assert_allclose(inner.mean(0), [dx, dy], atol=0.1)
    assert np.median(np.abs(inner - [dx, dy]).max(1)) < 0.2


def test_a_reused_flow_function_gives_the_same_flow() -> None:
    frames = drifting_texture(4, 32)
    reused = optical_flow(frames, "dis", flow_fn=flow_function("dis"))
    np.testing.assert_array_equal(reused, optical_flow(frames, "dis"))


def test_tvl1_without_opencv_contrib_is_a_clear_config_error() -> None:
    frames = drifting_texture(3, 24)
    if hasattr(cv2, "optflow"):
        assert optical_flow(frames, "tvl1").shape == (2, 24, 24, 2)
        return
    with pytest.raises(ConfigError, match="opencv-contrib-python"):
        optical_flow(frames, "tvl1")


def test_unknown_method_and_bad_frames_are_refused() -> None:
    with pytest.raises(ConfigError, match="farneback, dis, tvl1"):
        flow_function("lucas-kanade")
    with pytest.raises(ValueError, match="T >= 2"):
        optical_flow(np.zeros((1, 8, 8, 3), np.uint8))
