"""Stage 1's part decoder (:class:`PartDecoder`): HALO's 16 part MLPs as batched products, with
the part transform folded into layer 0 and a float32 inference path (see
:mod:`im2hands.models.init_occ` for the whole stage)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.hands.constants import NUM_JOINTS
from im2hands.typing import Float, Tensor

__all__ = ["PartDecoder"]

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
        """Fast path without autograd; returns ``(K, B, N)`` part logits.

        ``h`` carries an extra column of ones (``(K, B N, H + 1)``), so each layer's bias is the
        weight row that meets it and every layer is one batched product (no bias passes); the
        image feature's product accumulates into layer 2's output; activations are added to the
        residual in place; all big intermediates live in the reusable workspace ``ws`` (fresh
        multi-megabyte allocations cost page faults comparable to the products themselves).

        Layer 0 (coordinates and part transforms) is always float32. Layers 1-4 run in float32,
        or in bfloat16 when autocast to bfloat16 is on for the points' device (buffers, weights
        and residual in bfloat16: about 1.8x faster on CPUs with native bfloat16 dot products;
        the extractor's ``precision``).
        """
        B, N, _ = points.shape
        K, H, Fd = self.parts, self.hidden, self.feature_dim
        dev, f32 = points.device, torch.float32
        low = torch.is_autocast_enabled(dev.type) and torch.get_autocast_dtype(dev.type) == torch.bfloat16
        dt = torch.bfloat16 if low else f32

        def buf(name: str, *shape: int, dtype: torch.dtype = dt) -> Tensor:
            t = ws.get(name)
            if t is None or t.shape != shape or t.device != dev or t.dtype != dtype:
                t = ws[name] = torch.empty(shape, dtype=dtype, device=dev)
            return t

        def aug(w: Tensor, b: Tensor) -> Tensor:  # rows [w_h; b]: (K, H + 1, out)
            return torch.cat([w[:, :H], b[:, None]], 1).to(dt)

        with _no_autocast(dev):
            M, c = self._layer0_affine(to_canonical, codes)  # (K, B, 3, H), (K, B, H)
            M_aug = torch.zeros(K, B, 4, H + 1, dtype=f32, device=dev)  # [M; c] plus a column that outputs 1
            M_aug[:, :, :3, :H], M_aug[:, :, 3, :H], M_aug[:, :, 3, H] = M, c, 1.0
            p = buf("p", K * B, N, 4, dtype=f32)  # (K B, N, 4) = [points, 1] per part (bmm is slow on stride-0 batches)
            p.view(K, B, N, 4)[..., :3] = points.float()
            p[..., 3] = 1.0
            h = buf("h", K * B, N, H + 1)
            if low:  # float32 products in slices of <= 2M values, rounded into the bfloat16 buffer
                step = max(1, (1 << 21) // (K * B * (H + 1)))
                for s in range(0, N, step):
                    h[:, s : s + step].copy_(torch.bmm(p[:, s : s + step], M_aug.view(K * B, 4, H + 1)))
            else:
                torch.bmm(p, M_aug.view(K * B, 4, H + 1), out=h)
            h = F.leaky_relu(h, _SLOPE, inplace=True).view(K, B * N, H + 1)  # (K, B N, H + 1), last column 1
            t = buf("t", K, B * N, H)
            for i, (w, b) in enumerate(((self.w1, self.b1), (self.w2, self.b2), (self.w3, self.b3))):
                if i == 1 and Fd:
                    f = buf("f", K, B * N, Fd)
                    f[:] = feature.reshape(1, B * N, Fd)  # (K, B N, F), shared by the parts
                    torch.bmm(f, w[:, H:].to(dt), out=t).baddbmm_(h, aug(w, b))
                else:
                    torch.bmm(h, aug(w, b), out=t)
                h[..., :H] += F.leaky_relu(t, _SLOPE, inplace=True)
            w4 = aug(self.w4, self.b4).transpose(1, 2)  # (K, 1, H + 1): a row-vector product beats a column one
            return torch.bmm(w4, h.transpose(1, 2)).view(K, B, N).float()  # (K, B, N)
