import shutil
from pathlib import Path

import pytest
import torch

from im2hands.config.schema import SynthConfig
from im2hands.config import load_config
from im2hands.data.synthetic import synthesize
from im2hands.engine.checkpoint import load_model, save_checkpoint
from im2hands.extraction.run import extract_folder
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.models.ref_occ import AnchorFinder, RefOccNet, load_stage1, sample_pixel_features
from im2hands.registry import MODELS
from im2hands.utils.errors import Im2HandsError

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs/smoke/ref_occ.yaml"
S = 64  # smoke image side
RADIUS = 0.03  # sphere fields, metres


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    """These models are tiny: one thread avoids OpenMP synchronisation stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _save_stage1(run: Path) -> Path:
    """Save a tiny untrained stage 1 into ``run`` the way the trainer saves it."""
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs/smoke/init_occ.yaml")
    model = MODELS.get("init_occ").from_config(cfg)
    save_checkpoint(run / "last.pt", model=model, optimizer=None, scheduler=None, cfg=cfg, state={"step": 2}, rng=[])
    return run


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory) -> Path:
    """A run folder holding a tiny untrained stage 1."""
    return _save_stage1(tmp_path_factory.mktemp("stage1_run"))


@pytest.fixture
def orphan_stage2(tmp_path, monkeypatch) -> tuple[Path, RefOccNet]:
    """A stage-2 run built on a stage 1 given by a relative path, whose stage-1 run is then deleted;
    and the stage-2 model as saved (eval mode)."""
    monkeypatch.chdir(tmp_path)
    _save_stage1(tmp_path / "stage1")
    model = _model(Path("stage1")).eval()  # model.ref_occ.init_occ=stage1 (relative to the working folder)
    run = tmp_path / "stage2"
    cfg = load_config(SMOKE, ["model.ref_occ.init_occ=stage1"])
    save_checkpoint(run / "last.pt", model=model, optimizer=None, scheduler=None, cfg=cfg, state={"step": 2}, rng=[])
    shutil.rmtree(tmp_path / "stage1")
    return run, model


def _model(stage1_run: Path, *overrides: str) -> RefOccNet:
    cfg = load_config(SMOKE, [f"model.ref_occ.init_occ={stage1_run}", *overrides])
    return MODELS.get(cfg.model.type).from_config(cfg)


def _batch(B: int = 2, N: int = 64, seed: int = 0) -> dict:
    """Two hand-sized keypoint sets 0.5 m in front of the camera; points around each hand;
    ground truth = a sphere of RADIUS around each hand's keypoint mean."""
    g = torch.Generator().manual_seed(seed)
    kp = 0.02 * torch.randn(B, 2, 21, 3, generator=g)
    kp[:, LEFT, :, 0] -= 0.05
    kp[:, RIGHT, :, 0] += 0.05
    kp[..., 2] += 0.5
    pts = kp.mean(2, keepdim=True) + 0.03 * torch.randn(B, 2, N, 3, generator=g)
    occ = ((pts - kp.mean(2, keepdim=True)).norm(dim=-1) < RADIUS).float()
    K = torch.tensor([[110.0, 0.0, S / 2], [0.0, 110.0, S / 2], [0.0, 0.0, 1.0]]).expand(B, 3, 3).clone()
    return {"image": torch.rand(B, 3, S, S, generator=g), "K": K, "keypoints": kp, "points": pts,
            "occupancy": occ, "hand_valid": torch.ones(B, 2, dtype=torch.bool)}  # fmt: skip


def _sphere_field(centres: torch.Tensor, width: float = 0.005):
    """Occupancy of hand h: sigmoid((RADIUS - |p - centre_h|) / width) (p in slot h)."""

    def field(points: torch.Tensor, *unused) -> torch.Tensor:
        return torch.sigmoid((RADIUS - (points - centres[:, :, None]).norm(dim=-1)) / width)

    return field


# --- building ---------------------------------------------------------------------------


def test_build_from_smoke_config_and_checkpoint(stage1_run):
    model = _model(stage1_run)  # from the run folder (no best.pt: falls back to last.pt)
    assert isinstance(model, RefOccNet) and model.stage == "ref_occ"
    assert load_config(SMOKE).model.ref_occ.init_occ is None  # no paths in the shipped config
    stage1 = load_stage1(stage1_run / "last.pt")
    ckpt = torch.load(stage1_run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, ckpt[k]) for k, v in model.init_occ.state_dict().items())
    assert all(torch.equal(v, stage1.state_dict()[k]) for k, v in model.init_occ.state_dict().items())
    # the stage-2 encoder starts from the stage-1 encoder where shapes match; the global conv is new
    own, src = model.encoder.state_dict(), model.init_occ.encoder.state_dict()
    assert model.encoder_init_tensors == len(src) > 0
    assert all(torch.equal(own[k], v) for k, v in src.items()) and "global_conv.weight" not in src
    out = model(_batch())
    assert out["occupancy"].shape == out["occupancy_init"].shape == out["occupancy_at_other"].shape == (2, 2, 64)
    assert out["anchors"].shape == (2, 2, 32, 3)


def test_missing_or_unset_stage1_names_the_path(tmp_path, stage1_run):
    missing = tmp_path / "no_such_run"
    with pytest.raises(Im2HandsError, match="no_such_run"):
        _model(missing)
    with pytest.raises(Im2HandsError, match="model.ref_occ.init_occ"):
        RefOccNet.from_config(load_config(SMOKE))
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(Im2HandsError, match="empty_run.*best.pt"):
        load_stage1(empty)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Im2HandsError, match="junk.pt"):
        load_stage1(tmp_path / "junk.pt")


def test_stage2_checkpoint_rebuilds_without_the_stage1_run(orphan_stage2):
    run, model = orphan_stage2
    stored = torch.load(run / "last.pt", weights_only=True)["model"]["_extra_state"]["init_occ_config"]
    assert isinstance(stored, str) and "type: init_occ" in stored  # the stage-1 config, plain YAML text
    rebuilt, cfg = load_model(run)
    assert isinstance(rebuilt, RefOccNet) and not rebuilt.training and not rebuilt.init_occ.training
    with pytest.raises(Im2HandsError, match="not found"):  # from the config alone: the stage-1 run is gone
        RefOccNet.from_config(cfg)
    assert rebuilt.init_occ_config == model.init_occ_config
    batch = _batch(N=40, seed=3)
    with torch.no_grad():
        expected = model.decode(batch["points"], model.encode(batch))
        got = rebuilt.decode(batch["points"], rebuilt.encode(batch))
    assert torch.equal(got, expected)
    # a state_dict saved before the stage-1 config was stored still loads (strictly), from the path
    state = {k: v for k, v in model.state_dict().items() if k != "_extra_state"}
    fresh = _model(_save_stage1(run.parent / "stage1_again"))
    fresh.load_state_dict(state)
    assert fresh.init_occ_config is not None and torch.equal(fresh.decoder.fc_out.weight, model.decoder.fc_out.weight)
    with pytest.raises(RuntimeError, match="extra state"):
        fresh.load_state_dict({**state, "_extra_state": {"init_occ_config": 3}})


def test_extract_with_a_stage2_run_whose_stage1_run_is_gone(orphan_stage2, tmp_path):
    run, _ = orphan_stage2
    data = tmp_path / "synth"
    synthesize(data, 2, seed=4, workers=1, settings=SynthConfig(image_size=64), progress=False)
    summary = extract_folder(tmp_path / "meshes", model=run, dataset=data, split="all", limit=1, resolution=8,
                             upsampling_steps=1, progress=False)  # fmt: skip
    assert summary["finished"] and summary["totals"]["processed"] == 1
    assert summary["settings"]["model_type"] == "ref_occ"
    item = summary["items"][0]
    assert item["status"] == "ok" or "no surface found" in item["message"]  # random weights: maybe no surface
    assert item["hands"]["left"]["points_evaluated"] > 0


# --- pixel features -----------------------------------------------------------------------


def test_pixel_features_hit_pixel_centres_and_gradcheck():
    fmap = torch.arange(2 * 4 * 4, dtype=torch.float64).view(1, 2, 4, 4)
    K = torch.tensor([[[100.0, 0.0, 16.0], [0.0, 100.0, 16.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    # a 32-pixel image over a 4 x 4 map: feature pixel (row 1, col 2) is centred at u = 20, v = 12
    z = 0.5
    p = torch.tensor([[[(20.0 - 16.0) * z / 100.0, (12.0 - 16.0) * z / 100.0, z]]], dtype=torch.float64)
    out = sample_pixel_features(fmap, p, K, (32, 32))
    assert torch.equal(out[0, 0], fmap[0, :, 1, 2])
    p = (p + 0.003 * torch.randn(1, 3, 3, dtype=torch.float64)).requires_grad_(True)
    fmap = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, q: sample_pixel_features(f, q, K, (32, 32)), (fmap, p))


# --- anchors ------------------------------------------------------------------------------


def test_anchors_lie_on_the_stage1_surface(stage1_run, monkeypatch):
    model = _model(stage1_run, "model.ref_occ.anchor_bone_samples=2", "model.ref_occ.anchor_ray_length=0.05",
                   "model.ref_occ.anchor_bisections=4")  # fmt: skip
    batch = _batch()
    centres = batch["keypoints"].mean(2)  # (B, 2, 3)
    field = _sphere_field(centres)
    monkeypatch.setattr(model.init_occ, "decode", field)  # stage 1 replaced by a known field
    with torch.no_grad():
        f = model.encode(batch)
    radius = (f.anchors - centres[:, :, None]).norm(dim=-1)  # (B, 2, M)
    assert (radius - RADIUS).abs().max() < 5e-4  # on the sphere within 0.5 mm
    assert (field(f.anchors) - 0.5).abs().max() < 0.03  # probability at the threshold
    assert bool((f.anchor_counts >= 32).all())
    assert all(len(set(map(tuple, a.tolist()))) == 32 for a in f.anchors.flatten(0, 1))  # distinct points


def test_anchor_finder_cost_and_degenerate_field():
    finder = AnchorFinder(num_anchors=20, bone_samples=2, rays=4, ray_steps=5, bisections=3)
    S = 23 * 2
    assert finder.evaluations_per_hand == S * (1 + 4 * 5) + S * 4 * 3
    calls = []

    def empty(points):  # no surface anywhere: no crossing
        calls.append(points.shape[2])
        return torch.zeros(points.shape[:3])

    kp = _batch()["keypoints"]
    anchors, counts = finder(empty, kp)
    assert sum(calls) == finder.evaluations_per_hand
    assert anchors.shape == (2, 2, 20, 3) and bool(torch.isfinite(anchors).all()) and bool((counts == 0).all())


# --- frozen stage 1, frames, loss -------------------------------------------------------------


def test_stage1_frozen(stage1_run):
    model = _model(stage1_run)
    before = {k: v.clone() for k, v in model.init_occ.state_dict().items()}
    frozen = {id(p) for p in model.init_occ.parameters()}
    params = model.trainable_parameters()
    assert params and not any(id(p) in frozen for p in params)
    model.train()
    assert model.training and model.encoder.training and not any(m.training for m in model.init_occ.modules())
    opt = torch.optim.Adam(params, lr=1e-2)
    batch = _batch()
    loss = model.compute_loss(batch, model(batch))["loss"]
    loss.backward()
    assert all(p.grad is None for p in model.init_occ.parameters())
    decoder_before = model.decoder.fc_out.weight.clone()
    opt.step()
    assert all(torch.equal(v, before[k]) for k, v in model.init_occ.state_dict().items())  # BN stats too
    assert not torch.equal(model.decoder.fc_out.weight, decoder_before)


def test_penetration_queries_use_each_hands_own_frame(stage1_run, monkeypatch):
    model = _model(stage1_run).eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
        s1 = model.init_occ.encode(batch)
        right_pts = batch["points"][:, RIGHT]
        as_left = model.init_occ.decode(torch.stack([right_pts, right_pts], 1), s1)  # both hands at x_right
    # the left branch at the right hand's points = stage 1's LEFT hand at those camera points
    torch.testing.assert_close(out["occupancy_init_at_other"][:, LEFT], as_left[:, LEFT])
    torch.testing.assert_close(out["occupancy_init"][:, RIGHT], as_left[:, RIGHT])
    assert not torch.allclose(as_left[:, LEFT], as_left[:, RIGHT], atol=1e-3)  # the check can tell them apart
    # with a known field per hand: a point at the right hand's centre is inside the right hand
    # only; the left branch must see "outside" there, the right branch "inside"
    centres = batch["keypoints"].mean(2)
    monkeypatch.setattr(model.init_occ, "decode", _sphere_field(centres))
    batch["points"] = centres[:, :, None].expand(2, 2, 3, 3).clone()  # each hand's own centre
    with torch.no_grad():
        out = model(batch)
    assert bool((out["occupancy_init"] > 0.99).all())  # each hand at its own centre: inside
    assert bool((out["occupancy_init_at_other"] < 0.01).all())  # each hand at the other's centre: outside


def test_loss_terms_and_invalid_hands(stage1_run):
    model = _model(stage1_run, "model.ref_occ.penetration_weight=0.5").eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
    loss = model.compute_loss(batch, out)
    assert set(loss) == {"loss", "mse_left", "mse_right", "penetration"}
    occ, other = out["occupancy"], out["occupancy_at_other"]
    pen = (other[:, LEFT] * occ[:, RIGHT] + other[:, RIGHT] * occ[:, LEFT]).sum()
    torch.testing.assert_close(loss["penetration"], pen)
    torch.testing.assert_close(loss["loss"], loss["mse_left"] + loss["mse_right"] + 0.5 * pen)
    metrics = model.metrics(batch, out)
    assert {"iou", "iou_left", "iou_right", "iou_init", "iou_init_left", "iou_init_right"} <= set(metrics)
    # an invalid left hand in sample 0: its ground truth and penetration no longer count
    batch["hand_valid"][0, LEFT] = False
    changed = dict(batch, occupancy=batch["occupancy"].clone())
    changed["occupancy"][0, LEFT] = 1.0 - changed["occupancy"][0, LEFT]
    masked = model.compute_loss(changed, out)
    torch.testing.assert_close(masked["mse_left"], ((occ[1, LEFT] - batch["occupancy"][1, LEFT]) ** 2).mean())
    sample0 = (other[0, LEFT] * occ[0, RIGHT] + other[0, RIGHT] * occ[0, LEFT]).sum()
    torch.testing.assert_close(masked["penetration"], pen - sample0)
    assert model.metrics(changed, out) == model.metrics(batch, out)


def test_bce_loss_matches_a_naive_sum(stage1_run):
    model = _model(stage1_run, "model.ref_occ.loss=bce", "model.ref_occ.penetration_weight=0.25").eval()
    batch = _batch()
    batch["hand_valid"][1, RIGHT] = False
    with torch.no_grad():
        out = model(batch)
    loss = model.compute_loss(batch, out)
    assert {"bce_left", "bce_right", "mse_left", "mse_right", "penetration"} <= set(loss)
    logits, gt = out["logits"], batch["occupancy"]
    naive = {}
    for h, name in ((LEFT, "left"), (RIGHT, "right")):
        terms = []
        for b in range(2):
            if batch["hand_valid"][b, h]:
                p = torch.sigmoid(logits[b, h])
                terms.append(-(gt[b, h] * torch.log(p) + (1 - gt[b, h]) * torch.log(1 - p)).mean())
        naive[name] = torch.stack(terms).mean()
        torch.testing.assert_close(loss[f"bce_{name}"], naive[name], rtol=1e-5, atol=1e-6)
    occ, other = out["occupancy"], out["occupancy_at_other"]
    pen = (other[0, LEFT] * occ[0, RIGHT] + other[0, RIGHT] * occ[0, LEFT]).sum()  # sample 1 has one hand
    torch.testing.assert_close(loss["penetration"], pen)
    torch.testing.assert_close(loss["loss"], naive["left"] + naive["right"] + 0.25 * pen, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="loss"):
        _model(stage1_run, "model.ref_occ.loss=l1")


def test_decode_in_chunks_matches_one_pass(stage1_run):
    model = _model(stage1_run).eval()
    batch = _batch(N=50)
    f = model.encode(batch)
    whole = model.decode(batch["points"], f)  # autograd on: one pass
    model.decode_chunk = 14  # 7 points per chunk with B = 2
    with torch.no_grad():
        chunked = model.decode(batch["points"], f)
    torch.testing.assert_close(chunked, whole.detach())


@pytest.mark.slow
def test_overfit_one_batch(stage1_run):
    torch.manual_seed(0)
    model = _model(stage1_run, "model.ref_occ.decoder_hidden=32", "model.ref_occ.decoder_blocks=2").train()
    batch = _batch(N=64)
    baseline = float(batch["occupancy"].var(-1, unbiased=False).mean(0).sum())  # predict each hand's mean
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    losses, mse = [], []
    for _ in range(60):
        loss = model.compute_loss(batch, model(batch))
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        losses.append(float(loss["loss"].detach()))
        mse.append(float(loss["mse_left"] + loss["mse_right"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert mse[-1] < 0.7 * baseline, (mse, baseline)  # it learned the shapes, not just the mean
