"""Stage 1, initial occupancy: per-hand HALO part MLPs conditioned on a query-image attention.

For each hand (``LEFT = 0``, ``RIGHT = 1``; separate weights per hand, left hands mirrored to
right-like hands by :func:`~im2hands.geometry.canonical.canonicalize`) and each camera-frame
query point ``p`` (metres), see reference section 2.1:

1. ``p_rel = p - wrist`` (camera axes, metres).
2. Image feature (``use_image``): point token ``[p_rel, PointMLP(p_rel)]`` (``3 + point_dim``)
   attends over ``patch_grid^2`` tokens of the encoder's ``query_features``
   (:class:`QueryImageAttention`); its output is the feature ``f`` (19-d by default).
3. :class:`PartDecoder`: for each of the 16 parts ``k``, the canonical coordinates
   ``x_k = posed_to_canonical_k(p) / 0.4`` (HALO's units: 1 = 0.4 m), the part length ``l_k``
   (metres, as the original), a bone-length code (MLP 16 -> 40 -> 16 of all lengths) and a
   per-part pose code (Linear_k 48 -> 8 of all 16 palm-to-canonical translations, HALO units)
   go through 5 layers ``28 -> H -> H -> (H + F) -> H -> 1`` (LeakyReLU 0.1, residual adds on
   layers 1-3, ``f`` concatenated at layer 2). Occupancy = sigmoid(max over parts of the logits).

Evaluation is batched over parts (weights stored as ``(16, in, out)``, batched products, no
loop over parts). The part transform is folded into layer 0 (``W^T (R p + t) = (R^T W)^T p +
W^T t``), so canonical coordinates are never materialised; layer 0 runs in float32 with autocast
off (the canonicalisation itself in float64). With autograd (training) the other layers follow
autocast; without autograd (:meth:`InitOccNet.decode` during extraction) a float32 fast path
with reusable buffers runs (:meth:`PartDecoder._forward_inference`), in chunks of
``decode_chunk`` points.

Initialisation (as the original): xavier-normal weights and biases 0.01 for every linear layer
and conv of the decoders and attention blocks (the encoder keeps its own ResNet scheme); the
attention position embeddings are N(0, 0.02^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.geometry.canonical import canonicalize
from im2hands.geometry.frames import HALO_SCALE
from im2hands.hands.constants import LEFT, NUM_JOINTS, RIGHT
from im2hands.hands.joint_orders import permutation
from im2hands.loading import load_frozen
from im2hands.models.attention import QueryImageAttention
from im2hands.models.base import HandsModel
from im2hands.models.encoder import ImageEncoder, ImageFeatures
from im2hands.models.measures import OCC_LOSSES, hand_iou, mean_where, occupancy_loss
from im2hands.models.part_decoder import PartDecoder, _no_autocast
from im2hands.registry import MODELS
from im2hands.typing import Float, Tensor
from im2hands.utils.batch import hand_valid
from im2hands.utils.errors import Im2HandsError

__all__ = ["UNIT", "PartDecoder", "Stage1Features", "InitOccNet"]

UNIT: float = HALO_SCALE
"""Length unit of the canonical coordinates and pose codes fed to the part MLPs, metres."""

_STD_OF_MANO = permutation("standard", "mano")  # standard index of each MANO/HALO joint


@dataclass
class Stage1Features:
    """What :meth:`InitOccNet.encode` computes once per batch (``2`` = hand axis, left first).

    Attributes:
        wrist: ``(B, 2, 3)`` wrists, camera frame, metres.
        posed_to_canonical: ``(B, 2, K, 4, 4)`` camera frame -> canonical part frames, metres.
        to_canonical: ``(B, 2, K, 3, 4)`` wrist-relative camera points (metres) -> canonical
            part coordinates in :data:`UNIT` (what the decoders apply).
        bone_lengths: ``(B, 2, K)`` part lengths, metres.
        part_codes: ``(B, 2, K, 25)`` per-part conditioning of each hand's decoder.
        image_tokens: ``(B, 2, P, D)`` patch tokens per hand, or None without image.
        image: the encoder's :class:`ImageFeatures`, or None without image.
    """

    wrist: Float[Tensor, "B 2 3"]
    posed_to_canonical: Float[Tensor, "B 2 K 4 4"]
    to_canonical: Float[Tensor, "B 2 K 3 4"]
    bone_lengths: Float[Tensor, "B 2 K"]
    part_codes: Float[Tensor, "B 2 K C"]
    image_tokens: Optional[Float[Tensor, "B 2 P D"]] = None
    image: Optional[ImageFeatures] = None


def _finite(x: Tensor) -> Tensor:
    """Non-finite entries (e.g. an absent hand's keypoints) to 0, so they cannot poison gradients."""
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


@MODELS.register("init_occ")
class InitOccNet(HandsModel):
    """Stage 1 (reference section 2.1); ``encoder=None`` gives the keypoint-only HALO baseline.

    Args:
        encoder: the shared image encoder, or None (no image feature).
        hidden: part-MLP width (64).
        point_dim: point-MLP output width; image features are ``3 + point_dim`` wide (19).
        patch_grid: patches per side for the query-image attention (4 -> 16 tokens).
        heads: attention heads.
        dropout: dropout of the point MLP and attention blocks.
        threshold: occupancy probability threshold of :meth:`metrics`.
        loss: ``"mse"`` (the original: squared error of probabilities) or ``"bce"`` (on the
            max-over-parts logit).
        aux_weight: weight of the 2D auxiliary loss on the encoder heads (0: off).
        coord_scale: :class:`PartDecoder`'s multiplier of the canonical coordinates (1: HALO's).
        decode_chunk: without autograd, :meth:`decode` works through ``decode_chunk`` points
            (over the batch) at a time to keep the ``(16, n, H)`` intermediates in cache.
    """

    stage = "init_occ"
    val_metric = "iou"
    val_mode = "max"
    decodes_occupancy = True

    def __init__(
        self,
        *,
        encoder: ImageEncoder | None = None,
        hidden: int = 64,
        point_dim: int = 16,
        patch_grid: int = 4,
        heads: int = 2,
        dropout: float = 0.01,
        threshold: float = 0.5,
        loss: str = "mse",
        aux_weight: float = 0.0,
        decode_chunk: int = 2048,
        coord_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if loss not in OCC_LOSSES:
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        if aux_weight > 0 and encoder is None:
            raise ValueError("aux_weight > 0 needs an image encoder")
        self.encoder = encoder
        self.uses_image = encoder is not None
        self.threshold, self.loss, self.aux_weight, self.decode_chunk = threshold, loss, aux_weight, decode_chunk
        feature_dim = 3 + point_dim if self.uses_image else 0
        dec = dict(hidden=hidden, feature_dim=feature_dim, coord_scale=coord_scale)
        self.decoders = nn.ModuleList([PartDecoder(**dec) for _ in (LEFT, RIGHT)])
        self.image_attention: nn.ModuleList | None = None
        if encoder is not None:
            kw = dict(feature_channels=encoder.feature_channels, feature_size=encoder.feature_size,
                      patch_grid=patch_grid, point_dim=point_dim, heads=heads, dropout=dropout)  # fmt: skip
            self.image_attention = nn.ModuleList([QueryImageAttention(**kw) for _ in (LEFT, RIGHT)])

    @property
    def use_image(self) -> bool:
        """``model.init_occ.use_image``: the same as :attr:`uses_image`."""
        return self.uses_image

    @property
    def image_size(self) -> Optional[int]:
        return None if self.encoder is None else int(self.encoder.image_size)

    # ------------------------------------------------------------------ encode / decode

    def encode(self, batch: dict[str, Any]) -> Stage1Features:
        """Canonicalise both hands and encode the image.

        Args:
            batch: ``keypoints`` ``(B, 2, 21, 3)`` camera frame, metres, ``standard`` order;
                ``image`` ``(B, 3, S, S)`` in [0, 1] when the model uses images.
        """
        kp = batch["keypoints"]
        if kp.dim() != 4 or kp.shape[1:] != (2, 21, 3):
            raise ValueError(f"expected keypoints of shape (B, 2, 21, 3), got {tuple(kp.shape)}")
        B, K = kp.shape[0], NUM_JOINTS
        with _no_autocast(kp.device):
            kp64 = kp.double()
            is_left = torch.tensor([True, False], device=kp.device).repeat(B)  # (2 B,) hand axis flattened
            canon = canonicalize(kp64.reshape(2 * B, 21, 3), is_left, _STD_OF_MANO)
            T = canon.posed_to_canonical.view(B, 2, K, 4, 4)
            wrist = kp64[:, :, 0]  # (B, 2, 3)
            R = T[..., :3, :3]
            t = T[..., :3, 3] + (R @ wrist[:, :, None, :, None]).squeeze(-1)  # (B, 2, K, 3) wrist-relative
            to_canon = _finite(torch.cat([R, t[..., None]], -1) / UNIT).to(kp.dtype)  # (B, 2, K, 3, 4)
            trans = _finite(canon.unpose[..., :3, 3] / UNIT).view(B, 2, K, 3).to(kp.dtype)
            lengths = _finite(canon.bone_lengths).view(B, 2, K).to(kp.dtype)
        codes = torch.stack([self.decoders[h].part_codes(lengths[:, h], trans[:, h]) for h in (LEFT, RIGHT)], 1)
        image = tokens = None
        if self.encoder is not None:
            image = self.encoder(batch["image"])
            tokens = torch.stack([self.image_attention[h].image_tokens(image.query_features) for h in (LEFT, RIGHT)], 1)
        return Stage1Features(
            wrist=_finite(wrist).to(kp.dtype), posed_to_canonical=T.to(kp.dtype), to_canonical=to_canon,
            bone_lengths=lengths, part_codes=codes, image_tokens=tokens, image=image,
        )  # fmt: skip

    def _hand_logits(self, hand: int, points: Tensor, f: Stage1Features, workspace: dict | None = None) -> Tensor:
        with _no_autocast(points.device):
            p_rel = points.float() - f.wrist[:, hand, None].float()  # (B, n, 3)
        feature = None
        if self.image_attention is not None:
            feature = self.image_attention[hand](p_rel, f.image_tokens[:, hand])  # (B, n, D)
        return self.decoders[hand](p_rel, f.to_canonical[:, hand], f.part_codes[:, hand], feature, workspace=workspace)

    def decode_logits(self, points: Float[Tensor, "B 2 N 3"], features: Stage1Features) -> Float[Tensor, "B 2 N"]:
        """Max-over-parts occupancy logits of camera-frame query points (see :meth:`decode`)."""
        if points.dim() != 4 or points.shape[1] != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, 2, N, 3), got {tuple(points.shape)}")
        B, _, N, _ = points.shape
        step = N if torch.is_grad_enabled() else max(1, self.decode_chunk // B)
        hands, workspace = [], {}  # buffers shared by all chunks of both hands
        for h in (LEFT, RIGHT):
            chunks = [self._hand_logits(h, points[:, h, i : i + step], features, workspace) for i in range(0, N, step)]
            hands.append(torch.cat(chunks, 1) if len(chunks) > 1 else chunks[0])
        return torch.stack(hands, 1)  # (B, 2, N)

    def decode(self, points: Float[Tensor, "B 2 N 3"], features: Stage1Features) -> Float[Tensor, "B 2 N"]:
        """Occupancy probabilities of query points.

        Args:
            points: ``(B, 2, N, 3)`` query points per hand, camera frame, metres.
            features: from :meth:`encode`.

        Returns:
            ``(B, 2, N)`` occupancy probabilities in [0, 1] (float32).
        """
        return torch.sigmoid(self.decode_logits(points, features).float())

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``{"occupancy": (B, 2, N), "logits": (B, 2, N)}`` for ``batch["points"]``, plus the
        encoder's ``heatmaps`` and ``masks`` when it uses images."""
        features = self.encode(batch)
        logits = self.decode_logits(batch["points"], features).float()
        out = {"occupancy": torch.sigmoid(logits), "logits": logits}
        if features.image is not None:
            out["heatmaps"], out["masks"] = features.image.heatmaps, features.image.masks
        return out

    # ------------------------------------------------------------------ loss / metrics

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per hand the mean over its valid samples, summed over hands (invalid hands excluded).

        Returns ``loss`` and ``mse_left``/``mse_right`` (plus ``bce_*`` with ``loss="bce"`` and
        ``aux_heatmap``/``aux_mask`` with ``aux_weight > 0``).
        """
        occ = outputs["occupancy"]
        valid = hand_valid(batch, occ)
        loss, out = occupancy_loss(occ, outputs["logits"], batch["occupancy"], valid, self.loss)
        if self.aux_weight > 0 and "heatmaps" in outputs:
            aux = self._aux_losses(batch, outputs, valid)
            out.update({k: v.detach() for k, v in aux.items()})
            loss = loss + self.aux_weight * sum(aux.values())
        out["loss"] = loss
        return out

    def _aux_losses(self, batch: dict[str, Any], outputs: dict[str, Tensor], valid: Tensor) -> dict[str, Tensor]:
        """2D supervision of the encoder heads: Gaussian keypoint heatmaps (squared error per
        map, relative to the target's energy pi sigma^2) and amodal mask BCE, both at the heads'
        resolution; the 6 part channels stay unsupervised."""
        heatmaps, masks = outputs["heatmaps"].float(), outputs["masks"].float()
        B, _, S4, _ = heatmaps.shape
        losses = {}
        if "keypoints_2d" in batch and "image" in batch:
            stride = batch["image"].shape[-1] / S4
            uv = batch["keypoints_2d"].to(heatmaps) / stride - 0.5  # (B, 2, 21, 2) heatmap pixel centres
            sigma = max(1.0, 2.0 * S4 / 64)
            grid = torch.arange(S4, device=heatmaps.device, dtype=heatmaps.dtype)
            gx = torch.exp(-((grid - uv[..., :1]) ** 2) / (2 * sigma**2))  # (B, 2, 21, S4) along x
            gy = torch.exp(-((grid - uv[..., 1:]) ** 2) / (2 * sigma**2))  # (B, 2, 21, S4) along y
            target = gy[..., :, None] * gx[..., None, :]  # (B, 2, 21, S4, S4)
            err = ((heatmaps.view(B, 2, 21, S4, S4) - target) ** 2).sum((-1, -2)).mean(-1)  # (B, 2)
            losses["aux_heatmap"] = mean_where(err / (math.pi * sigma**2), valid)
        if "masks_amodal" in batch:
            target = F.adaptive_avg_pool2d(batch["masks_amodal"].to(masks), (S4, S4))  # (B, 2, S4, S4)
            bce = F.binary_cross_entropy_with_logits(masks[:, :2], target, reduction="none").mean((-1, -2))  # (B, 2)
            losses["aux_mask"] = mean_where(bce, valid)
        return losses

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> dict[str, float]:
        """Volumetric IoU at ``threshold`` per sample and hand, then the mean over valid ones.

        A sample whose prediction and ground truth are both empty counts as IoU 1. A key whose
        hands are all invalid in this batch is NaN (average with ``nanmean``).
        """
        pred = outputs["occupancy"] >= self.threshold
        gt = batch["occupancy"].to(pred.device) >= 0.5
        iou = hand_iou(pred, gt)  # (B, 2)
        valid = hand_valid(batch, iou)

        def mean(v: Tensor, m: Tensor) -> float:
            return float(v[m].mean()) if bool(m.any()) else float("nan")

        return {
            "iou": mean(iou, valid),
            "iou_left": mean(iou[:, LEFT], valid[:, LEFT]),
            "iou_right": mean(iou[:, RIGHT], valid[:, RIGHT]),
        }

    # ------------------------------------------------------------------ config

    def initialize_from_config(self, cfg: Any) -> list[str]:
        """``model.init_occ.init_decoders``: both hands' part decoders from that stage-1 run or
        checkpoint (:meth:`PartDecoder.load_from`); everything else keeps its initialisation."""
        source = cfg.model.init_occ.init_decoders
        if not source:
            return []
        other, _ = load_frozen(source, source="model.init_occ.init_decoders", stage="init_occ")
        try:
            for mine, theirs in zip(self.decoders, other.decoders):
                mine.load_from(theirs)
        except ValueError as exc:
            raise Im2HandsError(f"model.init_occ.init_decoders={source}: {exc}") from None
        return [f"part decoders (both hands) from {source}"]

    @classmethod
    def from_config(cls, cfg: Any) -> "InitOccNet":
        """Build from an :class:`~im2hands.config.schema.ExperimentConfig` (``model.encoder``,
        ``model.init_occ``); the encoder is built only when ``use_image``."""
        enc, occ = cfg.model.encoder, cfg.model.init_occ
        encoder = ImageEncoder.from_config(enc) if occ.use_image else None
        return cls(
            encoder=encoder, hidden=occ.hidden, point_dim=occ.point_dim, patch_grid=occ.patch_grid,
            heads=occ.heads, dropout=occ.dropout, threshold=occ.threshold, loss=occ.loss,
            aux_weight=occ.aux_weight if occ.use_image else 0.0, coord_scale=occ.coord_scale,
        )  # fmt: skip
