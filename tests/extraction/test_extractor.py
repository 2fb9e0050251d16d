"""The two-hand extractor with occupancy stand-ins: ground truth reproduced in the camera frame."""

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from torch.utils.data import default_collate

from im2hands.config.schema import SynthConfig
from im2hands.data.dataset import HandsDataset
from im2hands.data.synthetic import synthesize
from im2hands.extraction.extractor import Extractor
from im2hands.extraction.oracle import MeshOccupancy, SkeletonOccupancy, capsule_occupancy, skeleton_segments
from im2hands.models.base import HandsModel


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("extractor_synth")
    synthesize(root, 1, seed=11, workers=1, settings=SynthConfig(image_size=96), progress=False)
    return default_collate([HandsDataset(root, "all", fields=("mesh",))[0]])


def chamfer_mm(v, f, v_gt, f_gt, n=30_000):
    a = trimesh.Trimesh(v, f, process=False).sample(n, seed=0)
    b = trimesh.Trimesh(v_gt, f_gt, process=False).sample(n, seed=1)
    return 500.0 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


class Counting(HandsModel):
    """Wraps a model; records encode calls and decode shapes; optionally fails on big chunks."""

    def __init__(self, inner, fail_above=None):
        super().__init__()
        self.inner, self.fail_above = inner, fail_above
        self.threshold = inner.threshold
        self.encodes, self.shapes = 0, []

    def encode(self, batch):
        self.encodes += 1
        return self.inner.encode(batch)

    def decode(self, points, features):
        if self.fail_above is not None and points.shape[2] > self.fail_above:
            raise MemoryError("pretend out of memory")
        self.shapes.append(tuple(points.shape))
        return self.inner.decode(points, features)


def test_oracle_reproduces_ground_truth(batch):
    model = Counting(MeshOccupancy())
    ex = Extractor(model, resolution0=32, upsampling_steps=2, points_batch_size=20_000)
    out = ex.extract(batch)
    assert model.encodes == 1
    assert all(s[:2] == (1, 2) and s[3] == 3 and s[2] <= 20_000 for s in model.shapes)
    assert out.resolution == 128 and out.threshold == 0.5
    for h, side in enumerate(("left", "right")):
        r = out.hands[side]
        gt_v, gt_f = batch["vertices"][0, h].numpy(), batch["faces"][0, h].numpy()
        assert r.status == "ok" and r.watertight and r.faces.dtype == np.int64
        assert chamfer_mm(r.vertices, r.faces, gt_v, gt_f) < 2.0  # camera frame, metres -> mm
        gt_volume = trimesh.Trimesh(gt_v, gt_f, process=False).volume
        assert r.volume_m3 == pytest.approx(gt_volume, rel=0.05)  # > 0: outward normals, both hands
        assert r.points_evaluated == sum(r.points_per_level) and r.query_fraction < 0.05
    assert out.points_decoded >= sum(r.points_evaluated for r in out.hands.values())
    assert set(out.seconds) == {"encode", "decode", "mise", "marching", "total"}


def test_absent_hand_is_skipped_and_threshold_from_model(batch):
    b = dict(batch, hand_valid=torch.tensor([[False, True]]))
    model = SkeletonOccupancy(threshold=0.4, softness=0.01)  # soft: near-linear across a 6.9 mm cell
    out = Extractor(model, resolution0=16, upsampling_steps=2).extract(b)
    assert out.threshold == 0.4
    assert out.hands["left"].status == "skipped" and out.hands["left"].vertices is None
    r = out.hands["right"]
    assert r.status == "ok" and r.watertight
    # vertices sit on the 0.4 level set of the capsule field
    seg = skeleton_segments(batch["keypoints"][0, 1].double())
    occ = capsule_occupancy(r.vertices, seg, model.radius, model.softness)
    assert np.median(np.abs(occ - 0.4)) < 0.01 and np.abs(occ - 0.4).max() < 0.1  # creases: less linear
    assert Extractor(model, threshold=0.6).threshold == 0.6  # an explicit threshold wins


def test_memory_backoff_and_no_surface(batch):
    model = Counting(MeshOccupancy(), fail_above=3000)
    out = Extractor(model, resolution0=16, upsampling_steps=1, points_batch_size=5000).extract(batch)
    assert out.hands["left"].status == "ok" and max(s[2] for s in model.shapes) <= 3000

    class Empty(SkeletonOccupancy):
        def decode(self, points, features):
            return torch.zeros(points.shape[:3])

    out = Extractor(Empty(), resolution0=8, upsampling_steps=1).extract(batch)
    assert {r.status for r in out.hands.values()} == {"failed"}
    assert "no surface" in out.hands["left"].message


def test_memory_cap_shrinks_chunks_not_the_mesh(batch):
    """``max_memory_mb`` caps the decode chunk at ``cap / (2 x decode_bytes_per_point)`` points
    per hand (never below 1024); the mesh is the same as without the cap."""
    from im2hands.extraction import extractor as ext_mod

    def run(**kwargs):
        model = Counting(SkeletonOccupancy())
        ex = Extractor(model, resolution0=16, upsampling_steps=2, precision="float32", **kwargs)  # chunks as set
        return ex, model, ex.extract(batch)

    free_ex, free_model, free = run()  # 1024 MB: 131,072 points, so the 100k batch size rules
    assert free_ex.chunk == 100_000
    capped_ex, capped_model, capped = run(max_memory_mb=12.0)  # 12 MiB / (2 x 4096 B) = 1536 points
    assert ext_mod.DEFAULT_BYTES_PER_POINT == 4096 and capped_ex.chunk == 1536
    assert max(s[2] for s in capped_model.shapes) == 1536 < max(s[2] for s in free_model.shapes)
    # the same points were decoded, only in more calls
    assert sum(s[2] for s in capped_model.shapes) == sum(s[2] for s in free_model.shapes)
    assert len(capped_model.shapes) > len(free_model.shapes)
    for side in ("left", "right"):
        a, b = free.hands[side], capped.hands[side]
        assert a.status == b.status == "ok"
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        assert a.points_evaluated == b.points_evaluated
    # a model's own bytes per point count; the cap never goes below 1024 points
    heavy = Counting(SkeletonOccupancy())
    heavy.decode_bytes_per_point = 8192
    assert Extractor(heavy, max_memory_mb=32.0, precision="float32").chunk == 2048  # 32 MiB / (2 x 8192 B)
    assert Extractor(heavy, max_memory_mb=12.0, precision="float32").chunk == 1024  # 768 points, raised to the floor
    assert Extractor(heavy, max_memory_mb=64.0, points_batch_size=3000, precision="float32").chunk == 3000  # the smaller limit wins


def test_rejects_bad_batches(batch):
    ex = Extractor(SkeletonOccupancy(), resolution0=8, upsampling_steps=0)
    with pytest.raises(ValueError, match="keypoints"):
        ex.extract({"keypoints": batch["keypoints"][0]})
    with pytest.raises(ValueError):
        Extractor(SkeletonOccupancy(), resolution0=1)


def test_precision_names_autocast_and_auto_choice(batch, monkeypatch):
    """``precision`` picks the decode autocast: bfloat16 runs decode under bfloat16 autocast
    (encode stays float32), float32 without; ``auto`` follows the CPU's bfloat16 support and
    stays float32 on CUDA; unknown names are refused."""
    import im2hands.extraction.extractor as ex_mod
    from im2hands.extraction.extractor import resolve_precision

    class Recording(SkeletonOccupancy):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def encode(self, batch):
            self.seen.add(("encode", torch.is_autocast_enabled("cpu")))
            return super().encode(batch)

        def decode(self, points, features):
            on = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            self.seen.add(("decode", on))
            return super().decode(points, features)

    for precision, decode_low in (("bfloat16", True), ("float32", False)):
        model = Counting(Recording())
        ex = Extractor(model, resolution0=8, upsampling_steps=1, precision=precision, points_batch_size=1500)
        assert ex.precision == precision and ex.chunk == (1024 if decode_low else 1500)
        out = ex.extract(batch)
        assert model.inner.seen == {("encode", False), ("decode", decode_low)}
        sizes = {s[2] for s in model.shapes}
        assert all(n % 512 == 0 for n in sizes) == decode_low  # bfloat16: few distinct shapes
        assert out.hands["right"].status == "ok" and out.points_decoded >= 2 * out.hands["right"].points_evaluated
    for has, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(ex_mod, "_cpu_has_bf16", lambda has=has: has)
        assert resolve_precision("auto", "cpu") == want and Extractor(Recording(), device="cpu").precision == want
        assert resolve_precision("auto", "cuda") == "float32" and resolve_precision("float32", "cpu") == "float32"
    with pytest.raises(ValueError, match="precision"):
        Extractor(Recording(), precision="fp8")
