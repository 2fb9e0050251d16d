"""MPJPE protocols and MRRPE against naive per-joint loops, known offsets and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from im2hands.metrics.keypoints import joint_errors, mpjpe_mcp_scaled, mpjpe_wrist, mrrpe


def _hand(rng) -> np.ndarray:
    """Random hand-sized keypoints (21, 3) in metres, away from the origin."""
    return rng.normal(size=(21, 3)) * 0.04 + np.array([0.05, -0.02, 0.5])


def _naive_mpjpe(pred, gt, root, scale):
    """Joint by joint, in millimetres, written out as in the protocols' reference code."""
    s = 1.0
    if scale:
        s = math.dist(gt[9], gt[0]) / math.dist(pred[9], pred[0])
    total = 0.0
    for j in range(21):
        d = [s * (pred[j][k] - pred[root][k]) - (gt[j][k] - gt[root][k]) for k in range(3)]
        total += math.sqrt(sum(x * x for x in d))
    return total / 21 * 1000.0


def test_against_naive_reference():
    rng = np.random.default_rng(1)
    for _ in range(5):
        gt, pred = _hand(rng), _hand(rng)
        assert float(mpjpe_wrist(pred, gt)) == pytest.approx(_naive_mpjpe(pred, gt, 0, False), rel=1e-12)
        assert float(mpjpe_mcp_scaled(pred, gt)) == pytest.approx(_naive_mpjpe(pred, gt, 9, True), rel=1e-12)


def test_known_offsets():
    rng = np.random.default_rng(2)
    gt = _hand(rng)
    pred = gt.copy()
    pred[7] += [0.021, 0.0, 0.0]  # one joint 21 mm off -> mean over 21 joints is 1 mm
    assert float(mpjpe_wrist(pred, gt)) == pytest.approx(1.0, rel=1e-9)
    pred = gt.copy()
    pred[0] += [0.0, 0.0, 0.021]  # moving the wrist moves every other joint relative to it
    assert float(mpjpe_wrist(pred, gt)) == pytest.approx(20.0, rel=1e-9)
    pred = gt + 0.3  # pure translation
    assert float(mpjpe_wrist(pred, gt)) == pytest.approx(0.0, abs=1e-9)
    assert float(mpjpe_mcp_scaled(pred, gt)) == pytest.approx(0.0, abs=1e-9)


def test_scaled_protocol_invariances():
    rng = np.random.default_rng(3)
    gt, pred = _hand(rng), _hand(rng)
    base = float(mpjpe_mcp_scaled(pred, gt))
    shift = np.array([0.1, -0.2, 0.3])
    assert float(mpjpe_mcp_scaled(pred + shift, gt)) == pytest.approx(base, rel=1e-10)  # translation
    assert float(mpjpe_mcp_scaled(1.7 * pred, gt)) == pytest.approx(base, rel=1e-10)  # scale
    assert float(mpjpe_mcp_scaled(0.6 * pred - shift, gt)) == pytest.approx(base, rel=1e-10)
    assert float(mpjpe_mcp_scaled(1.3 * gt + shift, gt)) == pytest.approx(0.0, abs=1e-9)
    # the wrist protocol is translation- but not scale-invariant
    assert float(mpjpe_wrist(pred + shift, gt)) == pytest.approx(float(mpjpe_wrist(pred, gt)), rel=1e-10)
    assert float(mpjpe_wrist(1.3 * gt, gt)) > 1.0


def test_batched_and_joint_errors():
    rng = np.random.default_rng(4)
    gt = np.stack([_hand(rng) for _ in range(4)])
    pred = np.stack([_hand(rng) for _ in range(4)])
    batched = mpjpe_wrist(pred, gt)
    assert batched.shape == (4,)
    for i in range(4):
        assert batched[i] == pytest.approx(float(mpjpe_wrist(pred[i], gt[i])))
    err = joint_errors(pred, gt, root=9, scale=True)
    assert err.shape == (4, 21) and np.allclose(err[:, 9], 0.0)
    with pytest.raises(ValueError):
        mpjpe_wrist(pred[:, :20], gt[:, :20])


def test_degenerate_prediction_gives_nan():
    gt = _hand(np.random.default_rng(5))
    pred = np.zeros((21, 3))
    assert math.isnan(float(mpjpe_mcp_scaled(pred, gt)))


def test_mrrpe():
    rng = np.random.default_rng(6)
    gl, gr = _hand(rng), _hand(rng)
    assert float(mrrpe(gl, gr, gl, gr)) == 0.0
    assert float(mrrpe(gl + 0.2, gr + 0.2, gl, gr)) == pytest.approx(0.0, abs=1e-9)  # shared translation
    assert float(mrrpe(gl + [0.003, 0.004, 0.0], gr, gl, gr)) == pytest.approx(5.0, rel=1e-9)  # 3-4-5 mm
    assert float(mrrpe(gl[0], gr[0] + [0, 0, 0.01], gl[0], gr[0])) == pytest.approx(10.0, rel=1e-9)  # wrists only
    naive = math.dist(gl[0] + 0.01 - gr[0], gl[0] - gr[0]) * 1000
    assert float(mrrpe(gl + 0.01, gr, gl, gr)) == pytest.approx(naive, rel=1e-9)
