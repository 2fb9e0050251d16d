from pathlib import Path

import numpy as np
import pytest
import torch

from im2hands.config import load_config
from im2hands.data.keypoint_noise import KeypointNoise
from im2hands.engine.builders import build_batch_transform
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.models.encoder import ImageEncoder
from im2hands.models.graph import ChebGraphConv, normalized_adjacency, skeleton_adjacency
from im2hands.models.kpts_ref import KeypointRefiner, KptsRefModel, aligned_joint_errors_mm
from im2hands.models.outputs import RefinerOutputs
from im2hands.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["configs/kpts_ref.yaml", "configs/kpts_ref_cpu.yaml", "configs/smoke/kpts_ref.yaml"]
S = 64  # smoke image side


def _keypoints(B: int, seed: int = 0) -> torch.Tensor:
    """Two hand-sized point sets 0.5 m in front of the camera, (B, 2, 21, 3) metres."""
    g = torch.Generator().manual_seed(seed)
    kp = 0.03 * torch.randn(B, 2, 21, 3, generator=g)
    kp[:, LEFT, :, 0] -= 0.05
    kp[:, RIGHT, :, 0] += 0.05
    kp[..., 2] += 0.5
    return kp


def _batch(B: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    K = torch.tensor([[110.0, 0.0, S / 2], [0.0, 110.0, S / 2], [0.0, 0.0, 1.0]]).expand(B, 3, 3).clone()
    return {
        "image": torch.rand(B, 3, S, S, generator=g),
        "K": K,
        "keypoints": _keypoints(B, seed),
        "hand_valid": torch.ones(B, 2, dtype=torch.bool),
        "index": torch.arange(B) + 10 * seed,
    }


def _smoke_model(*, dropout: float = 0.01, dim: int = 16, abs_weight: float = 0.0,
                 freeze_encoder: bool = False) -> KptsRefModel:
    """The smoke config's stage 3 (``configs/smoke/kpts_ref.yaml``), built from keyword arguments."""
    encoder = ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=4, image_size=S)
    refiner = KeypointRefiner(feature_channels=8, feature_size=encoder.feature_size, dim=dim, layers=2, patch_grid=4,
                              heads=2, graph_order=2, mlp_ratio=2.0, dropout=dropout, cross_hand=True,
                              pixel_aligned=True)  # fmt: skip
    return KptsRefModel(encoder=encoder, refiner=refiner, abs_weight=abs_weight, freeze_encoder=freeze_encoder)


NOISY = build_batch_transform(load_config(REPO / "configs/smoke/kpts_ref.yaml"))
"""The trainer's batch transform for kpts_ref: ``keypoints_noisy`` (fresh in training, seeded in eval)."""


def _run(model: KptsRefModel, batch: dict) -> RefinerOutputs:
    """``model(batch)`` as the trainer runs it (the batch transform first, in the model's mode)."""
    return model(NOISY(batch, training=model.training))


def _randomize_heads(model_or_refiner) -> None:
    """The heads' last layers start at zero (identity refinement); make them non-zero."""
    refiner = getattr(model_or_refiner, "refiner", model_or_refiner)
    for head in refiner.heads:
        torch.nn.init.normal_(head[-1].weight, std=0.1)
        torch.nn.init.normal_(head[-1].bias, std=0.1)


# --- graph convolution -------------------------------------------------------------------


def test_adjacency_symmetric_normalised():
    A = skeleton_adjacency()
    assert torch.equal(A, A.T) and A.sum() == 2 * 20 and A.diagonal().sum() == 0
    eig = torch.linalg.eigvalsh(normalized_adjacency(A).double())
    assert eig.min() >= -1 - 1e-6 and eig.max() <= 1 + 1e-6
    assert abs(eig.max() - 1.0) < 1e-6  # connected graph: top eigenvalue exactly 1


@pytest.mark.parametrize("order", [1, 2, 3])
def test_cheb_graph_conv_matches_naive_loop(order):
    conv = ChebGraphConv(5, 4, order=order).double()
    x = torch.randn(3, 21, 5, dtype=torch.float64)
    nbrs = [[p] if p >= 0 else [] for p in STANDARD_PARENTS]
    for c, p in enumerate(STANDARD_PARENTS):
        if p >= 0:
            nbrs[p].append(c)
    deg = [len(n) for n in nbrs]

    def a_hat(t):  # per-node loop: sum_j t_j / sqrt(d_i d_j)
        return torch.stack([sum(t[:, j] / np.sqrt(deg[i] * deg[j]) for j in nbrs[i]) for i in range(21)], 1)

    terms = [x]
    if order > 1:
        terms.append(a_hat(x))
    for _ in range(2, order):
        terms.append(2 * a_hat(terms[-1]) - terms[-2])
    W = conv.linear.weight.view(4, order, 5)  # (out, k, in)
    expected = sum(terms[k] @ W[:, k].T for k in range(order)) + conv.linear.bias
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.slow
def test_cheb_graph_conv_gradcheck():
    conv = ChebGraphConv(3, 2, order=3).double()
    x = torch.randn(2, 21, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


# --- refiner ----------------------------------------------------------------------------------


def _refiner(**kw) -> KeypointRefiner:
    args = dict(feature_channels=6, feature_size=16, dim=16, layers=2, patch_grid=4, heads=2, dropout=0.0)
    return KeypointRefiner(**{**args, **kw})


def _refiner_inputs(B: int = 3):
    b = _batch(B)
    return b["keypoints"] + 0.01 * torch.randn(B, 2, 21, 3), torch.randn(B, 6, 16, 16), b["K"], (S, S)


def test_refiner_shapes_and_identity_at_init():
    ref = _refiner().eval()
    kp, fmap, K, size = _refiner_inputs()
    out = ref(kp, fmap, K, size)
    assert out.shape == (3, 2, 21, 3)
    torch.testing.assert_close(out, kp)  # zero-initialised heads: starts as the identity
    with pytest.raises(ValueError, match="feature_map"):
        ref(kp, fmap[..., :8, :8], K, size)
    with pytest.raises(ValueError, match="B, 2, 21, 3"):
        ref(kp[:, 0], fmap, K, size)


def test_left_right_heads_distinct_and_separate():
    ref = _refiner().eval()
    left, right = ref.heads[LEFT], ref.heads[RIGHT]
    ids_l = {id(p) for p in left.parameters()}
    assert ids_l.isdisjoint(id(p) for p in right.parameters())
    kp, fmap, K, size = _refiner_inputs()
    (ref(kp, fmap, K, size) * torch.randn(3, 2, 21, 3)).sum().backward()
    for head in (left, right):
        assert head[-1].weight.grad is not None and head[-1].weight.grad.abs().sum() > 0
    base = ref(kp, fmap, K, size).detach()
    with torch.no_grad():
        right[-1].bias += 1.0  # must move only the right hand (the original used the left head for both)
    moved = ref(kp, fmap, K, size).detach()
    torch.testing.assert_close(moved[:, LEFT], base[:, LEFT])
    assert (moved[:, RIGHT] - base[:, RIGHT]).abs().min() > 1e-3


def test_invalid_hand_does_not_leak_and_cross_hand_does():
    ref = _refiner()
    _randomize_heads(ref)
    ref.eval()
    kp, fmap, K, size = _refiner_inputs()
    moved = kp.clone()
    moved[:, LEFT] += 0.02 * torch.randn(3, 21, 3)
    valid = torch.tensor([[False, True]] * 3)
    a, b = ref(kp, fmap, K, size, valid), ref(moved, fmap, K, size, valid)
    torch.testing.assert_close(a[:, RIGHT], b[:, RIGHT])  # the left hand is invalid: no influence
    c, d = ref(kp, fmap, K, size), ref(moved, fmap, K, size)
    assert (c[:, RIGHT] - d[:, RIGHT]).abs().max() > 1e-6  # both valid: the right hand hears the left


# --- model ------------------------------------------------------------------------------------


def test_model_registered_and_interface():
    assert MODELS.get("kpts_ref") is KptsRefModel
    assert (KptsRefModel.val_metric, KptsRefModel.val_mode, KptsRefModel.stage) == ("mpjpe_mm", "min", "kpts_ref")
    model = _smoke_model().eval()
    batch = _batch(2)
    out = _run(model, batch)
    assert out.keypoints.shape == out.keypoints_noisy.shape == (2, 2, 21, 3)
    feats = model.encode(batch)
    assert feats.feature_map.shape == (2, 8, 16, 16) and feats.image_size == (S, S)
    torch.testing.assert_close(model.refine(out.keypoints_noisy, feats, batch["hand_valid"]), out.keypoints)
    with pytest.raises(NotImplementedError):
        model.decode(torch.zeros(2, 2, 5, 3), feats)
    with pytest.raises(KeyError, match="keypoints_noisy"):  # the noise is the trainer's batch transform
        model(batch)


def test_gradients_flow_to_every_used_parameter():
    model = _smoke_model(dropout=0.0)
    _randomize_heads(model)
    model.train()
    batch = _batch(2)
    model.compute_loss(batch, _run(model, batch))["loss"].backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
    # The encoder's heatmap/mask output convs and its query conv are not used by this stage (frozen).
    unused = {
        "encoder.heatmap_head.out.weight", "encoder.heatmap_head.out.bias", "encoder.mask_head.out.weight",
        "encoder.mask_head.out.bias", "encoder.query_conv.weight", "encoder.query_conv.bias",
    }  # fmt: skip
    assert no_grad == unused
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == unused
    assert len(model.trainable_parameters()) == len(list(model.parameters())) - len(unused)


def test_frozen_encoder_gets_no_gradient():
    model = _smoke_model(freeze_encoder=True)
    _randomize_heads(model)
    model.train()
    assert not model.encoder.training
    batch = _batch(2)
    model.compute_loss(batch, _run(model, batch))["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.fuse.weight.grad is not None
    assert all(p.requires_grad for p in model.trainable_parameters())
    assert len(model.trainable_parameters()) < len(list(model.parameters()))


def test_batch_permutation_permutes_outputs():
    model = _smoke_model()
    _randomize_heads(model)
    model.eval()
    batch = _batch(4, seed=1)
    batch["hand_valid"][2, LEFT] = False
    perm = torch.tensor([2, 0, 3, 1])
    permuted = {k: v[perm] for k, v in batch.items()}
    out, out_p = _run(model, batch), _run(model, permuted)  # eval noise is seeded by batch["index"]
    torch.testing.assert_close(out_p.keypoints_noisy, out.keypoints_noisy[perm])
    torch.testing.assert_close(out_p.keypoints, out.keypoints[perm], rtol=1e-4, atol=1e-6)


def test_noise_fixed_in_eval_fresh_in_training_and_given_noisy_used():
    model = _smoke_model()
    batch = _batch(2)
    model.eval()
    torch.testing.assert_close(_run(model, batch).keypoints_noisy, _run(model, batch).keypoints_noisy, rtol=0, atol=0)
    assert not torch.allclose(_run(model, batch).keypoints_noisy, batch["keypoints"])
    model.train()
    assert not torch.allclose(_run(model, batch).keypoints_noisy, _run(model, batch).keypoints_noisy)
    given = batch["keypoints"] + 0.001
    assert torch.equal(_run(model, {**batch, "keypoints_noisy": given}).keypoints_noisy, given)


def test_loss_zero_at_ground_truth_and_known_values():
    model = _smoke_model(abs_weight=0.5)
    batch = _batch(2)
    gt = batch["keypoints"]
    losses = model.compute_loss(batch, RefinerOutputs(gt.clone(), gt))
    assert all(float(v) == 0.0 for v in losses.values())
    shifted = gt + torch.tensor([0.003, 0.0, 0.004])  # 5 mm rigid shift: rel 0, abs (9 + 16) / 3
    losses = model.compute_loss(batch, RefinerOutputs(shifted, gt))
    assert float(losses["loss_rel"]) < 1e-6
    assert abs(float(losses["loss_abs"]) - 25.0 / 3.0) < 1e-3
    assert abs(float(losses["loss"]) - 0.5 * 25.0 / 3.0) < 1e-3
    bad = shifted.clone()
    bad[:, LEFT] += torch.randn(2, 21, 3)  # garbage on invalid hands is ignored
    batch["hand_valid"][:, LEFT] = False
    torch.testing.assert_close(model.compute_loss(batch, RefinerOutputs(bad, gt))["loss"], losses["loss"])


def test_mpjpe_matches_numpy():
    model = _smoke_model()
    batch = _batch(3)
    batch["hand_valid"][1, RIGHT] = False
    gt = batch["keypoints"]
    pred = gt + 0.01 * torch.randn_like(gt)
    noisy = gt + 0.02 * torch.randn_like(gt)
    m = model.metrics(batch, RefinerOutputs(pred, noisy))

    def naive(p, g, valid, align=True):
        p, g = p.double().numpy(), g.double().numpy()
        errs = []
        for b in range(p.shape[0]):
            for h in range(2):
                if not valid[b, h]:
                    continue
                pa = p[b, h] - (p[b, h, 9] if align else 0)
                ga = g[b, h] - (g[b, h, 9] if align else 0)
                errs.append(np.mean([np.sqrt(((pa[j] - ga[j]) ** 2).sum()) for j in range(21)]) * 1000.0)
        return float(np.mean(errs))

    v = batch["hand_valid"].numpy()
    assert m["mpjpe_mm"] == pytest.approx(naive(pred, gt, v), rel=1e-5)
    assert m["mpjpe_in_mm"] == pytest.approx(naive(noisy, gt, v), rel=1e-5)
    assert m["mpjpe_abs_mm"] == pytest.approx(naive(pred, gt, v, align=False), rel=1e-5)
    only_right = np.zeros_like(v)
    only_right[:, RIGHT] = v[:, RIGHT]
    assert m["mpjpe_right_mm"] == pytest.approx(naive(pred, gt, only_right), rel=1e-5)
    torch.testing.assert_close(aligned_joint_errors_mm(gt + 0.002, gt), torch.zeros(3, 2, 21), atol=1e-4, rtol=0)
    batch["hand_valid"][:] = False  # no valid hand: NaN (the trainer skips it), not a fake 0
    assert all(np.isnan(v) for v in model.metrics(batch, RefinerOutputs(pred, noisy)).values())


@pytest.mark.slow
def test_overfit_one_batch():
    torch.manual_seed(0)
    # Frozen encoder: its BatchNorms stay in eval mode, so train- and eval-mode outputs agree.
    model = _smoke_model(dropout=0.0, dim=32, freeze_encoder=True)
    noise = KeypointNoise(jitter_mm=8.0, depth_bias_mm=0.0, swap_prob=0.0, finger_drift_prob=0.0, scale_std=0.0)
    batch = _batch(2, seed=3)
    batch["keypoints_noisy"] = noise(batch["keypoints"], torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(50):
        opt.zero_grad()
        model.compute_loss(batch, model(batch))["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        m = model.metrics(batch, model(batch))
    assert m["mpjpe_mm"] < 0.5 * m["mpjpe_in_mm"], m


@pytest.mark.parametrize("path", CONFIGS)
def test_from_config_builds(path):
    cfg = load_config(REPO / path)
    assert cfg.model.type == "kpts_ref"
    model = MODELS.get(cfg.model.type).from_config(cfg)
    assert isinstance(model, KptsRefModel) and isinstance(model.encoder, ImageEncoder)
    assert model.refiner.feature_size == cfg.model.encoder.image_size // 4
    assert len(model.refiner.layers) == cfg.model.kpts_ref.layers


def test_keyword_built_smoke_model_is_the_smoke_config():
    from_yaml = KptsRefModel.from_config(load_config(REPO / "configs/smoke/kpts_ref.yaml"))
    built = _smoke_model()
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in from_yaml.state_dict().items()}


def test_autocast_keeps_geometry_precise():
    ref = _refiner()
    _randomize_heads(ref)
    ref.eval()
    kp, fmap, K, size = _refiner_inputs()
    full = ref(kp, fmap, K, size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = ref(kp, fmap, K, size)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - full).abs().max() < 1e-3  # < 1 mm: positions are not rounded to bf16 (2 mm at 0.5 m)


def test_trains_on_an_estimators_predictions(tmp_path):
    """``data.predicted_keypoints``: the trainer's validation sees the predictions as the noisy input
    (here the ground truth 5 mm to the right: an absolute error of exactly 5 mm)."""
    from im2hands.config.schema import SynthConfig
    from im2hands.data.dataset import HandsDataset
    from im2hands.data.files import write_keypoints
    from im2hands.data.synthetic import synthesize
    from im2hands.engine.trainer import train

    root = tmp_path / "synth"
    synthesize(root, 2, 3, workers=1, settings=SynthConfig(image_size=64), progress=False)
    pred = tmp_path / "pred"
    pred.mkdir()
    for item in HandsDataset(root, "all", fields=("image",)):
        kp = item["keypoints"].double().numpy() + [0.005, 0.0, 0.0]
        write_keypoints(pred / f"{item['id']}_keypoints.json", {"left": kp[0], "right": kp[1]}, item["K"].double().numpy())
    cfg = load_config(REPO / "configs/smoke/kpts_ref.yaml", [
        f"data.root={root}", "data.split=all", "train.val_split=all", f"data.predicted_keypoints={pred}",
        f"train.out_dir={tmp_path / 'run'}", "train.tensorboard=false"])  # fmt: skip
    val = train(cfg, progress=False).summary["final_val"]
    assert val["mpjpe_abs_in_mm"] == pytest.approx(5.0, abs=1e-3)
    assert val["mpjpe_in_mm"] == pytest.approx(0.0, abs=1e-3)  # a translation: nothing once re-centred
