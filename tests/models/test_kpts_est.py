"""The keypoint estimator (kpts_est): outputs, losses per iteration, soft-argmax, overfitting,
configs, training through the one trainer, and `im2hands extract` from images alone."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from im2hands.config.schema import SynthConfig
from im2hands.cli import main
from im2hands.config import load_config
from im2hands.data.dataset import HandsDataset
from im2hands.data.synthetic import synthesize
from im2hands.engine.builders import build_batch_transform, build_model
from im2hands.engine.checkpoint import save_checkpoint
from im2hands.engine.weights import shipped_path
from im2hands.extraction.run import extract_folder
from im2hands.geometry.frames import project
from im2hands.extraction.keypoints import KeypointPipeline
from im2hands.models.encoder import ImageEncoder
from im2hands.models.outputs import EstimatorOutputs
from im2hands.models.kpts_est import KptsEstModel, border_weights
from im2hands.models.kpts_est_heads import heatmap_kl, sample_at, soft_argmax, splat
from im2hands.registry import MODELS
from im2hands.utils.errors import Im2HandsError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["configs/kpts_est.yaml", "configs/kpts_est_cpu.yaml", "configs/smoke/kpts_est.yaml"]
SMOKE = REPO / "configs/smoke/kpts_est.yaml"
S = 64


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("kpts_est_synth")
    synthesize(root, 2, 3, workers=1, settings=SynthConfig(image_size=64), progress=False)
    return root


def _smoke() -> KptsEstModel:
    """The smoke config's estimator (``configs/smoke/kpts_est.yaml``), built from keyword arguments
    (its augmentation is the trainer's batch transform, not part of the model)."""
    encoder = ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=4, image_size=S)
    weights = {"2d": 0.1, "heatmap": 1.0, "3d": 0.1, "rel": 0.02, "mask": 1.0, "presence": 0.1}
    return KptsEstModel(
        encoder=encoder, feature_dim=8, dim=16, iterations=2, graph_layers=1, graph_order=2, attention_layers=1,
        heads=2, mlp_ratio=2.0, dropout=0.0, conv_blocks=1, splat_sigma=1.5, heatmap_sigma=1.0, loss_weights=weights,
        presence_threshold=0.5, default_focal_factor=1.2, passes=1, prior_weight=4.0,
    )  # fmt: skip


def test_keyword_built_smoke_model_is_the_smoke_config():
    from_yaml = build_model(load_config(SMOKE))
    built = _smoke()
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in from_yaml.state_dict().items()}
    for name in ("loss_weights", "presence_threshold", "default_focal_factor", "passes", "prior_weight", "heatmap_sigma"):
        assert getattr(built, name) == getattr(from_yaml, name), name


def _random_batch(B: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    kp = 0.03 * torch.randn(B, 2, 21, 3, generator=g)
    kp[:, 0, :, 0] -= 0.04
    kp[:, 1, :, 0] += 0.04
    kp[..., 2] += 0.5
    K = torch.tensor([[120.0, 0, S / 2], [0, 120.0, S / 2], [0, 0, 1]]).expand(B, 3, 3).clone()
    return {
        "image": torch.rand(B, 3, S, S, generator=g), "K": K, "keypoints": kp,
        "keypoints_2d": project(kp.view(B, 42, 3), K).view(B, 2, 21, 2),
        "masks_amodal": torch.rand(B, 2, S, S, generator=g) > 0.7, "masks_visible": torch.rand(B, 2, S, S, generator=g) > 0.8,
        "hand_valid": torch.ones(B, 2, dtype=torch.bool),
    }  # fmt: skip


def _dataset_batch(root) -> dict:
    ds = HandsDataset(root, "all", fields=("image", "masks"))
    return torch.utils.data.default_collate([ds[i] for i in range(len(ds))])


# --------------------------------------------------------------------------- building blocks


def test_soft_argmax_matches_argmax_on_a_peaked_heatmap():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 21, 16, 16, generator=g)
    flat = logits.flatten(-2)
    idx = torch.randint(0, 256, (3, 21), generator=g)
    flat.scatter_(-1, idx[..., None], 60.0)  # one dominant cell per map
    logits = flat.view(3, 21, 16, 16)
    naive = torch.stack([idx % 16, idx // 16], -1).float() + 0.5  # the argmax cell's centre
    assert torch.allclose(soft_argmax(logits), naive, atol=1e-4)
    two = torch.full((1, 4, 4), -50.0)
    two[0, 1, 1] = two[0, 1, 2] = 10.0  # two equal peaks: the midpoint, below a cell
    assert torch.allclose(soft_argmax(two), torch.tensor([[2.0, 1.5]]), atol=1e-4)


def test_heatmap_kl_sampling_and_splat():
    target = torch.tensor([[5.3, 7.8]])
    c = torch.stack(torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="xy"), -1)  # (16, 16, 2)
    logits = (-0.5 * (c - target[0]).square().sum(-1) / 1.5**2)[None]
    assert heatmap_kl(logits, target, 1.5).abs().max() < 1e-5  # the target distribution itself
    assert heatmap_kl(logits, target + 3.0, 1.5) > 1.0
    maps = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)  # value = column index
    assert torch.allclose(sample_at(maps, torch.tensor([[[3.5, 2.0], [10.0, 9.0]]]))[0, :, 0], torch.tensor([3.0, 9.5]))
    f = splat(torch.ones(1, 1, 2), torch.tensor([[[4.5, 6.5]]]), (16, 16), 1.0)  # (1, 2, 16, 16)
    assert f.shape == (1, 2, 16, 16) and f[0, 0].argmax() == 6 * 16 + 4 and abs(float(f[0, 0, 6, 4]) - 1.0) < 1e-6
    uv = torch.tensor([[1.0, 1.0], [32.0, 10.0], [63.5, 5.0]])
    assert border_weights(uv, (64, 64), 3.0).tolist() == [0.0, 1.0, 0.0]


# --------------------------------------------------------------------------- the model


def test_registered_and_output_shapes():
    assert MODELS.get("kpts_est") is KptsEstModel
    model = _smoke()
    T = model.num_iterations
    batch = _random_batch()
    augment = build_batch_transform(load_config(SMOKE))  # the trainer's: augmented targets in training
    assert augment(batch, training=False) is batch
    augmented = augment(batch, training=True)
    assert not torch.equal(augmented["keypoints_2d"], batch["keypoints_2d"]) and "presence" in augmented
    model.train()
    out = model(augmented)
    h = S // 4
    assert isinstance(out, EstimatorOutputs) and len(out.iterations) == T + 1
    final = {"keypoints_2d": (2, 2, 21, 2), "keypoints_3d": (2, 2, 21, 3), "presence_logits": (2, 2),
             "rel_translation": (2, 3), "masks_amodal_logits": (2, 2, h, h), "masks_visible_logits": (2, 2, h, h)}
    per_iteration = dict(final, heatmaps=(2, 2, 21, h, h))
    for key, shape in final.items():
        assert tuple(getattr(out, key).shape) == shape, key
        assert getattr(out, key) is getattr(out.iterations[T], key)  # the final iteration's
    for t, it in enumerate(out.iterations):
        for key, shape in per_iteration.items():
            if t == 0 and key in ("keypoints_3d", "presence_logits", "rel_translation"):
                assert getattr(it, key) is None, key  # the encoder's heads predict no 3D
            else:
                assert tuple(getattr(it, key).shape) == shape, (t, key)
    assert (out.keypoints_3d[:, :, 0] == 0).all()  # wrist-relative
    assert out.keypoints is None and out.wrist is None  # no placement in training
    model.eval()
    with torch.no_grad():
        ev = model({"image": batch["image"], "K": batch["K"]})
    assert ev.keypoints.shape == (2, 2, 21, 3) and ev.wrist.shape == (2, 2, 3)
    assert ((ev.keypoints_2d >= 0) & (ev.keypoints_2d <= S)).all()  # input pixels


def test_gradients_reach_every_head_and_every_iteration_is_supervised():
    model = _smoke()
    model.train()
    batch = _random_batch(seed=1)
    out = model(batch)
    losses = model.compute_loss(batch, out)
    T = model.num_iterations
    for t in range(T + 1):
        assert {f"loss_2d_it{t}", f"loss_heatmap_it{t}", f"loss_mask_it{t}"} <= set(losses)
    for t in range(1, T + 1):
        assert {f"loss_3d_it{t}", f"loss_rel_it{t}", f"loss_presence_it{t}"} <= set(losses)
        grads = torch.autograd.grad(
            losses["loss"], [out.iterations[t].keypoints_3d, out.iterations[t].keypoints_2d, out.iterations[t].rel_translation,
                             out.iterations[t].presence_logits, out.iterations[t].masks_visible_logits], retain_graph=True,
        )  # fmt: skip
        assert all(float(g.abs().sum()) > 0 for g in grads), t
    assert "loss_3d_it0" not in losses and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing
    for it in model.iterations:
        for head in (it.head_3d[0][-1], it.head_3d[1][-1], it.head_presence[-1], it.head_rel[-1], it.heatmap[0],
                     it.heatmap[1], it.mask, it.back):  # fmt: skip
            assert head.weight.grad.abs().sum() > 0
    assert model.visible0.weight.grad.abs().sum() > 0 and model.encoder.heatmap_head.out.weight.grad.abs().sum() > 0
    assert not model.encoder.query_conv.weight.requires_grad


def test_metrics_keys_and_values():
    model = _smoke().eval()
    batch = _random_batch(seed=2)
    with torch.no_grad():
        out = model(batch)
    m = model.metrics(batch, out)
    keys = {"mpjpe_wrist_mm", "mpjpe_mcp_mm", "err_2d_px", "mrrpe_mm", "mrrpe_placed_mm", "wrist_abs_mm",
            "mask_iou_amodal", "mask_iou_visible", "presence_acc", "mpjpe_wrist_mm_it1", "err_2d_px_it0"}  # fmt: skip
    assert keys <= set(m) and model.val_metric in m
    last = dataclasses.replace(out.iterations[-1], keypoints_3d=batch["keypoints"] - batch["keypoints"][:, :, :1],
                               keypoints_2d=batch["keypoints_2d"], presence_logits=torch.full((2, 2), 5.0),
                               rel_translation=batch["keypoints"][:, 0, 0] - batch["keypoints"][:, 1, 0])  # fmt: skip
    perfect = dataclasses.replace(out, iterations=[*out.iterations[:-1], last])
    pm = model.metrics(batch, perfect)
    assert pm["mpjpe_wrist_mm"] < 1e-4 and pm["mpjpe_mcp_mm"] < 1e-4 and pm["err_2d_px"] < 1e-4
    assert pm["presence_acc"] == 1.0
    placed = model.place(perfect, batch["K"], (S, S))  # perfect inputs -> exact absolute keypoints
    assert (placed.keypoints - batch["keypoints"]).abs().max() < 1e-4


@pytest.fixture(scope="module")
def overfit(synth):
    """The smoke estimator fitted to the two synthetic samples (80 Adam steps, no augmentation):
    (model in eval mode, errors before, errors after) with errors = (2D px, MPJPE mm)."""
    torch.manual_seed(0)
    model = _smoke()
    batch = _dataset_batch(synth)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)

    def errors():
        model.eval()
        with torch.no_grad():
            m = model.metrics(batch, model(batch))
        model.train()
        return m["err_2d_px"], m["mpjpe_wrist_mm"]

    before = errors()
    for _ in range(80):
        loss = model.compute_loss(batch, model(batch))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = errors()
    return model.eval(), before, after


@pytest.mark.slow
def test_tiny_overfit_lowers_2d_and_3d_errors(overfit):
    _, (e2_0, e3_0), (e2_1, e3_1) = overfit
    assert e2_1 < 0.4 * e2_0 and e3_1 < 0.3 * e3_0, (e2_0, e2_1, e3_0, e3_1)


@pytest.mark.parametrize("path", CONFIGS)
def test_builds_from_each_config(path):
    cfg = load_config(REPO / path)
    assert cfg.model.type == "kpts_est"
    model = build_model(cfg)
    assert isinstance(model, KptsEstModel) and model.num_iterations == cfg.model.kpts_est.iterations
    assert build_batch_transform(cfg) is not None and model.encoder.depth == cfg.model.encoder.depth


def test_trains_with_the_one_trainer(synth, tmp_path):
    from im2hands.engine.trainer import train

    cfg = load_config(SMOKE, [f"data.root={synth}", "data.split=all", "train.val_split=all",
                              f"train.out_dir={tmp_path / 'run'}", "train.tensorboard=false"])  # fmt: skip
    result = train(cfg, progress=False)
    assert result.summary["steps"] == 2 and (tmp_path / "run" / "last.pt").is_file()
    assert "mpjpe_wrist_mm" in result.summary["final_val"]


# --------------------------------------------------------------------------- extraction from images


@pytest.fixture(scope="module")
def runs(tmp_path_factory, overfit):
    """Smoke checkpoints: the overfitted estimator, untrained stage 1 and stage 3."""
    root = tmp_path_factory.mktemp("kpts_est_runs")
    est_cfg = load_config(SMOKE, ["model.kpts_est.augment=false"])
    save_checkpoint(root / "est" / "last.pt", model=overfit[0], optimizer=None, scheduler=None, cfg=est_cfg,
                    state={"step": 0}, rng=[])  # fmt: skip
    for name, path in (("occ", "configs/smoke/init_occ.yaml"), ("ref", "configs/smoke/kpts_ref.yaml")):
        cfg = load_config(REPO / path)
        save_checkpoint(root / name / "last.pt", model=build_model(cfg), optimizer=None, scheduler=None, cfg=cfg,
                        state={"step": 0}, rng=[])  # fmt: skip
    return root


def _images(synth, folder: Path) -> Path:
    folder.mkdir()
    for p in sorted((synth / "images").glob("*.png")):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


@pytest.mark.slow
def test_extract_from_images_alone(synth, runs, tmp_path):
    images = _images(synth, tmp_path / "img")
    out = tmp_path / "out"
    summary = extract_folder(out, model=runs / "occ", images=images, estimator=runs / "est", resolution=8,
                             upsampling_steps=1, progress=False)  # fmt: skip
    assert summary["finished"] and summary["totals"]["processed"] == 3
    assert summary["settings"]["inputs"]["keypoints"] == "auto"
    items = {r["name"]: r for r in summary["items"]}
    assert items["broken"]["status"] == "failed" and "unreadable image" in items["broken"]["message"]
    for name in ("0000000", "0000001"):  # untrained stage 1: meshes or a recorded failure, never a crash
        r = items[name]
        assert r["status"] in ("ok", "failed")
        assert set(r["hands"]) == {"left", "right"}, r["message"]  # the estimated hands reached stage 1
        assert r["status"] == "failed" or (out / f"{name}.png").exists()
    # `--keypoints auto` through the CLI, on the dataset split (its cameras), with stage 3
    code = main(["extract", "--model", str(runs / "occ"), "--dataset", str(synth), "--split", "all", "--keypoints",
                 "auto", "--estimator", str(runs / "est"), "--refiner", str(runs / "ref"), "--out", str(tmp_path / "o2"),
                 "--resolution", "8", "--upsampling-steps", "1", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code in (0, 1)
    s2 = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert s2["finished"] and s2["totals"]["processed"] == 2 and s2["settings"]["refiner"] == str(runs / "ref")
    assert s2["settings"]["inputs"]["keypoints"] == "auto"
    assert all(set(r["hands"]) == {"left", "right"} for r in s2["items"]), [r["message"] for r in s2["items"]]


@pytest.mark.slow
def test_extract_estimation_errors(synth, runs, tmp_path, capsys):
    images = _images(synth, tmp_path / "img")
    # no --estimator: the per-hand crop pipeline (the shipped fine-tuned crop network), no refiner; the shipped
    # whole-image estimator by path, with the shipped refiner when asked ('none' turns it off)
    s = extract_folder(tmp_path / "d", model=runs / "occ", images=images, resolution=8, upsampling_steps=1,
                       limit=1, progress=False)  # fmt: skip
    assert s["settings"]["estimator"] == str(shipped_path("crop_net")) and s["settings"]["refiner"] is None
    s = extract_folder(tmp_path / "d2", model=runs / "occ", images=images, estimator=shipped_path("estimator"),
                       refiner=shipped_path("refiner"), resolution=8, upsampling_steps=1, limit=1, progress=False)
    assert s["settings"]["estimator"] == str(shipped_path("estimator"))
    assert s["settings"]["refiner"] == str(shipped_path("refiner"))
    s = extract_folder(tmp_path / "e", model=runs / "occ", images=images, estimator=shipped_path("estimator"),
                       refiner="none", resolution=8, upsampling_steps=1, limit=1, progress=False)  # fmt: skip
    assert s["settings"]["estimator"] == str(shipped_path("estimator")) and s["settings"]["refiner"] is None
    assert main(["extract", "--model", str(runs / "occ"), "--keypoints", "auto", "--out", str(tmp_path / "o")]) == 2
    assert "--images DIR or --dataset DIR" in capsys.readouterr().err
    with pytest.raises(Im2HandsError, match="neither a keypoint estimator"):
        extract_folder(tmp_path / "o", model=runs / "occ", images=images, estimator=runs / "occ", progress=False)


@pytest.mark.slow
def test_pipeline_on_images_of_any_size(runs):
    from im2hands.engine.checkpoint import load_model

    est, _ = load_model(runs / "est")
    image = (np.random.default_rng(0).random((90, 150, 3)) * 255).astype(np.uint8)
    for passes in (1, 2):
        r = KeypointPipeline(est, passes=passes, focal=300.0)(image)
        assert r.K[0, 0] == 300.0 and np.allclose(r.K[:2, 2], [75.0, 45.0])
        assert r.keypoints.shape == (2, 21, 3) and r.keypoints_2d.shape == (2, 21, 2)
        assert set(r.joints) == {"left", "right"} and np.isfinite(r.keypoints).all()
    r = KeypointPipeline(est, passes=1)(image)  # default focal: 1.2 x the longer side
    assert r.K[0, 0] == pytest.approx(1.2 * 150)
