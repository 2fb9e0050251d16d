"""Absolute placement by perspective fitting: exactness, noise, the relative-translation prior."""

import pytest
import torch

from im2hands.geometry.frames import project
from im2hands.geometry.placement import default_intrinsics, place_hand, place_hands


pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(B: int = 4, seed: int = 0, dtype=torch.float64):
    """Two hand-sized point clouds with wrists at 0 and the true wrist positions, plus their projections."""
    g = torch.Generator().manual_seed(seed)
    rel = 0.04 * torch.randn(B, 2, 21, 3, generator=g, dtype=dtype)
    rel = rel - rel[:, :, :1]  # wrist-relative
    wrist = torch.stack([
        torch.stack([-0.06 + 0.02 * torch.randn(B, generator=g, dtype=dtype), 0.02 * torch.randn(B, generator=g, dtype=dtype),
                     0.45 + 0.1 * torch.rand(B, generator=g, dtype=dtype)], -1),
        torch.stack([0.06 + 0.02 * torch.randn(B, generator=g, dtype=dtype), 0.02 * torch.randn(B, generator=g, dtype=dtype),
                     0.45 + 0.1 * torch.rand(B, generator=g, dtype=dtype)], -1),
    ], 1)  # (B, 2, 3)  fmt: skip
    f = 450.0 + 200.0 * torch.rand(B, generator=g, dtype=dtype)
    K = torch.zeros(B, 3, 3, dtype=dtype)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = f, f * 1.02, 1.0
    K[:, 0, 2], K[:, 1, 2] = 128.0 + 20 * torch.randn(B, generator=g, dtype=dtype), 120.0
    absolute = rel + wrist[:, :, None]
    uv = project(absolute.reshape(B, 42, 3), K).view(B, 2, 21, 2)
    return uv, rel, K, wrist


def test_default_intrinsics():
    K = default_intrinsics(480, 640)
    assert torch.allclose(K, torch.tensor([[768.0, 0, 320], [0, 768.0, 240], [0, 0, 1]]))
    assert default_intrinsics(10, 10, focal=55.0)[0, 0] == 55.0
    with pytest.raises(ValueError):
        default_intrinsics(0, 10)


@pytest.mark.parametrize("prior", [False, True])
def test_noise_free_recovery_is_exact(prior):
    uv, rel, K, wrist = _scene()
    d = wrist[:, 0] - wrist[:, 1] if prior else None
    for steps in (0, 3):  # the linear solve alone is exact, and Gauss-Newton keeps it
        out = place_hands(uv, rel, K, rel_translation=d, gn_steps=steps)
        assert (out.wrist - wrist).abs().max() < 1e-6
        assert out.reprojection_px.max() < 1e-6 and out.fitted.all()
        assert torch.allclose(out.keypoints, rel + wrist[:, :, None], atol=1e-6)
    one = place_hand(uv[:, 1], rel[:, 1], K)
    assert (one - wrist[:, 1]).abs().max() < 1e-6


def test_noise_robustness_and_gauss_newton_helps():
    uv, rel, K, wrist = _scene(B=64, seed=1)
    g = torch.Generator().manual_seed(3)
    noisy = uv + 1.5 * torch.randn(uv.shape, generator=g, dtype=uv.dtype)  # 1.5 px per joint
    lin = place_hands(noisy, rel, K, gn_steps=0)
    gn = place_hands(noisy, rel, K, gn_steps=3)
    err = (gn.wrist - wrist).norm(dim=-1)  # (B, 2) metres
    assert err.median() < 0.01 and err.max() < 0.04  # depth from scale: a few mm to cm
    assert gn.reprojection_px.mean() <= lin.reprojection_px.mean() + 1e-9  # GN minimises the pixel error
    assert 1.5 < gn.reprojection_px.mean() < 2.2  # sqrt(2) x 1.5 px less the 3 fitted dof


def test_relative_translation_prior():
    uv, rel, K, wrist = _scene(B=16, seed=2)
    g = torch.Generator().manual_seed(4)
    noisy = uv + 2.0 * torch.randn(uv.shape, generator=g, dtype=uv.dtype)
    d_true = wrist[:, 0] - wrist[:, 1]
    free = place_hands(noisy, rel, K, gn_steps=3)
    hard = place_hands(noisy, rel, K, rel_translation=d_true, prior_weight=1e8, gn_steps=3)
    rel_err = lambda p: ((p.wrist[:, 0] - p.wrist[:, 1]) - d_true).norm(dim=-1)  # noqa: E731
    assert rel_err(hard).max() < 1e-4  # a huge weight enforces the prior
    assert rel_err(hard).mean() < rel_err(free).mean()
    soft = place_hands(noisy, rel, K, rel_translation=d_true, gn_steps=3)
    assert rel_err(hard).mean() <= rel_err(soft).mean() <= rel_err(free).mean() + 1e-9
    # a wrong prior pulls the hands apart only as much as its weight allows
    wrong = place_hands(uv, rel, K, rel_translation=d_true + torch.tensor([0.0, 0.0, 0.05], dtype=uv.dtype), gn_steps=3)
    shift = (wrong.wrist[:, 0] - wrong.wrist[:, 1] - d_true)[:, 2]
    assert (shift > 0).all() and (shift < 0.05).all()


def test_invalid_hand_placed_by_the_prior_and_weights():
    uv, rel, K, wrist = _scene(B=3, seed=5)
    d = wrist[:, 0] - wrist[:, 1]
    valid = torch.tensor([[True, True], [False, True], [True, False]])
    out = place_hands(uv, rel, K, rel_translation=d, valid=valid)
    assert (out.wrist - wrist).abs().max() < 1e-6  # the missing hand sits at partner +- d
    assert out.fitted.tolist() == valid.tolist() and torch.isnan(out.reprojection_px[~valid]).all()
    # zero weights on half the joints: still exact on the rest; garbage there does not matter
    w = torch.ones(3, 2, 21, dtype=uv.dtype)
    w[..., 10:] = 0
    spoiled = uv.clone()
    spoiled[..., 10:, :] += 50.0
    assert (place_hands(spoiled, rel, K, weights=w).wrist - wrist).abs().max() < 1e-6
    none = place_hands(uv, rel, K, valid=torch.zeros(3, 2, dtype=torch.bool))
    assert torch.isfinite(none.wrist).all() and (none.wrist == 0).all()


def test_differentiable_and_dtype():
    uv, rel, K, wrist = _scene(B=2, seed=6, dtype=torch.float32)
    rel = rel.clone().requires_grad_(True)
    uv = uv.clone().requires_grad_(True)
    out = place_hands(uv, rel, K, rel_translation=(wrist[:, 0] - wrist[:, 1]))
    assert out.wrist.dtype == torch.float32 and (out.wrist - wrist).abs().max() < 1e-4
    out.keypoints.square().sum().backward()
    assert torch.isfinite(rel.grad).all() and rel.grad.abs().sum() > 0 and uv.grad.abs().sum() > 0


def test_bad_shapes():
    with pytest.raises(ValueError):
        place_hands(torch.zeros(1, 2, 21, 2), torch.zeros(1, 2, 20, 3), torch.eye(3)[None])
    with pytest.raises(ValueError):
        place_hands(torch.zeros(1, 3, 21, 2), torch.zeros(1, 3, 21, 3), torch.eye(3)[None])
