"""Graph convolutions over the hand skeleton (21 keypoints, ``standard`` order).

The skeleton is an undirected tree: keypoint ``j`` is joined to ``STANDARD_PARENTS[j]``. A
graph convolution mixes each keypoint's features with its neighbours' through the
**symmetrically normalised adjacency**

    A_hat = D^{-1/2} A D^{-1/2},    A_ij = 1 if i, j share a bone, D = diag(degrees),

whose eigenvalues lie in [-1, 1]. :class:`ChebGraphConv` is a Chebyshev filter of order ``K``
(Defferrard et al. 2016) on it: with ``T_0 = X``, ``T_1 = A_hat X`` and
``T_k = 2 A_hat T_{k-1} - T_{k-2}``,

    Y = sum_{k < K} T_k W_k + b.

(The usual rescaled Laplacian with ``lambda_max = 2`` is ``L~ = (I - A_hat) - I = -A_hat``; its
odd terms differ from ours only in sign, which the weights absorb.) ``K = 2`` is ``Y = X W_0 + A_hat X W_1``.

The original code used the raw, directed parent -> child matrix (not symmetric, not
normalised: a node heard only its parent, the wrist nobody); this module replaces it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from im2hands.hands.joint_orders import STANDARD_PARENTS
from im2hands.typing import Float, Tensor

__all__ = ["skeleton_adjacency", "normalized_adjacency", "ChebGraphConv", "GraphResBlock"]


def skeleton_adjacency(parents: Sequence[int] = STANDARD_PARENTS) -> Float[Tensor, "J J"]:
    """Symmetric 0/1 adjacency of a kinematic tree (no self loops).

    Args:
        parents: parent index of each node, -1 for roots.

    Returns:
        ``(J, J)`` float tensor with ``A[i, p] = A[p, i] = 1`` for every bone.

    Example:
        >>> skeleton_adjacency([-1, 0, 1])
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
    """
    J = len(parents)
    A = torch.zeros(J, J)
    for child, parent in enumerate(parents):
        if parent >= 0:
            if not 0 <= parent < J or parent == child:
                raise ValueError(f"bad parent {parent} for node {child}")
            A[child, parent] = A[parent, child] = 1.0
    return A


def normalized_adjacency(A: Float[Tensor, "J J"]) -> Float[Tensor, "J J"]:
    """``D^{-1/2} A D^{-1/2}`` for a symmetric non-negative adjacency (isolated nodes stay 0)."""
    if A.dim() != 2 or A.shape[0] != A.shape[1] or not torch.equal(A, A.T):
        raise ValueError(f"expected a symmetric (J, J) adjacency, got shape {tuple(A.shape)}")
    deg = A.sum(-1)
    inv_sqrt = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    return inv_sqrt[:, None] * A * inv_sqrt[None, :]


class ChebGraphConv(nn.Module):
    """Chebyshev graph convolution of order ``order`` on a fixed graph.

    Args:
        in_dim: input channels per node.
        out_dim: output channels per node.
        adjacency: ``(J, J)`` symmetric 0/1 adjacency; normalised here (see module docstring).
            Default: the 21-keypoint hand skeleton.
        order: number of Chebyshev terms ``K`` (1: a per-node linear layer; 2: ``[X, A_hat X]``).
        bias: add a learned bias.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        adjacency: Float[Tensor, "J J"] | None = None,
        order: int = 2,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        A = skeleton_adjacency() if adjacency is None else adjacency
        # float64 so that .double() copies keep exact values; cast to the input's dtype in forward
        self.register_buffer("a_hat", normalized_adjacency(A.double()), persistent=False)  # (J, J)
        self.order = order
        self.in_dim, self.out_dim = in_dim, out_dim
        self.linear = nn.Linear(order * in_dim, out_dim, bias=bias)  # [W_0; ...; W_{K-1}]

    def forward(self, x: Float[Tensor, "... J C"]) -> Float[Tensor, "... J D"]:
        """Filter node features.

        Args:
            x: ``(..., J, in_dim)`` node features (any leading dims, e.g. ``(B, 2, 21, C)``).

        Returns:
            ``(..., J, out_dim)``.
        """
        J = self.a_hat.shape[0]
        if x.shape[-2] != J or x.shape[-1] != self.in_dim:
            raise ValueError(f"expected x of shape (..., {J}, {self.in_dim}), got {tuple(x.shape)}")
        a_hat = self.a_hat.to(x.dtype)
        terms = [x]
        if self.order > 1:
            terms.append(a_hat @ x)  # (..., J, C)
        for _ in range(2, self.order):
            terms.append(2.0 * (a_hat @ terms[-1]) - terms[-2])
        return self.linear(torch.cat(terms, dim=-1))  # (..., J, K*C) -> (..., J, D)


class GraphResBlock(nn.Module):
    """Pre-norm residual block of two graph convolutions: ``x + G2(drop(gelu(G1(LN(x)))))``.

    Args:
        dim: node feature width (in and out).
        order: Chebyshev order of both convolutions.
        dropout: dropout after the activation and on the residual branch.
        adjacency: as for :class:`ChebGraphConv` (default: hand skeleton).
    """

    def __init__(self, dim: int, *, order: int = 2, dropout: float = 0.0, adjacency: Tensor | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv1 = ChebGraphConv(dim, dim, adjacency=adjacency, order=order)
        self.conv2 = ChebGraphConv(dim, dim, adjacency=adjacency, order=order)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "... J C"]) -> Float[Tensor, "... J C"]:
        h = self.drop(self.act(self.conv1(self.norm(x))))
        return x + self.drop(self.conv2(h))
