"""Dense optical flow between consecutive frames (OpenCV).

Methods (``video.extract.flow``):

- ``farneback``: Farnebäck, "Two-frame motion estimation based on polynomial expansion"
  (SCIA 2003), ``cv2.calcOpticalFlowFarneback`` with a 3-level pyramid.
- ``dis``: Kroeger, Timofte, Dai, Van Gool, "Fast optical flow using dense inverse search"
  (ECCV 2016), ``cv2.DISOpticalFlow`` at the MEDIUM preset.
- ``tvl1``: Zach, Pock, Bischof, "A duality based approach for realtime TV-L1 optical flow"
  (DAGM 2007), the flow of the two-stream and ELo papers; it lives in OpenCV's contrib modules
  (``cv2.optflow``), so it needs ``opencv-contrib-python`` in place of ``opencv-python-headless``.

Flow is in pixels per frame, channel 0 the x (column) and channel 1 the y (row) displacement,
such that ``frame[t](y, x) ~ frame[t+1](y + flow_y, x + flow_x)``. Its uint8 storage is in
:mod:`selfsup.data.video_store`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from selfsup.errors import ConfigError

FLOW_METHODS = ("farneback", "dis", "tvl1")

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _farneback() -> FlowFn:
    def flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale=0.5, levels=3, winsize=11, iterations=3,
                                            poly_n=5, poly_sigma=1.1, flags=0)

    return flow


def _dis() -> FlowFn:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda prev, nxt: dis.calc(prev, nxt, None)


def _tvl1() -> FlowFn:
    if not hasattr(cv2, "optflow"):
        raise ConfigError("video.extract.flow='tvl1' needs OpenCV's contrib modules (cv2.optflow), which this "
                          "OpenCV lacks: install opencv-contrib-python in place of opencv-python-headless, or set "
                          "video.extract.flow to farneback or dis")
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return lambda prev, nxt: tvl1.calc(prev, nxt, None)


def flow_function(method: str) -> FlowFn:
    """A function ``(prev, next) -> (H, W, 2) float32`` of two uint8 greyscale frames."""
    makers = {"farneback": _farneback, "dis": _dis, "tvl1": _tvl1}
    if method not in makers:
        raise ConfigError(f"video.extract.flow={method!r} is not known; allowed: {', '.join(FLOW_METHODS)}")
    return makers[method]()


def optical_flow(frames: np.ndarray, method: str = "farneback", flow_fn: FlowFn | None = None) -> np.ndarray:
    """float32 (T-1, H, W, 2) flow between consecutive frames of uint8 (T, H, W, 3) RGB ``frames``.

    ``flow_fn`` (from :func:`flow_function`) can be passed to reuse one OpenCV object over many clips.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise ValueError(f"frames must be uint8 (T >= 2, H, W, 3), got {frames.dtype} {frames.shape}")
    fn = flow_fn or flow_function(method)
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    return np.stack([fn(a, b) for a, b in zip(grey[:-1], grey[1:], strict=True)]).astype(np.float32)

