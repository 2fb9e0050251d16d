"""The crop network as a trainable stage (``crop_net``): losses and metrics on analytic cases,
the L2-SP anchor, one trainer run on tiny data, and the extraction pipeline built from its run.
Skipped when MediaPipe's cached .tflite files are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from im2hands.config import load_config
from im2hands.models.mediapipe.fetch import missing_files

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs/smoke/crop_net.yaml"

pytestmark = [
    pytest.mark.skipif(missing_files() is not None, reason=f"MediaPipe files not cached: {missing_files()}"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def model():
    from im2hands.engine.builders import build_model

    return build_model(load_config(SMOKE)).eval()


def _batch_from_outputs(model, n_neg: int = 1) -> dict:
    """Crops of noise whose targets are the network's own outputs (a perfect prediction)."""
    torch.manual_seed(0)
    crops = torch.rand(3 + n_neg, 3, 224, 224)
    with torch.no_grad():
        out = model({"crops": crops})
    hand = torch.tensor([1.0] * 3 + [0.0] * n_neg)
    return {"crops": crops, "crop_uv": out.keypoints_2d.clone(), "crop_xyz": out.world - out.world[:, :1],
            "crop_right": (out.handedness >= 0.5).float(), "crop_hand": hand, "crop_px": torch.ones(3 + n_neg)}  # fmt: skip


def test_registered_and_declares_its_interface(model):
    from im2hands.models.crop_net import CropNetModel
    from im2hands.registry import MODELS

    assert MODELS.get("crop_net") is CropNetModel and isinstance(model, CropNetModel)
    assert model.stage == "crop_net" and model.val_metric == "err_2d_px" and model.val_mode == "min"
    assert model.uses_image and model.image_size == 224 and not model.decodes_occupancy


def test_perfect_outputs_give_zero_errors(model):
    batch = _batch_from_outputs(model)
    with torch.no_grad():
        out = model(batch)
    m = model.metrics(batch, out)
    assert m["err_2d_px"] == pytest.approx(0.0, abs=1e-4) and m["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert m["side_acc"] == 1.0
    loss = model.compute_loss(batch, out)
    assert float(loss["loss_2d"]) == pytest.approx(0.0, abs=1e-6) and float(loss["loss_3d"]) == pytest.approx(0.0, abs=1e-6)
    # a 2-pixel shift of every target is a 2-pixel error and 2/224 of L1 per coordinate (x only: half)
    shifted = {**batch, "crop_uv": batch["crop_uv"] + torch.tensor([2.0, 0.0])}
    assert model.metrics(shifted, out)["err_2d_px"] == pytest.approx(2.0, abs=1e-3)
    assert float(model.compute_loss(shifted, out)["loss_2d"]) == pytest.approx(1.0 / 224, rel=1e-4)
    # flipped side labels: all wrong; negatives' presence is their own mean
    flipped = {**batch, "crop_right": 1.0 - batch["crop_right"]}
    assert model.metrics(flipped, out)["side_acc"] == 0.0
    assert model.metrics(batch, out)["negative_presence"] == pytest.approx(float(out.presence[3]), abs=1e-6)


def test_keypoint_losses_ignore_negatives_and_presence_counts_them(model):
    batch = _batch_from_outputs(model)
    with torch.no_grad():
        out = model(batch)
    garbage = {**batch, "crop_uv": batch["crop_uv"].clone(), "crop_xyz": batch["crop_xyz"].clone()}
    garbage["crop_uv"][3] += 100.0
    garbage["crop_xyz"][3] += 1.0
    assert float(model.compute_loss(garbage, out)["loss_2d"]) == pytest.approx(0.0, abs=1e-6)
    as_hand = {**batch, "crop_hand": torch.ones(4)}
    p = out.presence[3].clamp(1e-6, 1 - 1e-6)
    diff = float(model.compute_loss(as_hand, out)["loss_presence"] - model.compute_loss(batch, out)["loss_presence"])
    assert diff == pytest.approx(float((-(p.log()) + (1 - p).log()) / 4), rel=1e-4)


def test_anchor_is_zero_at_the_start_grows_when_weights_move_and_is_not_saved():
    from im2hands.engine.builders import build_model

    model = build_model(load_config(SMOKE, ["model.crop_net.anchor_weight=0.5"]))
    batch = _batch_from_outputs(model)
    out = model(batch)
    assert float(model.compute_loss(batch, out)["loss_anchor"].detach()) == 0.0
    first = next(model.landmarks.parameters())
    with torch.no_grad():
        first.add_(0.1)
    loss = model.compute_loss(batch, model(batch))
    assert float(loss["loss_anchor"].detach()) == pytest.approx(0.01 * first.numel(), rel=1e-3)
    assert not any(k.startswith("_origin") for k in model.state_dict())


def test_gradients_reach_the_network(model):
    batch = _batch_from_outputs(model)
    batch["crop_uv"] = batch["crop_uv"] + 3.0
    model.zero_grad()
    model.compute_loss(batch, model(batch))["loss"].backward()
    grads = [p.grad for p in model.landmarks.parameters()]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)
    model.zero_grad()


def test_trains_with_the_one_trainer_and_gives_the_crop_pipeline_its_keypoints(tmp_path):
    from im2hands.config.schema import SynthConfig
    from im2hands.data.synthetic import synthesize
    from im2hands.engine.trainer import train
    from im2hands.extraction.estimators import load_estimator
    from im2hands.extraction.hand_crops import HandCropPipeline
    from im2hands.utils.errors import Im2HandsError

    root = tmp_path / "synth"
    synthesize(root, 2, 3, workers=1, settings=SynthConfig(image_size=64), progress=False)
    cfg = load_config(SMOKE, [f"data.root={root}", "data.split=all", "train.val_split=all",
                              f"train.out_dir={tmp_path / 'run'}", "train.tensorboard=false"])  # fmt: skip
    result = train(cfg, progress=False)
    assert result.summary["steps"] == 2
    assert {"err_2d_px", "mpjpe_mm", "side_acc", "presence_acc"} <= set(result.summary["final_val"])
    pipeline, configs = load_estimator(str(tmp_path / "run"), None, torch.device("cpu"), None, "own")
    assert isinstance(pipeline, HandCropPipeline) and "crop_net" in configs["estimator"]
    assert pipeline.pair_scale == "own"
    assert pipeline.keypoint_convention == "mano"  # trained on our data's keypoints
    delta = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]  # the changes only
    name = next(k for k, v in delta.items() if k.startswith("landmarks.") and float(v.abs().max()) > 0)
    key = "net." + name[len("landmarks."):]
    original = dict(pipeline.crop_net.named_parameters())[key].detach()  # hands, sides: the original network
    trained = dict(pipeline.keypoint_net.named_parameters())[key].detach()  # keypoints: the fine-tuned one
    assert torch.allclose(trained, original + delta[name], atol=1e-7)
    with pytest.raises(Im2HandsError, match="neither a keypoint estimator"):
        load_estimator(str(REPO / "im2hands/assets/weights/init_occ_halo.pt"), None, torch.device("cpu"), None)


def test_checkpoints_hold_only_the_changes_and_load_back_exactly():
    from im2hands.engine.builders import build_model

    cfg = load_config(SMOKE)
    model = build_model(cfg)
    state = model.state_dict()
    assert all(float(v.abs().max()) == 0.0 for v in state.values())  # untouched: no third-party weights saved
    with torch.no_grad():
        for p in model.landmarks.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    state = model.state_dict()
    origin = dict(build_model(cfg).landmarks.named_parameters())
    for name, p in model.landmarks.named_parameters():
        assert torch.allclose(state[f"landmarks.{name}"], p.detach() - origin[name].detach(), atol=1e-7)
    fresh = build_model(cfg)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.landmarks.parameters(), model.landmarks.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
