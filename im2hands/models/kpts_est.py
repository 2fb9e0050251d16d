"""Both hands' keypoints from one RGB image (``kpts_est``): DIR's decoupled iterative refinement
with HDR's amodal and visible hand masks, plus absolute placement by perspective fitting.

Network (``docs/estimator.md``):

- **Encoder** (:class:`~im2hands.models.encoder.ImageEncoder`): ResNet stages and two upsampling
  heads at ``S/4``. Its heatmap head gives the iteration-0 heatmaps (21 per hand), its mask head
  the iteration-0 **amodal** masks (channels 0, 1), and a 1x1 conv on the mask head's features
  the iteration-0 **visible** masks: four mask heads as in HDR.
- **Visual map**: a 1x1 conv (BN, ReLU) over ``[layer1, heatmap features, mask features]``,
  ``feature_dim`` channels at ``S/4``; the first iteration starts both hands from it.
- **Iterations** (``iterations``, default 3; :class:`~im2hands.models.kpts_est_heads.RefineIteration`):
  soft-argmax joints -> joint features sampled from each hand's own map -> intra-hand graph
  convolution and inter-hand attention -> 3D joints, presence, relative translation -> joint
  features splatted back onto each hand's own map, 2D convolutions -> new heatmaps and masks.

Outputs (``forward``): an :class:`~im2hands.models.outputs.EstimatorOutputs`, per hand
``LEFT = 0``, ``RIGHT = 1``; one :class:`~im2hands.models.outputs.EstimatorIteration` per
iteration ``t = 0..T`` (heatmap logits (B, 2, 21, S/4, S/4), 2D joints in input pixels
(soft-argmax x stride), amodal and visible mask logits (B, 2, S/4, S/4); for ``t >= 1`` also 3D
joints relative to the wrist (camera orientation, metres), presence logits (B, 2) and the
relative translation (B, 3), left wrist minus right wrist); the final iteration's values as
properties (``out.keypoints_2d``, ...); in eval mode with ``batch["K"]``: ``keypoints``
(B, 2, 21, 3) absolute camera-frame keypoints and ``wrist`` (B, 2, 3) from
:func:`~im2hands.geometry.placement.place_hands`.

Losses, each iteration supervised (averaged over iterations): 2D (Euclidean, pixels, joints
inside the image), heatmap (KL to a Gaussian around the true joint), 3D (Euclidean, mm, wrist
aligned), relative translation (mm), masks (BCE, amodal + visible), presence (BCE). Targets come
from the batch; in training the trainer augments batches before ``forward``
(:class:`~im2hands.data.transforms.AugmentBatch`, built from ``model.kpts_est.aug_*``), so
``compute_loss`` sees the augmented targets.

:class:`~im2hands.extraction.keypoints.KeypointPipeline` runs the model (through
:meth:`KptsEstModel.estimate`) on whole images of any size.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from im2hands.geometry.frames import m_to_mm
from im2hands.geometry.placement import DEFAULT_FOCAL_FACTOR, DEFAULT_PRIOR_WEIGHT, place_hands
from im2hands.hands.constants import LEFT, NUM_KEYPOINTS, RIGHT
from im2hands.models.base import KeypointEstimate, KeypointEstimator
from im2hands.models.encoder import ImageEncoder
from im2hands.models.kpts_est_heads import RefineIteration, heatmap_kl, soft_argmax
from im2hands.models.measures import masked_mean, mpjpe_mcp_scaled, mpjpe_wrist
from im2hands.models.outputs import EstimatorIteration, EstimatorOutputs
from im2hands.registry import MODELS
from im2hands.typing import Float, Tensor
from im2hands.utils.batch import presence_from_batch

__all__ = ["KptsEstModel", "border_weights"]

_TARGETS = ("keypoints_2d", "keypoints", "masks_amodal", "masks_visible", "presence")


def border_weights(uv: Float[Tensor, "... 2"], size: tuple[int, int], margin: float) -> Float[Tensor, "..."]:
    """1 for 2D keypoints at least ``margin`` pixels inside an image of ``size = (H, W)``, else 0
    (soft-argmax keeps joints outside the image on its border; they should not pull the placement)."""
    H, W = size
    u, v = uv[..., 0], uv[..., 1]
    ok = (u > margin) & (u < W - margin) & (v > margin) & (v < H - margin)
    return ok.to(uv.dtype)


@MODELS.register("kpts_est")
class KptsEstModel(KeypointEstimator):
    """The keypoint estimator behind the :class:`HandsModel` interface (module docstring).

    Args:
        encoder: the image encoder.
        feature_dim: channels ``C`` of the per-hand visual maps.
        dim: joint-feature width.
        iterations: refinement iterations ``T`` (each supervised).
        graph_layers, graph_order, attention_layers, heads, mlp_ratio, dropout, conv_blocks,
            splat_sigma: see :class:`~im2hands.models.kpts_est_heads.RefineIteration`.
        heatmap_sigma: Gaussian radius of the heatmap target, map cells.
        loss_weights: weights of ``2d``, ``heatmap``, ``3d``, ``rel``, ``mask``, ``presence``.
        presence_threshold: probability above which a hand counts as present.
        default_focal_factor: focal length for plain images, times the longer side.
        passes: image passes of :class:`~im2hands.extraction.keypoints.KeypointPipeline` (1, or 2: again on a crop around the
            joints found).
        prior_weight: weight of the predicted relative translation in the placement.
        freeze_encoder: keep the encoder's weights and BatchNorm statistics fixed.
    """

    stage = "kpts_est"
    val_metric = "mpjpe_wrist_mm"
    val_mode = "min"
    data_fields = ("image", "masks")
    """Dataset fields to load (cameras and keypoints always come)."""

    LOSS_KEYS = ("2d", "heatmap", "3d", "rel", "mask", "presence")

    def __init__(
        self,
        *,
        encoder: ImageEncoder,
        feature_dim: int = 64,
        dim: int = 128,
        iterations: int = 3,
        graph_layers: int = 2,
        graph_order: int = 2,
        attention_layers: int = 1,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        conv_blocks: int = 1,
        splat_sigma: float = 1.5,
        heatmap_sigma: float = 1.0,
        loss_weights: Optional[dict[str, float]] = None,
        presence_threshold: float = 0.5,
        default_focal_factor: float = DEFAULT_FOCAL_FACTOR,
        passes: int = 1,
        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        weights = {"2d": 0.1, "heatmap": 1.0, "3d": 0.1, "rel": 0.02, "mask": 1.0, "presence": 0.1}
        unknown = set(loss_weights or {}) - set(weights)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; expected {sorted(weights)}")
        weights.update(loss_weights or {})
        self.loss_weights = {k: float(v) for k, v in weights.items()}
        self.encoder = encoder
        self.feature_dim, self.dim, self.num_iterations = int(feature_dim), int(dim), int(iterations)
        self.heatmap_sigma = float(heatmap_sigma)
        self.presence_threshold = float(presence_threshold)
        self.default_focal_factor = float(default_focal_factor)
        if passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {passes}")
        self.passes = int(passes)
        self.prior_weight = float(prior_weight)
        self.freeze_encoder = bool(freeze_encoder)
        fused_in = encoder.stage_channels[0] + 2 * encoder.head_channels
        self.fuse = nn.Sequential(
            nn.Conv2d(fused_in, feature_dim, 1, bias=False), nn.BatchNorm2d(feature_dim), nn.ReLU(inplace=True)
        )
        self.visible0 = nn.Conv2d(encoder.head_channels, 2, 1)  # iteration-0 visible masks (L, R)
        self.iterations = nn.ModuleList(
            RefineIteration(
                channels=feature_dim, dim=dim, graph_layers=graph_layers, graph_order=graph_order,
                attention_layers=attention_layers, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout,
                conv_blocks=conv_blocks, splat_sigma=splat_sigma,
            )
            for _ in range(iterations)
        )  # fmt: skip
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
        self.encoder.query_conv.requires_grad_(False)  # feeds nothing here (no unused trainable parameters)

    def train(self, mode: bool = True) -> "KptsEstModel":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    # ------------------------------------------------------------------ forward

    def forward(self, batch: dict[str, Any]) -> EstimatorOutputs:
        """Predict keypoints, presence, relative translation and masks (module docstring)."""
        image = batch["image"]
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        B, (H_img, W_img) = image.shape[0], image.shape[-2:]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            f = self.encoder(image)
        h, w = f.heatmaps.shape[-2:]
        stride = torch.tensor([W_img / w, H_img / h], device=image.device)
        visual = self.fuse(torch.cat([f.layer1, f.heatmap_features, f.mask_features], 1))  # (B, C, h, w)
        maps = visual[:, None].expand(B, 2, *visual.shape[1:])
        heatmaps = f.heatmaps.view(B, 2, NUM_KEYPOINTS, h, w)
        out = EstimatorOutputs([EstimatorIteration(
            heatmaps=heatmaps, keypoints_2d=soft_argmax(heatmaps) * stride, masks_amodal_logits=f.masks[:, :2],
            masks_visible_logits=self.visible0(f.mask_features),
        )])  # fmt: skip
        tokens = None
        for it in self.iterations:
            r = it(maps, heatmaps, tokens)
            maps, heatmaps, tokens = r.maps, r.heatmaps, r.tokens
            out.iterations.append(EstimatorIteration(
                heatmaps=heatmaps, keypoints_2d=soft_argmax(heatmaps) * stride, masks_amodal_logits=r.masks[:, :, 0],
                masks_visible_logits=r.masks[:, :, 1], keypoints_3d=r.joints_3d, presence_logits=r.presence_logits,
                rel_translation=r.rel_translation,
            ))  # fmt: skip
        if not self.training and "K" in batch:
            placed = self.place(out, batch["K"], (H_img, W_img), stride=float(stride.max()))
            out.keypoints, out.wrist = placed.keypoints, placed.wrist
        return out

    @property
    def image_size(self) -> int:
        return int(self.encoder.image_size)

    def estimate(self, batch: dict[str, Any]) -> KeypointEstimate:
        """The final iteration's keypoints of ``image`` ``(B, 3, S, S)``, placed for ``K`` ``(B, 3, 3)``
        when the batch has one and the model is in eval mode (see :class:`KeypointEstimate`)."""
        out = self(batch)
        return KeypointEstimate(
            keypoints_2d=out.keypoints_2d, keypoints_3d=out.keypoints_3d, presence_logits=out.presence_logits,
            rel_translation=out.rel_translation, keypoints=out.keypoints,
        )  # fmt: skip

    def place(self, outputs: EstimatorOutputs | EstimatorIteration, K: Tensor, image_size: tuple[int, int], stride: float = 4.0):
        """Absolute keypoints for intrinsics ``K`` (B, 3, 3) of the input image (see
        :func:`~im2hands.geometry.placement.place_hands`): joints on the image border get no
        weight, hands below the presence threshold are placed from the relative translation."""
        uv = outputs.keypoints_2d.float()
        present = torch.sigmoid(outputs.presence_logits.float()) > self.presence_threshold
        weights = border_weights(uv, image_size, margin=0.75 * stride)
        return place_hands(
            uv, outputs.keypoints_3d.float(), K.float(), rel_translation=outputs.rel_translation.float(),
            prior_weight=self.prior_weight, weights=weights, valid=present,
        )  # fmt: skip

    # ------------------------------------------------------------------ losses

    @staticmethod
    def _targets(batch: dict[str, Any]) -> dict[str, Tensor]:
        """Ground truth for the outputs: the batch's (augmented in training), with ``presence``
        computed from it when the batch has none."""
        tg = {k: batch.get(k) for k in _TARGETS}
        if tg["presence"] is None:
            tg["presence"] = presence_from_batch(batch)
        return tg

    def compute_loss(self, batch: dict[str, Any], outputs: EstimatorOutputs) -> dict[str, Tensor]:
        """Per-iteration losses ``loss_<term>_it<t>``, their means ``loss_<term>``, and the weighted ``loss``."""
        tg = self._targets(batch)
        present = tg["presence"].bool()  # (B, 2)
        kp2 = tg["keypoints_2d"].float()
        H_img, W_img = batch["image"].shape[-2:]
        h, w = outputs.iterations[0].heatmaps.shape[-2:]
        stride = kp2.new_tensor([W_img / w, H_img / h])
        inside = ((kp2 >= 0) & (kp2 < kp2.new_tensor([W_img, H_img]))).all(-1)  # (B, 2, 21)
        joint_ok = present[..., None] & inside
        gt_rel = m_to_mm(tg["keypoints"].float() - tg["keypoints"][:, :, :1].float())  # (B, 2, 21, 3) mm
        gt_lr = m_to_mm(tg["keypoints"][:, LEFT, 0].float() - tg["keypoints"][:, RIGHT, 0].float())  # (B, 3)
        both = present.all(-1)
        masks_gt = {k: F.adaptive_avg_pool2d(tg[f"masks_{k}"].float(), (h, w)) if tg[f"masks_{k}"] is not None else None
                    for k in ("amodal", "visible")}  # fmt: skip

        losses: dict[str, Tensor] = {}
        for t, it in enumerate(outputs.iterations):
            err = (it.keypoints_2d.float() - kp2).square().sum(-1).add(1e-6).sqrt()  # (B, 2, 21)
            losses[f"loss_2d_it{t}"] = masked_mean(err, joint_ok)
            kl = heatmap_kl(it.heatmaps, kp2 / stride, self.heatmap_sigma)  # (B, 2, 21)
            losses[f"loss_heatmap_it{t}"] = masked_mean(kl, joint_ok)
            mask_terms = [
                F.binary_cross_entropy_with_logits(logits.float(), gt)
                for logits, gt in zip((it.masks_amodal_logits, it.masks_visible_logits), masks_gt.values())
                if gt is not None
            ]  # fmt: skip
            losses[f"loss_mask_it{t}"] = torch.stack(mask_terms).sum() if mask_terms else kp2.new_zeros(())
            if t == 0:
                continue
            e3 = (m_to_mm(it.keypoints_3d.float()) - gt_rel).norm(dim=-1).mean(-1)  # (B, 2)
            losses[f"loss_3d_it{t}"] = masked_mean(e3, present)
            er = (m_to_mm(it.rel_translation.float()) - gt_lr).norm(dim=-1)  # (B,)
            losses[f"loss_rel_it{t}"] = masked_mean(er, both)
            losses[f"loss_presence_it{t}"] = F.binary_cross_entropy_with_logits(
                it.presence_logits.float(), present.float()
            )
        T = len(outputs.iterations) - 1
        total = kp2.new_zeros(())
        for key in self.LOSS_KEYS:
            its = [losses[f"loss_{key}_it{t}"] for t in range(T + 1) if f"loss_{key}_it{t}" in losses]
            losses[f"loss_{key}"] = torch.stack(its).mean()
            total = total + self.loss_weights[key] * losses[f"loss_{key}"]
        losses["loss"] = total
        return losses

    # ------------------------------------------------------------------ metrics

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: EstimatorOutputs) -> dict[str, float]:
        """Validation numbers (NaN where undefined, e.g. no present hand):

        ``mpjpe_wrist_mm`` (wrist-aligned, no scale), ``mpjpe_mcp_mm`` (middle-MCP-aligned,
        bone-length-scaled), ``mpjpe_wrist_mm_it{t}``; ``err_2d_px`` and ``err_2d_px_it{t}`` (all
        joints of present hands); ``mrrpe_mm`` (predicted relative translation), with ``K``:
        ``mrrpe_placed_mm`` and ``wrist_abs_mm`` (after placement); ``mask_iou_amodal``,
        ``mask_iou_visible`` (image resolution, logits > 0); ``presence_acc``.
        """
        tg = self._targets(batch)
        present = tg["presence"].bool().cpu().numpy()  # (B, 2)
        gt = tg["keypoints"].double().cpu().numpy()  # (B, 2, 21, 3)
        nan = float("nan")

        def mean_over(values: np.ndarray, mask: np.ndarray) -> float:
            return float(values[mask].mean()) if mask.any() else nan

        out: dict[str, float] = {}
        T = len(outputs.iterations) - 1
        for t in range(1, T + 1):
            pred = outputs.iterations[t].keypoints_3d.double().cpu().numpy()
            out[f"mpjpe_wrist_mm_it{t}"] = mean_over(mpjpe_wrist(pred, gt), present)
        pred = outputs.keypoints_3d.double().cpu().numpy()
        out["mpjpe_wrist_mm"] = out[f"mpjpe_wrist_mm_it{T}"]
        with np.errstate(invalid="ignore", divide="ignore"):
            mcp = mpjpe_mcp_scaled(pred, gt)
        out["mpjpe_mcp_mm"] = mean_over(mcp, present & np.isfinite(mcp))
        kp2 = tg["keypoints_2d"].double().cpu().numpy()
        for t, it in enumerate(outputs.iterations):
            e2 = np.linalg.norm(it.keypoints_2d.double().cpu().numpy() - kp2, axis=-1).mean(-1)
            out[f"err_2d_px_it{t}"] = mean_over(e2, present)
        out["err_2d_px"] = out[f"err_2d_px_it{T}"]
        both = present.all(-1)
        gt_lr = gt[:, LEFT, 0] - gt[:, RIGHT, 0]
        rel = outputs.rel_translation.double().cpu().numpy()
        out["mrrpe_mm"] = mean_over(m_to_mm(np.linalg.norm(rel - gt_lr, axis=-1)), both)
        if outputs.wrist is not None:
            wr = outputs.wrist.double().cpu().numpy()  # (B, 2, 3)
            out["mrrpe_placed_mm"] = mean_over(m_to_mm(np.linalg.norm(wr[:, LEFT] - wr[:, RIGHT] - gt_lr, axis=-1)), both)
            out["wrist_abs_mm"] = mean_over(m_to_mm(np.linalg.norm(wr - gt[:, :, 0], axis=-1)), present)
        H_img, W_img = batch["image"].shape[-2:]
        for kind, pred_m in (("amodal", outputs.masks_amodal_logits), ("visible", outputs.masks_visible_logits)):
            gt_m = tg[f"masks_{kind}"]
            if gt_m is None:
                continue
            logits = F.interpolate(pred_m.float(), size=(H_img, W_img), mode="bilinear",
                                   align_corners=False)  # fmt: skip
            pm, gm = logits > 0, gt_m.bool()
            inter = (pm & gm).flatten(2).sum(-1).double()
            union = (pm | gm).flatten(2).sum(-1).double()
            iou = (inter / union.clamp(min=1)).cpu().numpy()
            out[f"mask_iou_{kind}"] = mean_over(iou, (union > 0).cpu().numpy())
        prob = torch.sigmoid(outputs.presence_logits.float()).cpu().numpy()
        out["presence_acc"] = float(((prob > self.presence_threshold) == present).mean())
        return out

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: Any) -> "KptsEstModel":
        """Build from an :class:`~im2hands.config.schema.ExperimentConfig` (``model.encoder``, ``model.kpts_est``)."""
        ec, kc = cfg.model.encoder, cfg.model.kpts_est
        encoder = ImageEncoder.from_config(ec)
        weights = {"2d": kc.loss_2d, "heatmap": kc.loss_heatmap, "3d": kc.loss_3d, "rel": kc.loss_rel,
                   "mask": kc.loss_mask, "presence": kc.loss_presence}  # fmt: skip
        return cls(
            encoder=encoder, feature_dim=kc.feature_dim, dim=kc.dim, iterations=kc.iterations,
            graph_layers=kc.graph_layers, graph_order=kc.graph_order, attention_layers=kc.attention_layers,
            heads=kc.heads, mlp_ratio=kc.mlp_ratio, dropout=kc.dropout, conv_blocks=kc.conv_blocks,
            splat_sigma=kc.splat_sigma, heatmap_sigma=kc.heatmap_sigma, loss_weights=weights,
            presence_threshold=kc.presence_threshold, default_focal_factor=kc.default_focal_factor,
            passes=kc.passes, prior_weight=kc.prior_weight, freeze_encoder=kc.freeze_encoder,
        )  # fmt: skip
