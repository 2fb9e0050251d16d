import math

import numpy as np
import pytest
import torch

from im2hands.geometry.crops import (
    Roi, crop_images, crop_intrinsics, crop_matrix, crop_to_image, image_to_crop, roi_angle, roi_from_points, rotate_xy,
    square_crop_intrinsics_np, square_roi,
)  # fmt: skip
from im2hands.geometry.frames import project


def _rois(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(n, 2, generator=g, dtype=torch.float64) * 300
    size = 50 + torch.rand(n, generator=g, dtype=torch.float64) * 200
    angle = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    return Roi(center, size, angle)


def test_image_crop_round_trip_and_matrix():
    roi = _rois()
    pts = torch.rand(5, 7, 2, dtype=torch.float64) * 400
    q = image_to_crop(pts, roi, 224)
    assert torch.allclose(crop_to_image(q, roi, 224), pts, atol=1e-9)
    A = crop_matrix(roi, 224)
    naive = torch.stack([torch.stack([A[b] @ torch.cat([p, p.new_ones(1)]) for p in pts[b]]) for b in range(5)])
    assert torch.allclose(naive, q, atol=1e-9)
    # the ROI centre goes to the crop centre and its side to the crop side
    assert torch.allclose(image_to_crop(roi.center[:, None], roi, 224)[:, 0], torch.full((5, 2), 112.0, dtype=torch.float64))
    corner = roi.center + torch.stack([roi.size / 2 * torch.cos(roi.angle), roi.size / 2 * torch.sin(roi.angle)], -1)
    assert torch.allclose(image_to_crop(corner[:, None], roi, 224)[:, 0, 0], torch.full((5,), 224.0, dtype=torch.float64))


def test_hand_is_upright_in_its_crop():
    wrist = torch.tensor([[100.0, 100.0], [100.0, 100.0], [100.0, 100.0]], dtype=torch.float64)
    tip = torch.tensor([[160.0, 100.0], [100.0, 40.0], [60.0, 140.0]], dtype=torch.float64)  # right, up, down-left
    angle = roi_angle(wrist, tip)
    assert torch.allclose(angle, torch.tensor([math.pi / 2, 0.0, -3 * math.pi / 4], dtype=torch.float64))
    roi = Roi(wrist.clone(), torch.full((3,), 200.0, dtype=torch.float64), angle)
    w, t = image_to_crop(wrist[:, None], roi, 100)[:, 0], image_to_crop(tip[:, None], roi, 100)[:, 0]
    assert torch.allclose(t[:, 0], w[:, 0], atol=1e-9) and (t[:, 1] < w[:, 1]).all()  # straight up


def test_crop_images_samples_the_mapped_pixels():
    """On an image whose channels are the pixel-centre coordinates (linear, so bilinear
    sampling is exact), each crop pixel holds the image position crop_to_image gives."""
    H, W = 120, 160
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    image = torch.stack([u, v]).double()  # (2, H, W)
    roi = Roi(torch.tensor([[80.0, 60.0], [70.0, 55.0]], dtype=torch.float64),
              torch.tensor([60.0, 40.0], dtype=torch.float64), torch.tensor([0.0, 0.7], dtype=torch.float64))
    crops = crop_images(image, roi, 32, antialias=False)  # (2, 2, 32, 32)
    j = torch.arange(32, dtype=torch.float64) + 0.5
    q = torch.stack(torch.meshgrid(j, j, indexing="xy"), -1).reshape(1, -1, 2).expand(2, -1, -1)
    expect = crop_to_image(q, roi, 32).reshape(2, 32, 32, 2).permute(0, 3, 1, 2)
    assert torch.allclose(crops, expect, atol=1e-6)
    outside = crop_images(image, Roi(torch.tensor([[-500.0, -500.0]]), torch.tensor([50.0]), torch.tensor([0.0])), 8)
    assert outside.abs().max() == 0  # zeros outside the image


def test_antialiasing_of_strongly_shrunk_crops():
    stripes = (torch.arange(300) % 2).float().expand(3, 300, 300).clone()  # 1-pixel columns
    roi = Roi(torch.tensor([[150.0, 150.0]]), torch.tensor([288.0]), torch.tensor([0.0]))  # shrink 3x to 96
    plain = crop_images(stripes, roi, 96, antialias=False)
    smooth = crop_images(stripes, roi, 96, antialias=True)
    assert plain.std() > 0.4 and smooth.std() < 0.1
    assert abs(float(smooth.mean()) - 0.5) < 0.05


def test_crop_intrinsics_project_like_the_crop():
    g = torch.Generator().manual_seed(1)
    K = torch.tensor([[[500.0, 0, 160], [0, 520.0, 120], [0, 0, 1]]], dtype=torch.float64).expand(5, 3, 3)
    pts = torch.randn(5, 9, 3, generator=g, dtype=torch.float64) * 0.1 + torch.tensor([0, 0, 0.6], dtype=torch.float64)
    roi = _rois()
    uv = project(pts, K)
    assert torch.allclose(project(pts, crop_intrinsics(K, roi, 224)), image_to_crop(uv, roi, 224), atol=1e-7)


def test_roi_from_points_and_rotate_xy():
    pts = torch.tensor([[[10.0, 20.0], [50.0, 20.0], [10.0, 100.0], [50.0, 100.0]]], dtype=torch.float64)
    roi = roi_from_points(pts, torch.zeros(1, dtype=torch.float64), scale=2.0, shift=(0.0, -0.1))
    assert torch.allclose(roi.center, torch.tensor([[30.0, 52.0]], dtype=torch.float64))
    assert torch.allclose(roi.size, torch.tensor([160.0], dtype=torch.float64))
    angle = torch.tensor([0.9], dtype=torch.float64)  # rotated: all points inside the crop
    q = image_to_crop(pts, roi_from_points(pts, angle, scale=1.2), 100)
    assert ((q >= 0) & (q <= 100)).all()
    # crop-oriented 3D (x right, y down in the crop) -> image orientation
    p3 = torch.randn(1, 6, 3, dtype=torch.float64)
    c, s = math.cos(0.9), math.sin(0.9)
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    in_crop = torch.cat([p3[..., :2] @ R, p3[..., 2:]], -1)  # R^T applied to xy
    assert torch.allclose(rotate_xy(in_crop, angle), p3, atol=1e-12)


def test_one_image_per_roi_and_count_mismatch():
    images = torch.rand(2, 3, 40, 40)
    roi = Roi(torch.tensor([[20.0, 20.0], [10.0, 10.0]]), torch.tensor([20.0, 20.0]), torch.zeros(2))
    assert crop_images(images, roi, 16).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="3 images for 2 ROIs"):
        crop_images(torch.rand(3, 3, 40, 40), roi, 16)


def test_mirrored_crops():
    """A mirrored crop is the plain crop flipped left-right; points, intrinsics and 3D
    predictions map back through the flip."""
    from im2hands.geometry.crops import crop_to_camera_orientation

    roi = _rois(4, seed=3)
    flip = torch.tensor([True, False, True, False])
    mroi = Roi(roi.center, roi.size, roi.angle, flip)
    pts = torch.rand(4, 6, 2, dtype=torch.float64) * 300
    plain, mirrored = image_to_crop(pts, roi, 64), image_to_crop(pts, mroi, 64)
    assert torch.allclose(mirrored[flip, :, 0], 64 - plain[flip, :, 0]) and torch.equal(mirrored[~flip], plain[~flip])
    assert torch.allclose(crop_to_image(mirrored, mroi, 64), pts, atol=1e-9)
    image = torch.rand(3, 200, 220, dtype=torch.float64)
    a, b = crop_images(image, roi, 24, antialias=False), crop_images(image, mroi, 24, antialias=False)
    assert torch.allclose(b[flip], a[flip].flip(-1), atol=1e-9) and torch.allclose(b[~flip], a[~flip])
    K = torch.tensor([[[300.0, 0, 110], [0, 300.0, 100], [0, 0, 1]]], dtype=torch.float64).expand(4, 3, 3)
    p3 = torch.randn(4, 6, 3, dtype=torch.float64) * 0.05 + torch.tensor([0, 0, 0.5], dtype=torch.float64)
    assert torch.allclose(project(p3, crop_intrinsics(K, mroi, 64)), image_to_crop(project(p3, K), mroi, 64), atol=1e-7)
    # a 3D prediction in mirrored crop orientation: x flipped after rotating into the crop
    c, s = torch.cos(roi.angle), torch.sin(roi.angle)
    R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    in_crop = torch.cat([p3[..., :2] @ R, p3[..., 2:]], -1)
    in_crop[flip, :, 0] *= -1
    assert torch.allclose(crop_to_camera_orientation(in_crop, mroi), p3, atol=1e-12)


# The crop-with-intrinsics updates the numpy callers had before square_crop_intrinsics_np (copies
# of the old code): InterHand preparation, the whole-image keypoint estimator, extract's inputs.
def _old_interhand(K, x0, y0, side, size):
    s = size / side
    return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s], [0.0, 0.0, 1.0]]) @ np.asarray(K, dtype=np.float64)


def _old_keypoints(K, x0, y0, side, size):
    k = size / side
    A = np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]])
    K2 = np.array(K, dtype=np.float64)
    K2[:2] = A[:, :2] @ K2[:2] + np.outer(A[:, 2], K2[2])
    return K2


def _old_inputs(K, x0, y0, side, size):
    K2 = np.array(K, dtype=np.float64)
    K2[0, 2] -= x0
    K2[1, 2] -= y0
    K2[:2] *= size / side
    return K2


@pytest.mark.parametrize("K, box, size", [
    ([[500.0, 0.0, 160.0], [0.0, 520.0, 120.0], [0.0, 0.0, 1.0]], (15.0, 26.0, 40.0), 80),
    ([[1234.5, 0.0, 334.5], [0.0, 1234.5, 512.5], [0.0, 0.0, 1.0]], (-50.0, -37.0, 700.0), 256),
    ([[300.0, 2.0, 99.0], [0.0, 310.0, 77.0], [0.0, 0.0, 1.0]], (12.345, 678.9, 13.0), 224),
    ([[800.0, 0.0, 128.0], [0.0, 800.0, 128.0], [0.0, 0.0, 1.0]], (0.0, 0.0, 256.0), 256),
])  # fmt: skip
def test_square_crop_intrinsics_np_matches_the_old_formulas(K, box, size):
    new = square_crop_intrinsics_np(np.array(K), *box, size)
    assert new.dtype == np.float64 and new.shape == (3, 3)
    for old in (_old_interhand, _old_keypoints, _old_inputs):
        np.testing.assert_allclose(new, old(K, *box, size), rtol=1e-12, atol=1e-9)
    # and it is crop_intrinsics of the square's ROI
    expect = crop_intrinsics(torch.tensor(K, dtype=torch.float64)[None], square_roi(*box), size)[0].numpy()
    np.testing.assert_array_equal(new, expect)


def test_square_crop_intrinsics_np_projects_like_the_crop():
    rng = np.random.default_rng(0)
    K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
    X = rng.normal(size=(20, 3)) * 0.1 + [0.0, 0.0, 0.7]
    uv = project(torch.as_tensor(X), torch.as_tensor(K)).numpy()
    box = (100.3, 57.0, 333.0)
    in_crop = project(torch.as_tensor(X), torch.as_tensor(square_crop_intrinsics_np(K, *box, 128))).numpy()
    np.testing.assert_allclose(in_crop, (uv - box[:2]) * 128 / 333.0, atol=1e-9)
    roi = square_roi(*box)
    np.testing.assert_allclose(roi.center.numpy(), [[100.3 + 166.5, 57.0 + 166.5]])
    back = crop_to_image(torch.as_tensor(in_crop)[None], roi, 128)[0].numpy()
    np.testing.assert_allclose(back, uv, atol=1e-9)


def test_paint_over_boxes_fills_grown_clipped_boxes_with_the_mean_colour():
    from im2hands.geometry.crops import paint_over_boxes

    image = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0))
    mean = image.mean(dim=(1, 2))
    boxes = torch.tensor([[4.0, 2.0, 8.0, 6.0], [-3.0, 7.0, 1.0, 9.0]])  # the second leaves the image
    out = paint_over_boxes(image, boxes, margin=0.25)
    painted = torch.zeros(10, 12, dtype=torch.bool)
    painted[1:7, 3:9] = True  # u 4-8 and v 2-6 grown by 1 px each side
    painted[6:10, 0:2] = True  # u -4..2 -> 0..2, v 6.5..9.5 -> 6..10, clipped
    assert torch.equal(out[:, painted], mean[:, None].expand(3, int(painted.sum())))
    assert torch.equal(out[:, ~painted], image[:, ~painted])
    assert not torch.equal(out, image) and torch.equal(image, torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(paint_over_boxes(image, torch.zeros(0, 4)), image)
