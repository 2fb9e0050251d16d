"""Building blocks of the keypoint estimator (:mod:`im2hands.models.kpts_est`).

Heatmap coordinates: a map of ``h x w`` cells covers the image; cell ``(i, j)`` spans
``[j, j+1) x [i, i+1)`` map units with its centre at ``(j + 0.5, i + 0.5)``, and map units times
the stride (image side / map side) are image pixels with the library's convention (origin at
the top-left pixel's corner). ``grid_sample`` with ``align_corners=False`` uses the same
convention, so ``x_n = 2 u / w - 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.hands.constants import NUM_KEYPOINTS
from im2hands.models.attention import PreNormAttentionBlock
from im2hands.models.graph import GraphResBlock
from im2hands.typing import Float, Tensor

__all__ = [
    "cell_centres",
    "soft_argmax",
    "heatmap_kl",
    "sample_at",
    "splat",
    "ConvBlock",
    "RefineIteration",
    "IterationOutput",
]

METRES_SCALE: float = 0.1
"""The 3D and relative-translation heads output multiples of this many metres."""


def cell_centres(h: int, w: int, *, device=None, dtype=torch.float32) -> Float[Tensor, "HW 2"]:
    """``(h * w, 2)`` centres ``(x, y)`` of the cells of an ``h x w`` map, row-major."""
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(h * w, 2)


def soft_argmax(logits: Float[Tensor, "... h w"]) -> Float[Tensor, "... 2"]:
    """Expected cell centre under ``softmax`` of the logits over each map (map units, ``(x, y)``).

    Computed in float32 or better (bf16 resolves only ~1/4 cell at 64 cells).
    """
    h, w = logits.shape[-2:]
    x = logits.flatten(-2).to(torch.promote_types(logits.dtype, torch.float32))
    p = torch.softmax(x, dim=-1)  # (..., hw)
    return p @ cell_centres(h, w, device=x.device, dtype=x.dtype)  # (..., 2)


def heatmap_kl(
    logits: Float[Tensor, "... h w"], target: Float[Tensor, "... 2"], sigma: float
) -> Float[Tensor, "..."]:
    """KL divergence from a normalised Gaussian around ``target`` (map units) to ``softmax(logits)``.

    Zero exactly when the predicted distribution is that Gaussian (restricted to the map).
    """
    h, w = logits.shape[-2:]
    x = logits.flatten(-2).to(torch.promote_types(logits.dtype, torch.float32))
    log_p = torch.log_softmax(x, dim=-1)
    c = cell_centres(h, w, device=x.device, dtype=x.dtype)  # (hw, 2)
    d2 = (c - target.to(x.dtype)[..., None, :]).square().sum(-1)  # (..., hw)
    log_q = torch.log_softmax(-0.5 * d2 / sigma**2, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def sample_at(maps: Float[Tensor, "N C h w"], uv: Float[Tensor, "N J 2"]) -> Float[Tensor, "N J C"]:
    """Bilinear features of ``maps`` at map positions ``uv`` (zeros outside)."""
    h, w = maps.shape[-2:]
    grid = 2.0 * uv / uv.new_tensor([w, h]) - 1.0  # (N, J, 2)
    out = F.grid_sample(maps, grid[:, :, None].to(maps.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=False)  # (N, C, J, 1)  fmt: skip
    return out[..., 0].transpose(1, 2)


def splat(
    features: Float[Tensor, "N J C"], uv: Float[Tensor, "N J 2"], size: tuple[int, int], sigma: float
) -> Float[Tensor, "N C h w"]:
    """Project joint features onto a map: ``sum_j exp(-|p - uv_j|^2 / 2 sigma^2) f_j`` per cell ``p``."""
    h, w = size
    c = cell_centres(h, w, device=uv.device, dtype=torch.promote_types(uv.dtype, torch.float32))
    d2 = (c[None, None] - uv.to(c.dtype)[:, :, None]).square().sum(-1)  # (N, J, hw)
    weights = torch.exp(-0.5 * d2 / sigma**2).to(features.dtype)
    return torch.einsum("njp,njc->ncp", weights, features).reshape(features.shape[0], features.shape[-1], h, w)


class ConvBlock(nn.Module):
    """``relu(r + BN(conv3(relu(BN(conv3(x))))))`` with ``r = x``, or a given residual (needed
    when the input width differs from the output width)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if residual is None:
            if self.in_ch != self.out_ch:
                raise ValueError(f"ConvBlock({self.in_ch} -> {self.out_ch}) needs an explicit residual")
            residual = x
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(residual + y)


class IterationOutput:
    """What one :class:`RefineIteration` returns (plain attributes, see its ``forward``)."""

    __slots__ = ("uv_in", "joints_3d", "presence_logits", "rel_translation", "maps", "heatmaps", "masks", "tokens")

    def __init__(self, **kw: Tensor) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class RefineIteration(nn.Module):
    """One decoupled refinement iteration (DIR): 2D space -> joint space -> 2D space.

    1. **2D -> joints.** Soft-argmax of each hand's 21 heatmaps gives the joints' positions;
       each hand's own feature map is sampled there (bilinear), and the feature, an MLP of the
       normalised position, a learned (hand, joint) embedding and the previous iteration's
       joint feature are summed into a token.
    2. **Joint space.** Skeleton graph residual blocks on each hand (intra-hand), then
       pre-LN self-attention over both hands' 42 tokens (inter-hand). Heads read the tokens:
       per-hand 3D joints relative to the wrist (camera orientation, metres), a presence
       logit per hand (mean token), the left-minus-right wrist translation (both mean tokens
       and the wrists' image positions).
    3. **Joints -> 2D.** Each hand's tokens are projected (linear) and splatted with a Gaussian
       onto **that hand's own** map only (the hands' maps never mix), concatenated with the
       hand's current map and enhanced by residual 3x3 convolutions; new heatmaps (separate
       1x1 convs per hand) and the hand's amodal and visible mask logits come from the result.

    Args:
        channels: ``C`` of the per-hand 2D maps.
        dim: token width ``D``.
        graph_layers, graph_order: skeleton graph blocks and their Chebyshev order.
        attention_layers, heads, mlp_ratio, dropout: the inter-hand attention blocks.
        conv_blocks: residual conv blocks of step 3.
        splat_sigma: Gaussian radius of the splat, map cells.
    """

    def __init__(
        self,
        *,
        channels: int,
        dim: int,
        graph_layers: int = 2,
        graph_order: int = 2,
        attention_layers: int = 1,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        conv_blocks: int = 1,
        splat_sigma: float = 1.5,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        C, D, J = channels, dim, NUM_KEYPOINTS
        self.splat_sigma = float(splat_sigma)
        self.sample_proj = nn.Linear(C, D)
        self.pos = nn.Sequential(nn.Linear(2, D), nn.GELU(), nn.Linear(D, D))
        self.embed = nn.Parameter(0.02 * torch.randn(2, J, D))
        self.graph = nn.ModuleList(GraphResBlock(D, order=graph_order, dropout=dropout) for _ in range(graph_layers))
        ffn = max(1, round(mlp_ratio * D))
        self.attention = nn.ModuleList(
            PreNormAttentionBlock(dim=D, heads=heads, ffn_dim=ffn, dropout=dropout) for _ in range(attention_layers)
        )
        self.head_3d = nn.ModuleList(_mlp(D, D, 3) for _ in range(2))  # [LEFT, RIGHT]
        self.head_presence = _mlp(D, D, 1)
        self.head_rel = _mlp(2 * D + 4, D, 3)
        self.back = nn.Linear(D, C)
        self.enhance = nn.ModuleList([ConvBlock(2 * C, C)] + [ConvBlock(C, C) for _ in range(conv_blocks - 1)])
        self.heatmap = nn.ModuleList(nn.Conv2d(C, J, 1) for _ in range(2))  # [LEFT, RIGHT]
        self.mask = nn.Conv2d(C, 2, 1)  # (amodal, visible) of the map's hand

    def forward(
        self,
        maps: Float[Tensor, "B 2 C h w"],
        heatmaps: Float[Tensor, "B 2 21 h w"],
        tokens: Float[Tensor, "B 2 21 D"] | None = None,
    ) -> IterationOutput:
        """One iteration.

        Args:
            maps: per-hand 2D feature maps.
            heatmaps: per-hand heatmap logits of the previous iteration.
            tokens: the previous iteration's joint features (None in the first iteration).

        Returns:
            :class:`IterationOutput` with ``uv_in`` (B, 2, 21, 2) joint positions read from the
            input heatmaps (map units), ``joints_3d`` (B, 2, 21, 3) wrist-relative metres
            (wrist exactly 0), ``presence_logits`` (B, 2), ``rel_translation`` (B, 3) metres,
            ``maps`` (B, 2, C, h, w), ``heatmaps`` (B, 2, 21, h, w), ``masks`` (B, 2, 2, h, w)
            logits (amodal, visible), ``tokens`` (B, 2, 21, D).
        """
        B, _, C, h, w = maps.shape
        J = NUM_KEYPOINTS
        uv = soft_argmax(heatmaps)  # (B, 2, 21, 2) map units, float32
        flat_maps = maps.reshape(B * 2, C, h, w)
        sampled = sample_at(flat_maps, uv.reshape(B * 2, J, 2)).view(B, 2, J, C)
        uv_n = (2.0 * uv / uv.new_tensor([w, h]) - 1.0).to(sampled.dtype)  # [-1, 1]
        x = self.sample_proj(sampled) + self.pos(uv_n) + self.embed
        if tokens is not None:
            x = x + tokens
        for block in self.graph:
            x = block(x)  # each hand on its own skeleton
        x = x.reshape(B, 2 * J, -1)
        for block in self.attention:
            x = block(x)  # both hands' joints attend to each other
        x = x.view(B, 2, J, -1)

        offsets = METRES_SCALE * torch.stack([self.head_3d[h_](x[:, h_]) for h_ in range(2)], 1)  # (B, 2, 21, 3)
        joints_3d = offsets - offsets[:, :, :1]
        pooled = x.mean(2)  # (B, 2, D)
        presence = self.head_presence(pooled)[..., 0]  # (B, 2)
        rel_in = torch.cat([pooled.flatten(1), uv_n[:, :, 0].flatten(1)], -1)  # (B, 2D + 4)
        rel_translation = METRES_SCALE * self.head_rel(rel_in)  # (B, 3)

        back = self.back(x).reshape(B * 2, J, C)
        projected = splat(back, uv.reshape(B * 2, J, 2), (h, w), self.splat_sigma)  # (2B, C, h, w) own hand only
        y = self.enhance[0](torch.cat([flat_maps, projected], 1), residual=flat_maps)
        for block in self.enhance[1:]:
            y = block(y)
        new_maps = y.view(B, 2, C, h, w)
        new_heatmaps = torch.stack([self.heatmap[h_](new_maps[:, h_]) for h_ in range(2)], 1)  # (B, 2, 21, h, w)
        masks = self.mask(y).view(B, 2, 2, h, w)
        return IterationOutput(
            uv_in=uv, joints_3d=joints_3d, presence_logits=presence, rel_translation=rel_translation,
            maps=new_maps, heatmaps=new_heatmaps, masks=masks, tokens=x,
        )  # fmt: skip
