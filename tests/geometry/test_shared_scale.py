"""Two hands, one metric size: hand_size and shared_scale, and what they do to placement."""

import pytest
import torch

from im2hands.geometry.frames import project
from im2hands.geometry.placement import hand_size, place_hands, place_pair, shared_scale


def _hand(palm: float) -> torch.Tensor:
    """(21, 3) a flat hand: wrist at 0, each finger's four joints along a ray, MCPs at ``palm``."""
    kp = torch.zeros(21, 3, dtype=torch.float64)
    for f, angle in enumerate((-0.9, -0.3, 0.0, 0.3, 0.6)):
        d = torch.tensor([torch.sin(torch.tensor(angle)), -torch.cos(torch.tensor(angle)), 0.0], dtype=torch.float64)
        for j in range(4):
            kp[1 + 4 * f + j] = d * palm * (1.0 + 0.4 * j)
    return kp


def test_hand_size_measures():
    kp = _hand(0.08)
    assert float(hand_size(kp)) == pytest.approx(0.08)
    # 5 fingers: wrist -> MCP (0.08) + three 0.032 m bones each
    assert float(hand_size(kp, "bones")) == pytest.approx(5 * (0.08 + 3 * 0.032))
    assert hand_size(torch.stack([kp, 2 * kp])).tolist() == pytest.approx([0.08, 0.16])
    with pytest.raises(ValueError, match="unknown hand size measure"):
        hand_size(kp, "span")
    with pytest.raises(ValueError, match="21, 3"):
        hand_size(kp[:20])


@pytest.mark.parametrize("measure", ["palm", "bones"])
def test_shared_scale_gives_both_hands_the_mean_size(measure):
    rel = torch.stack([_hand(0.06), _hand(0.09)])[None]  # (1, 2, 21, 3)
    geo = shared_scale(rel, measure=measure)
    sizes = hand_size(rel * geo[..., None, None], measure)[0]
    s = hand_size(rel, measure)[0]
    assert sizes[0] == pytest.approx(float(sizes[1]))
    assert float(sizes[0]) == pytest.approx(float((s[0] * s[1]).sqrt()))
    ari = shared_scale(rel, mean="arithmetic", measure=measure)
    assert float(hand_size(rel * ari[..., None, None], measure)[0, 1]) == pytest.approx(float(s.mean()))


def test_shared_scale_leaves_single_and_invalid_hands():
    rel = torch.stack([_hand(0.06), _hand(0.09)])[None].repeat(3, 1, 1, 1)
    rel[1, 0] = 0.0  # no left hand: size 0
    valid = torch.tensor([[True, True], [True, True], [True, False]])
    f = shared_scale(rel, valid)
    assert f[0].tolist() != [1.0, 1.0]
    assert f[1:].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="unknown mean"):
        shared_scale(rel, mean="median")
    with pytest.raises(ValueError, match="B, 2, 21, 3"):
        shared_scale(rel[:, :1])
    with pytest.raises(ValueError, match="valid"):
        shared_scale(rel, valid[:, :1])


def test_common_size_recovers_relative_depth():
    """Two equal hands at different depths, predicted with sizes off by -20 % and +20 %: each
    placed alone, their depths are off in opposite directions; with one common size the relative
    position is exact up to the common factor (here 0.98)."""
    true = _hand(0.08)
    wrist = torch.tensor([[-0.1, 0.0, 0.9], [0.12, 0.02, 1.2]], dtype=torch.float64)
    K = torch.tensor([[[1200.0, 0, 300], [0, 1200.0, 250], [0, 0, 1]]], dtype=torch.float64)
    uv = project((true[None] + wrist[:, None]).reshape(1, 42, 3), K).view(1, 2, 21, 2)
    rel = torch.stack([0.8 * true, 1.2 * true])[None]
    alone = place_hands(uv, rel, K, prior_weight=0.0).wrist[0]
    shared = place_hands(uv, rel * shared_scale(rel)[..., None, None], K, prior_weight=0.0).wrist[0]
    true_d = wrist[0] - wrist[1]
    c = (0.8 * 1.2) ** 0.5
    assert (alone[0] - alone[1] - true_d).norm() > 0.25  # metres
    assert torch.allclose(shared[0] - shared[1], c * true_d, atol=1e-9)


def _pair_scene(bad: int):
    """Two equal hands at 1 m; hand ``bad``'s 2D fingers are noisy (a bad fit, wrist exact) and its
    predicted size 30 % too large; the other hand is exact."""
    true = _hand(0.08)
    wrist = torch.tensor([[-0.1, 0.0, 1.0], [0.12, 0.02, 1.0]], dtype=torch.float64)
    K = torch.tensor([[[1200.0, 0, 300], [0, 1200.0, 250], [0, 0, 1]]], dtype=torch.float64)
    uv = project((true[None] + wrist[:, None]).reshape(1, 42, 3), K).view(1, 2, 21, 2)
    uv[0, bad, 1:] += 15.0 * torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rel = torch.stack([true, true])[None].clone()
    rel[0, bad] *= 1.3
    return uv, rel, K, wrist


@pytest.mark.parametrize("bad", [0, 1])
def test_place_pair_best_takes_the_better_fitting_hands_size_and_depth(bad):
    uv, rel, K, wrist = _pair_scene(bad)
    own = place_pair(uv, rel, K, scale="own")
    assert torch.equal(own.keypoints, place_hands(uv, rel, K, prior_weight=0.0).keypoints)
    assert abs(float(own.wrist[0, bad, 2]) - 1.3) < 0.1  # its own size puts it ~30 % too far
    pair = place_pair(uv, rel, K)  # best, same depth, bones
    good = 1 - bad
    assert torch.allclose(pair.keypoints[0, good], own.keypoints[0, good])
    assert torch.allclose(pair.wrist[0, :, 2], wrist[:, 2], atol=1e-9)  # the right size and depth
    assert (pair.wrist[0, bad] - wrist[bad]).norm() < 0.01  # metres: x, y from its noisy 2D fit
    assert torch.allclose(hand_size(pair.keypoints[0] - pair.wrist[0, :, None], "bones"), hand_size(rel[0, good], "bones").expand(2))
    assert pair.reprojection_px[0, bad] > pair.reprojection_px[0, good]
    size_only = place_pair(uv, rel, K, same_depth=False)  # the right size; depth from the noisy 2D fit
    assert torch.allclose(size_only.keypoints[0, good], own.keypoints[0, good])
    on_ray = torch.cross(size_only.wrist[0, bad], pair.wrist[0, bad], dim=0).norm()
    assert on_ray < 1e-12  # moved along its fitted wrist's ray
    assert abs(float(size_only.wrist[0, bad, 2]) - 1.0) < abs(float(own.wrist[0, bad, 2]) - 1.0)
    geo = place_pair(uv, rel, K, scale="geometric")  # both moved: one size, the mean depth
    assert float(geo.wrist[0, 0, 2]) == pytest.approx(float(geo.wrist[0, 1, 2]))


def test_place_pair_depth_range_moves_a_wrist_only_into_the_range():
    """``depth_range``: the moved wrist ends on its ray at most that far from the reference depth
    (0: all the way, as None); a hand already within range keeps its 2D fit."""
    uv, rel, K, wrist = _pair_scene(1)
    size_only = place_pair(uv, rel, K, same_depth=False)
    snap = place_pair(uv, rel, K)
    z_ref, z_own = float(snap.wrist[0, 0, 2]), float(size_only.wrist[0, 1, 2])
    gap = abs(z_own - z_ref)
    assert gap > 0.005  # the noisy hand's fitted depth is off the reference's
    assert torch.allclose(place_pair(uv, rel, K, depth_range=0.0).keypoints, snap.keypoints)
    half = place_pair(uv, rel, K, depth_range=gap / 2)
    assert float(half.wrist[0, 1, 2] - z_ref) == pytest.approx((gap / 2) * (1 if z_own > z_ref else -1))
    assert torch.cross(half.wrist[0, 1], size_only.wrist[0, 1], dim=0).norm() < 1e-12  # on its ray
    assert torch.allclose(half.keypoints[0, 0], snap.keypoints[0, 0])  # the reference stays
    wide = place_pair(uv, rel, K, depth_range=2 * gap)
    assert torch.allclose(wide.keypoints, size_only.keypoints)
    assert float(wide.reprojection_px[0, 1]) < float(snap.reprojection_px[0, 1])
    with pytest.raises(ValueError, match="depth_range"):
        place_pair(uv, rel, K, depth_range=-0.1)


def test_place_pair_leaves_a_single_hand_and_rejects_bad_arguments():
    uv, rel, K, _ = _pair_scene(1)
    valid = torch.tensor([[True, False]])
    one = place_pair(uv, rel, K, valid=valid)
    assert torch.allclose(one.keypoints[0, 0], place_hands(uv, rel, K, valid=valid, prior_weight=0.0).keypoints[0, 0])
    assert not bool(one.fitted[0, 1]) and torch.isnan(one.reprojection_px[0, 1])
    with pytest.raises(ValueError, match="scale must be"):
        place_pair(uv, rel, K, scale="median")
    with pytest.raises(ValueError, match="fit_error"):
        shared_scale(rel, mean="best")


def _tilted(hand: torch.Tensor, angle: float) -> torch.Tensor:
    """``hand`` (fingers along -y) rotated about the camera's x axis: negative angles turn the
    fingers away from the camera (+z)."""
    c, s = torch.cos(torch.tensor(angle, dtype=torch.float64)), torch.sin(torch.tensor(angle, dtype=torch.float64))
    R = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    return hand @ R.T


def test_place_pair_puts_the_pips_centroids_or_wrists_at_one_depth():
    """Two hands whose fingers point away from (left) and towards (right) the camera, the right
    hand's 2D fit noisy so that the left is the reference: by default the means of their PIP
    joints end at one depth, with ``depth_point="centroid"`` their keypoint centroids, with
    ``"wrist"`` their wrists; the moved hand stays on its fitted wrist's ray and the reference
    keeps its placement."""
    rel = torch.stack([_tilted(_hand(0.08), -0.8), _tilted(_hand(0.08), 0.8)])[None]  # (1, 2, 21, 3)
    wrist = torch.tensor([[-0.1, 0.0, 1.0], [0.1, 0.0, 1.1]], dtype=torch.float64)
    K = torch.tensor([[[1200.0, 0, 300], [0, 1200.0, 250], [0, 0, 1]]], dtype=torch.float64)
    uv = project((rel[0] + wrist[:, None]).reshape(1, 42, 3), K).view(1, 2, 21, 2)
    uv[0, 1, 1:] += 8.0 * torch.randn(20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    own = place_pair(uv, rel, K, same_depth=False)
    pips = place_pair(uv, rel, K)
    centre = place_pair(uv, rel, K, depth_point="centroid")
    by_wrist = place_pair(uv, rel, K, depth_point="wrist")
    pz = pips.keypoints[0, :, [6, 10, 14, 18], 2].mean(-1)
    assert float(pz[0]) == pytest.approx(float(pz[1]), abs=1e-9)
    cz = centre.keypoints[0, :, :, 2].mean(-1)
    assert float(cz[0]) == pytest.approx(float(cz[1]), abs=1e-9)
    assert float(by_wrist.wrist[0, 0, 2]) == pytest.approx(float(by_wrist.wrist[0, 1, 2]), abs=1e-9)
    lift = rel[0, :, :, 2].mean(-1)  # centroid depth - wrist depth: + for the left, - for the right
    assert float(lift[0]) > 0.03 and float(lift[1]) < -0.03
    # so the centroid rule puts the right wrist deeper than the wrist rule, by the two lifts
    gap = float(centre.wrist[0, 1, 2] - by_wrist.wrist[0, 1, 2])
    assert gap == pytest.approx(float(lift[0] - lift[1]), abs=1e-9)
    for placed in (pips, centre, by_wrist):
        assert torch.allclose(placed.keypoints[0, 0], own.keypoints[0, 0])  # the reference stays
        assert torch.cross(placed.wrist[0, 1], own.wrist[0, 1], dim=0).norm() < 1e-12  # on its ray
    with pytest.raises(ValueError, match="depth_point"):
        place_pair(uv, rel, K, depth_point="palm")
