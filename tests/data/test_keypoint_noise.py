import math

import pytest
import torch

from im2hands.data.keypoint_noise import FINGER_JOINTS, JOINT_LEVEL, SWAP_PAIRS, KeypointNoise
from im2hands.geometry.frames import project

_OFF = dict(jitter_mm=0.0, tip_growth=0.0, depth_bias_mm=0.0, swap_prob=0.0, finger_drift_prob=0.0, scale_std=0.0)


def _hands(B: int, seed: int = 0) -> torch.Tensor:
    """Plausible-ish keypoints: two hands about 0.5 m in front of the camera, (B, 2, 21, 3) m."""
    g = torch.Generator().manual_seed(seed)
    kp = 0.04 * torch.randn(B, 2, 21, 3, generator=g, dtype=torch.float64)
    kp[:, 0, :, 0] -= 0.06
    kp[:, 1, :, 0] += 0.06
    kp[..., 2] += 0.5
    return kp


def _noise(**kw) -> KeypointNoise:
    return KeypointNoise(**{**_OFF, **kw})


def test_all_off_is_identity_and_shape():
    kp = _hands(3)
    out = _noise()(kp, torch.Generator().manual_seed(0))
    assert out.shape == kp.shape and out.dtype == kp.dtype
    torch.testing.assert_close(out, kp, rtol=0, atol=1e-12)


def test_deterministic_for_a_generator_and_different_across_seeds():
    kp = _hands(4)
    noise = KeypointNoise()
    a = noise(kp, torch.Generator().manual_seed(7))
    b = noise(kp, torch.Generator().manual_seed(7))
    c = noise(kp, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_seeded_depends_on_item_seed_only():
    kp = _hands(5)
    noise = KeypointNoise()
    seeds = torch.tensor([3, 1, 4, 1, 5])
    out = noise.seeded(kp, seeds)
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(noise.seeded(kp[perm], seeds[perm]), out[perm], rtol=0, atol=0)
    kp_same = kp.clone()
    kp_same[3] = kp_same[1]
    out_same = noise.seeded(kp_same, seeds)
    assert torch.equal(out_same[1], out_same[3])  # same seed, same keypoints: same noise
    assert not torch.allclose(out_same[0], noise.seeded(kp_same[:1], [2])[0])  # another seed differs
    single = noise(kp[2:3], torch.Generator().manual_seed(4))
    torch.testing.assert_close(out[2:3], single, rtol=0, atol=0)


def test_jitter_std_matches_config():
    kp = _hands(1).expand(4000, 2, 21, 3).contiguous()
    out = _noise(jitter_mm=8.0)(kp, torch.Generator().manual_seed(0))
    err_mm = (out - kp) * 1000.0
    assert abs(err_mm.std().item() - 8.0) < 0.1
    assert abs(err_mm.mean().item()) < 0.1


def test_jitter_grows_toward_tips():
    kp = _hands(1).expand(4000, 2, 21, 3).contiguous()
    out = _noise(jitter_mm=6.0, tip_growth=1.0)(kp, torch.Generator().manual_seed(1))
    std = ((out - kp) * 1000.0).transpose(0, 2).reshape(21, -1).std(dim=1)  # (21,)
    level = torch.tensor(JOINT_LEVEL)
    expected = 6.0 * (1.0 + (level - 1).clamp(min=0) / 3.0)
    torch.testing.assert_close(std, expected.double(), rtol=0.05, atol=0.0)


def test_depth_bias_constant_per_hand_and_keeps_projection():
    kp = _hands(2000)
    noise = _noise(depth_bias_mm=15.0)
    out, info = noise(kp, torch.Generator().manual_seed(2), return_info=True)
    dz = out[..., 2] - kp[..., 2]  # (B, 2, 21)
    torch.testing.assert_close(dz, info.depth_bias[..., None].expand_as(dz), rtol=0, atol=1e-12)
    assert abs(info.depth_bias.std().item() * 1000.0 - 15.0) < 0.7
    assert (info.depth_bias[:, 0] != info.depth_bias[:, 1]).all()  # independent per hand
    K = torch.tensor([[500.0, 0.0, 128.0], [0.0, 500.0, 128.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    Kb = K.expand(2000, 3, 3)
    uv_in = project(kp.flatten(1, 2), Kb)
    uv_out = project(out.flatten(1, 2), Kb)
    torch.testing.assert_close(uv_out, uv_in, rtol=0, atol=1e-9)
    plain = _noise(depth_bias_mm=15.0, depth_along_rays=False)(kp, torch.Generator().manual_seed(2))
    torch.testing.assert_close(plain[..., :2], kp[..., :2], rtol=0, atol=1e-12)
    torch.testing.assert_close(plain[..., 2], out[..., 2], rtol=0, atol=1e-12)


def _detect_swap(kp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Swapped pair per hand read from the output alone (-1: none); (B, 2)."""
    found = torch.full(kp.shape[:2], -1, dtype=torch.long)
    for p, (fa, fb) in enumerate(SWAP_PAIRS):
        a, b = list(FINGER_JOINTS[fa]), list(FINGER_JOINTS[fb])
        hit = torch.isclose(out[:, :, a], kp[:, :, b]).all(-1).all(-1) & torch.isclose(out[:, :, b], kp[:, :, a]).all(-1).all(-1)
        found[hit] = p
    return found


def test_swap_rate_and_swaps_are_real():
    kp = _hands(5000)
    out, info = _noise(swap_prob=0.2)(kp, torch.Generator().manual_seed(3), return_info=True)
    rate = (info.swap_pair >= 0).double().mean().item()
    assert abs(rate - 0.2) < 3 * math.sqrt(0.2 * 0.8 / 10000) + 1e-3
    assert torch.equal(_detect_swap(kp, out), info.swap_pair)  # the output really is swapped
    counts = torch.bincount(info.swap_pair[info.swap_pair >= 0], minlength=4).double()
    assert (counts / counts.sum() - 0.25).abs().max() < 0.04  # uniform over the 4 pairs
    unswapped = info.swap_pair < 0
    torch.testing.assert_close(out[unswapped], kp[unswapped], rtol=0, atol=1e-12)


def test_finger_drift_grows_along_finger_and_keeps_base():
    kp = _hands(3000)
    out, info = _noise(finger_drift_prob=0.3, finger_drift_mm=10.0)(kp, torch.Generator().manual_seed(4), return_info=True)
    assert abs(info.drifted.double().mean().item() - 0.3) < 0.01
    err = out - kp
    torch.testing.assert_close(err[:, :, 0], torch.zeros_like(err[:, :, 0]), rtol=0, atol=1e-12)
    for f, joints in enumerate(FINGER_JOINTS):
        e = err[:, :, list(joints)]  # (B, 2, 4, 3)
        torch.testing.assert_close(e[:, :, 0], torch.zeros_like(e[:, :, 0]), rtol=0, atol=1e-12)  # base stays
        torch.testing.assert_close(e[:, :, 3], 3 * e[:, :, 1], rtol=0, atol=1e-12)  # linear ramp
        tip_std = e[:, :, 3][info.drifted[:, :, f]].std().item() * 1000.0
        assert abs(tip_std - 10.0) < 0.8
        assert (e[~info.drifted[:, :, f]].abs() < 1e-12).all()


def test_scale_about_middle_mcp():
    kp = _hands(2000)
    out, info = _noise(scale_std=0.05)(kp, torch.Generator().manual_seed(5), return_info=True)
    torch.testing.assert_close(out[:, :, 9], kp[:, :, 9], rtol=0, atol=1e-12)
    ratio = (out[:, :, 0] - out[:, :, 9]).norm(dim=-1) / (kp[:, :, 0] - kp[:, :, 9]).norm(dim=-1)
    torch.testing.assert_close(ratio, info.scale, rtol=0, atol=1e-9)
    assert abs(info.scale.std().item() - 0.05) < 0.003


def test_device_dtype_and_bad_input():
    kp = _hands(2).float()
    out = KeypointNoise()(kp)
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="B, 2, 21, 3"):
        KeypointNoise()(kp[:, 0])
    with pytest.raises(ValueError, match="swap_prob"):
        KeypointNoise(swap_prob=1.5)
