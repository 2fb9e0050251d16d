import json

import numpy as np
import pytest
import torch

from im2hands.config.schema import SynthConfig
from im2hands.cli import main
from im2hands.config import load_config
from im2hands.data import format as fmt
from im2hands.data.synthetic import generate_sample, resolve_device, synthesize
from im2hands.geometry.frames import project
from im2hands.hands.layer import load_hand_models
from im2hands.utils.errors import DataError, Im2HandsError


def test_layout_splits_and_masks(synth_dir):
    meta = fmt.read_meta(synth_dir)
    assert meta["source"] == "synthetic" and meta["image_size"] == [96, 96]
    assert (synth_dir / "config.yaml").is_file()
    ids = fmt.list_samples(synth_dir, "all")
    assert ids == [fmt.sample_id(i) for i in range(6)]
    splits = {s: fmt.list_samples(synth_dir, s) for s in ("train", "val", "test")}
    assert splits["test"] == ["0000000", "0000003"] and splits["val"] == ["0000001", "0000004"]
    assert sorted(sum(splits.values(), [])) == ids
    for sid in ids:
        ann = fmt.read_annotation(synth_dir, sid)
        m = fmt.read_masks(synth_dir / ann.mask)
        depth = fmt.read_depth(synth_dir / ann.depth)
        for side in ("left", "right"):
            vis, amo = m[f"{side}_visible"], m[f"{side}_amodal"]
            assert amo.sum() > 50  # both hands are in view
            assert not (vis & ~amo).any()  # visible is a subset of amodal
        assert not (m["left_visible"] & m["right_visible"]).any()
        covered = m["left_visible"] | m["right_visible"]
        assert (depth[covered] > 0.1).all() and (depth[~covered] == 0).all()


def test_annotations_are_consistent(synth_dir):
    models = load_hand_models()
    for sid in fmt.list_samples(synth_dir, "all"):
        ann = fmt.read_annotation(synth_dir, sid)
        for side, hand in ann.hands.items():
            out = models[side](torch.tensor(hand.pose)[None].float(), torch.tensor(hand.shape)[None].float(),
                               torch.tensor(hand.trans)[None].float())
            kp = out.keypoints[0].double().numpy()
            assert np.abs(kp - hand.keypoints).max() < 1e-5  # stored keypoints == model keypoints
            uv = project(torch.tensor(kp)[None], torch.tensor(ann.K)[None])[0].numpy()
            assert np.abs(uv - hand.keypoints_2d).max() < 1e-3
            assert (hand.keypoints[:, 2] > 0.1).all()  # in front of the camera
        assert ann.extra["penetration_cm3"] <= 0.5 + 1e-9


@pytest.mark.slow
def test_sample_is_pure_function_of_seed_and_index():
    cfg = SynthConfig(image_size=64)
    models = load_hand_models()
    a = generate_sample(3, 11, cfg, models)
    b = generate_sample(3, 11, cfg, models)
    c = generate_sample(4, 11, cfg, models)
    assert np.array_equal(a.image, b.image)
    assert a.annotation.extra == b.annotation.extra
    assert not np.array_equal(a.image, c.image)
    d = generate_sample(3, 11, cfg, models, device="cpu")  # the explicit device takes the same path
    assert np.array_equal(a.image, d.image) and np.array_equal(a.depth, d.depth)


def test_resume_regenerates_only_missing(tmp_path):
    cfg = SynthConfig(image_size=64)
    synthesize(tmp_path, 3, seed=1, settings=cfg, progress=False)
    before = (tmp_path / "images" / "0000001.png").read_bytes()
    (tmp_path / "annotations" / "0000001.json").unlink()  # as if interrupted before the annotation
    stamp = (tmp_path / "annotations" / "0000000.json").stat().st_mtime_ns
    summary = synthesize(tmp_path, 4, seed=1, settings=cfg, progress=False)
    assert summary["skipped"] == 2 and summary["written"] == 2
    assert (tmp_path / "annotations" / "0000000.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "images" / "0000001.png").read_bytes() == before  # deterministic
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary files left
    with pytest.raises(DataError, match="different seed"):
        synthesize(tmp_path, 4, seed=2, settings=cfg, progress=False)


def test_bad_options():
    with pytest.raises(Im2HandsError, match="--num"):
        synthesize("/tmp/never", 0)
    with pytest.raises(Im2HandsError, match="--workers"):
        synthesize("/tmp/never", 2, workers=0)


@pytest.mark.slow
def test_two_workers_match_one(tmp_path):
    cfg = SynthConfig(image_size=64)
    synthesize(tmp_path / "a", 3, seed=5, workers=1, settings=cfg, progress=False)
    synthesize(tmp_path / "b", 3, seed=5, workers=2, settings=cfg, progress=False)
    for sid in ("0000000", "0000002"):
        ja = json.loads((tmp_path / "a" / "annotations" / f"{sid}.json").read_text())
        jb = json.loads((tmp_path / "b" / "annotations" / f"{sid}.json").read_text())
        assert ja == jb


def test_device_option_is_accepted_and_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    out = tmp_path / "auto"
    assert main(["data", "synth", "--out", str(out), "--num", "1", "--device", "auto", "synth.image_size=32"]) == 0
    assert fmt.list_samples(out, "all") == ["0000000"]
    assert load_config(out / "config.yaml").synth.device == "auto"  # the resolved config records it
    capsys.readouterr()  # drop the progress bar
    for bad, message in (("tpu", "expected cpu, cuda, cuda:N or auto"), ("cuda", "CUDA is not available")):
        folder = tmp_path / bad
        assert main(["data", "synth", "--out", str(folder), "--num", "1", "--device", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "synth.device (--device)" in err and repr(bad) in err and message in err
        assert not folder.exists()  # checked before anything is written
    with pytest.raises(Im2HandsError, match="synth.device .* 'gpu'"):
        synthesize(tmp_path / "cfg", 1, settings=SynthConfig(device='gpu'), progress=False)


@pytest.mark.gpu
def test_cuda_samples_match_cpu():
    cfg = SynthConfig(image_size=96)
    models = load_hand_models()
    for index in range(3):
        cpu = generate_sample(index, 5, cfg, models, device="cpu")
        gpu = generate_sample(index, 5, cfg, models, device="cuda")
        a, b = cpu.annotation, gpu.annotation
        assert np.array_equal(a.K, b.K) and a.extra == b.extra  # placement and camera stay on the CPU
        for side in ("left", "right"):
            ha, hb = a.hands[side], b.hands[side]
            for name in ("pose", "shape", "trans"):
                assert np.array_equal(getattr(ha, name), getattr(hb, name)), name
            assert np.abs(ha.keypoints - hb.keypoints).max() < 2e-5  # metres
            assert np.abs(ha.keypoints_2d - hb.keypoints_2d).max() < 1e-2  # pixels
        assert gpu.image.dtype == np.uint8 and gpu.image.shape == cpu.image.shape
        diff = np.abs(cpu.image.astype(np.int16) - gpu.image.astype(np.int16))
        assert diff.mean() < 1.0 and (diff > 2).mean() < 0.01  # rounding, plus a few edge pixels
        for key, mask in cpu.masks.items():
            assert gpu.masks[key].dtype == mask.dtype and gpu.masks[key].shape == mask.shape
            assert (gpu.masks[key] != mask).mean() < 0.005, key
        assert gpu.depth.dtype == cpu.depth.dtype
        assert np.isclose(gpu.depth, cpu.depth, rtol=0, atol=1e-4).mean() > 0.99


def _listed(root):
    return sorted(sum((fmt.list_samples(root, s) for s in ("train", "val", "test")), []))


def test_meta_and_splits_count_only_what_is_on_disk(tmp_path, monkeypatch):
    """meta.json holds no count while samples are being written (a killed run leaves it so), the
    count of an interrupted run is what it wrote, and a smaller --num into a bigger folder keeps
    describing every sample there."""
    import im2hands.data.synthetic as synthetic

    cfg = SynthConfig(image_size=48)
    real_run = synthetic._run
    seen = {}

    def interrupted_run(todo, *args):
        for n, item in enumerate(real_run(todo, *args)):
            if n == 0:
                seen["meta_while_writing"] = fmt.read_meta(tmp_path)
            yield item
            if n == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_run", interrupted_run)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path, 6, seed=3, settings=cfg, progress=False)
    assert seen["meta_while_writing"]["status"] == "writing"
    assert "num_samples" not in seen["meta_while_writing"]
    meta = fmt.read_meta(tmp_path)
    assert meta["status"] == "interrupted" and meta["num_samples"] == 2 == len(fmt.list_samples(tmp_path))
    assert _listed(tmp_path) == fmt.list_samples(tmp_path)

    monkeypatch.setattr(synthetic, "_run", real_run)
    synthesize(tmp_path, 4, seed=3, settings=cfg, progress=False)
    assert fmt.read_meta(tmp_path)["status"] == "done" and fmt.read_meta(tmp_path)["num_samples"] == 4
    synthesize(tmp_path, 2, seed=3, settings=cfg, progress=False)  # fewer than the folder holds
    meta = fmt.read_meta(tmp_path)
    assert meta["num_samples"] == 4 and _listed(tmp_path) == fmt.list_samples(tmp_path) and len(_listed(tmp_path)) == 4


def test_the_config_maps_to_plain_arguments(tmp_path):
    """engine.builders.synth_arguments is the one place a config becomes synthesize's arguments;
    the folder's config.yaml records what the job read."""
    from im2hands.engine.builders import synth_arguments

    cfg = load_config(None, ["synth.image_size=32", "synth.val_every=5", "synth.shape_std=0.5"])
    args = synth_arguments(cfg)
    assert args == {"settings": cfg.synth, "mano_dir": None}
    assert synthesize(tmp_path, 1, seed=0, progress=False, **args)["written"] == 1
    saved = load_config(tmp_path / "config.yaml")
    assert saved.synth == cfg.synth and saved.hand_model.mano_dir is None
    assert fmt.read_meta(tmp_path)["image_size"] == [32, 32]
