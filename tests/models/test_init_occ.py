import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from im2hands.config import load_config
from im2hands.geometry.frames import mirror_x
from im2hands.geometry.inside import inside_mesh
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.hands.layer import load_hand_models
from im2hands.models.attention import PreNormAttentionBlock
from im2hands.models.encoder import ImageEncoder
from im2hands.models.init_occ import InitOccNet, PartDecoder, Stage1Features
from im2hands.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    "configs/smoke/init_occ.yaml",
    "configs/init_occ.yaml",
    "configs/init_occ_cpu.yaml",
    "configs/init_occ_halo.yaml",
    "configs/init_occ_halo_cpu.yaml",
]
S = 64  # image side of the tiny models


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster, and immune to the synchronisation stalls that a
    busy machine inflicts on every parallel region (tests ran 30x slower under load with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hands():
    return load_hand_models()


def make_batch(hands, B: int = 2, N: int = 256, seed: int = 0) -> dict:
    """Two posed hands from the hand model, half uniform (in an 0.2 m box at the wrist) and half
    near-surface query points per hand, labelled with the exact inside test; camera frame."""
    g = torch.Generator().manual_seed(seed)
    kps, pts, occ = [], [], []
    for side, x in (("left", -0.07), ("right", 0.07)):
        pose = 0.3 * torch.randn(B, 48, generator=g)
        trans = torch.tensor([x, 0.0, 0.5]) + 0.02 * torch.randn(B, 3, generator=g)
        with torch.no_grad():
            out = hands[side](pose, 0.5 * torch.randn(B, 10, generator=g), trans)
        p = out.keypoints[:, :1] + 0.2 * (torch.rand(B, N, 3, generator=g) - 0.5)  # (B, N, 3)
        idx = torch.randint(0, out.vertices.shape[1], (B, N // 2), generator=g)
        surface = torch.gather(out.vertices, 1, idx[..., None].expand(-1, -1, 3))  # (B, N / 2, 3)
        p[:, N // 2 :] = surface + 0.005 * torch.randn(B, N // 2, 3, generator=g)
        kps.append(out.keypoints)
        pts.append(p)
        occ.append(inside_mesh(out.vertices, out.faces, p).float())
    return {
        "image": torch.rand(B, 3, S, S, generator=g),
        "keypoints": torch.stack(kps, 1),
        "keypoints_2d": S * torch.rand(B, 2, 21, 2, generator=g),
        "masks_amodal": torch.rand(B, 2, S, S, generator=g) > 0.7,
        "points": torch.stack(pts, 1),
        "occupancy": torch.stack(occ, 1),
        "hand_valid": torch.ones(B, 2, dtype=torch.bool),
    }


def tiny_model(use_image: bool = True, **kw) -> InitOccNet:
    enc = ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=8, image_size=S) if use_image else None
    args = dict(hidden=16, point_dim=4, patch_grid=2, heads=1) | kw
    return InitOccNet(encoder=enc, **args)


# ----------------------------------------------------------------------------- attention


def naive_context_attention(block: PreNormAttentionBlock, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """The original's formulation: one full self-attention sequence [x_n; ctx] per query n."""
    B, N, D = x.shape
    seq = torch.cat([x.reshape(B * N, 1, D), ctx.repeat_interleave(N, 0)], 1)  # (B N, 1 + P, D)
    return block(seq)[:, 0].view(B, N, D)


@pytest.mark.parametrize("dim, heads", [(19, 2), (8, 1), (32, 4)])
def test_context_attention_equals_full_sequence(dim, heads):
    block = PreNormAttentionBlock(dim=dim, heads=heads, dropout=0.1).eval()
    x, ctx = torch.randn(2, 50, dim), torch.randn(2, 16, dim)
    fast = block.attend_with_context(x, ctx)
    ref = naive_context_attention(block, x, ctx)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast, block.attend_with_context(x, torch.randn(2, 16, dim)), atol=1e-3)  # context matters


def test_context_attention_gradients_match():
    block = PreNormAttentionBlock(dim=19, heads=2).double()
    x = torch.randn(1, 7, 19, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(1, 5, 19, dtype=torch.float64, requires_grad=True)
    g_fast = torch.autograd.grad(block.attend_with_context(x, ctx).square().sum(), (x, ctx))
    g_ref = torch.autograd.grad(naive_context_attention(block, x, ctx).square().sum(), (x, ctx))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- part decoder


def naive_part_logits(dec: PartDecoder, points, to_canonical, codes, feature):
    """A loop over the parts, with explicit canonical coordinates and concatenations (float64)."""
    d = copy.deepcopy(dec).double()
    points, to_canonical, codes = points.double(), to_canonical.double(), codes.double()
    B, N, _ = points.shape
    outs = []
    for k in range(d.parts):
        R, t = to_canonical[:, k, :, :3], to_canonical[:, k, :, 3]
        x = points @ R.transpose(-1, -2) + t[:, None]  # (B, N, 3) canonical coordinates
        x = x * d.coord_scale
        h = F.leaky_relu(torch.cat([x, codes[:, k, None].expand(B, N, -1)], -1) @ d.w0[k] + d.b0[k], 0.1)
        h = h + F.leaky_relu(h @ d.w1[k] + d.b1[k], 0.1)
        h2 = h if feature is None else torch.cat([h, feature.double()], -1)
        h = h + F.leaky_relu(h2 @ d.w2[k] + d.b2[k], 0.1)
        h = h + F.leaky_relu(h @ d.w3[k] + d.b3[k], 0.1)
        outs.append(h @ d.w4[k] + d.b4[k])
    return torch.cat(outs, -1)  # (B, N, K)


def _part_decoder_case(feature_dim: int, coord_scale: float):
    """A random part decoder, its inputs (B = 2, N = 300) and the per-part loop's logits."""
    dec = PartDecoder(hidden=32, feature_dim=feature_dim, coord_scale=coord_scale)
    B, N = 2, 300
    points = 0.1 * torch.randn(B, N, 3)
    to_canonical = torch.randn(B, 16, 3, 4)
    codes = dec.part_codes(0.03 + 0.05 * torch.rand(B, 16), torch.randn(B, 16, 3)).detach()
    feature = torch.randn(B, N, feature_dim) if feature_dim else None
    return dec, points, to_canonical, codes, feature, naive_part_logits(dec, points, to_canonical, codes, feature).float()


@pytest.mark.parametrize("feature_dim, coord_scale", [(0, 1.0), (19, 1.0), (19, 10.0)])
def test_batched_parts_equal_per_part_loop(feature_dim, coord_scale):
    dec, points, to_canonical, codes, feature, ref = _part_decoder_case(feature_dim, coord_scale)
    train_path = dec(points, to_canonical, codes, feature, return_parts=True)  # autograd path
    with torch.no_grad():
        fast_path = dec(points, to_canonical, codes, feature, return_parts=True)  # inference path
        ws: dict = {}
        dec(points[:, :10], to_canonical, codes, None if feature is None else feature[:, :10], workspace=ws)
        reused = dec(points, to_canonical, codes, feature, workspace=ws)  # buffers of another size get replaced
    assert train_path.requires_grad and not fast_path.requires_grad
    torch.testing.assert_close(train_path, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_path, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reused, ref.amax(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dec(points, to_canonical, codes, feature), ref.amax(-1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("feature_dim", [0, 19])
def test_bf16_inference_path_close_to_per_part_loop(feature_dim):
    """Under bfloat16 autocast the inference path computes layers 1-4 in bfloat16 (its workspace
    says so) and stays within bfloat16 rounding of the float64 per-part loop."""
    torch.manual_seed(1)
    dec, points, to_canonical, codes, feature, ref = _part_decoder_case(feature_dim, 10.0)
    ws: dict = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = dec(points, to_canonical, codes, feature, return_parts=True, workspace=ws)
    assert low.dtype == torch.float32 and ws["h"].dtype == torch.bfloat16 and ws["p"].dtype == torch.float32
    scale = ref.abs().max().item()
    err = (low - ref).abs().max().item()
    assert 0 < err < 0.03 * scale  # not float32 (err > 0), within bfloat16's rounding
    with torch.no_grad():  # autocast off again: float32 buffers replace the bfloat16 ones
        torch.testing.assert_close(dec(points, to_canonical, codes, feature, return_parts=True, workspace=ws), ref, rtol=1e-4, atol=1e-4)
    assert ws["h"].dtype == torch.float32


def test_part_codes_layout():
    dec = PartDecoder()
    lengths, trans = torch.rand(3, 16), torch.randn(3, 16, 3)
    codes = dec.part_codes(lengths, trans)
    assert codes.shape == (3, 16, 25) == (3, 16, dec.code_dim)
    torch.testing.assert_close(codes[..., 0], lengths)
    torch.testing.assert_close(codes[:, 0, 1:17], dec.length_mlp(lengths))
    pose_k3 = trans.reshape(3, 48) @ dec.pose_weight[3] + dec.pose_bias[3]  # part 3's own Linear(48 -> 8)
    torch.testing.assert_close(codes[:, 3, 17:], pose_k3)


# ----------------------------------------------------------------------------- model


def test_registered_and_interface():
    assert MODELS.get("init_occ") is InitOccNet
    assert (InitOccNet.stage, InitOccNet.val_metric, InitOccNet.val_mode) == ("init_occ", "iou", "max")
    m = tiny_model()
    assert m.decoders[LEFT] is not m.decoders[RIGHT]
    assert not torch.equal(m.decoders[LEFT].w1, m.decoders[RIGHT].w1)  # separate weights per hand


def test_decode_shapes_range_and_chunking(hands):
    m = tiny_model().eval()
    batch = make_batch(hands, B=2, N=100)
    with torch.no_grad():
        f = m.encode(batch)
        assert isinstance(f, Stage1Features)
        assert f.to_canonical.shape == (2, 2, 16, 3, 4) and f.part_codes.shape == (2, 2, 16, 25)
        assert f.image_tokens.shape == (2, 2, 4, 7)
        occ = m.decode(batch["points"], f)
        m.decode_chunk = 30  # 15 points per sample per chunk
        chunked = m.decode(batch["points"], f)
    assert occ.shape == (2, 2, 100) and occ.dtype == torch.float32
    assert occ.min() >= 0 and occ.max() <= 1
    torch.testing.assert_close(chunked, occ)
    out = m(batch)  # autograd path
    torch.testing.assert_close(out["occupancy"], occ, rtol=1e-5, atol=1e-5)
    assert out["heatmaps"].shape == (2, 42, 16, 16) and out["masks"].shape == (2, 8, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 2, N, 3\)"):
        m.decode(batch["points"][:, 0], f)
    with pytest.raises(ValueError, match=r"\(B, 2, 21, 3\)"):
        m.encode({"keypoints": batch["keypoints"][:, 0], "image": batch["image"]})


def test_decoding_follows_the_hand(hands):
    """A rigid motion of keypoints and points together leaves the keypoint-only occupancy unchanged."""
    m = tiny_model(use_image=False).eval()
    batch = make_batch(hands, B=1, N=64)
    occ = m.decode(batch["points"], m.encode(batch))
    angle = torch.tensor(0.7)
    c, s = torch.cos(angle), torch.sin(angle)
    R = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    moved = {"keypoints": batch["keypoints"] @ R.T + 0.1, "points": batch["points"] @ R.T + 0.1}
    torch.testing.assert_close(m.decode(moved["points"], m.encode(moved)), occ, rtol=1e-4, atol=1e-4)


def test_left_decoder_on_mirrored_hand_equals_right_decoder(hands):
    m = tiny_model(use_image=False).eval()
    m.decoders[LEFT].load_state_dict(m.decoders[RIGHT].state_dict())
    batch = make_batch(hands, B=2, N=128)
    right_kp, right_pts = batch["keypoints"][:, RIGHT], batch["points"][:, RIGHT]
    mirrored = {
        "keypoints": torch.stack([mirror_x(right_kp), right_kp], 1),  # the left hand is the right one mirrored
        "points": torch.stack([mirror_x(right_pts), right_pts], 1),
    }
    with torch.no_grad():
        occ = m.decode(mirrored["points"], m.encode(mirrored))
    torch.testing.assert_close(occ[:, LEFT], occ[:, RIGHT], rtol=1e-5, atol=1e-5)
    # and with the original (different) left weights the two hands differ
    fresh = tiny_model(use_image=False).eval()
    with torch.no_grad():
        occ2 = fresh.decode(mirrored["points"], fresh.encode(mirrored))
    assert (occ2[:, LEFT] - occ2[:, RIGHT]).abs().max() > 1e-3


def test_gradients_reach_every_parameter(hands):
    m = tiny_model(aux_weight=1.0).train()
    batch = make_batch(hands, B=2, N=64)
    losses = m.compute_loss(batch, m(batch))
    assert {"loss", "mse_left", "mse_right", "aux_heatmap", "aux_mask"} <= set(losses)
    losses["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_loss_and_metrics_values(hands):
    m = tiny_model(use_image=False)
    batch = make_batch(hands, B=2, N=64)
    gt = batch["occupancy"]
    out = {"occupancy": 0.25 * torch.ones_like(gt), "logits": torch.zeros_like(gt)}
    losses = m.compute_loss(batch, out)
    mse = ((0.25 - gt) ** 2).mean((0, 2))  # (2,)
    torch.testing.assert_close(losses["mse_left"], mse[LEFT])
    torch.testing.assert_close(losses["loss"], mse.sum())
    perfect = m.metrics(batch, {"occupancy": gt.clone()})
    assert perfect == {"iou": 1.0, "iou_left": 1.0, "iou_right": 1.0}
    half = gt.clone()
    half[:, RIGHT] = 1.0  # everything predicted inside for the right hand
    iou_r = (gt[:, RIGHT].sum(-1) / gt.shape[-1]).mean().item()
    got = m.metrics(batch, {"occupancy": half})
    assert got["iou_left"] == 1.0 and math.isclose(got["iou_right"], iou_r, rel_tol=1e-6)
    assert math.isclose(got["iou"], (1.0 + iou_r) / 2, rel_tol=1e-6)
    bce = tiny_model(use_image=False, loss="bce")
    l_bce = bce.compute_loss(batch, out)
    torch.testing.assert_close(l_bce["loss"], 2 * torch.tensor(math.log(2.0)))
    with pytest.raises(ValueError, match="loss"):
        tiny_model(loss="l1")


def test_invalid_hands_are_excluded(hands):
    m = tiny_model(aux_weight=0.5).train()
    batch = make_batch(hands, B=2, N=64)
    bad = {k: v.clone() for k, v in batch.items()}
    bad["hand_valid"][0, LEFT] = False
    bad["keypoints"][0, LEFT] = float("nan")  # an absent hand's keypoints can be anything
    bad["occupancy"][0, LEFT] = 1.0 - batch["occupancy"][0, LEFT]
    out = m(bad)
    losses = m.compute_loss(bad, out)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    occ, gt = out["occupancy"].detach(), batch["occupancy"]
    expected_left = ((occ[1, LEFT] - gt[1, LEFT]) ** 2).mean()  # only sample 1's left hand counts
    torch.testing.assert_close(losses["mse_left"], expected_left)
    metrics = m.metrics(bad, out)
    pred, true = occ[1, LEFT] >= 0.5, gt[1, LEFT] >= 0.5
    iou_left = ((pred & true).sum() / (pred | true).sum()).item()  # only sample 1's left hand counts
    assert math.isclose(metrics["iou_left"], iou_left, rel_tol=1e-6)
    bad["hand_valid"][:, LEFT] = False
    assert math.isnan(m.metrics(bad, out)["iou_left"]) and not math.isnan(m.metrics(bad, out)["iou"])


@pytest.mark.slow
@pytest.mark.parametrize("use_image", [False, True])
def test_overfits_one_batch(hands, use_image):
    """60 Adam steps on one batch of hand-model occupancy: the loss halves and beats the best
    constant prediction (the inside fraction), so the network learns the hands' shape."""
    torch.manual_seed(0)
    m = tiny_model(use_image=use_image, hidden=32, dropout=0.0).train()
    batch = make_batch(hands, B=2, N=512, seed=3)
    gt = batch["occupancy"]
    constant = ((gt - gt.mean((0, 2), keepdim=True)) ** 2).mean((0, 2)).sum().item()  # MSE of the best constant
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = m.compute_loss(batch, m(batch))["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        final = m.compute_loss(batch, m(batch))["loss"].item()
    assert final < 0.5 * first and final < 0.85 * constant


def test_bf16_autocast_runs_close_to_float32(hands):
    m = tiny_model().eval()
    batch = make_batch(hands, B=1, N=64)
    with torch.no_grad():
        ref = m(batch)["occupancy"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = m.encode(batch)
            low = m(batch)["occupancy"]
            low_decode = m.decode(batch["points"], f)
    assert f.to_canonical.dtype == torch.float32  # canonicalisation stays in full precision
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.05 and (low_decode - ref).abs().max() < 0.05


@pytest.mark.gpu
def test_cuda_bf16(hands):
    m = tiny_model().cuda().eval()
    batch = {k: v.cuda() for k, v in make_batch(hands, B=1, N=64).items()}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        occ = m.decode(batch["points"], m.encode(batch))
    assert occ.device.type == "cuda" and torch.isfinite(occ).all()


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS)
def test_from_config(path, hands):
    cfg = load_config(REPO / path)
    model = MODELS.get(cfg.model.type).from_config(cfg)
    assert isinstance(model, InitOccNet)
    assert model.use_image == cfg.model.init_occ.use_image == (model.encoder is not None)
    if model.encoder is not None:
        assert model.encoder.depth == cfg.model.encoder.depth
        assert model.image_attention[LEFT].token_dim == 3 + cfg.model.init_occ.point_dim
    assert model.decoders[RIGHT].hidden == cfg.model.init_occ.hidden
    if "smoke" in path:
        batch = make_batch(hands, B=2, N=32)
        losses = model.compute_loss(batch, model(batch))
        assert torch.isfinite(losses["loss"])


def test_original_sizes():
    cfg = load_config(REPO / "configs/init_occ.yaml")
    model = InitOccNet.from_config(cfg)
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert n(model.decoders[LEFT]) == 257_480  # reference 2.1: 257,480 per hand
    assert n(model.image_attention[LEFT].point_mlp) == 656
    assert model.encoder.stage_channels == (256, 512, 1024, 2048)
    assert model.image_attention[LEFT].token_dim == 19


# ----------------------------------------------------------------------------- initialisation


def test_keypoint_only_decoders_initialise_an_image_model(hands, tmp_path):
    """init_decoders: the image model starts with the keypoint-only model's occupancy (the image
    feature's rows of layer 2 are zero), both hands; a fresh training run applies it, rebuilding
    from the checkpoint does not need the source run."""
    from im2hands.engine.checkpoint import save_checkpoint

    torch.manual_seed(1)
    cfg_halo = load_config(REPO / "configs/smoke/init_occ.yaml", ["model.init_occ.use_image=false"])
    halo = InitOccNet.from_config(cfg_halo).eval()
    save_checkpoint(tmp_path / "last.pt", model=halo, optimizer=None, scheduler=None, cfg=cfg_halo,
                    state={"step": 1}, rng=[])  # fmt: skip
    cfg = load_config(REPO / "configs/smoke/init_occ.yaml", [f"model.init_occ.init_decoders={tmp_path}"])
    model = InitOccNet.from_config(cfg).eval()
    batch = make_batch(hands, B=2, N=64)
    with torch.no_grad():
        before = model(batch)["logits"]
        assert model.initialize_from_config(cfg) == [f"part decoders (both hands) from {tmp_path}"]
        after, reference = model(batch)["logits"], halo(batch)["logits"]
    assert not torch.allclose(before, reference, atol=1e-3)
    torch.testing.assert_close(after, reference, atol=1e-5, rtol=1e-5)
    H = model.decoders[LEFT].hidden
    for h in (LEFT, RIGHT):
        assert model.decoders[h].w2[:, H:].abs().max() == 0
        assert torch.equal(model.decoders[h].w1, halo.decoders[h].w1)


def test_decoder_load_from_feature_rows_and_mismatch():
    src, dst = PartDecoder(hidden=16, feature_dim=7), PartDecoder(hidden=16, feature_dim=7)
    dst.load_from(src)
    for (name, a), b in zip(dst.named_parameters(), src.parameters()):
        assert torch.equal(a, b), name
    plain = PartDecoder(hidden=16)
    plain.load_from(src)  # the feature rows are dropped
    torch.testing.assert_close(plain.w2, src.w2[:, :16])
    scaled = PartDecoder(hidden=16, feature_dim=7, coord_scale=4.0)
    scaled.load_from(src)  # the same function with 4x larger coordinates: layer 0's rows / 4
    B, N = 2, 50
    points, to_canonical = 0.1 * torch.randn(B, N, 3), torch.randn(B, 16, 3, 4)
    codes, feature = torch.randn(B, 16, src.code_dim), torch.randn(B, N, 7)
    with torch.no_grad():
        torch.testing.assert_close(scaled(points, to_canonical, codes, feature), src(points, to_canonical, codes, feature),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="hidden"):
        PartDecoder(hidden=8).load_from(src)
    with pytest.raises(ValueError, match="feature widths"):
        PartDecoder(hidden=16, feature_dim=5).load_from(src)


def test_init_decoders_missing_run_names_the_path(tmp_path):
    from im2hands.utils.errors import Im2HandsError

    cfg = load_config(REPO / "configs/smoke/init_occ.yaml", [f"model.init_occ.init_decoders={tmp_path / 'nope'}"])
    model = InitOccNet.from_config(cfg)  # building does not read it
    with pytest.raises(Im2HandsError, match="nope"):
        model.initialize_from_config(cfg)
