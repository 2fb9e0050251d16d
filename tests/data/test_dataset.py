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


def test_tip_ratio_draws_the_surface_points_at_the_fingertips(synth_dir):
    ds = HandsDataset(synth_dir, "all", num_points=200, uniform_ratio=0.5, tip_ratio=1.0, tip_radius=0.02,
                      surface_sigma=0.001)
    item = ds[0]
    tips = item["keypoints"][:, [4, 8, 12, 16, 20]]  # (2, 5, 3)
    near = item["points"][:, 100:]  # the near-surface half
    d = torch.cdist(near, tips).min(dim=-1).values  # (2, 100)
    assert d.max() < 0.02 + 0.01 + 0.006  # radius + a face + noise
    plain = HandsDataset(synth_dir, "all", num_points=200, uniform_ratio=0.5, surface_sigma=0.001)[0]
    assert torch.cdist(plain["points"][:, 100:], tips).min(dim=-1).values.max() > 0.05


def test_collate_with_workers(synth_dir):
    ds = HandsDataset(synth_dir, "all", num_points=32)
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=2)))
    assert batch["points"].shape == (3, 2, 32, 3) and batch["image"].shape == (3, 3, 96, 96)


def test_corrupted_and_missing_files(synth_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_dir, root)
    (root / "images" / "0000002.png").write_bytes(b"not a png")
    (root / "annotations" / "0000001.json").write_text("{broken")
    ds = HandsDataset(root, "all", num_points=8, check=False, skip_bad=False)
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
        HandsDataset(root, "all", num_points=8, check=False, skip_bad=False)[0]
    with pytest.raises(DataError, match=r"0000000\.json.*keypoints.*NaN"):
        HandsDataset(root, "all", num_points=8, skip_bad=False)  # found by the start-up check
    assert list(HandsDataset(root, "all", num_points=8).skipped) == ["0000000"]


def test_hand_model_mismatch(synth_dir, tmp_path):
    root = tmp_path / "mm"
    shutil.copytree(synth_dir, root)
    meta = (root / "meta.json").read_text().replace("im2hands-open-hand-v2", "mano")
    (root / "meta.json").write_text(meta)
    with pytest.raises(DataError, match="hand model 'mano'"):
        HandsDataset(root, "all")


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_check_image_file_finds_cut_files(tmp_path):
    import numpy as np
    from PIL import Image

    from im2hands.data.format import check_image_file

    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for ext in ("png", "jpg"):
        path = tmp_path / f"a.{ext}"
        Image.fromarray(pixels).save(path)
        check_image_file(path)  # a whole file passes
        _truncate(path)
        with pytest.raises(DataError, match=rf"a\.{ext}: truncated"):
            check_image_file(path)
    (tmp_path / "b.png").write_bytes(b"\x89PNG nonsense")
    with pytest.raises(DataError, match=r"b\.png: unreadable image"):
        check_image_file(tmp_path / "b.png")
    with pytest.raises(DataError, match="file not found"):
        check_image_file(tmp_path / "none.png")


def test_bad_samples_are_left_out_at_start_or_stop_with_their_name(synth_dir, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(synth_dir, root)
    _truncate(root / "images" / "0000002.png")
    (root / "annotations" / "0000004.json").write_text("{broken")
    ds = HandsDataset(root, "all", num_points=8)
    assert sorted(ds.skipped) == ["0000002", "0000004"] and len(ds) == 4
    assert "truncated PNG" in ds.skipped["0000002"] and "malformed JSON" in ds.skipped["0000004"]
    assert {ds[i]["id"] for i in range(len(ds))} == {"0000000", "0000001", "0000003", "0000005"}
    with pytest.raises(DataError, match=r"0000002\.png: truncated PNG.*skip_bad_samples"):
        HandsDataset(root, "all", num_points=8, skip_bad=False)
    only_depth = HandsDataset(root, "all", num_points=8, fields=("depth",))  # images are not read
    assert sorted(only_depth.skipped) == ["0000004"]


def test_an_item_failing_after_the_check_is_replaced_by_the_next(synth_dir, tmp_path):
    root = tmp_path / "late"
    shutil.copytree(synth_dir, root)
    path = root / "images" / "0000001.png"
    data = bytearray(path.read_bytes())
    data[60:400] = bytes(340)  # pixel data destroyed, header and end marker intact
    path.write_bytes(bytes(data))
    ds = HandsDataset(root, "all", num_points=8)
    assert ds.skipped == {}  # the cheap check cannot see it
    assert ds[1]["id"] == "0000002"
    with pytest.raises(DataError, match=r"0000001\.png"):
        HandsDataset(root, "all", num_points=8, skip_bad=False)[1]


def test_images_read_as_they_are_meant_to_be_seen(tmp_path):
    """16-bit, palette, grayscale, RGBA and EXIF-rotated files give the same pixels as the 8-bit
    RGB version of the picture (16-bit: within rounding)."""
    import numpy as np
    from PIL import Image

    from im2hands.data.format import read_image

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], -1)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 16-bit grayscale
    assert np.abs(read_image(tmp_path / "g16.png").astype(int) - np.repeat(gray[..., None], 3, -1)).max() <= 1
    Image.fromarray(gray).save(tmp_path / "g8.png")
    assert np.array_equal(read_image(tmp_path / "g8.png"), np.repeat(gray[..., None], 3, -1))
    Image.fromarray(np.dstack([rgb, np.full((30, 40), 7, np.uint8)])).save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    pal = Image.fromarray(rgb).quantize(colors=64)
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(read_image(tmp_path / "pal.png"), np.asarray(pal.convert("RGB")))
    # EXIF orientation 6: the stored pixels are the picture turned; the reader turns them back
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "exif.png", exif=exif.tobytes())
    assert np.array_equal(read_image(tmp_path / "exif.png"), rgb)
    for ext in ("bmp", "tif", "webp"):
        Image.fromarray(rgb).save(tmp_path / f"a.{ext}", **({"lossless": True} if ext == "webp" else {}))
        assert np.array_equal(read_image(tmp_path / f"a.{ext}"), rgb), ext


def _write_prediction(folder, sid, joints, K, name="{}.json"):
    from im2hands.data.files import write_keypoints

    return write_keypoints(folder / name.format(sid), joints, K)


def test_predicted_keypoints_are_read_and_kept_only_near_their_hand(synth_dir, tmp_path):
    ds = HandsDataset(synth_dir, "all", fields=("image",))
    a, b, c = (ds[i] for i in range(3))
    K = a["K"].double().numpy()
    moved = a["keypoints"][0].double().numpy() + [0.004, 0.0, 0.0]  # about 4 mm: a few pixels
    far = a["keypoints"][0].double().numpy() + [0.2, 0.0, 0.0]  # 20 cm off: on nothing
    _write_prediction(tmp_path, a["id"], {"left": moved, "right": far}, K)
    # the name im2hands extract writes; only the right hand given
    _write_prediction(tmp_path, b["id"], {"right": b["keypoints"][1].double().numpy()}, b["K"].double().numpy(),
                      name="{}_keypoints.json")
    pred = HandsDataset(synth_dir, "all", fields=("image",), predicted_keypoints=tmp_path, predicted_max_px=40.0)
    assert c["id"] in pred.predicted_missing and a["id"] not in pred.predicted_missing
    pa, pb, pc = pred[0], pred[1], pred[2]
    assert pa["keypoints_pred_valid"].tolist() == [True, False]
    assert torch.allclose(pa["keypoints_pred"][0].double(), torch.as_tensor(moved), atol=1e-6)
    assert pb["keypoints_pred_valid"].tolist() == [False, True]
    assert torch.allclose(pb["keypoints_pred"][1], b["keypoints"][1], atol=1e-6)
    assert not pc["keypoints_pred_valid"].any() and pc["keypoints_pred"].shape == (2, 21, 3)
    # a tighter limit drops the 4 mm hand too
    tight = HandsDataset(synth_dir, "all", fields=("image",), predicted_keypoints=tmp_path, predicted_max_px=0.5)
    assert not tight[0]["keypoints_pred_valid"].any()


def test_predicted_keypoints_folder_errors(synth_dir, tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        HandsDataset(synth_dir, "all", fields=("image",), predicted_keypoints=tmp_path / "nope")
    with pytest.raises(DataError, match="holds no keypoint file"):
        HandsDataset(synth_dir, "all", fields=("image",), predicted_keypoints=tmp_path)
    ds = HandsDataset(synth_dir, "all", fields=("image",))
    (tmp_path / f"{ds.ids[0]}.json").write_text("{not json")
    pred = HandsDataset(synth_dir, "all", fields=("image",), predicted_keypoints=tmp_path, skip_bad=False)
    with pytest.raises(DataError, match=ds.ids[0]):
        pred[0]


def test_iterating_a_dataset_ends(synth_dir):
    ds = HandsDataset(synth_dir, "all", fields=("image",))
    assert [item["id"] for item in ds] == ds.ids  # __getitem__ used to wrap around for ever
    assert ds[-1]["id"] == ds.ids[-1]
    with pytest.raises(IndexError):
        ds[len(ds)]
