"""The per-hand crop pipeline against a fake crop network that reads its crop's position from
the pixels: an image whose red and green channels hold each pixel's own (u, v) and whose blue
channel marks the hands (0.5 left, 1 right). The fake network recovers the crop -> image map
from the pixels (least squares), and reports the ground-truth keypoints of the hand that
covers the crop's centre, in crop pixels and crop orientation. So every number the pipeline
returns tests its own geometry: un-cropping, rotation back to the camera, placement, sides."""

import numpy as np
import pytest
import torch

from im2hands.extraction.hand_crops import KEYPOINT_TTA, CropPrediction, Detections, HandCropPipeline, assign_sides
from im2hands.geometry.crops import square_windows, tile_centres
from im2hands.geometry.crops import Roi
from im2hands.geometry.placement import hand_size

H, W, S = 240, 320, 64
K = np.array([[400.0, 0.0, W / 2], [0.0, 400.0, H / 2], [0.0, 0.0, 1.0]])


def _hand(center_uv, depth, angle, rng):
    """(21, 3) camera-frame keypoints of a plausible flat hand whose wrist projects near
    ``center_uv`` and whose fingers point ``angle`` (radians, 0 = up in the image)."""
    local = np.zeros((21, 3))
    for f in range(5):  # five fingers fanning out, 4 joints each
        spread = (f - 2) * 0.25
        for k in range(4):
            r = 0.04 + 0.022 * k
            local[1 + 4 * f + k] = [r * np.sin(spread), -r * np.cos(spread), 0.005 * k]
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    local = local @ R.T + rng.normal(0, 0.002, (21, 3))
    wrist = np.array([(center_uv[0] - K[0, 2]) * depth / K[0, 0], (center_uv[1] - K[1, 2]) * depth / K[1, 1], depth])
    return local + wrist


def _scene(sides=("left", "right"), depths=(0.6, 0.55)):
    rng = np.random.default_rng(0)
    hands = {}
    if "left" in sides:
        hands["left"] = _hand((90, 180), depths[0], 0.3, rng)
    if "right" in sides:
        hands["right"] = _hand((230, 170), depths[1], -0.5, rng)
    v, u = np.mgrid[0:H, 0:W] + 0.5
    image = np.zeros((H, W, 3))
    image[..., 0], image[..., 1] = u / W, v / H
    for side, kp in hands.items():
        uvw = kp @ K.T
        uv = uvw[:, :2] / uvw[:, 2:]
        for p in uv:
            image[..., 2][(u - p[0]) ** 2 + (v - p[1]) ** 2 < 12**2] = 0.5 if side == "left" else 1.0
    return image, hands


class FakeCropNet:
    input_size = S
    mirrors_left = False

    def __init__(self, hands):
        self.hands = hands
        self.calls = 0
        self.batches: list[int] = []

    def __call__(self, crops):
        self.calls += len(crops)
        self.batches.append(len(crops))
        q = torch.stack(torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="xy"), -1).reshape(-1, 2).double()
        out = {k: [] for k in ("kp2", "kp3", "presence", "right")}
        self.mirrored: list[bool] = []  # per crop of this call, where it holds a hand
        for crop in crops.double():
            uv = torch.stack([crop[0] * W, crop[1] * H], -1).reshape(-1, 2)
            inside = (crop[:2] > 0).all(0).float()[None, None]  # not in the zero padding outside the image ...
            inside = -torch.nn.functional.max_pool2d(-inside, 5, stride=1, padding=2)[0, 0]  # ... nor next to it
            inside = inside.reshape(-1) > 0.5
            A = torch.linalg.lstsq(torch.cat([q[inside], torch.ones(int(inside.sum()), 1, dtype=torch.float64)], 1), uv[inside]).solution  # (3, 2): crop -> image
            M, t = A[:2].T, A[2]  # image = M q + t
            centre = crop[2, S // 2 - 4 : S // 2 + 4, S // 2 - 4 : S // 2 + 4]
            label = float(centre.max())
            side = "right" if label > 0.75 else "left" if label > 0.25 else None
            if side is None or side not in self.hands:
                out["kp2"].append(torch.zeros(21, 2, dtype=torch.float64)); out["kp3"].append(torch.zeros(21, 3, dtype=torch.float64))
                out["presence"].append(0.0); out["right"].append(0.5)
                continue
            kp = torch.as_tensor(self.hands[side])
            uvw = kp @ torch.as_tensor(K).T
            img_uv = uvw[:, :2] / uvw[:, 2:]
            out["kp2"].append((img_uv - t) @ torch.linalg.inv(M).T)
            rot = M / torch.linalg.det(M).abs().sqrt()  # the crop -> image rotation
            rel = kp - kp[0]
            out["kp3"].append(torch.cat([rel[:, :2] @ rot, rel[:, 2:]], -1))  # into crop orientation
            out["presence"].append(1.0)
            right = 0.95 if side == "right" else 0.05
            self.mirrored.append(bool(torch.linalg.det(M) < 0))
            out["right"].append(1.0 - right if self.mirrored[-1] else right)  # a mirrored right hand looks left
        return CropPrediction(torch.stack(out["kp2"]).float(), torch.stack(out["kp3"]).float(),
                              torch.tensor(out["presence"]), torch.tensor(out["right"]))


class FakeDetector:
    """Regions around the given image points (axis-aligned, 200 px), or none."""

    def __init__(self, centres=()):
        self.centres = list(centres)

    def __call__(self, image):
        n = len(self.centres)
        if not n:
            return Detections.empty()
        return Detections(Roi(torch.tensor(self.centres, dtype=torch.float64), torch.full((n,), 200.0, dtype=torch.float64),
                              torch.zeros(n, dtype=torch.float64)), torch.linspace(0.9, 0.8, n).double())


def _check(found, hands, atol_px, atol_m):
    assert set(found.joints) == set(hands)
    for s, side in enumerate(("left", "right")):
        if side not in hands:
            assert np.isnan(found.keypoints_2d[s]).all() and found.presence[s] == 0
            continue
        uvw = hands[side] @ K.T
        assert np.abs(found.keypoints_2d[s] - uvw[:, :2] / uvw[:, 2:]).max() < atol_px
        assert np.abs(found.joints[side] - hands[side]).max() < atol_m  # placement recovers the camera position
        assert found.reprojection_px[s] < atol_px


@pytest.mark.parametrize("passes", [1, 2])
def test_detected_hands_come_back_in_camera_frame_with_sides(passes):
    image, hands = _scene()
    pipe = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), FakeCropNet(hands), passes=passes, scan=(),
                            probe_angles=(), repaint=False, pair_scale="own")  # each hand's own size: exact
    _check(pipe(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)  # 8-bit coordinates: a little rounding


def _u8(image):
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def test_scan_finds_hands_the_detector_missed_and_no_false_hand():
    image, hands = _scene(("right",))
    net = FakeCropNet(hands)
    pipe = HandCropPipeline(FakeDetector([]), net, scan=(0.6, 0.9), repaint=False)
    found = pipe(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)  # 8-bit coordinates: a little rounding
    assert net.calls > 0 and found.candidates >= 1


def test_repeated_detections_of_one_hand_are_one_hand():
    image, hands = _scene(("left",))
    pipe = HandCropPipeline(FakeDetector([(95, 150), (100, 160), (90, 140)]), FakeCropNet(hands), scan=(), repaint=False)
    found = pipe(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)
    assert found.candidates == 3 and set(found.boxes) == {"left"}


def test_nothing_found_gives_no_joints():
    image, _ = _scene(())
    found = HandCropPipeline(FakeDetector([(100, 100)]), FakeCropNet({}), scan=(0.5,))(_u8(image), K)
    assert found.joints == {} and (found.presence == 0).all() and np.isnan(found.keypoints).all()


def test_assign_sides_and_tiles():
    assert assign_sides(torch.tensor([0.9]), torch.tensor([0.2])) == (0, None)
    assert assign_sides(torch.tensor([0.9]), torch.tensor([0.7])) == (None, 0)
    # two hands both called right: the less right one becomes the left
    assert assign_sides(torch.tensor([0.9, 0.8]), torch.tensor([0.9, 0.6])) == (1, 0)
    assert assign_sides(torch.tensor([0.9, 0.9, 0.6]), torch.tensor([0.1, 0.9, 0.95])) == (0, 1)
    assert assign_sides(torch.zeros(0), torch.zeros(0)) == (None, None)
    assert tile_centres(100, 150) == [50.0]
    c = tile_centres(320, 100)
    assert c[0] == 50 and c[-1] == 270 and max(np.diff(c)) <= 50
    win = square_windows(240, 320, (0.5,), whole=True)
    assert len(win) == 1 + 3 * 5 and win.size[0] == 320 and (win.size[1:] == 120).all()
    lo, hi = win.center[1:] - 60, win.center[1:] + 60
    assert lo.min() == 0 and hi[:, 0].max() == 320 and hi[:, 1].max() == 240  # the windows cover the image


def test_bad_arguments():
    with pytest.raises(ValueError, match="passes"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}), passes=3)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}))(np.zeros((10, 10), np.uint8))


class SalientOnlyDetector:
    """Finds one hand per call: the first of ``centres`` whose hand label is still in the image
    (painted over hands are gone)."""

    def __init__(self, centres):
        self.centres, self.calls = centres, 0

    def __call__(self, image):
        self.calls += 1
        for u, v in self.centres:
            if image[2, int(v), int(u)] > 0.25:
                return FakeDetector([(u, v)])(image)
        return Detections.empty()


def test_painting_over_the_found_hand_finds_the_other():
    image, hands = _scene()
    centres = [(90, 180), (230, 170)]  # wrists: under the hands' labels
    detector = SalientOnlyDetector(centres)
    found = HandCropPipeline(detector, FakeCropNet(hands), scan=(), probe_angles=(), repaint=True, pair_scale="own")(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)
    assert detector.calls == 2
    one = HandCropPipeline(SalientOnlyDetector(centres), FakeCropNet(hands), scan=(), probe_angles=(), repaint=False)(_u8(image), K)
    assert set(one.joints) == {"left"}


def test_all_searches_on_an_empty_image():
    image, _ = _scene(())
    detector = SalientOnlyDetector([(100, 100)])
    found = HandCropPipeline(detector, FakeCropNet({}), scan=(0.5,), repaint=True)(_u8(image), K)
    assert found.joints == {} and found.candidates == 0 and detector.calls == 1


class MisSizedCropNet(FakeCropNet):
    """The fake network with each side's metric keypoints scaled (a wrong predicted hand size)."""

    def __init__(self, hands, factors):
        super().__init__(hands)
        self.factors = factors

    def __call__(self, crops):
        pred = super().__call__(crops)
        f = torch.tensor([self.factors["right" if r > 0.5 else "left"] if p > 0 else 1.0
                          for p, r in zip(pred.presence.tolist(), pred.right_prob.tolist())])  # fmt: skip
        pred.keypoints_3d = pred.keypoints_3d * f[:, None, None]
        return pred


@pytest.mark.parametrize("sides", [("left", "right"), ("right",)])
def test_pair_placement_gives_mis_sized_hands_one_size_and_depth(sides):
    image, hands = _scene(sides)
    net = MisSizedCropNet(hands, {"left": 0.8, "right": 1.25})
    kw = dict(scan=(), probe_angles=(), repaint=False)
    own = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), net, pair_scale="own", **kw)(_u8(image), K)
    pair = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), net, pair_scale="best", **kw)(_u8(image), K)
    default = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), net, **kw)(_u8(image), K)
    assert np.array_equal(default.keypoints, pair.keypoints, equal_nan=True)  # the default (docs/estimator.md)
    assert np.abs(pair.keypoints_2d - own.keypoints_2d)[np.isfinite(own.keypoints_2d)].max() == 0.0
    if len(sides) == 1:  # a hand alone keeps its own size and place
        assert np.allclose(pair.joints["right"], own.joints["right"])
        assert np.linalg.norm(own.joints["right"][0] - hands["right"][0]) > 0.1  # 1.25 x too far
        return
    size = {name: [float(hand_size(torch.from_numpy(f[s]), "bones")) for s in sides]
            for name, f in (("true", hands), ("own", own.joints), ("pair", pair.joints))}  # fmt: skip
    assert size["own"][0] / size["true"][0] == pytest.approx(0.8, rel=1e-3)
    assert size["own"][1] / size["true"][1] == pytest.approx(1.25, rel=1e-3)
    assert size["pair"][0] == pytest.approx(size["pair"][1], rel=1e-9)
    ref = [s for s in range(2) if np.allclose(pair.joints[sides[s]], own.joints[sides[s]])]
    assert len(ref) == 1  # the better-fitting hand keeps its placement, the other takes its size and depth
    other = 1 - ref[0]
    depth = lambda kp: float(kp[[6, 10, 14, 18], 2].mean())  # noqa: E731 - the PIPs' depth (place_pair's default)
    assert depth(pair.joints[sides[other]]) == pytest.approx(depth(pair.joints[sides[ref[0]]]))
    w = pair.joints[sides[other]][0] @ K.T
    assert np.allclose(w[:2] / w[2], (own.joints[sides[other]][0] @ K.T)[:2] / (own.joints[sides[other]][0] @ K.T)[2])
    assert pair.reprojection_px[ref[0]] == pytest.approx(own.reprojection_px[ref[0]])
    size_only = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), net, pair_depth=False, **kw)(_u8(image), K)
    gap = abs(depth(pair.joints[sides[other]]) - depth(size_only.joints[sides[other]]))  # how far the depth step moved it
    ranged = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), net, pair_depth_range=gap / 2, **kw)(_u8(image), K)
    z_ref = depth(pair.joints[sides[ref[0]]])
    assert abs(depth(ranged.joints[sides[other]]) - z_ref) == pytest.approx(gap / 2, rel=1e-6)  # passed to place_pair
    assert np.allclose(ranged.joints[sides[ref[0]]], pair.joints[sides[ref[0]]])


def test_pair_placement_bad_arguments():
    with pytest.raises(ValueError, match="pair_scale"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}), pair_scale="median")
    with pytest.raises(ValueError, match="size_measure"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}), size_measure="span")
    with pytest.raises(ValueError, match="min_size_ratio"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}), min_size_ratio=1.5)


@pytest.mark.parametrize("crop_batch", [1, 3, 100])
def test_crop_batches_and_reused_search_crops_give_the_same_hands(crop_batch):
    """The scan's and the probes' crops are not run again as the first pass, and batching the
    crops changes nothing: the right hand is found by the scan, the left one (no detector) not."""
    image, hands = _scene(("right",))
    kw = dict(scan=(0.6, 0.9), probe_angles=(90.0, 180.0), repaint=False)
    net = FakeCropNet(hands)
    found = HandCropPipeline(FakeDetector([]), net, crop_batch=crop_batch, **kw)(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)
    windows = len(square_windows(H, W, (0.6, 0.9)))
    # scan windows, then only the second pass of its candidates, then the two probes (no other side found)
    assert net.calls == windows + found.candidates + 2
    assert max(net.batches) <= crop_batch and len(net.batches) >= -(-windows // crop_batch)
    scan = net.batches[: -(-windows // crop_batch)]  # the scan's windows in even batches
    assert sum(scan) == windows and max(scan) - min(scan) <= 1
    ref = HandCropPipeline(FakeDetector([]), FakeCropNet(hands), crop_batch=1, **kw)(_u8(image), K)
    assert np.array_equal(found.keypoints, ref.keypoints, equal_nan=True) and found.candidates == ref.candidates


def test_crop_batch_must_be_positive():
    with pytest.raises(ValueError, match="crop_batch"):
        HandCropPipeline(FakeDetector(), FakeCropNet({}), crop_batch=0)


def test_pair_scale_reaches_the_pipeline_through_load_estimator():
    from im2hands.extraction.estimators import load_estimator
    from im2hands.extraction.keypoints import KeypointPipeline
    from im2hands.utils.errors import Im2HandsError

    pipe = HandCropPipeline(FakeDetector(), FakeCropNet({}))
    assert pipe.pair_scale == "best"  # the default
    got, configs = load_estimator(pipe, None, torch.device("cpu"), None, "own")
    assert got is pipe and pipe.pair_scale == "own" and configs == {}
    with pytest.raises(Im2HandsError, match="pair_scale"):
        load_estimator(pipe, None, torch.device("cpu"), None, "median")
    whole = KeypointPipeline.__new__(KeypointPipeline)  # a whole-image pipeline has no pair step
    with pytest.raises(Im2HandsError, match="per-hand crop pipeline"):
        load_estimator(whole, None, torch.device("cpu"), None, "own")
    with pytest.raises(ValueError, match="pair_scale"):
        pipe.set_pair_scale("median")


class ShiftedCropNet(FakeCropNet):
    """The fake network with biased keypoints (2D shifted by 2 crop pixels, 3D scaled 1.1) and
    the wrong sides."""

    keypoint_convention = "annotation"

    def __call__(self, crops):
        pred = super().__call__(crops)
        pred.keypoints_2d = pred.keypoints_2d + 2.0
        pred.keypoints_3d = pred.keypoints_3d * 1.1
        pred.right_prob = 1.0 - pred.right_prob
        return pred


class KeypointsOnlyNet(FakeCropNet):
    """The exact fake network, but with no presence: a network that must only give keypoints and
    sides (the pipeline's ``keypoint_net``)."""

    keypoint_convention = "mano"

    def __call__(self, crops):
        pred = super().__call__(crops)
        pred.presence = torch.zeros_like(pred.presence)
        return pred


def test_keypoint_net_gives_keypoints_and_sides_and_crop_net_the_hands():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    biased = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), ShiftedCropNet(hands), **kw)
    with pytest.raises(AssertionError):
        _check(biased(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)
    assert biased.keypoint_convention == "annotation"
    kp_net = KeypointsOnlyNet(hands)
    hybrid = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), ShiftedCropNet(hands), keypoint_net=kp_net, **kw)
    found = hybrid(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)  # exact keypoints and sides; the hands found by crop_net
    # each hand's crop, mirrored (flip_average) and turned / scaled (keypoint_tta): all read exactly, as the check shows
    assert kp_net.calls == 2 * (2 + len(KEYPOINT_TTA)) and hybrid.keypoint_convention == "mano"


class SidedDetector(FakeDetector):
    """Regions as :class:`FakeDetector`, with a side for each (a detector like ``hand_det``)."""

    def __init__(self, centres, right_prob):
        super().__init__(centres)
        self.right_prob = torch.tensor(right_prob, dtype=torch.float64)

    def __call__(self, image):
        det = super().__call__(image)
        return Detections(det.roi, det.scores, self.right_prob.clone(), detector_side=True)


class UnsureCropNet(FakeCropNet):
    """The exact fake network, but leaning to the wrong side (0.4 for right hands, 0.6 for
    left) and with a presence of ``presence``."""

    def __init__(self, hands, presence=1.0):
        super().__init__(hands)
        self.presence = presence

    def __call__(self, crops):
        pred = super().__call__(crops)
        pred.right_prob = torch.where(pred.presence > 0, 1.0 - (0.4 + 0.2 * (pred.right_prob > 0.5).float()), pred.right_prob)
        pred.presence = pred.presence * self.presence
        return pred


def test_a_detector_that_tells_sides_outvotes_an_unsure_crop_network():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    centres = [(95, 150), (225, 140)]
    alone = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), UnsureCropNet(hands), **kw)
    swapped = alone(_u8(image), K)
    assert np.allclose(swapped.keypoints_2d[::-1], _check_sides_swapped(hands), atol=0.3)  # the crop network's sides: swapped
    mixed = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), UnsureCropNet(hands), detector_side=0.5, **kw)
    found = mixed(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)
    assert np.allclose(found.right_prob, [0.5 * 0.1 + 0.5 * 0.6, 0.5 * 0.9 + 0.5 * 0.4])  # left: 0.6 from the network
    with pytest.raises(ValueError, match="detector_side"):
        HandCropPipeline(FakeDetector(), UnsureCropNet(hands), detector_side=1.5)


def _check_sides_swapped(hands):
    """Both hands' true 2D keypoints, (left, right)."""
    uv = [(hands[s] @ K.T) for s in ("left", "right")]
    return np.stack([p[:, :2] / p[:, 2:] for p in uv])


def test_detector_presence_keeps_hands_the_crop_network_doubts():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    centres = [(95, 150), (225, 140)]
    doubting = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), UnsureCropNet(hands, presence=0.3), **kw)
    assert doubting(_u8(image), K).joints == {}
    trusting = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), UnsureCropNet(hands, presence=0.3),
                                detector_side=1.0, detector_presence=0.7, **kw)  # fmt: skip
    found = trusting(_u8(image), K)
    _check(found, hands, atol_px=0.3, atol_m=2e-3)
    assert sorted(found.presence.tolist()) == pytest.approx([0.8, 0.9])  # the detector's scores
    strict = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), UnsureCropNet(hands, presence=0.3),
                              detector_side=1.0, detector_presence=0.95, **kw)  # fmt: skip
    assert strict(_u8(image), K).joints == {}
    unsided = HandCropPipeline(FakeDetector(centres), UnsureCropNet(hands, presence=0.3), detector_presence=0.7, **kw)
    assert unsided(_u8(image), K).joints == {}  # a detector without sides decides nothing


class CountingDetector(FakeDetector):
    def __init__(self, centres=()):
        super().__init__(centres)
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return super().__call__(image)


def test_the_fallback_detector_looks_only_while_a_hand_is_missing():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    fallback = CountingDetector([(225, 140)])
    one = HandCropPipeline(FakeDetector([(95, 150)]), FakeCropNet(hands), fallback_detector=fallback, **kw)
    _check(one(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)  # the fallback found the right hand
    assert fallback.calls == 1
    both = HandCropPipeline(FakeDetector([(95, 150), (225, 140)]), FakeCropNet(hands), fallback_detector=fallback, **kw)
    _check(both(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)
    assert fallback.calls == 1  # not asked: both hands were found
    alone = HandCropPipeline(FakeDetector([(95, 150)]), FakeCropNet(hands), **kw)
    assert set(alone(_u8(image), K).joints) == {"left"}


def test_hands_the_detector_vouches_for_are_read_by_the_keypoint_network_from_the_start():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own", detector_side=1.0)
    centres = [(95, 150), (225, 140)]  # scores 0.9 and 0.8
    crop_net, kp_net = ShiftedCropNet(hands), KeypointsOnlyNet(hands)
    vouched = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), crop_net, keypoint_net=kp_net,
                               detector_presence=0.75, detector_keypoints=True, **kw)  # fmt: skip
    _check(vouched(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)
    tta = 2 * len(KEYPOINT_TTA)  # the final crop turned and scaled, per hand
    assert crop_net.calls == 0 and kp_net.calls == 2 * 2 + 2 + 2 + tta  # two passes each, the final crop, it mirrored
    one = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), ShiftedCropNet(hands), keypoint_net=KeypointsOnlyNet(hands),
                           detector_presence=0.85, detector_keypoints=True, **kw)  # fmt: skip
    _check(one(_u8(image), K), hands, atol_px=0.3, atol_m=2e-3)
    assert one.crop_net.calls == 2 and one.keypoint_net.calls == 2 + 2 + 2 + tta  # the 0.8 hand went through crop_net
    off = HandCropPipeline(SidedDetector(centres, [0.1, 0.9]), ShiftedCropNet(hands), keypoint_net=KeypointsOnlyNet(hands),
                           detector_presence=0.75, **kw)  # fmt: skip
    off(_u8(image), K)
    assert off.crop_net.calls == 4  # the default: crop_net frames every hand


def test_a_hand_far_smaller_than_the_largest_is_dropped():
    """``min_size_ratio`` (0.3 by default): a "hand" whose keypoint box is under 0.3 x the largest
    found one's is dropped (a pair of one person's hands is about one size); 0 keeps it."""
    image, hands = _scene(depths=(0.6, 2.4))  # the right hand 4x farther: a quarter of the size
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    uv = {s: (h @ K.T)[:, :2] / (h @ K.T)[:, 2:] for s, h in hands.items()}
    size = {s: float(np.ptp(u, 0).max()) for s, u in uv.items()}
    assert 0.2 < size["right"] / size["left"] < 0.3
    found = HandCropPipeline(FakeDetector([(95, 150), (230, 165)]), FakeCropNet(hands), **kw)(_u8(image), K)
    assert set(found.joints) == {"left"} and found.presence[1] == 0
    kept = HandCropPipeline(FakeDetector([(95, 150), (230, 165)]), FakeCropNet(hands), min_size_ratio=0.0, **kw)(_u8(image), K)
    _check(kept, hands, atol_px=1.0, atol_m=0.05)
    near_image, near_hands = _scene()
    near = HandCropPipeline(FakeDetector([(95, 150), (230, 165)]), FakeCropNet(near_hands), **kw)(_u8(near_image), K)
    _check(near, near_hands, atol_px=1.0, atol_m=0.05)  # hands of about one size both stay


class UnsureNet(KeypointsOnlyNet):
    """Exact keypoints; the right hand's right-hand probability 0.7 in unmirrored crops and 0.1
    (it looks left) in mirrored ones, as a network unsure of a hand's side might give."""

    def __call__(self, crops):
        pred = super().__call__(crops)
        m = iter(self.mirrored)
        mirrored = torch.tensor([next(m) if k.abs().sum() > 0 else False for k in pred.keypoints_2d])
        right = torch.where(mirrored, pred.right_prob < 0.5, pred.right_prob > 0.5)  # the image's right hand
        pred.right_prob = torch.where(right & ~mirrored, 0.7, torch.where(right & mirrored, 0.1, pred.right_prob))
        return pred


def test_flip_average_reads_the_final_crop_mirrored_too():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    centres = [(95, 150), (225, 140)]
    on = HandCropPipeline(FakeDetector(centres), FakeCropNet(hands), keypoint_net=UnsureNet(hands), **kw)(_u8(image), K)
    off = HandCropPipeline(FakeDetector(centres), FakeCropNet(hands), keypoint_net=UnsureNet(hands), flip_average=False,
                           **kw)(_u8(image), K)  # fmt: skip
    assert off.right_prob[1] == pytest.approx(0.7) and on.right_prob[1] == pytest.approx(0.8)  # (0.7 + 1 - 0.1) / 2
    assert on.right_prob[0] == pytest.approx(0.05) and off.right_prob[0] == pytest.approx(0.05)  # sure: unchanged
    np.testing.assert_array_equal(on.keypoints_2d, off.keypoints_2d)  # the keypoints stay the unmirrored crop's



class BadTtaReadsNet(KeypointsOnlyNet):
    """The exact keypoint network, except in the batch of turned and scaled reads
    (``keypoint_tta``, both hands): there the first ``bad`` reads of each hand are 30 crop
    pixels and 3 cm off."""

    def __init__(self, hands, tta, bad):
        super().__init__(hands)
        self.tta, self.bad = len(tta), bad

    def __call__(self, crops):
        pred = super().__call__(crops)
        if len(crops) == 2 * self.tta:  # reads are grouped by turn: [read 1 of both hands, read 2 of both, ...]
            pred.keypoints_2d[: 2 * self.bad, :, 0] += 30.0
            pred.keypoints_3d[: 2 * self.bad, :, 0] += 0.03
        return pred


def test_keypoint_tta_takes_the_median_of_the_reads():
    image, hands = _scene()
    kw = dict(scan=(), probe_angles=(), repaint=False, pair_scale="own")
    centres = [(95, 150), (225, 140)]
    truth = np.stack([(hands[s] @ K.T)[:, :2] / (hands[s] @ K.T)[:, 2:] for s in ("left", "right")])

    def run(tta, bad):
        net = BadTtaReadsNet(hands, tta, bad)
        return HandCropPipeline(FakeDetector(centres), FakeCropNet(hands), keypoint_net=net, keypoint_tta=tta, **kw)(_u8(image), K)

    _check(run(KEYPOINT_TTA, 1), hands, atol_px=0.3, atol_m=2e-3)  # one bad read of three: the median ignores it
    five = KEYPOINT_TTA + ((0.0, 0.9), (0.0, 1.1))
    _check(run(five, 2), hands, atol_px=0.3, atol_m=2e-3)  # two of five: still
    assert np.abs(run(KEYPOINT_TTA, 2).keypoints_2d - truth).max() > 20.0  # two of three: the reads are used
    assert KEYPOINT_TTA == ((10.0, 1.0), (-10.0, 1.0))
