"""The hand detector as a trainable stage (``hand_det``): anchor matching and targets on
analytic boxes, losses and metrics of perfect and wrong outputs, the side carried through NMS,
checkpoints of differences, and one trainer run on tiny data. Skipped when MediaPipe's cached
.tflite files are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from im2hands.config import load_config
from im2hands.models.mediapipe.fetch import missing_files

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs/smoke/hand_det.yaml"

pytestmark = [
    pytest.mark.skipif(missing_files() is not None, reason=f"MediaPipe files not cached: {missing_files()}"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def model():
    from im2hands.engine.builders import build_model

    return build_model(load_config(SMOKE)).eval()


def _targets(model, boxes=((40.0, 52.0, 24.0), (140.0, 100.0, 40.0)), valid=(True, True)) -> dict:
    """One image with hands whose palm boxes are (centre x, centre y, side) in input pixels;
    palm points spread over each box."""
    box = torch.tensor([[[x, y, s, s] for x, y, s in boxes]])
    offsets = torch.linspace(-0.4, 0.4, 7)[:, None] * torch.tensor([1.0, -0.5])
    palm = box[..., None, :2] + offsets * box[..., None, 2:3]
    return {"det_images": torch.zeros(1, 3, 192, 192), "det_box": box, "det_palm": palm, "det_valid": torch.tensor([valid])}


def _perfect(model, batch: dict, right_logit: float = 20.0):
    from im2hands.models.hand_det import HandDetOutput

    hand, positive, raw = model.targets(batch)
    logits = torch.where(positive, 20.0, -20.0)
    side = torch.where(hand == 1, right_logit, -right_logit)
    return HandDetOutput(raw, logits, side)


def test_registered_and_declares_its_interface(model):
    from im2hands.models.hand_det import HandDetModel
    from im2hands.models.mediapipe.palm import anchors_per_cell
    from im2hands.registry import MODELS

    assert MODELS.get("hand_det") is HandDetModel and isinstance(model, HandDetModel)
    assert model.stage == "hand_det" and model.val_metric == "f1" and model.val_mode == "max"
    assert anchors_per_cell() == (2, 6) and 24 * 24 * 2 + 12 * 12 * 6 == len(model.palm.anchors)
    with torch.no_grad():
        out = model.run(torch.rand(2, 3, 192, 192))
    assert out.raw.shape == (2, 2016, 18) and out.logits.shape == (2, 2016) and out.side_logits.shape == (2, 2016)
    assert float(out.side_logits.abs().max()) == 0.0  # the new head starts undecided


def test_matching_takes_anchors_near_each_box_centre(model):
    batch = _targets(model)
    hand, positive = model.match(batch["det_box"], batch["det_valid"])
    a = model.palm.anchors * 192
    for h, (x, y, s) in enumerate(((40.0, 52.0, 24.0), (140.0, 100.0, 40.0))):
        d = (a - torch.tensor([x, y])).abs().amax(-1) / s
        mine = positive[0] & (hand[0] == h)
        assert bool(mine.any()) and float(d[mine].max()) <= model.positive_radius + 1e-6
        assert bool(positive[0][d <= model.positive_radius].all())  # every near anchor is positive
    far = (a - torch.tensor([100.0, 180.0])).norm(dim=-1) < 5
    assert not bool(positive[0][far].any())
    # a hand too small for any anchor's radius still gets its nearest anchor; an invalid one none
    tiny = _targets(model, boxes=((37.0, 37.0, 1.0), (140.0, 100.0, 40.0)), valid=(True, False))
    hand, positive = model.match(tiny["det_box"], tiny["det_valid"])
    assert int(positive.sum()) == 1 and int(hand[positive]) == 0


def test_regression_targets_are_offsets_from_the_anchors(model):
    batch = _targets(model)
    hand, positive, raw = model.targets(batch)
    a = model.palm.anchors * 192
    i = int(torch.nonzero(positive[0] & (hand[0] == 1))[0, 0])
    assert torch.allclose(raw[0, i, :2], batch["det_box"][0, 1, :2] - a[i])
    assert torch.allclose(raw[0, i, 2:4], batch["det_box"][0, 1, 2:4])
    assert torch.allclose(raw[0, i, 4:].view(7, 2), batch["det_palm"][0, 1] - a[i])


def test_perfect_outputs_give_zero_losses_and_perfect_metrics(model):
    batch = _targets(model)
    out = _perfect(model, batch)
    loss = model.compute_loss(batch, out)
    assert float(loss["loss_box"]) == pytest.approx(0.0, abs=1e-6)
    assert float(loss["loss_score"]) < 1e-6 and float(loss["loss_side"]) < 1e-6
    m = model.metrics(batch, out)
    assert m["recall"] == 1.0 and m["false_per_image"] == 0.0 and m["side_acc"] == 1.0 and m["side_f1"] == 1.0 and m["f1"] == 1.0
    assert m["centre_px"] == pytest.approx(0.0, abs=1e-3)
    wrong = model.metrics(batch, _perfect(model, batch, right_logit=-20.0))
    assert wrong["recall"] == 1.0 and wrong["side_acc"] == 0.0 and wrong["side_f1"] == 0.0 and wrong["f1"] == 1.0
    # palm points 4 px off in x (the matching stays): 7 of the 18 values are 4 px off
    shifted = {**batch, "det_palm": batch["det_palm"] + torch.tensor([4.0, 0.0])}
    assert float(model.compute_loss(shifted, out)["loss_box"]) == pytest.approx(7 * 4.0 / 18 / 192, rel=1e-4)


def test_side_probability_is_averaged_over_an_nms_cluster(model):
    from im2hands.models.hand_det import HandDetOutput

    batch = _targets(model, valid=(False, True))
    out = _perfect(model, batch)
    hand, positive, _ = model.targets(batch)
    idx = torch.nonzero(positive[0])[:, 0]
    side = torch.full_like(out.side_logits, -20.0)
    side[0, idx[0]] = 20.0  # one anchor of the cluster says right, the others left
    det = model.decode(HandDetOutput(out.raw, out.logits, side))[0]
    assert len(det.scores) == 1
    assert float(det.right_prob[0]) == pytest.approx(1.0 / len(idx), abs=1e-4)  # equal scores: a plain mean
    centre = (det.boxes[0, :2] + det.boxes[0, 2:]) / 2 * 192
    assert torch.allclose(centre, torch.tensor([140.0, 100.0]), atol=1e-3)
    assert float(det.boxes[0, 2] - det.boxes[0, 0]) * 192 == pytest.approx(40.0, abs=1e-3)


def test_checkpoints_hold_the_detector_as_changes_and_the_head_as_it_is():
    from im2hands.engine.builders import build_model

    cfg = load_config(SMOKE)
    model = build_model(cfg)
    state = model.state_dict()
    assert all(float(v.abs().max()) == 0.0 for k, v in state.items() if k.startswith("palm."))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    state = model.state_dict()
    head = dict(model.side_heads.named_parameters())
    assert all(torch.equal(state[f"side_heads.{k}"], v.detach()) for k, v in head.items())
    fresh = build_model(cfg)
    fresh.load_state_dict(state)
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_the_new_head_learns_faster_than_the_detector():
    from im2hands.engine.builders import build_model, build_optimizer

    cfg = load_config(SMOKE, ["train.lr=0.001", "model.hand_det.head_lr_scale=5"])
    opt = build_optimizer(cfg, build_model(cfg))
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.001), pytest.approx(0.005)]


def test_trains_with_the_one_trainer(tmp_path):
    from im2hands.config.schema import SynthConfig
    from im2hands.data.synthetic import synthesize
    from im2hands.engine.trainer import train

    root = tmp_path / "synth"
    synthesize(root, 2, 3, workers=1, settings=SynthConfig(image_size=64), progress=False)
    cfg = load_config(SMOKE, [f"data.root={root}", "data.split=all", "train.val_split=all",
                              f"train.out_dir={tmp_path / 'run'}", "train.tensorboard=false"])  # fmt: skip
    result = train(cfg, progress=False)
    assert result.summary["steps"] == 2
    assert {"recall", "false_per_image", "side_acc", "f1", "side_f1", "centre_px"} <= set(result.summary["final_val"])
    # the run finds the hands of the per-hand crop pipeline; other models are refused
    from im2hands.extraction.estimators import load_estimator
    from im2hands.extraction.mediapipe_hands import MediaPipePalmDetector
    from im2hands.models.hand_det import HandDetModel
    from im2hands.utils.errors import Im2HandsError

    pipeline, configs = load_estimator("mediapipe", None, torch.device("cpu"), None, detector=str(tmp_path / "run"))
    assert isinstance(pipeline.detector, MediaPipePalmDetector) and isinstance(pipeline.detector.net, HandDetModel)
    assert pipeline.detector_source == str(tmp_path / "run") and "hand_det" in configs["detector"]
    found = pipeline.detector(torch.rand(3, 120, 160))
    assert found.right_prob is not None and found.detector_side and len(found.right_prob) == len(found.scores)
    plain, _ = load_estimator("mediapipe", None, torch.device("cpu"), None)
    assert plain.detector_source == "mediapipe" and not isinstance(plain.detector.net, HandDetModel)
    with pytest.raises(Im2HandsError, match="not a hand detector"):
        load_estimator("mediapipe", None, torch.device("cpu"), None, detector=str(REPO / "im2hands/assets/weights/init_occ_halo.pt"))
    with pytest.raises(Im2HandsError, match="--detector applies to the per-hand crop pipeline"):
        load_estimator(str(REPO / "im2hands/assets/weights/kpts_est.pt"), None, torch.device("cpu"), None, detector="mediapipe")
