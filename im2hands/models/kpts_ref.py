"""Stage 3: refine both hands' 21 keypoints from image features (``kpts_ref``).

Reference section 2.3, with its bugs fixed and cross-hand information added:

- **Input frame.** Keypoints are camera-frame metres (``standard`` order). For conditioning,
  each joint is described, in camera orientation, by
  (a) its position relative to its **own hand's** noisy middle MCP (standard index 9),
  (b) that MCP relative to the other hand's MCP (zero if the other hand is invalid),
  (c) its projection into the image, ``2 uv / (W, H) - 1`` (clamped to [-2, 2]), and
  (d) the log depth of its hand's MCP (metres).
  Lengths are converted with :func:`m_to_mm` and divided by :data:`POS_SCALE_MM` (so the
  network sees values of order 1). The original expressed both hands relative to the left
  middle MCP and gave the network no image position at all.
- **Joint tokens.** A learned (hand, joint) embedding + a per-hand point MLP of (a-d) + (when
  ``pixel_aligned``) the fused feature map sampled bilinearly at (c).
- **Layers** (``layers`` times): a skeleton graph residual block (Chebyshev filter on the
  symmetric normalised adjacency of ``STANDARD_PARENTS``, :mod:`im2hands.models.graph`; the
  original used the raw directed matrix); image attention (each joint token attends over itself
  plus ``patch_grid^2`` patch tokens of the fused 64 x 64 map, learned position embedding, as
  the original's ``img_ex``); and **two-hand attention** (the 42 joint tokens attend to each
  other; invalid hands are masked out as keys). Graph and attention weights are shared by the
  hands; the hand identity is in the embedding.
- **Output.** Separate left/right heads (the original used the left head for both) predict a
  per-joint offset in mm (x :data:`OFFSET_SCALE_MM`), added to the noisy input (residual
  refinement; the last layers are zero-initialised so training starts from the identity).
- **Loss** (mm): per hand MSE after re-centring prediction and ground truth at their own middle
  MCP, averaged over valid hands (the original summed left + right), plus ``abs_weight`` x the
  camera-frame MSE.

Image features: the fused map is a 1x1 conv over ``[layer1, heatmap head's last map, mask head's
last map]`` of :class:`~im2hands.models.encoder.ImageEncoder`, as the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.geometry.frames import m_to_mm, mm_to_m, project
from im2hands.hands.constants import LEFT, NUM_KEYPOINTS, RIGHT
from im2hands.models.attention import PreNormAttentionBlock
from im2hands.models.base import KeypointRefinement
from im2hands.models.encoder import ImageEncoder
from im2hands.models.graph import GraphResBlock
from im2hands.models.measures import MIDDLE_MCP, aligned_joint_errors_mm, masked_mean
from im2hands.models.outputs import RefinerOutputs
from im2hands.registry import MODELS
from im2hands.typing import Bool, Float, Tensor
from im2hands.utils.batch import hand_valid

__all__ = ["KptsRefFeatures", "KeypointRefiner", "KptsRefModel", "aligned_joint_errors_mm", "masked_mean"]

POS_SCALE_MM: float = 100.0
"""Positions are fed to the point MLP in units of this many millimetres."""
OFFSET_SCALE_MM: float = 10.0
"""The heads' outputs are offsets in units of this many millimetres."""
_IN_DIM = 9  # (a) 3 + (b) 3 + (c) 2 + (d) 1


@dataclass
class KptsRefFeatures:
    """What :meth:`KptsRefModel.encode` computes once per image batch.

    Attributes:
        feature_map: ``(B, C, S, S)`` fused image features (``S`` = image side / 4).
        K: ``(B, 3, 3)`` intrinsics of the images, pixels.
        image_size: ``(H, W)`` of the images, pixels.
    """

    feature_map: Float[Tensor, "B C S S"]
    K: Float[Tensor, "B 3 3"]
    image_size: tuple[int, int]


def _check_keypoints(kp: Tensor, name: str) -> None:
    if kp.dim() != 4 or kp.shape[1:] != (2, NUM_KEYPOINTS, 3):
        raise ValueError(f"expected {name} of shape (B, 2, 21, 3), got {tuple(kp.shape)}")


class _TwoHandAttention(nn.Module):
    """Pre-LN self-attention over both hands' 42 joint tokens, then a GELU FFN, both residual.

    ``allowed[b, i, j]`` says whether token ``i`` may attend to token ``j``.
    """

    def __init__(self, *, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "B L D"], allowed: Bool[Tensor, "B L L"]) -> Float[Tensor, "B L D"]:
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # (B, h, L, d) each
        p = self.drop.p if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], dropout_p=p)  # (B, h, L, d)
        x = x + self.drop(self.out(o.transpose(1, 2).flatten(-2)))  # (B, L, D)
        return x + self.drop(self.ffn(self.norm2(x)))


class _RefineLayer(nn.Module):
    """Skeleton graph block, joint-image attention, then (optionally) two-hand attention."""

    def __init__(self, *, dim: int, heads: int, graph_order: int, ffn_dim: int, dropout: float, cross_hand: bool) -> None:
        super().__init__()
        self.graph = GraphResBlock(dim, order=graph_order, dropout=dropout)
        self.image = PreNormAttentionBlock(dim=dim, heads=heads, ffn_dim=ffn_dim, dropout=dropout)
        self.hands = _TwoHandAttention(dim=dim, heads=heads, ffn_dim=ffn_dim, dropout=dropout) if cross_hand else None

    def forward(self, x: Tensor, patches: Tensor, allowed: Tensor) -> Tensor:
        B, _, J, D = x.shape
        x = self.graph(x)  # (B, 2, J, D), each hand on its own skeleton
        x = self.image.attend_with_context(x.reshape(B, 2 * J, D), patches)  # (B, 2J, D)
        if self.hands is not None:
            x = self.hands(x, allowed)  # (B, 2J, D)
        return x.view(B, 2, J, D)


class KeypointRefiner(nn.Module):
    """The refinement network proper: noisy keypoints + a feature map -> refined keypoints.

    Args:
        feature_channels: channels ``C`` of the input feature map.
        feature_size: its side ``S`` in pixels (a multiple of ``patch_grid``).
        dim: joint/patch token width (divisible by ``heads``).
        layers: number of graph + attention layers.
        patch_grid: patches per side (``patch_grid^2`` image tokens of ``S/patch_grid`` pixels).
        heads: attention heads.
        graph_order: Chebyshev order of the graph convolutions.
        mlp_ratio: FFN hidden width / ``dim``.
        dropout: dropout inside the blocks.
        cross_hand: add the two-hand attention to every layer.
        pixel_aligned: add the feature sampled at each joint's projection to its token.
    """

    def __init__(
        self,
        *,
        feature_channels: int,
        feature_size: int = 64,
        dim: int = 128,
        layers: int = 4,
        patch_grid: int = 8,
        heads: int = 4,
        graph_order: int = 2,
        mlp_ratio: float = 2.0,
        dropout: float = 0.01,
        cross_hand: bool = True,
        pixel_aligned: bool = True,
    ) -> None:
        super().__init__()
        if feature_size % patch_grid:
            raise ValueError(f"patch_grid {patch_grid} must divide the feature map side {feature_size}")
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.feature_channels, self.feature_size, self.patch_grid = feature_channels, feature_size, patch_grid
        self.pixel_aligned = pixel_aligned
        patch = feature_size // patch_grid
        # A patch_size-strided conv == patchify into (C * patch^2)-vectors + a linear layer.
        self.patch_embed = nn.Conv2d(feature_channels, dim, patch, stride=patch)
        self.patch_pos = nn.Parameter(0.02 * torch.randn(patch_grid * patch_grid, dim))
        self.joint_embed = nn.Parameter(0.02 * torch.randn(2, NUM_KEYPOINTS, dim))  # (hand, joint)
        self.point_mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(_IN_DIM, dim), nn.GELU(), nn.Linear(dim, dim)) for _ in range(2)
        )  # [LEFT, RIGHT]
        self.pixel_proj = nn.Linear(feature_channels, dim) if pixel_aligned else None
        ffn = max(1, round(mlp_ratio * dim))
        self.layers = nn.ModuleList(
            _RefineLayer(dim=dim, heads=heads, graph_order=graph_order, ffn_dim=ffn, dropout=dropout, cross_hand=cross_hand)
            for _ in range(layers)
        )
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 3)) for _ in range(2)
        )  # [LEFT, RIGHT]
        for head in self.heads:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def _conditioning(
        self, kp: Tensor, K: Tensor, image_size: tuple[int, int], valid: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Point-MLP inputs ``(B, 2, 21, 9)`` and normalised image positions ``(B, 2, 21, 2)``."""
        B = kp.shape[0]
        mcp = kp[:, :, MIDDLE_MCP : MIDDLE_MCP + 1]  # (B, 2, 1, 3)
        rel = m_to_mm(kp - mcp) / POS_SCALE_MM  # (a) (B, 2, 21, 3)
        other_valid = valid.flip(1)[..., None, None].to(kp.dtype)  # (B, 2, 1, 1) other hand's flag
        pair = m_to_mm(mcp - mcp.flip(1)) / POS_SCALE_MM * other_valid  # (b) (B, 2, 1, 3)
        H, W = image_size
        uv = project(kp.reshape(B, 2 * NUM_KEYPOINTS, 3), K.to(kp.dtype))  # (B, 42, 2) pixels
        uv = (2.0 * uv / uv.new_tensor([W, H]) - 1.0).clamp(-2.0, 2.0).view(B, 2, NUM_KEYPOINTS, 2)  # (c)
        log_z = mcp[..., 2:].clamp(min=0.05).log()  # (d) (B, 2, 1, 1)
        inputs = torch.cat(
            [rel, pair.expand_as(rel), uv, log_z.expand(B, 2, NUM_KEYPOINTS, 1)], dim=-1
        )  # (B, 2, 21, 9)
        return inputs, uv

    def forward(
        self,
        keypoints_noisy: Float[Tensor, "B 2 21 3"],
        feature_map: Float[Tensor, "B C S S"],
        K: Float[Tensor, "B 3 3"],
        image_size: tuple[int, int],
        hand_valid: Bool[Tensor, "B 2"] | None = None,
    ) -> Float[Tensor, "B 2 21 3"]:
        """Refine keypoints.

        Args:
            keypoints_noisy: ``(B, 2, 21, 3)`` camera frame, metres, ``standard`` order.
            feature_map: ``(B, C, S, S)`` image features covering the whole image.
            K: ``(B, 3, 3)`` intrinsics, pixels.
            image_size: ``(H, W)`` of the image ``K`` refers to, pixels.
            hand_valid: ``(B, 2)`` which hands exist (default: both); invalid hands are not
                attended to by the other hand (their own outputs are meaningless).

        Returns:
            ``(B, 2, 21, 3)`` refined keypoints, camera frame, metres.
        """
        _check_keypoints(keypoints_noisy, "keypoints_noisy")
        B = keypoints_noisy.shape[0]
        expected = (B, self.feature_channels, self.feature_size, self.feature_size)
        if tuple(feature_map.shape) != expected:
            raise ValueError(f"expected feature_map of shape {expected}, got {tuple(feature_map.shape)}")
        if hand_valid is None:
            hand_valid = torch.ones(B, 2, dtype=torch.bool, device=keypoints_noisy.device)
        hand_valid = hand_valid.bool()
        # Geometry stays in float32 or better even under autocast (bf16 resolves only ~2 mm at 0.5 m).
        kp = keypoints_noisy.to(torch.promote_types(keypoints_noisy.dtype, torch.float32))
        inputs, uv = self._conditioning(kp, K, image_size, hand_valid)
        x = self.joint_embed + torch.stack([self.point_mlp[h](inputs[:, h]) for h in (LEFT, RIGHT)], 1)  # (B, 2, 21, D)
        if self.pixel_proj is not None:
            sampled = F.grid_sample(
                feature_map, uv.view(B, 2 * NUM_KEYPOINTS, 1, 2).to(feature_map.dtype), mode="bilinear",
                padding_mode="zeros", align_corners=False,
            )  # (B, C, 42, 1)
            x = x + self.pixel_proj(sampled[..., 0].transpose(1, 2)).view_as(x)  # (B, 2, 21, D)
        patches = self.patch_embed(feature_map).flatten(2).transpose(1, 2) + self.patch_pos  # (B, P, D)

        hand_of = torch.arange(2, device=kp.device).repeat_interleave(NUM_KEYPOINTS)  # (42,)
        same_hand = hand_of[:, None] == hand_of[None, :]  # (42, 42)
        allowed = same_hand | hand_valid[:, None, hand_of]  # (B, 42, 42): own hand, or a valid other hand
        for layer in self.layers:
            x = layer(x, patches, allowed)  # (B, 2, 21, D)

        offsets_mm = OFFSET_SCALE_MM * torch.stack([self.heads[h](x[:, h]) for h in (LEFT, RIGHT)], 1)  # (B, 2, 21, 3)
        return keypoints_noisy + mm_to_m(offsets_mm).to(keypoints_noisy.dtype)


@MODELS.register("kpts_ref")
class KptsRefModel(KeypointRefinement):
    """Stage 3 behind the :class:`~im2hands.models.base.KeypointRefinement` interface: image
    encoder + :class:`KeypointRefiner`.

    ``forward(batch)`` refines ``batch["keypoints_noisy"]``: in training and validation the
    trainer's batch transform (:class:`~im2hands.data.transforms.NoisyKeypoints`) perturbs the
    ground truth ``batch["keypoints"]`` with the keypoint noise model (``model.kpts_ref.noise``).

    Args:
        encoder: the image encoder.
        refiner: the refinement network; its ``feature_channels`` sets the fused map's width and
            its ``feature_size`` must equal ``encoder.feature_size``.
        abs_weight: weight of the absolute (not re-centred) MSE term.
        freeze_encoder: keep the encoder's weights fixed and its BatchNorms in eval mode.
    """

    stage = "kpts_ref"
    val_metric = "mpjpe_mm"
    val_mode = "min"
    data_fields = ("image",)
    """Dataset fields to load (cameras and keypoints always come; no meshes or occupancy)."""

    def __init__(
        self,
        *,
        encoder: ImageEncoder,
        refiner: KeypointRefiner,
        abs_weight: float = 0.0,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if refiner.feature_size != encoder.feature_size:
            raise ValueError(
                f"refiner.feature_size {refiner.feature_size} != encoder.feature_size {encoder.feature_size}"
            )
        self.encoder = encoder
        fused_in = encoder.stage_channels[0] + 2 * encoder.head_channels
        self.fuse = nn.Conv2d(fused_in, refiner.feature_channels, 1)  # [layer1, hm feats, mask feats] -> C
        self.refiner = refiner
        self.abs_weight = float(abs_weight)
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
        # The encoder's output convs (heatmaps, masks) and its query conv feed nothing here: freeze
        # them so that every trainable parameter gets a gradient (DDP needs no unused-parameter search).
        for unused in (encoder.heatmap_head.out, encoder.mask_head.out, encoder.query_conv):
            unused.requires_grad_(False)

    def train(self, mode: bool = True) -> "KptsRefModel":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    @property
    def image_size(self) -> int:
        return int(self.encoder.image_size)

    def encode(self, batch: dict[str, Any]) -> KptsRefFeatures:
        """Image features of ``batch["image"]`` ``(B, 3, H, W)`` (with ``batch["K"]``)."""
        image = batch["image"]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            f = self.encoder(image)
        fmap = self.fuse(torch.cat([f.layer1, f.heatmap_features, f.mask_features], 1))  # (B, C, S, S)
        return KptsRefFeatures(feature_map=fmap, K=batch["K"], image_size=(image.shape[-2], image.shape[-1]))

    def refine(
        self,
        keypoints_noisy: Float[Tensor, "B 2 21 3"],
        features: KptsRefFeatures,
        hand_valid: Bool[Tensor, "B 2"] | None = None,
    ) -> Float[Tensor, "B 2 21 3"]:
        """Refine keypoints (camera frame, metres, ``standard`` order) given :meth:`encode`'s output."""
        return self.refiner(keypoints_noisy, features.feature_map, features.K, features.image_size, hand_valid)

    def forward(self, batch: dict[str, Any]) -> RefinerOutputs:
        """The refined keypoints and the input ones (:class:`~im2hands.models.outputs.RefinerOutputs`)."""
        if "keypoints_noisy" not in batch:
            raise KeyError(
                "kpts_ref refines batch['keypoints_noisy']: add them (in training and validation the trainer's "
                "batch transform does, im2hands.data.transforms.NoisyKeypoints)"
            )
        noisy = batch["keypoints_noisy"]
        _check_keypoints(noisy, "keypoints_noisy")
        refined = self.refine(noisy, self.encode(batch), batch.get("hand_valid"))
        return RefinerOutputs(keypoints=refined, keypoints_noisy=noisy)

    def compute_loss(self, batch: dict[str, Any], outputs: RefinerOutputs) -> dict[str, Tensor]:
        """``loss = rel + abs_weight * abs``: mm^2 MSEs per hand (rel: middle-MCP-centred), mean over valid hands."""
        pred, gt = outputs.keypoints, batch["keypoints"].to(outputs.keypoints.dtype)
        valid = hand_valid(batch, pred)
        c = slice(MIDDLE_MCP, MIDDLE_MCP + 1)
        rel = m_to_mm((pred - pred[:, :, c]) - (gt - gt[:, :, c])).square().mean(dim=(-1, -2))  # (B, 2)
        absolute = m_to_mm(pred - gt).square().mean(dim=(-1, -2))  # (B, 2)
        loss_rel, loss_abs = masked_mean(rel, valid), masked_mean(absolute, valid)
        return {"loss": loss_rel + self.abs_weight * loss_abs, "loss_rel": loss_rel, "loss_abs": loss_abs}

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: RefinerOutputs) -> dict[str, float]:
        """MPJPE (mm) of refined and input keypoints after per-hand middle-MCP alignment, and absolute."""
        pred = outputs.keypoints
        noisy, gt = outputs.keypoints_noisy.to(pred.dtype), batch["keypoints"].to(pred.dtype)
        valid = hand_valid(batch, pred)
        err = aligned_joint_errors_mm(pred, gt).mean(-1)  # (B, 2)
        err_in = aligned_joint_errors_mm(noisy, gt).mean(-1)  # (B, 2)
        nan = float("nan")  # no valid hand: the trainer counts the value as missing
        out = {
            "mpjpe_mm": masked_mean(err, valid, nan),
            "mpjpe_in_mm": masked_mean(err_in, valid, nan),
            "mpjpe_left_mm": masked_mean(err[:, LEFT : LEFT + 1], valid[:, LEFT : LEFT + 1], nan),
            "mpjpe_right_mm": masked_mean(err[:, RIGHT : RIGHT + 1], valid[:, RIGHT : RIGHT + 1], nan),
            "mpjpe_abs_mm": masked_mean(aligned_joint_errors_mm(pred, gt, align=False).mean(-1), valid, nan),
            "mpjpe_abs_in_mm": masked_mean(aligned_joint_errors_mm(noisy, gt, align=False).mean(-1), valid, nan),
        }
        return {k: float(v) for k, v in out.items()}

    @classmethod
    def from_config(cls, cfg: Any) -> "KptsRefModel":
        """Build from an :class:`~im2hands.config.schema.ExperimentConfig` (``model.encoder``, ``model.kpts_ref``)."""
        ec, kc = cfg.model.encoder, cfg.model.kpts_ref
        encoder = ImageEncoder.from_config(ec)
        refiner = KeypointRefiner(
            feature_channels=kc.feature_dim, feature_size=encoder.feature_size, dim=kc.dim, layers=kc.layers,
            patch_grid=kc.patch_grid, heads=kc.heads, graph_order=kc.graph_order, mlp_ratio=kc.mlp_ratio,
            dropout=kc.dropout, cross_hand=kc.cross_hand, pixel_aligned=kc.pixel_aligned,
        )  # fmt: skip
        return cls(
            encoder=encoder, refiner=refiner, abs_weight=kc.abs_weight,
            freeze_encoder=kc.freeze_encoder,
        )  # fmt: skip
