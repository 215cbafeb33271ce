"""The uint8 flow storage of the extracted video features."""

from __future__ import annotations

import numpy as np

from selfsup.data.video_store import dequantise_flow, quantise_flow


def test_quantised_flow_round_trips_within_one_step() -> None:
    bound = 20.0
    flow = np.random.default_rng(0).uniform(-30, 30, (3, 8, 8, 2)).astype(np.float32)
    q = quantise_flow(flow, bound)
    assert q.dtype == np.uint8 and q.shape == flow.shape
    back = dequantise_flow(q, bound)
    assert back.dtype == np.float32
    assert np.abs(back - np.clip(flow, -bound, bound)).max() <= bound / 255 + 1e-5
    assert quantise_flow(np.array([-bound, bound, -99.0, 99.0]), bound).tolist() == [0, 255, 0, 255]
