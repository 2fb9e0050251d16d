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
from im2hands.loading import load_frozen
from im2hands.models.attention import QueryImageAttention
from im2hands.models.base import HandsModel
from im2hands.models.encoder import ImageEncoder, ImageFeatures
from im2hands.registry import MODELS
from im2hands.typing import Bool, Float, Tensor
from im2hands.utils.errors import Im2HandsError

__all__ = ["UNIT", "PartDecoder", "Stage1Features", "InitOccNet"]

UNIT: float = HALO_SCALE
"""Length unit of the canonical coordinates and pose codes fed to the part MLPs, metres."""

_SLOPE = 0.1  # LeakyReLU slope of the part MLPs
_BIAS_INIT = 0.01


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, _BIAS_INIT)


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class PartDecoder(nn.Module):
    """HALO's piecewise occupancy decoder: ``K`` part MLPs evaluated as batched products.

    Part ``k``'s MLP on ``x = [canonical xyz (3), codes_k (25)]``: ``h_0 = act(L_0 x)``,
    ``h_1 = h_0 + act(L_1 h_0)``, ``h_2 = h_1 + act(L_2 [h_1, f])``, ``h_3 = h_2 + act(L_3 h_2)``,
    logit ``L_4 h_3`` with ``act`` = LeakyReLU(0.1) (the residual skips the concatenated
    ``f``). Weights ``w_i`` are ``(K, in, out)``, biases ``b_i`` ``(K, out)``.

    Args:
        parts: ``K`` (16).
        hidden: MLP width ``H`` (64).
        feature_dim: width ``F`` of the per-point feature concatenated at layer 2 (0: none).
        length_code: width of the bone-length code (16; its MLP is ``K -> length_hidden -> length_code``).
        length_hidden: hidden width of the bone-length MLP (40).
        pose_code: width of each part's pose code (8; ``Linear(3 K -> pose_code)`` per part).
        coord_scale: multiplier of the canonical coordinates fed to layer 0 (1: HALO's unit of
            0.4 m, where a finger is about 0.05 wide). A larger value (10: a unit of 4 cm) gives
            layer 0 inputs of order 1, so Adam's steps move the surface as fast as the other
            layers' features; folded into layer 0's coordinate rows, so it costs nothing.
    """

    def __init__(
        self,
        *,
        parts: int = NUM_JOINTS,
        hidden: int = 64,
        feature_dim: int = 0,
        length_code: int = 16,
        length_hidden: int = 40,
        pose_code: int = 8,
        coord_scale: float = 1.0,
    ) -> None:
        super().__init__()
        K, H = parts, hidden
        self.parts, self.hidden, self.feature_dim = K, H, feature_dim
        self.coord_scale = float(coord_scale)
        self.code_dim = 1 + length_code + pose_code
        """Width of :meth:`part_codes` (25): ``[l_k, length code, pose code_k]``."""
        self.length_mlp = nn.Sequential(
            nn.Linear(K, length_hidden), nn.ReLU(inplace=True), nn.Linear(length_hidden, length_code)
        )
        self.pose_weight = nn.Parameter(torch.empty(K, 3 * K, pose_code))
        self.pose_bias = nn.Parameter(torch.empty(K, pose_code))
        dims = [(3 + self.code_dim, H), (H, H), (H + feature_dim, H), (H, H), (H, 1)]
        for i, (n_in, n_out) in enumerate(dims):
            self.register_parameter(f"w{i}", nn.Parameter(torch.empty(K, n_in, n_out)))
            self.register_parameter(f"b{i}", nn.Parameter(torch.empty(K, n_out)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _xavier(self.length_mlp)
        for name, p in self.named_parameters(recurse=False):
            if name.startswith("b") or name == "pose_bias":
                nn.init.constant_(p, _BIAS_INIT)
            else:  # (K, in, out): xavier-normal per part
                nn.init.normal_(p, std=math.sqrt(2.0 / (p.shape[1] + p.shape[2])))

    @torch.no_grad()
    def load_from(self, other: "PartDecoder") -> None:
        """Copy another decoder's weights (e.g. a keypoint-only one into an image-conditioned one).

        Both must have the same parts, width and codes; layer 0's coordinate rows are rescaled
        by ``other.coord_scale / self.coord_scale``, so the function is the same. The
        image-feature rows of layer 2 (``w2[:, H:]``) are copied when both decoders take a feature of the same width, zeroed
        when only this one takes it (the output then starts equal to ``other``'s), and dropped
        when only ``other`` takes it.

        Raises:
            ValueError: the decoders differ in parts, width or code size, or in feature width
                where both take a feature.
        """
        K, H, Fd = self.parts, self.hidden, self.feature_dim
        if (other.parts, other.hidden, other.code_dim) != (K, H, self.code_dim):
            raise ValueError(
                f"decoder shapes differ: parts/hidden/codes {other.parts}/{other.hidden}/{other.code_dim} "
                f"-> {K}/{H}/{self.code_dim}"
            )
        if Fd and other.feature_dim and other.feature_dim != Fd:
            raise ValueError(f"image feature widths differ: {other.feature_dim} -> {Fd}")
        theirs = dict(other.named_parameters())
        for name, p in self.named_parameters():
            if name == "w0":
                p.copy_(theirs[name])
                p[:, :3] *= other.coord_scale / self.coord_scale
            elif name == "w2":
                p[:, :H] = theirs[name][:, :H]
                if Fd:
                    p[:, H:] = theirs[name][:, H:] if other.feature_dim else 0.0
            else:
                p.copy_(theirs[name])

    def part_codes(
        self, bone_lengths: Float[Tensor, "B K"], part_translations: Float[Tensor, "B K 3"]
    ) -> Float[Tensor, "B K C"]:
        """Per-part conditioning ``[l_k, MLP(all l), Linear_k(all translations)]`` (``C = 25``).

        Args:
            bone_lengths: ``(B, K)`` part lengths, metres.
            part_translations: ``(B, K, 3)`` translation columns of the palm-frame -> canonical
                part transforms, in :data:`UNIT`.
        """
        B, K = bone_lengths.shape
        length_code = self.length_mlp(bone_lengths)  # (B, 16)
        pose = torch.einsum("bc,kcd->bkd", part_translations.reshape(B, 3 * K), self.pose_weight)
        pose = pose + self.pose_bias  # (B, K, 8)
        return torch.cat([bone_lengths[..., None], length_code[:, None].expand(B, K, -1), pose], -1)  # (B, K, 25)

    def forward(
        self,
        points: Float[Tensor, "B N 3"],
        to_canonical: Float[Tensor, "B K 3 4"],
        codes: Float[Tensor, "B K C"],
        feature: Optional[Float[Tensor, "B N F"]] = None,
        return_parts: bool = False,
        workspace: Optional[dict[str, Tensor]] = None,
    ) -> Float[Tensor, "B N"]:
        """Occupancy logits.

        Args:
            points: ``(B, N, 3)`` query points relative to the wrist, camera axes, metres.
            to_canonical: ``(B, K, 3, 4)`` affine maps from those points to each part's
                canonical coordinates in :data:`UNIT`.
            codes: ``(B, K, C)`` from :meth:`part_codes`.
            feature: ``(B, N, F)`` per-point feature (required iff ``feature_dim > 0``).
            return_parts: return all part logits ``(B, N, K)`` instead of their max.
            workspace: without autograd, a dict whose buffers are reused across calls of the
                same size (pass the same dict for every chunk of a large point set).

        Returns:
            ``(B, N)`` max-over-parts logit (occupancy probability = its sigmoid).
        """
        B, N, _ = points.shape
        if (feature is None) != (self.feature_dim == 0):
            raise ValueError(f"feature must be given iff feature_dim > 0 (feature_dim={self.feature_dim})")
        K, C = self.parts, self.code_dim
        if points.shape[-1] != 3 or to_canonical.shape != (B, K, 3, 4) or codes.shape != (B, K, C):
            raise ValueError(
                f"expected points (B, N, 3), to_canonical (B, {K}, 3, 4), codes (B, {K}, {C}); "
                f"got {tuple(points.shape)}, {tuple(to_canonical.shape)}, {tuple(codes.shape)}"
            )
        needs_grad = torch.is_grad_enabled() and (
            any(p.requires_grad for p in self.parameters())
            or any(t is not None and t.requires_grad for t in (points, to_canonical, codes, feature))
        )
        if needs_grad:
            logits = self._forward_autograd(points, to_canonical, codes, feature)  # (K, B, N)
        else:
            ws = {} if workspace is None else workspace
            logits = self._forward_inference(points, to_canonical, codes, feature, ws)  # (K, B, N)
        if return_parts:
            return logits.permute(1, 2, 0)  # (B, N, K)
        return logits.amax(0)  # (B, N)

    def _layer0_affine(self, to_canonical: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Layer 0 with the part transforms folded in, float32 (call with autocast off):
        ``pre_0 = p @ M + c`` with ``M = R^T W_p`` ``(K, B, 3, H)`` and
        ``c = t W_p + codes W_c + b_0`` ``(K, B, H)``."""
        R, t = to_canonical[..., :3].float(), to_canonical[..., 3].float()  # (B, K, 3, 3), (B, K, 3)
        w0p, w0c = self.w0[:, :3].float() * self.coord_scale, self.w0[:, 3:].float()  # (K, 3, H), (K, C, H)
        M = torch.einsum("bkij,kih->kbjh", R, w0p)  # (K, B, 3, H)
        c = torch.einsum("bki,kih->kbh", t, w0p) + torch.einsum("bkc,kch->kbh", codes.float(), w0c)
        return M, c + self.b0.float()[:, None]  # (K, B, 3, H), (K, B, H)

    def _forward_autograd(self, points: Tensor, to_canonical: Tensor, codes: Tensor, feature: Tensor | None) -> Tensor:
        """Differentiable path (out-of-place ops); returns ``(K, B, N)`` part logits."""
        B, N, _ = points.shape
        K, H = self.parts, self.hidden
        with _no_autocast(points.device):
            M, c = self._layer0_affine(to_canonical, codes)
            p = points.float()[None].expand(K, B, N, 3).reshape(K * B, N, 3)  # (K B, N, 3)
            pre = torch.baddbmm(c.reshape(K * B, 1, H), p, M.reshape(K * B, 3, H)).view(K, B * N, H)  # (K, B N, H)
        h = F.leaky_relu(pre, _SLOPE)
        h = h + F.leaky_relu(torch.baddbmm(self.b1[:, None], h, self.w1), _SLOPE)
        if feature is None:
            pre = torch.baddbmm(self.b2[:, None], h, self.w2)
        else:
            f = feature.reshape(1, B * N, self.feature_dim).expand(K, B * N, self.feature_dim)  # (K, B N, F)
            pre = torch.baddbmm(torch.baddbmm(self.b2[:, None], f, self.w2[:, H:]), h, self.w2[:, :H])  # (K, B N, H)
        h = h + F.leaky_relu(pre, _SLOPE)
        h = h + F.leaky_relu(torch.baddbmm(self.b3[:, None], h, self.w3), _SLOPE)
        return torch.baddbmm(self.b4[:, None], h, self.w4).view(K, B, N)  # (K, B, N)

    @torch.no_grad()
    def _forward_inference(
        self, points: Tensor, to_canonical: Tensor, codes: Tensor, feature: Tensor | None, ws: dict[str, Tensor]
    ) -> Tensor:
        """Fast path without autograd, float32; returns ``(K, B, N)`` part logits.

        ``h`` carries an extra column of ones (``(K, B N, H + 1)``), so each layer's bias is the
        weight row that meets it and every layer is one batched product (no bias passes); the
        image feature's product accumulates into layer 2's output; activations are added to the
        residual in place; all big intermediates live in the reusable workspace ``ws`` (fresh
        multi-megabyte allocations cost page faults comparable to the products themselves).
        """
        B, N, _ = points.shape
        K, H, Fd = self.parts, self.hidden, self.feature_dim
        dev, f32 = points.device, torch.float32

        def buf(name: str, *shape: int) -> Tensor:
            t = ws.get(name)
            if t is None or t.shape != shape or t.device != dev:
                t = ws[name] = torch.empty(shape, dtype=f32, device=dev)
            return t

        def aug(w: Tensor, b: Tensor) -> Tensor:  # rows [w_h; b]: (K, H + 1, out)
            return torch.cat([w[:, :H], b[:, None]], 1).float()

        with _no_autocast(dev):
            M, c = self._layer0_affine(to_canonical, codes)  # (K, B, 3, H), (K, B, H)
            M_aug = torch.zeros(K, B, 4, H + 1, dtype=f32, device=dev)  # [M; c] plus a column that outputs 1
            M_aug[:, :, :3, :H], M_aug[:, :, 3, :H], M_aug[:, :, 3, H] = M, c, 1.0
            p = buf("p", K * B, N, 4)  # (K B, N, 4) = [points, 1] per part (bmm is slow on stride-0 batches)
            p.view(K, B, N, 4)[..., :3] = points.float()
            p[..., 3] = 1.0
            h = buf("h", K * B, N, H + 1)
            torch.bmm(p, M_aug.view(K * B, 4, H + 1), out=h)
            h = F.leaky_relu(h, _SLOPE, inplace=True).view(K, B * N, H + 1)  # (K, B N, H + 1), last column 1
            t = buf("t", K, B * N, H)
            for i, (w, b) in enumerate(((self.w1, self.b1), (self.w2, self.b2), (self.w3, self.b3))):
                if i == 1 and Fd:
                    f = buf("f", K, B * N, Fd)
                    f[:] = feature.reshape(1, B * N, Fd)  # (K, B N, F), shared by the parts
                    torch.bmm(f, w[:, H:].float(), out=t).baddbmm_(h, aug(w, b))
                else:
                    torch.bmm(h, aug(w, b), out=t)
                h[..., :H] += F.leaky_relu(t, _SLOPE, inplace=True)
            w4 = aug(self.w4, self.b4).transpose(1, 2)  # (K, 1, H + 1): a row-vector product beats a column one
            return torch.bmm(w4, h.transpose(1, 2)).view(K, B, N)  # (K, B, N)


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


def _mean_where(x: Tensor, valid: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over entries where ``valid`` (0 where none); NaN-safe for invalid entries."""
    w = valid.to(x.dtype)
    total = torch.where(valid, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / w.sum().clamp(min=1.0)
    return total.sum(dim) / w.sum(dim).clamp(min=1.0)


OCC_LOSSES = ("mse", "bce")
"""Occupancy losses of stages 1 and 2: ``mse`` (the original's, on probabilities), ``bce`` (on logits)."""


def occupancy_loss(
    occupancy: Float[Tensor, "B 2 N"], logits: Float[Tensor, "B 2 N"], target: Tensor, valid: Bool[Tensor, "B 2"],
    loss: str,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-hand occupancy loss, mean over each hand's valid samples, summed over hands.

    Returns ``(loss, terms)``: ``terms`` holds the detached ``mse_left``/``mse_right`` (always)
    and ``bce_left``/``bce_right`` (with ``loss="bce"``); ``loss`` is the MSE sum, or the BCE sum
    of the logits with ``loss="bce"``.
    """
    gt = target.to(occupancy.dtype)
    mse = _mean_where(((occupancy - gt) ** 2).mean(-1), valid, 0)  # (2,)
    terms = {"mse_left": mse[LEFT].detach(), "mse_right": mse[RIGHT].detach()}
    if loss != "bce":
        return mse.sum(), terms
    bce = F.binary_cross_entropy_with_logits(logits.float(), gt.float(), reduction="none").mean(-1)
    bce = _mean_where(bce, valid, 0)  # (2,)
    terms.update(bce_left=bce[LEFT].detach(), bce_right=bce[RIGHT].detach())
    return bce.sum(), terms


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
            canon = canonicalize(kp64.reshape(2 * B, 21, 3), is_left)
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
        valid = self._valid(batch, occ)
        loss, out = occupancy_loss(occ, outputs["logits"], batch["occupancy"], valid, self.loss)
        if self.aux_weight > 0 and "heatmaps" in outputs:
            aux = self._aux_losses(batch, outputs, valid)
            out.update({k: v.detach() for k, v in aux.items()})
            loss = loss + self.aux_weight * sum(aux.values())
        out["loss"] = loss
        return out

    @staticmethod
    def _valid(batch: dict[str, Any], like: Tensor) -> Bool[Tensor, "B 2"]:
        valid = batch.get("hand_valid")
        if valid is None:
            return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
        return valid.to(device=like.device, dtype=torch.bool)

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
            losses["aux_heatmap"] = _mean_where(err / (math.pi * sigma**2), valid)
        if "masks_amodal" in batch:
            target = F.adaptive_avg_pool2d(batch["masks_amodal"].to(masks), (S4, S4))  # (B, 2, S4, S4)
            bce = F.binary_cross_entropy_with_logits(masks[:, :2], target, reduction="none").mean((-1, -2))  # (B, 2)
            losses["aux_mask"] = _mean_where(bce, valid)
        return losses

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> dict[str, float]:
        """Volumetric IoU at ``threshold`` per sample and hand, then the mean over valid ones.

        A sample whose prediction and ground truth are both empty counts as IoU 1. A key whose
        hands are all invalid in this batch is NaN (average with ``nanmean``).
        """
        pred = outputs["occupancy"] >= self.threshold
        gt = batch["occupancy"].to(pred.device) >= 0.5
        inter = (pred & gt).sum(-1).float()
        union = (pred | gt).sum(-1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))  # (B, 2)
        valid = self._valid(batch, iou)

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
