import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from im2hands.data.dataset import HandsDataset
from im2hands.geometry.inside import inside_mesh
from im2hands.utils.errors import DataError


def test_item_shapes_and_labels(synth_dir):
    ds = HandsDataset(synth_dir, "train", num_points=256)
    item = ds[0]
    assert item["image"].shape == (3, 96, 96) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["masks_amodal"].shape == (2, 96, 96) and item["masks_amodal"].dtype == torch.bool
    assert item["keypoints"].shape == (2, 21, 3) and item["hand_valid"].all()
    V = item["vertices"].shape[1]
    assert item["vertices"].shape == (2, V, 3) and item["faces"].shape[0] == 2
    assert item["points"].shape == (2, 256, 3) and item["occupancy"].shape == (2, 256)
    for h in range(2):
        occ = inside_mesh(item["vertices"][h].double(), item["faces"][h], item["points"][h].double())
        assert torch.equal(torch.as_tensor(occ).float(), item["occupancy"][h])
        assert 0.05 < item["occupancy"][h].mean() < 0.8  # near-surface half gives plenty of both
        # the wrist keypoint is the model's wrist joint and lies near the mesh
        d = (item["vertices"][h] - item["keypoints"][h, 0]).norm(dim=-1).min()
        assert d < 0.03


def test_points_depend_on_seed_epoch_index_only(synth_dir):
    a = HandsDataset(synth_dir, "all", num_points=64, seed=1)
    b = HandsDataset(synth_dir, "all", num_points=64, seed=1)
    assert torch.equal(a[2]["points"], b[2]["points"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["points"], b[2]["points"])
    uniform = HandsDataset(synth_dir, "all", num_points=64, uniform_ratio=1.0)
    p = uniform[0]["points"]
    wrist = uniform[0]["keypoints"][:, 0]
    assert ((p - wrist[:, None]).abs().max() <= 0.44 * 3**0.5 / 2 + 1e-6)


def test_collate_with_workers(synth_dir):
    ds = HandsDataset(synth_dir, "all", num_points=32)
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=2)))
    assert batch["points"].shape == (3, 2, 32, 3) and batch["image"].shape == (3, 3, 96, 96)


def test_corrupted_and_missing_files(synth_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_dir, root)
    (root / "images" / "0000002.png").write_bytes(b"not a png")
    (root / "annotations" / "0000001.json").write_text("{broken")
    ds = HandsDataset(root, "all", num_points=8)
    with pytest.raises(DataError, match=r"0000002\.png"):
        ds[2]
    with pytest.raises(DataError, match=r"0000001\.json.*malformed JSON"):
        ds[1]
    with pytest.raises(DataError, match="no split 'nope'"):
        HandsDataset(root, "nope")
    with pytest.raises(DataError, match="meta.json"):
        HandsDataset(tmp_path / "empty")


def test_nan_in_annotation_is_rejected(synth_dir, tmp_path):
    root = tmp_path / "nan"
    shutil.copytree(synth_dir, root)
    path = root / "annotations" / "0000000.json"
    data = json.loads(path.read_text())
    data["hands"]["left"]["keypoints"][3][1] = float("nan")
    path.write_text(json.dumps(data))  # json writes NaN, as a careless tool would
    with pytest.raises(DataError, match=r"0000000\.json.*keypoints.*NaN"):
        HandsDataset(root, "all", num_points=8)[0]


def test_hand_model_mismatch(synth_dir, tmp_path):
    root = tmp_path / "mm"
    shutil.copytree(synth_dir, root)
    meta = (root / "meta.json").read_text().replace("im2hands-open-hand-v1", "mano")
    (root / "meta.json").write_text(meta)
    with pytest.raises(DataError, match="hand model 'mano'"):
        HandsDataset(root, "all")
