"""Small rotation and homogeneous-transform helpers (pure torch, batched, differentiable).

Conventions: rotation matrices act on column vectors (``p' = R @ p``); a homogeneous transform
``T`` of shape ``(..., 4, 4)`` maps ``p`` to ``T[:3, :3] @ p + T[:3, 3]``. Axis-angle vectors are
``axis * angle`` (radians, right-hand rule). Every function broadcasts over leading dimensions,
keeps the input's device and dtype, and stays finite (values and gradients) at the degenerate
inputs named in its docstring.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from im2hands.typing import Float, Tensor

__all__ = [
    "random_rotation",
    "random_rotation_matrix",
    "axis_angle_to_matrix_np",
    "safe_norm",
    "normalize",
    "skew",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rotation_about_axis",
    "rotation_between",
    "make_transform",
    "invert_transform",
]

_SMALL_ANGLE = 1e-4  # below this |angle| (rad) the Rodrigues coefficients use their Taylor series


def safe_norm(v: Float[Tensor, "... 3"], eps: float = 1e-9, keepdim: bool = False) -> Float[Tensor, "..."]:
    """Euclidean norm over the last dimension, clamped to ``>= eps`` (finite gradient at 0)."""
    return (v * v).sum(-1, keepdim=keepdim).clamp(min=eps * eps).sqrt()


def normalize(v: Float[Tensor, "... D"], eps: float = 1e-9) -> Float[Tensor, "... D"]:
    """``v / max(|v|, eps)`` over the last dimension; a zero vector stays (near) zero."""
    return v / safe_norm(v, eps, keepdim=True)


def skew(v: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """Cross-product matrix ``[v]_x`` with ``[v]_x @ w == cross(v, w)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).unflatten(-1, (3, 3))  # (..., 3, 3)


def axis_angle_to_matrix(axis_angle: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """Rodrigues' formula ``R = I + a [k]_x + b [k]_x^2`` with ``k = axis * angle``.

    Uses ``a = sin t / t`` and ``b = (1 - cos t) / t^2`` with their Taylor series near ``t = 0``,
    so the zero vector gives the identity with finite gradients.

    Args:
        axis_angle: ``(..., 3)`` rotation vectors (radians).

    Returns:
        ``(..., 3, 3)`` rotation matrices.

    Example:
        >>> R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, torch.pi / 2]))
        >>> torch.allclose(R @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
        True
    """
    t2 = (axis_angle * axis_angle).sum(-1)
    small = t2 < _SMALL_ANGLE**2
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = t2_safe.sqrt()
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2_safe)
    K = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def axis_angle_to_matrix_np(rotvec: np.ndarray) -> np.ndarray:
    """:func:`axis_angle_to_matrix` for numpy arrays, in float64: ``(..., 3)`` rotation vectors
    (radians) -> ``(..., 3, 3)`` rotation matrices (the one Rodrigues of the numpy code)."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(rotvec, dtype=np.float64))).numpy()


def _matrix_to_quaternion(R: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 4"]:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0``; picks the best-conditioned of 4 forms."""
    m = R.flatten(-2)  # (..., 9)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # 4 * q_i^2 for i = w, x, y, z; the largest one gives a well-conditioned division.
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )  # (..., 4)
    root = sq.clamp(min=1e-12).sqrt()  # 2|q_i|
    # Row i: 4 q_i * (w, x, y, z); dividing by 2 root_i = 4|q_i| gives q up to sign.
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], -1),
        ],
        -2,
    ) / (2 * root[..., None])  # (..., 4, 4)
    best = sq.argmax(-1, keepdim=True)  # (..., 1)
    q = torch.gather(cand, -2, best[..., None].expand(*best.shape[:-1], 1, 4)).squeeze(-2)  # (..., 4)
    q = normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(R: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 3"]:
    """Inverse of :func:`axis_angle_to_matrix`; angles in ``[0, pi]``.

    Args:
        R: ``(..., 3, 3)`` rotation matrices.

    Returns:
        ``(..., 3)`` rotation vectors. At exactly ``pi`` the axis sign is arbitrary.
    """
    q = _matrix_to_quaternion(R)
    w, xyz = q[..., 0], q[..., 1:]
    s = safe_norm(xyz, eps=1e-12)  # sin(angle / 2)
    angle = 2.0 * torch.atan2(s, w)
    small = s < _SMALL_ANGLE
    # angle / sin(angle / 2) -> 2 / w for small angles (w ~ 1).
    factor = torch.where(small, 2.0 / w.clamp(min=0.5), angle / s)
    return xyz * factor[..., None]


def matrix_to_axis_angle_np(R: np.ndarray) -> np.ndarray:
    """:func:`matrix_to_axis_angle` for numpy: ``(..., 3, 3)`` -> ``(..., 3)`` float64."""
    return matrix_to_axis_angle(torch.as_tensor(np.asarray(R), dtype=torch.float64)).numpy()


def rotation_about_axis(axis: Float[Tensor, "... 3"], angle: Float[Tensor, "..."]) -> Float[Tensor, "... 3 3"]:
    """Rotation by ``angle`` (radians) about ``axis`` (normalised here).

    A (near) zero axis gives the identity, so degenerate axes never produce NaN.
    """
    return axis_angle_to_matrix(normalize(axis) * angle[..., None])


def rotation_between(a: Float[Tensor, "... 3"], b: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """Minimal rotation ``R`` with ``R @ a_hat == b_hat`` (rotation about ``a x b``).

    ``R = I + [v]_x + [v]_x^2 / (1 + c)`` with ``v = a_hat x b_hat``, ``c = a_hat . b_hat``. For
    (near) antiparallel inputs, where the minimal rotation is not unique, it returns the
    half-turn about an axis perpendicular to ``a``.

    Args:
        a, b: ``(..., 3)`` non-zero vectors (any length).

    Returns:
        ``(..., 3, 3)`` rotation matrices.
    """
    a = normalize(a)
    b = normalize(b)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    anti = c < -1.0 + 1e-6
    K = skew(v)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand(K.shape)
    denom = torch.where(anti, torch.ones_like(c), 1.0 + c)
    R = eye + K + (K @ K) / denom[..., None, None]
    # Half-turn about a unit axis u perpendicular to a: R = 2 u u^T - I.
    helper = torch.zeros_like(a)
    helper[..., 0] = 1.0
    helper = torch.where((a[..., :1].abs() > 0.9), torch.roll(helper, 1, -1), helper)
    u = normalize(torch.cross(a, helper, dim=-1))
    half_turn = 2.0 * u[..., :, None] * u[..., None, :] - eye
    return torch.where(anti[..., None, None], half_turn, R)


def make_transform(
    R: Float[Tensor, "... 3 3"], t: Float[Tensor, "... 3"] | None = None
) -> Float[Tensor, "... 4 4"]:
    """Homogeneous ``[[R, t], [0, 1]]`` (``t`` defaults to zero); ``R`` may be any 3x3 map."""
    if t is None:
        t = R.new_zeros(R.shape[:-1])
    top = torch.cat([R, t[..., :, None]], -1)  # (..., 3, 4)
    bottom = R.new_zeros(*top.shape[:-2], 1, 4)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], -2)  # (..., 4, 4)


def invert_transform(T: Float[Tensor, "... 4 4"]) -> Float[Tensor, "... 4 4"]:
    """Inverse of a similarity transform (rotation, optional reflection, uniform scale, shift).

    With ``T[:3, :3] = c Q`` (``Q`` orthogonal, ``c > 0``) the inverse map is ``Q^T / c`` and
    ``-Q^T t / c``; no general matrix inverse is needed.

    Args:
        T: ``(..., 4, 4)`` similarity transforms.

    Returns:
        ``(..., 4, 4)`` inverse transforms.
    """
    L, t = T[..., :3, :3], T[..., :3, 3]
    c2 = (L * L).sum((-1, -2)) / 3.0  # c^2
    L_inv = L.transpose(-1, -2) / c2[..., None, None]
    return make_transform(L_inv, -(L_inv @ t[..., :, None]).squeeze(-1))


def random_rotation(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                    max_angle: float | None = None) -> Float[Tensor, "n 3"]:
    """Random rotations as axis-angle vectors.

    Args:
        n: how many.
        generator: torch RNG (CPU).
        max_angle: ``None``: uniform over SO(3) (Shoemake's quaternion method); otherwise a
            uniformly random axis and an angle uniform in ``[0, max_angle]`` (radians).

    Returns:
        ``(n, 3)`` axis-angle vectors.
    """
    if max_angle is None:
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
        a, b = torch.sqrt(1 - u[:, 0]), torch.sqrt(u[:, 0])
        q = torch.stack([a * torch.sin(2 * math.pi * u[:, 1]), a * torch.cos(2 * math.pi * u[:, 1]),
                         b * torch.sin(2 * math.pi * u[:, 2]), b * torch.cos(2 * math.pi * u[:, 2])], -1)
        q = torch.where(q[:, :1] < 0, -q, q)  # (w, x, y, z), w >= 0
        s = q[:, 1:].norm(dim=-1).clamp(min=1e-12)
        angle = 2 * torch.atan2(s, q[:, 0])
        return (q[:, 1:] * (angle / s)[:, None]).to(dtype)
    axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    angle = torch.rand(n, 1, generator=generator, dtype=torch.float64) * max_angle
    return (axis * angle).to(dtype)


def random_rotation_matrix(n: int, generator: torch.Generator | None = None,
                           dtype: torch.dtype = torch.float64) -> Float[Tensor, "n 3 3"]:
    """Uniformly random proper rotations as ``(n, 3, 3)`` matrices: the Q factor of a Gaussian
    matrix with the signs of R's diagonal moved into it (Haar measure), then the last column
    flipped where ``det Q = -1``.

    Uniform over SO(3) like :func:`random_rotation` with ``max_angle=None``, but a different
    draw from the same generator (9 normals per rotation instead of 3 uniforms), so the two do
    not give the same rotations. Both are kept: stage 2's anchor rays
    (:class:`~im2hands.models.anchors.AnchorFinder`) are rotated by these draws and the
    synthetic data's poses by :func:`random_rotation`'s, so replacing either would change
    shipped numbers (stage-2 results, generated datasets).
    """
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[:, :, 2] *= torch.det(q)[:, None]  # proper rotations
    return q.to(dtype)  # (n, 3, 3)
