"""Small reusable attention blocks (pre-LayerNorm transformer blocks).

:class:`PreNormAttentionBlock` is the block of the original's ``SelfAttn`` layers:
``x + MHA(LN x)`` then ``x + FFN(LN x)`` with a ReLU FFN. Besides ordinary self-attention over
a token sequence it offers :meth:`PreNormAttentionBlock.attend_with_context`: each of N query
tokens attends over itself plus P shared context tokens. That equals running the block on the
N sequences ``[x_n; context]`` and keeping position 0 (the context positions' outputs are not
needed), but costs ``O(N (1 + P))`` instead of ``O(N (1 + P)^2)`` memory and time.

:class:`QueryImageAttention` is stage 1's query-image attention (the original's ``img_ex``),
built from two such blocks. Its linear layers and conv are xavier-normal with biases 0.01 (as
the original), its position embedding N(0, 0.02^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.typing import Float, Tensor

__all__ = ["PreNormAttentionBlock", "QueryImageAttention"]


class PreNormAttentionBlock(nn.Module):
    """Pre-LN transformer block: multi-head attention then a two-layer ReLU FFN, both residual.

    Args:
        dim: token width ``D``.
        heads: attention heads.
        head_dim: width per head (default ``max(1, dim // heads)``; the inner width
            ``heads * head_dim`` may differ from ``dim``, as in the original, e.g. 19 -> 2 x 9).
        ffn_dim: hidden width of the FFN (default ``dim``, as in the original).
        dropout: on the attention weights, after the output projection and inside the FFN.
    """

    def __init__(
        self, *, dim: int, heads: int, head_dim: int | None = None, ffn_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.head_dim = head_dim if head_dim is not None else max(1, dim // heads)
        inner = heads * self.head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.out = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        ffn = ffn_dim if ffn_dim is not None else dim
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.attn_drop = nn.Dropout(dropout)
        self.out_drop = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)  # (B, L, h, d) each
        return q, k, v

    def _finish(self, x: Tensor, attended: Tensor) -> Tensor:
        x = x + self.out_drop(self.out(attended.flatten(-2)))  # (B, L, D)
        return x + self.ffn(self.norm2(x))

    def forward(self, x: Float[Tensor, "B L D"]) -> Float[Tensor, "B L D"]:
        """Self-attention over each sequence of ``L`` tokens.

        Args:
            x: ``(B, L, D)`` tokens.

        Returns:
            ``(B, L, D)``.
        """
        q, k, v = (t.transpose(1, 2) for t in self._split(self.norm1(x)))  # (B, h, L, d)
        drop = self.attn_drop.p if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, h, L, d)
        return self._finish(x, o.transpose(1, 2))

    def attend_with_context(
        self, x: Float[Tensor, "B N D"], context: Float[Tensor, "B P D"]
    ) -> Float[Tensor, "B N D"]:
        """Each query token attends over ``[itself; context]``, independently of the others.

        Exactly ``forward(cat([x[:, n:n+1], context], 1))[:, 0]`` for every ``n``, without
        building the ``N`` sequences: the scores of a query against the shared context keys are
        one batched product, its score against its own key an elementwise product, and one
        softmax covers both.

        Args:
            x: ``(B, N, D)`` query tokens (e.g. one per query point).
            context: ``(B, P, D)`` shared tokens (e.g. image patches).

        Returns:
            ``(B, N, D)`` the query tokens' outputs.
        """
        q, k_self, v_self = self._split(self.norm1(x))  # (B, N, h, d) each
        _, k_ctx, v_ctx = self._split(self.norm1(context))  # (B, P, h, d) each
        scale = 1.0 / math.sqrt(self.head_dim)
        s_self = (q * k_self).sum(-1, keepdim=True) * scale  # (B, N, h, 1)
        s_ctx = torch.einsum("bnhd,bphd->bnhp", q, k_ctx) * scale  # (B, N, h, P)
        attn = torch.softmax(torch.cat([s_self, s_ctx], -1), dim=-1)  # (B, N, h, 1 + P)
        attn = self.attn_drop(attn)
        o = attn[..., :1] * v_self + torch.einsum("bnhp,bphd->bnhd", attn[..., 1:], v_ctx)  # (B, N, h, d)
        return self._finish(x, o)


class QueryImageAttention(nn.Module):
    """The original's ``img_ex``: per-query attention over coarse image patches (one hand).

    Image side (once per image, :meth:`image_tokens`): ``Conv2d(C -> C, kernel = stride =
    feature_size / patch_grid)``, ReLU, learned position embedding, one pre-LN self-attention
    block over the ``P = patch_grid^2`` patches, ``Linear(C -> D)``. Query side (:meth:`forward`):
    point token ``[p, PointMLP(p)]`` (``D = 3 + point_dim``), one pre-LN block in which each
    point attends over itself and the ``P`` patch tokens; the point's output is the feature.

    Args:
        feature_channels: ``C`` of the encoder's ``query_features``.
        feature_size: side of ``query_features`` (64 for 256-pixel images).
        patch_grid: patches per side.
        point_dim: output width of the point MLP (16).
        point_hidden: hidden width of the point MLP (32).
        heads: attention heads of both blocks.
        dropout: dropout of the point MLP and both blocks.
    """

    def __init__(
        self,
        *,
        feature_channels: int,
        feature_size: int,
        patch_grid: int = 4,
        point_dim: int = 16,
        point_hidden: int = 32,
        heads: int = 2,
        dropout: float = 0.01,
    ) -> None:
        super().__init__()
        if feature_size % patch_grid != 0:
            raise ValueError(f"feature_size {feature_size} is not divisible by patch_grid {patch_grid}")
        C, kernel = feature_channels, feature_size // patch_grid
        self.feature_size, self.token_dim = feature_size, 3 + point_dim
        self.point_mlp = nn.Sequential(
            nn.Linear(3, point_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(point_hidden, point_dim)
        )
        self.patchify = nn.Conv2d(C, C, kernel, stride=kernel)
        self.pos_embed = nn.Parameter(torch.empty(patch_grid * patch_grid, C))
        self.patch_block = PreNormAttentionBlock(dim=C, heads=heads, dropout=dropout)
        self.project = nn.Linear(C, self.token_dim)
        self.query_block = PreNormAttentionBlock(dim=self.token_dim, heads=heads, dropout=dropout)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_normal_(m.weight)
                nn.init.constant_(m.bias, 0.01)
        nn.init.normal_(self.pos_embed, std=0.02)

    def image_tokens(self, query_features: Float[Tensor, "B C S S"]) -> Float[Tensor, "B P D"]:
        """Patch tokens ``(B, P, D)`` from the encoder's ``query_features`` ``(B, C, S, S)``."""
        if query_features.shape[-1] != self.feature_size or query_features.shape[-2] != self.feature_size:
            raise ValueError(f"expected query features of side {self.feature_size}, got {tuple(query_features.shape)}")
        x = F.relu(self.patchify(query_features))  # (B, C, g, g)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed  # (B, P, C)
        return self.project(self.patch_block(x))  # (B, P, D)

    def forward(self, points: Float[Tensor, "B N 3"], tokens: Float[Tensor, "B P D"]) -> Float[Tensor, "B N D"]:
        """Image feature per query point.

        Args:
            points: ``(B, N, 3)`` query points relative to the hand's wrist, camera axes, metres.
            tokens: ``(B, P, D)`` from :meth:`image_tokens`.

        Returns:
            ``(B, N, D)`` the point tokens after attending to the patches.
        """
        token = torch.cat([points, self.point_mlp(points)], -1)  # (B, N, D)
        return self.query_block.attend_with_context(token, tokens)
