"""One small test per model family: built from constructor arguments (no YAML; the every-config
test is tests/test_configs_build.py), run on a batch whose sizes differ from the loss
regression's, output shapes and the relations between outputs checked."""

import pytest
import torch

from im2hands.models.outputs import EstimatorOutputs, RefinerOutputs
from tiny_stages import (  # noqa: F401 - one_thread: autouse fixture
    S, one_thread, tiny_batch, tiny_init_occ, tiny_kpts_est, tiny_kpts_ref, tiny_ref_occ,
)

B, N = 3, 17  # batch size, query points per hand


@pytest.fixture(scope="module")
def batch():
    return tiny_batch(B=B, N=N, seed=11)


def _check_occupancy(model, batch, out):
    assert out["occupancy"].shape == out["logits"].shape == (B, 2, N)
    torch.testing.assert_close(out["occupancy"], torch.sigmoid(out["logits"]))
    model.eval()
    with torch.no_grad():
        occ = model.decode(batch["points"], model.encode(batch))
    assert occ.shape == (B, 2, N) and ((occ >= 0) & (occ <= 1)).all()
    assert model.decodes_occupancy and model.uses_image and model.image_size == S


def test_init_occ_shapes(batch):
    model = tiny_init_occ().train()
    out = model(batch)
    _check_occupancy(model, batch, out)
    h = S // 4
    assert out["heatmaps"].shape == (B, 2 * 21, h, h)  # the image encoder's auxiliary heads
    assert out["masks"].shape[0] == B and out["masks"].shape[-2:] == (h, h)


def test_ref_occ_shapes(batch):
    model = tiny_ref_occ().train()
    out = model(batch)
    _check_occupancy(model, batch, out)
    for key in ("occupancy_init", "occupancy_at_other", "occupancy_init_at_other"):
        assert out[key].shape == (B, 2, N), key
    assert out["anchors"].shape == (B, 2, 32, 3) and out["anchor_counts"].shape == (B, 2)
    assert (out["anchor_counts"] <= 32).all()


def test_kpts_est_shapes(batch):
    model = tiny_kpts_est().train()
    out = model(batch)
    h = S // 4
    assert isinstance(out, EstimatorOutputs) and len(out.iterations) == 2 + 1  # iterations=2, plus the encoder's
    for t, it in enumerate(out.iterations):
        assert it.heatmaps.shape == (B, 2, 21, h, h) and it.keypoints_2d.shape == (B, 2, 21, 2)
        assert it.masks_amodal_logits.shape == it.masks_visible_logits.shape == (B, 2, h, h)
        if t:
            assert it.keypoints_3d.shape == (B, 2, 21, 3) and (it.keypoints_3d[:, :, 0] == 0).all()
            assert it.presence_logits.shape == (B, 2) and it.rel_translation.shape == (B, 3)
    model.eval()
    with torch.no_grad():
        est, ev = model.estimate(batch), model(batch)
    assert est.keypoints.shape == (B, 2, 21, 3) and est.keypoints_2d.shape == (B, 2, 21, 2)
    assert torch.isfinite(est.keypoints).all() and ev.wrist.shape == (B, 2, 3)  # placed for the batch's K
    assert torch.equal(est.keypoints_2d, ev.iterations[-1].keypoints_2d)  # the last iteration's
    assert ((est.keypoints_2d >= 0) & (est.keypoints_2d <= S)).all()  # soft-argmax stays in the image


def test_kpts_ref_shapes(batch):
    model = tiny_kpts_ref().train()
    out = model(batch)
    assert isinstance(out, RefinerOutputs)
    assert out.keypoints.shape == out.keypoints_noisy.shape == (B, 2, 21, 3)
    assert torch.equal(out.keypoints_noisy, batch["keypoints_noisy"])
    assert not torch.equal(out.keypoints, out.keypoints_noisy)  # the heads are non-zero: it moves them
    model.eval()
    with torch.no_grad():
        refined = model.refine(batch["keypoints_noisy"], model.encode(batch), batch["hand_valid"])
    assert refined.shape == (B, 2, 21, 3) and torch.isfinite(refined).all()
