"""Point-transformer building blocks in plain torch (no pytorch3d, no compiled ops).

Used by stage 2 (:mod:`im2hands.models.ref_occ`) to encode each hand's anchor points and to let
query points attend to them (AIR-Nets' encoder and decoder, reference section 2.2):

- :func:`knn` / :func:`gather_neighbors`: ``k`` nearest neighbours by ``torch.cdist(...).topk``
  with the indices found under ``no_grad`` (chunked over queries), neighbours then gathered so
  gradients flow through the features only (dependencies.md section 5: the fastest
  differentiable variant on CPU);
- :func:`farthest_point_sample`: deterministic farthest point sampling with an optional
  validity mask (starts at the valid point farthest from the valid points' centroid);
- :class:`VectorAttentionBlock`: Point Transformer vector self-attention over the ``k`` nearest
  neighbours (or all points), ``w = softmax_j(gamma(q_i - k_j + delta_ij))`` per channel,
  output ``sum_j w * (v_j + delta_ij)``, ``delta = MLP(x_i - x_j)``; pre-LayerNorm, residual;
- :class:`TransitionDown`: farthest point sampling plus attentive pooling over each kept
  point's ``k`` nearest input points;
- :class:`PointTransformerEncoder`: the anchor encoder (embed, attention at every level,
  transition-downs, full attention at the last level, global code by max-pool + MLP);
- :class:`QueryAnchorAttention`: each query point attends, with the hand's global code as the
  attention query, over its ``k`` nearest anchors plus one global token (AIR-Nets'
  ``CrossTransformerBlock``), followed by the ResNet-FC occupancy decoder.

Shapes: ``B`` point sets (here batch x hands), ``N``/``M`` points, ``k`` neighbours, ``C``
channels. Positions are in whatever unit the caller uses (stage 2 passes decimetres).
LayerNorm replaces AIR-Nets' BatchNorm (batches of 2 images, and no train/eval statistics gap).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.typing import Bool, Float, Int, Tensor

__all__ = [
    "knn",
    "gather_neighbors",
    "farthest_point_sample",
    "PointMLP",
    "VectorAttentionBlock",
    "TransitionDown",
    "PointTransformerEncoder",
    "QueryAnchorAttention",
]

_KNN_BLOCK = 1 << 22  # largest distance matrix (elements) built at once by knn
_CPU_BLOCK = 1 << 19
"""On the CPU, attention runs over blocks of query points whose per-neighbour tensors
``(B, n, k, C)`` hold at most this many elements (2 MB): they stay in cache and in the
allocator's pools instead of fresh page-faulting allocations. Measured on 2 cores, training
the query-anchor attention (B 4, 4096 queries, k 10, C 64): 0.26 s against 0.79 s in one pass."""


def knn(query: Float[Tensor, "B M 3"], ref: Float[Tensor, "B N 3"], k: int) -> Int[Tensor, "B M k"]:
    """Indices of the ``k`` nearest ``ref`` points of each query point, nearest first.

    Computed without autograd (``cdist`` + ``topk``, float32), in chunks of queries so that no
    distance block exceeds about 4 M elements. ``k`` is clamped to ``N``.

    Args:
        query: ``(B, M, 3)`` query positions.
        ref: ``(B, N, 3)`` reference positions.
        k: neighbours per query.

    Returns:
        ``(B, M, k)`` int64 indices into ``ref``'s second axis.
    """
    if query.dim() != 3 or ref.dim() != 3 or query.shape[0] != ref.shape[0] or query.shape[-1] != ref.shape[-1]:
        raise ValueError(f"expected query (B, M, D) and ref (B, N, D), got {tuple(query.shape)}, {tuple(ref.shape)}")
    B, M, _ = query.shape
    N = ref.shape[1]
    k = min(k, N)
    with torch.no_grad():
        q, r = query.detach().float(), ref.detach().float()
        step = max(1, _KNN_BLOCK // max(1, B * N))
        parts = [torch.cdist(q[:, i : i + step], r).topk(k, dim=-1, largest=False).indices for i in range(0, M, step)]
    return torch.cat(parts, 1) if len(parts) > 1 else parts[0]  # (B, M, k)


def gather_neighbors(x: Float[Tensor, "B N C"], idx: Int[Tensor, "B M k"]) -> Float[Tensor, "B M k C"]:
    """``x[b, idx[b, m, j]]`` for every ``b, m, j`` (differentiable in ``x``).

    Args:
        x: ``(B, N, C)`` per-point values.
        idx: ``(B, M, k)`` indices into the second axis of ``x``.

    Returns:
        ``(B, M, k, C)``.
    """
    B, N, C = x.shape
    _, M, k = idx.shape
    flat = (idx + torch.arange(B, device=idx.device).view(B, 1, 1) * N).reshape(-1)  # (B M k,)
    return x.reshape(B * N, C).index_select(0, flat).view(B, M, k, C)  # (B, M, k, C)


def farthest_point_sample(
    points: Float[Tensor, "B N 3"], n: int, mask: Optional[Bool[Tensor, "B N"]] = None
) -> Int[Tensor, "B n"]:
    """Farthest point sampling (deterministic, no autograd).

    Starts at the (valid) point farthest from the valid points' centroid, then repeatedly adds
    the valid point farthest from those chosen. Where a set has fewer than ``n`` valid points,
    its chosen points are repeated cyclically to fill ``n`` slots (a set with none returns
    index 0 everywhere; callers check ``mask.any(1)``).

    Args:
        points: ``(B, N, 3)`` positions.
        n: points to keep.
        mask: ``(B, N)`` which points may be chosen (default: all).

    Returns:
        ``(B, n)`` int64 indices into ``points``' second axis.
    """
    if points.dim() != 3:
        raise ValueError(f"expected points (B, N, D), got {tuple(points.shape)}")
    B, N, _ = points.shape
    with torch.no_grad():
        p = points.detach().float()
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=p.device)
        w = mask.float()[..., None]  # (B, N, 1)
        centroid = (p * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1, 3)
        cur = ((p - centroid) ** 2).sum(-1).masked_fill(~mask, -1.0).argmax(1)  # (B,)
        dist = torch.full((B, N), float("inf"), device=p.device).masked_fill(~mask, float("-inf"))
        idx = torch.empty(B, n, dtype=torch.long, device=p.device)
        for i in range(n):
            idx[:, i] = cur
            last = p.gather(1, cur.view(B, 1, 1).expand(B, 1, p.shape[-1]))  # (B, 1, 3)
            dist = torch.minimum(dist, ((p - last) ** 2).sum(-1))
            cur = dist.argmax(1)
        count = mask.sum(1)  # (B,)
        if bool((count < n).any()):  # repeat the distinct picks cyclically
            slots = torch.arange(n, device=p.device).view(1, n) % count.clamp(min=1).view(B, 1)  # (B, n)
            idx = idx.gather(1, slots)
    return idx


def _mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c_out))


class PointMLP(nn.Module):
    """Per-point residual MLP (AIR-Nets' ``ElementwiseMLP``): ``x + Linear(ReLU(Linear(LN x)))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, dim, dim)

    def forward(self, x: Float[Tensor, "B N C"]) -> Float[Tensor, "B N C"]:
        return x + self.mlp(self.norm(x))


class VectorAttentionBlock(nn.Module):
    """Point Transformer layer: pre-LN vector self-attention over neighbours, residual.

    ``h = LN(f)``, ``q, k, v = W h``; for each point ``i`` and neighbour ``j``:
    ``delta_ij = MLP(x_i - x_j)`` (3 -> C -> C), ``a_ij = gamma(q_i - k_j + delta_ij)``
    (C -> C -> C), ``w = softmax_j(a)`` per channel, ``out_i = sum_j w_ij * (v_j + delta_ij)``;
    ``f + W_o out``.

    Args:
        dim: feature width ``C``.
        neighbors: ``k``; ``None`` (or ``k >= N``) attends over all points (full attention,
            done by broadcasting rather than gathering).
    """

    def __init__(self, dim: int, neighbors: Optional[int] = 16) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos = _mlp(3, dim, dim)
        self.gamma = _mlp(dim, dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, f: Float[Tensor, "B N C"], x: Float[Tensor, "B N 3"], idx: Optional[Int[Tensor, "B N k"]] = None
    ) -> Float[Tensor, "B N C"]:
        """Args:
            f: ``(B, N, C)`` features; x: ``(B, N, 3)`` positions.
            idx: ``(B, N, k)`` precomputed neighbour indices (computed here when None).

        Returns:
            ``(B, N, C)`` updated features.
        """
        B, N, C = f.shape
        q, k, v = self.qkv(self.norm(f)).chunk(3, -1)  # (B, N, C) each
        full = idx is None and (self.neighbors is None or self.neighbors >= N)
        if not full and idx is None:
            idx = knn(x, x, self.neighbors)
        width = N if full else idx.shape[-1]
        step = max(1, _CPU_BLOCK // (B * width * C)) if f.device.type == "cpu" else N
        out = [self._attend(q[:, i : i + step], x[:, i : i + step], k, v, x, None if full else idx[:, i : i + step])
               for i in range(0, N, step)]  # fmt: skip
        return f + self.out(torch.cat(out, 1) if len(out) > 1 else out[0])  # (B, N, C)

    def _attend(self, q: Tensor, xq: Tensor, k: Tensor, v: Tensor, x: Tensor, idx: Optional[Tensor]) -> Tensor:
        """Attention output ``(B, n, C)`` of ``n`` query rows (all points when ``idx`` is None)."""
        if idx is None:
            delta = self.pos(xq[:, :, None] - x[:, None])  # (B, n, N, C)
            k_j, v_j = k[:, None], v[:, None]  # (B, 1, N, C)
        else:
            delta = self.pos(xq[:, :, None] - gather_neighbors(x, idx))  # (B, n, k, C)
            k_j, v_j = gather_neighbors(k, idx), gather_neighbors(v, idx)  # (B, n, k, C)
        w = torch.softmax(self.gamma(q[:, :, None] - k_j + delta), dim=2)  # (B, n, k, C)
        return (w * (v_j + delta)).sum(2)  # (B, n, C)


class TransitionDown(nn.Module):
    """Farthest point sampling to ``n_out`` points, then attentive pooling of each kept point's
    ``k`` nearest input points: ``h_j = MLP(ReLU(LN(W f_j + delta(x_j - x_c))))``,
    ``out_c = sum_j softmax_j(S h_j) * h_j`` (per channel).

    Args:
        in_dim, out_dim: feature widths before / after.
        n_out: points kept.
        neighbors: ``k`` input points pooled into each kept point.
    """

    def __init__(self, in_dim: int, out_dim: int, n_out: int, neighbors: int = 16) -> None:
        super().__init__()
        self.n_out, self.neighbors = n_out, neighbors
        self.proj = nn.Linear(in_dim, out_dim)
        self.pos = _mlp(3, out_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.mlp = nn.Linear(out_dim, out_dim)
        self.score = nn.Linear(out_dim, out_dim)

    def forward(
        self, f: Float[Tensor, "B N C"], x: Float[Tensor, "B N 3"]
    ) -> tuple[Float[Tensor, "B M D"], Float[Tensor, "B M 3"]]:
        """Returns ``(features (B, n_out, out_dim), positions (B, n_out, 3))``."""
        B = f.shape[0]
        keep = farthest_point_sample(x, self.n_out)  # (B, M)
        centres = x.gather(1, keep[..., None].expand(B, self.n_out, 3))  # (B, M, 3)
        idx = knn(centres, x, self.neighbors)  # (B, M, k)
        rel = gather_neighbors(x, idx) - centres[:, :, None]  # (B, M, k, 3)
        h = gather_neighbors(self.proj(f), idx) + self.pos(rel)  # (B, M, k, D)
        h = self.mlp(F.relu(self.norm(h)))  # (B, M, k, D)
        w = torch.softmax(self.score(h), dim=2)  # (B, M, k, D)
        return (w * h).sum(2), centres  # (B, M, D), (B, M, 3)


class PointTransformerEncoder(nn.Module):
    """Anchor encoder (AIR-Nets ``PointTransformerEncoderV2``, simplified; reference 2.2).

    ``Linear(in -> reduced)``, a vector-attention block (``k`` neighbours); for each entry of
    ``layers``: :class:`TransitionDown` to that many points (width ``dim``), PointMLP, vector
    attention, PointMLP; then ``full_blocks`` x (full vector attention over the last level's
    points + PointMLP); global code ``MLP(max-pool)``.

    Args:
        in_dim: input feature width.
        layers: points kept by each transition-down (e.g. ``(256, 128)`` after 512 inputs).
        reduced_dim: width at the input level (120).
        dim: width after the first transition-down and of the code (256).
        neighbors: ``k`` of the local attention and of the transition-downs (16).
        full_blocks: full-attention blocks at the last level (3).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        layers: tuple[int, ...] = (256, 128),
        reduced_dim: int = 120,
        dim: int = 256,
        neighbors: int = 16,
        full_blocks: int = 3,
    ) -> None:
        super().__init__()
        if any(b >= a for a, b in zip(layers, layers[1:])):
            raise ValueError(f"layers must be decreasing point counts, got {tuple(layers)}")
        self.layers, self.dim, self.neighbors = tuple(layers), dim, neighbors
        self.embed = nn.Linear(in_dim, reduced_dim)
        self.attn0 = VectorAttentionBlock(reduced_dim, neighbors)
        self.down = nn.ModuleList()
        self.stages = nn.ModuleList()
        width = reduced_dim
        for n in self.layers:
            self.down.append(TransitionDown(width, dim, n, neighbors))
            self.stages.append(nn.ModuleList([PointMLP(dim), VectorAttentionBlock(dim, neighbors), PointMLP(dim)]))
            width = dim
        self.full = nn.ModuleList(
            [nn.ModuleList([VectorAttentionBlock(width, None), PointMLP(width)]) for _ in range(full_blocks)]
        )
        self.head = _mlp(width, width, width)
        self.out_dim = width

    def forward(
        self, f: Float[Tensor, "B N Ci"], x: Float[Tensor, "B N 3"]
    ) -> tuple[Float[Tensor, "B C"], Float[Tensor, "B P 3"], Float[Tensor, "B P C"]]:
        """Encode point sets.

        Args:
            f: ``(B, N, in_dim)`` per-point input features.
            x: ``(B, N, 3)`` positions.

        Returns:
            ``(code (B, C), positions (B, P, 3), features (B, P, C))`` with ``P`` the last
            entry of ``layers`` (``N`` without transition-downs).
        """
        if f.dim() != 3 or x.shape != (*f.shape[:2], 3):
            raise ValueError(
                f"expected features (B, N, C) and positions (B, N, 3), got {tuple(f.shape)}, {tuple(x.shape)}"
            )
        h = self.attn0(self.embed(f), x)  # (B, N, reduced)
        for down, (mlp1, attn, mlp2) in zip(self.down, self.stages):
            h, x = down(h, x)  # (B, n, dim)
            h = mlp2(attn(mlp1(h), x))
        for attn, mlp in self.full:
            h = mlp(attn(h, x))
        return self.head(h.amax(1)), x, h


class _ResBlock(nn.Module):
    """ONet's ``ResnetBlockFC``: ``h + fc1(ReLU(fc0(ReLU(h))))`` with ``fc1`` zero-initialised."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc0, self.fc1 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        nn.init.zeros_(self.fc1.weight)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc1(F.relu(self.fc0(F.relu(h))))


class QueryAnchorAttention(nn.Module):
    """Query-anchor cross vector attention plus occupancy decoder (AIR-Nets
    ``PointTransformerDecoderOcc``; reference section 2.2).

    Attention, per query point ``x`` of one hand with the hand's context code ``z``:
    ``q = W_q z`` (the same for every query); tokens are the ``k`` nearest anchors
    (``W_k f_j``, ``W_v f_j``, ``delta_j = MLP(x - a_j)``) and one global token (``W_kg z``,
    ``W_vg z``, ``delta = 0``); ``w = softmax over the k + 1 tokens of gamma(q - k + delta)``
    per channel, ``h = sum w * (v + delta)``.

    Decoder: ``Linear([x, query feature, h] -> hidden)``, ``blocks`` x (``+ Linear(h)``,
    ResNet-FC block), ``Linear(ReLU) -> 1`` logit.

    Args:
        code_dim: width of the anchor features and of the hand code.
        query_dim: width of the per-query input feature.
        dim: attention width (200).
        neighbors: anchors attended per query (9).
        hidden: decoder width (32).
        blocks: decoder blocks (5).
    """

    def __init__(
        self, *, code_dim: int, query_dim: int, dim: int = 200, neighbors: int = 9, hidden: int = 32, blocks: int = 5
    ) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.cpu_block = _CPU_BLOCK
        """On the CPU, queries go in blocks whose ``(B, n, k + 1, A)`` tensors hold at most this
        many elements; on GPUs in one pass."""
        self.to_q = nn.Linear(code_dim, dim)
        self.to_kv = nn.Linear(code_dim, 2 * dim)
        self.to_kv_global = nn.Linear(code_dim, 2 * dim)
        self.pos = _mlp(3, dim, dim)
        self.gamma = _mlp(dim, dim, dim)
        self.fc_in = nn.Linear(3 + query_dim + dim, hidden)
        self.fc_attn = nn.ModuleList([nn.Linear(dim, hidden) for _ in range(blocks)])
        self.blocks = nn.ModuleList([_ResBlock(hidden) for _ in range(blocks)])
        self.fc_out = nn.Linear(hidden, 1)

    def _attend(self, x: Tensor, anchors: Tensor, anchors_g: Tensor, kv: Tensor, q: Tensor) -> Tensor:
        """Attention output ``(B, n, A)`` of queries ``x`` ``(B, n, 3)``."""
        B, n, _ = x.shape
        P = anchors.shape[1]
        idx = knn(x, anchors, self.neighbors)  # (B, n, k)
        idx = torch.cat([idx, idx.new_full((B, n, 1), P)], -1)  # (B, n, k + 1), last: the global token
        delta = self.pos(x[:, :, None] - gather_neighbors(anchors_g, idx))  # (B, n, k + 1, A)
        local = torch.ones(idx.shape[-1], 1, dtype=delta.dtype, device=x.device)
        local[-1] = 0.0
        delta = delta * local  # no position term for the global token
        k, v = gather_neighbors(kv, idx).chunk(2, -1)  # (B, n, k + 1, A) each
        w = torch.softmax(self.gamma(q - k + delta), dim=2)  # (B, n, k + 1, A)
        return (w * (v + delta)).sum(2)  # (B, n, A)

    def forward(
        self,
        x: Float[Tensor, "B N 3"],
        query_feature: Float[Tensor, "B N Cq"],
        anchors: Float[Tensor, "B P 3"],
        anchor_features: Float[Tensor, "B P C"],
        code: Float[Tensor, "B C"],
    ) -> Float[Tensor, "B N"]:
        """Occupancy logits of query points (one hand per batch row).

        Args:
            x: ``(B, N, 3)`` query positions (same frame and unit as ``anchors``).
            query_feature: ``(B, N, query_dim)`` per-query input feature.
            anchors: ``(B, P, 3)`` anchor positions; anchor_features: ``(B, P, code_dim)``.
            code: ``(B, code_dim)`` the hand's context code.

        Returns:
            ``(B, N)`` logits.
        """
        B, N, _ = x.shape
        P = anchors.shape[1]
        # the global token is appended as anchor P, with its position term masked to 0
        kv = torch.cat([self.to_kv(anchor_features), self.to_kv_global(code)[:, None]], 1)  # (B, P + 1, 2 A)
        anchors_g = torch.cat([anchors, anchors.new_zeros(B, 1, 3)], 1)  # (B, P + 1, 3)
        q = self.to_q(code)[:, None, None]  # (B, 1, 1, A): the same query for every point
        step = N
        if x.device.type == "cpu":  # keep the (B, n, k + 1, A) tensors small (cache, allocator)
            step = max(1, self.cpu_block // (B * (self.neighbors + 1) * q.shape[-1]))
        h = [self._attend(x[:, i : i + step], anchors, anchors_g, kv, q) for i in range(0, N, step)]
        h = torch.cat(h, 1) if len(h) > 1 else h[0]  # (B, N, A)
        out = self.fc_in(torch.cat([x, query_feature, h], -1))  # (B, N, hidden)
        for fc, block in zip(self.fc_attn, self.blocks):
            out = block(out + fc(h))
        return self.fc_out(F.relu(out)).squeeze(-1)  # (B, N)
