"""Absolute placement of hands from 2D keypoints and metric root-relative 3D keypoints.

A keypoint estimator predicts, per hand, 21 pixel positions ``uv_j`` and 21 metric positions
``r_j`` relative to the wrist (camera orientation). The hand's absolute wrist position ``T``
is the translation that makes ``r_j + T`` project onto ``uv_j``; with two hands, the estimator
also predicts the left-minus-right wrist translation ``d``, which should hold as well.

Solver (pure torch, batched, differentiable; float64 inside):

1. **Linear least squares.** With normalised image coordinates ``(x_j, y_j, 1) = K^-1 (u_j,
   v_j, 1)`` the projection equations are linear in ``T = (tx, ty, tz)``::

       (a_j + tx) - x_j (c_j + tz) = 0,     (b_j + ty) - y_j (c_j + tz) = 0,

   for ``r_j = (a_j, b_j, c_j)``. Their residuals are metres at the joint's depth (a pixel
   error times ``z / f``). Both hands are solved together, with the prior rows
   ``sqrt(prior_weight) (T_L - T_R - d) = 0`` (metres as well), so ``prior_weight`` counts how
   many joints' worth of evidence the predicted relative translation is given.
2. **Gauss-Newton** on the actual reprojection error in pixels (``gn_steps`` steps, analytic
   Jacobian), the prior rows scaled by ``f / z`` (pixels per metre at the hands' depth) so
   that the balance of step 1 is kept.

Noise-free inputs are recovered exactly (to rounding) by step 1 already. Joints may be
weighted (e.g. 0 for joints the estimator put on the image border, which are likely outside
the image); a hand marked invalid, or with no weight at all, is not fitted: it is placed at
the other hand's position plus or minus ``d`` when that is known, else at the origin.

Intrinsics for plain images (no camera known): :func:`default_intrinsics`, focal length
``DEFAULT_FOCAL_FACTOR`` x the longer image side, principal point at the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from im2hands.typing import Bool, Float, Tensor

__all__ = [
    "DEFAULT_FOCAL_FACTOR",
    "DEFAULT_PRIOR_WEIGHT",
    "PAIR_DEPTH_POINTS",
    "Placement",
    "default_intrinsics",
    "focal_from_35mm",
    "FULL_FRAME_DIAGONAL_MM",
    "place_hands",
    "place_hand",
    "hand_size",
    "place_pair",
    "shared_scale",
]

DEFAULT_FOCAL_FACTOR: float = 1.2
"""Default focal length of plain images, as a multiple of the longer image side (a horizontal
field of view of about 45 degrees, a common phone or webcam lens). The synthetic training
crops use about 2.15 (550 px at 256 px); crops of wider images have larger factors."""
DEFAULT_PRIOR_WEIGHT: float = 4.0
"""Weight of the relative-translation prior, in joints' worth of reprojection evidence."""
SHARED_SCALE_MEANS: tuple[str, ...] = ("geometric", "arithmetic", "best")
"""How :func:`shared_scale` chooses two hands' common size: a mean of their sizes, or the size of
the hand that fits its 2D keypoints better."""
PAIR_DEPTH_POINTS: dict[str, tuple[int, ...]] = {"pips": (6, 10, 14, 18), "centroid": tuple(range(21)), "wrist": (0,)}
"""What :func:`place_pair` may put at one depth, as keypoints (``standard`` order) whose mean
depth counts: the four fingers' PIP joints, all 21, or the wrist. With ground-truth keypoints the
two hands of a pair are closest in depth at their PIPs (mean gap 30 / 32 mm on the renders'
``val`` / ``test60``, 5 mm on the real pair; all 21: 37 / 40 / 7 mm; wrists: 75 / 74 / 58 mm;
docs/estimator.md)."""
HAND_SIZE_MEASURES: tuple[str, ...] = ("palm", "bones")
"""What :func:`hand_size` measures: ``palm``, the mean wrist -> finger-base (MCP) distance of the
four fingers; ``bones``, the summed length of the skeleton's 20 bones (``standard`` order)."""
_PALM = (5, 9, 13, 17)  # index, middle, ring, pinky bases in ``standard`` order (the wrist is 0)
_PARENTS = (-1,) + tuple(0 if j == 0 else 1 + 4 * f + j - 1 for f in range(5) for j in range(4))  # standard order
_DAMPING = 1e-12
_MIN_DEPTH = 1e-3  # metres; depths are clamped to this in the Gauss-Newton Jacobian


@dataclass
class Placement:
    """What :func:`place_hands` returns.

    Attributes:
        wrist: ``(B, H, 3)`` absolute wrist positions (camera frame, metres).
        keypoints: ``(B, H, J, 3)`` absolute keypoints ``r + wrist``.
        reprojection_px: ``(B, H)`` weighted RMS reprojection error of each hand, pixels
            (NaN for hands that were not fitted).
        fitted: ``(B, H)`` which hands were fitted to their own keypoints.
    """

    wrist: Float[Tensor, "B H 3"]
    keypoints: Float[Tensor, "B H J 3"]
    reprojection_px: Float[Tensor, "B H"]
    fitted: Bool[Tensor, "B H"]


FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""Diagonal of the 36 x 24 mm frame that 35 mm equivalent focal lengths refer to (43.27 mm)."""


def focal_from_35mm(focal_35mm: float, height: int, width: int) -> float:
    """Focal length in pixels of a ``height x width`` image whose 35 mm equivalent focal length
    is ``focal_35mm`` (mm): the equivalent is defined by the diagonal field of view, so
    ``f_px = focal_35mm * hypot(W, H) / 43.27`` (EXIF ``FocalLengthIn35mmFilm``; a crop or
    resize of the image after capture is not known to it).

    Example:
        >>> round(focal_from_35mm(26.0, 3024, 4032), 1)  # a phone's main camera, 4:3
        3028.7
    """
    return float(focal_35mm) * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM


def default_intrinsics(
    height: int,
    width: int,
    focal_factor: float = DEFAULT_FOCAL_FACTOR,
    *,
    focal: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Float[Tensor, "3 3"]:
    """Intrinsics for an image without a known camera.

    Args:
        height, width: image size, pixels.
        focal_factor: focal length as a multiple of ``max(height, width)``.
        focal: focal length in pixels (overrides ``focal_factor``).

    Returns:
        ``(3, 3)`` ``[[f, 0, W/2], [0, f, H/2], [0, 0, 1]]`` (pixel centres at +0.5, so the
        principal point is the image centre).

    Example:
        >>> default_intrinsics(100, 200, 1.5)
        tensor([[300.,   0., 100.],
                [  0., 300.,  50.],
                [  0.,   0.,   1.]])
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    f = float(focal) if focal is not None else float(focal_factor) * max(height, width)
    if not f > 0:
        raise ValueError(f"focal length must be positive, got {f}")
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def _check(uv: Tensor, rel: Tensor, K: Tensor) -> None:
    if uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"expected uv of shape (B, H, J, 2), got {tuple(uv.shape)}")
    if rel.shape != uv.shape[:-1] + (3,):
        raise ValueError(f"expected rel of shape {tuple(uv.shape[:-1]) + (3,)}, got {tuple(rel.shape)}")
    if K.shape != (uv.shape[0], 3, 3):
        raise ValueError(f"expected K of shape ({uv.shape[0]}, 3, 3), got {tuple(K.shape)}")


def _block_prior(M: Tensor, g: Tensor, scale2: Tensor, resid: Tensor) -> tuple[Tensor, Tensor]:
    """Add ``scale2 * |T_L - T_R - d|^2`` (``resid = T_L - T_R - d`` or ``-d``) to a 6x6 system."""
    eye = torch.eye(3, dtype=M.dtype, device=M.device)
    s = scale2[:, None, None]  # (B, 1, 1)
    blk = torch.cat([torch.cat([eye, -eye], 1), torch.cat([-eye, eye], 1)], 0)  # (6, 6)
    M = M + s * blk
    g = g + scale2[:, None] * torch.cat([resid, -resid], -1)  # (B, 6)
    return M, g


def _assemble(blocks: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Block-diagonal ``(B, 3H, 3H)`` system from per-hand ``(B, H, 3, 3)`` blocks."""
    B, H = blocks.shape[:2]
    M = blocks.new_zeros(B, 3 * H, 3 * H)
    for h in range(H):
        M[:, 3 * h : 3 * h + 3, 3 * h : 3 * h + 3] = blocks[:, h]
    return M, rhs.reshape(B, 3 * H)


def _solve(M: Tensor, g: Tensor) -> Tensor:
    n = M.shape[-1]
    scale = M.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp(min=1e-30)  # (B,)
    eye = torch.eye(n, dtype=M.dtype, device=M.device)
    return torch.linalg.solve(M + (_DAMPING * scale)[:, None, None] * eye, g)  # (B, n)


def place_hands(
    uv: Float[Tensor, "B H J 2"],
    rel: Float[Tensor, "B H J 3"],
    K: Float[Tensor, "B 3 3"],
    *,
    rel_translation: Float[Tensor, "B 3"] | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    weights: Float[Tensor, "B H J"] | None = None,
    valid: Bool[Tensor, "B H"] | None = None,
    gn_steps: int = 3,
) -> Placement:
    """Solve each hand's absolute wrist position by perspective fitting (module docstring).

    Args:
        uv: ``(B, H, J, 2)`` 2D keypoints, pixels of the image ``K`` belongs to; ``H`` is 1 or 2
            (two: left, then right).
        rel: ``(B, H, J, 3)`` keypoints relative to each hand's wrist (or any reference point:
            the returned ``wrist`` is the translation added to ``rel``), camera orientation, metres.
        K: ``(B, 3, 3)`` intrinsics, pixels.
        rel_translation: ``(B, 3)`` predicted ``T_left - T_right`` (metres), used as a prior
            when ``H == 2``; None: the hands are fitted independently.
        prior_weight: weight of the prior (see :data:`DEFAULT_PRIOR_WEIGHT`); 0 disables it;
            a very large value enforces it.
        weights: ``(B, H, J)`` non-negative per-joint weights (default 1).
        valid: ``(B, H)`` hands to fit (default all).
        gn_steps: Gauss-Newton steps on the pixel reprojection error after the linear solve.

    Returns:
        :class:`Placement` in the dtype of ``rel``.
    """
    _check(uv, rel, K)
    B, H, J, _ = uv.shape
    if H not in (1, 2):
        raise ValueError(f"expected 1 or 2 hands, got {H}")
    out_dtype = rel.dtype
    dt = torch.float64
    uv, rel, K = uv.to(dt), rel.to(dt), K.to(dt)
    w = torch.ones(B, H, J, dtype=dt, device=uv.device) if weights is None else weights.to(dt).clamp(min=0.0)
    ok = torch.ones(B, H, dtype=torch.bool, device=uv.device) if valid is None else valid.bool().clone()
    ok = ok & (w.sum(-1) > 1e-12) & torch.isfinite(uv).all(-1).all(-1) & torch.isfinite(rel).all(-1).all(-1)
    w = torch.where(ok[..., None], w, torch.zeros_like(w))
    uv = torch.where(ok[..., None, None], uv, torch.zeros_like(uv))
    rel = torch.where(ok[..., None, None], rel, torch.zeros_like(rel))
    use_prior = rel_translation is not None and H == 2 and prior_weight > 0
    if use_prior:
        d = rel_translation.to(dt)
        both = ok.all(-1) & torch.isfinite(d).all(-1)  # (B,)
        d = torch.where(both[:, None], d, torch.zeros_like(d))
        lam = prior_weight * both.to(dt)  # (B,)
    eye3 = torch.eye(3, dtype=dt, device=uv.device)
    unfit = (~ok).to(dt)[..., None, None] * eye3  # (B, H, 3, 3) identity blocks keep unfitted hands at 0

    # 1. linear least squares in normalised image coordinates (residuals in metres)
    ones = torch.ones_like(uv[..., :1])
    xy = (torch.cat([uv, ones], -1) @ torch.linalg.inv(K).transpose(-1, -2)[:, None])[..., :2]  # (B, H, J, 2)
    zero = torch.zeros_like(xy[..., 0])
    one = torch.ones_like(zero)
    A = torch.stack([
        torch.stack([one, zero, -xy[..., 0]], -1),
        torch.stack([zero, one, -xy[..., 1]], -1),
    ], -2)  # (B, H, J, 2, 3)  fmt: skip
    b = xy * rel[..., 2:] - rel[..., :2]  # (B, H, J, 2)
    wA = w[..., None, None] * A
    blocks = (wA.transpose(-1, -2) @ A).sum(2) + unfit  # (B, H, 3, 3)
    rhs = (wA.transpose(-1, -2) @ b[..., None]).sum(2)[..., 0]  # (B, H, 3)
    M, g = _assemble(blocks, rhs)
    if use_prior:
        M, g = _block_prior(M, g, lam, d)  # + lam |T_L - T_R - d|^2: normal rows [I -I; -I I] T = [d; -d]
    T = _solve(M, g).view(B, H, 3)

    # 2. Gauss-Newton on the reprojection error in pixels
    fx, fy, s = K[:, 0, 0], K[:, 1, 1], K[:, 0, 1]
    f_mean = (fx * fy).abs().sqrt()  # (B,)
    for _ in range(max(0, int(gn_steps))):
        P = rel + T[:, :, None]  # (B, H, J, 3)
        Z = P[..., 2].clamp(min=_MIN_DEPTH)
        proj = (P @ K.transpose(-1, -2)[:, None])  # (B, H, J, 3)
        r = proj[..., :2] / Z[..., None] - uv  # (B, H, J, 2) pixels
        fxb, fyb, sb = (t[:, None, None] for t in (fx, fy, s))
        X, Y = P[..., 0], P[..., 1]
        z = torch.zeros_like(Z)
        Jac = torch.stack([
            torch.stack([fxb / Z, sb / Z, -(fxb * X + sb * Y) / Z**2], -1),
            torch.stack([z, fyb / Z, -fyb * Y / Z**2], -1),
        ], -2)  # (B, H, J, 2, 3)  fmt: skip
        wJ = w[..., None, None] * Jac
        blocks = (wJ.transpose(-1, -2) @ Jac).sum(2) + unfit
        rhs = (wJ.transpose(-1, -2) @ r[..., None]).sum(2)[..., 0]  # (B, H, 3) gradient / 2
        M, g = _assemble(blocks, rhs)
        if use_prior:
            depth = T[..., 2].clamp(min=_MIN_DEPTH)  # (B, H)
            depth = (depth * ok).sum(-1) / ok.sum(-1).clamp(min=1)  # mean depth of fitted hands
            px_per_m = (f_mean / depth.clamp(min=_MIN_DEPTH)).detach()
            M, g = _block_prior(M, g, lam * px_per_m**2, T[:, 0] - T[:, 1] - d)
        T = T - _solve(M, g).view(B, H, 3)

    # hands that were not fitted: next to the other hand when the relative translation is known
    if H == 2 and rel_translation is not None:
        d_full = rel_translation.to(dt)
        T_left = torch.where((~ok[:, 0] & ok[:, 1])[:, None], T[:, 1] + d_full, T[:, 0])
        T_right = torch.where((~ok[:, 1] & ok[:, 0])[:, None], T[:, 0] - d_full, T[:, 1])
        T = torch.stack([T_left, T_right], 1)
    T = torch.where(torch.isfinite(T), T, torch.zeros_like(T))

    P = rel + T[:, :, None]
    proj = P @ K.transpose(-1, -2)[:, None]
    r = proj[..., :2] / proj[..., 2:].clamp(min=_MIN_DEPTH) - uv
    rms = ((w * r.square().sum(-1)).sum(-1) / w.sum(-1).clamp(min=1e-12)).sqrt()
    rms = torch.where(ok, rms, torch.full_like(rms, float("nan")))
    return Placement(wrist=T.to(out_dtype), keypoints=P.to(out_dtype), reprojection_px=rms.to(out_dtype), fitted=ok)


def place_hand(
    uv: Float[Tensor, "B J 2"],
    rel: Float[Tensor, "B J 3"],
    K: Float[Tensor, "B 3 3"],
    *,
    weights: Float[Tensor, "B J"] | None = None,
    gn_steps: int = 3,
) -> Float[Tensor, "B 3"]:
    """One hand's absolute wrist position (:func:`place_hands` with ``H = 1``)."""
    w = None if weights is None else weights[:, None]
    return place_hands(uv[:, None], rel[:, None], K, weights=w, gn_steps=gn_steps).wrist[:, 0]


def hand_size(keypoints: Float[Tensor, "... 21 3"], measure: str = "palm") -> Float[Tensor, "..."]:
    """A hand's metric size from its 21 keypoints (``standard`` order, metres): ``palm``, the mean
    wrist -> MCP distance of the four fingers, or ``bones``, the summed length of the 20 bones
    (:data:`HAND_SIZE_MEASURES`)."""
    if keypoints.shape[-2:] != (21, 3):
        raise ValueError(f"expected keypoints of shape (..., 21, 3), got {tuple(keypoints.shape)}")
    if measure == "palm":
        return (keypoints[..., list(_PALM), :] - keypoints[..., :1, :]).norm(dim=-1).mean(-1)
    if measure == "bones":
        child = list(range(1, 21))
        return (keypoints[..., child, :] - keypoints[..., [_PARENTS[j] for j in child], :]).norm(dim=-1).sum(-1)
    raise ValueError(f"unknown hand size measure {measure!r}; expected one of {HAND_SIZE_MEASURES}")


def shared_scale(
    rel: Float[Tensor, "B 2 21 3"],
    valid: Bool[Tensor, "B 2"] | None = None,
    *,
    mean: str = "geometric",
    measure: str = "palm",
    fit_error: Float[Tensor, "B 2"] | None = None,
) -> Float[Tensor, "B 2"]:
    """Factors that give both hands of a pair one common metric size (one person's hands).

    Placement turns a hand's metric size into its depth (scaling ``rel`` by ``c`` scales the
    fitted position by ``c`` and leaves the 2D fit as it is), so two independently predicted
    sizes put two independent errors into the hands' relative depth. Multiplying each hand's
    ``rel`` by its factor gives both hands one size (:func:`hand_size` with ``measure``): the
    ``geometric`` or ``arithmetic`` mean of their sizes, or (``best``) the size of the hand
    with the lower ``fit_error`` (:data:`SHARED_SCALE_MEANS`).

    Args:
        rel: ``(B, 2, 21, 3)`` root-relative keypoints (left, right; metres, ``standard`` order).
        valid: ``(B, 2)`` hands present (default all).
        mean: ``geometric``, ``arithmetic`` or ``best``.
        measure: the size (:func:`hand_size`).
        fit_error: ``(B, 2)`` how badly each hand's 3D shape fits its 2D keypoints (lower is
            better; :func:`place_pair` uses the RMS reprojection error over the hand's 2D
            extent); needed for ``best`` (a tie or NaN keeps the left hand's size).

    Returns:
        ``(B, 2)`` factors; 1 for both hands where fewer than two valid hands have a positive,
        finite size.
    """
    if rel.dim() != 4 or rel.shape[1:] != (2, 21, 3):
        raise ValueError(f"expected rel of shape (B, 2, 21, 3), got {tuple(rel.shape)}")
    if mean not in SHARED_SCALE_MEANS:
        raise ValueError(f"unknown mean {mean!r}; expected one of {SHARED_SCALE_MEANS}")
    size = hand_size(rel, measure)  # (B, 2)
    ok = torch.isfinite(size) & (size > 0)
    if valid is not None:
        if valid.shape != size.shape:
            raise ValueError(f"expected valid of shape {tuple(size.shape)}, got {tuple(valid.shape)}")
        ok = ok & valid.bool()
    both = ok.all(-1)  # (B,)
    safe = torch.where(ok, size, torch.ones_like(size))
    if mean == "best":
        if fit_error is None or fit_error.shape != size.shape:
            raise ValueError(f"mean 'best' needs fit_error of shape {tuple(size.shape)}")
        ref = _reference(fit_error)
        common = safe.gather(1, ref[:, None])[:, 0]
    else:
        common = safe.log().mean(-1).exp() if mean == "geometric" else safe.mean(-1)  # (B,)
    return torch.where(both[:, None], common[:, None] / safe, torch.ones_like(safe))


def _reference(fit_error: Tensor) -> Tensor:
    """(B,) index of the hand with the lower fit error (0 on ties and NaN)."""
    e = torch.nan_to_num(fit_error.to(torch.float64), nan=float("inf"))
    return (e[:, 1] < e[:, 0]).long()


def place_pair(
    uv: Float[Tensor, "B 2 J 2"],
    rel: Float[Tensor, "B 2 J 3"],
    K: Float[Tensor, "B 3 3"],
    *,
    valid: Bool[Tensor, "B 2"] | None = None,
    scale: str = "best",
    same_depth: bool = True,
    depth_range: float | None = None,
    depth_point: str = "pips",
    measure: str = "bones",
    gn_steps: int = 3,
) -> Placement:
    """Both hands of one person placed consistently (two-hand placement of the crop pipeline).

    1. Each hand is placed alone (:func:`place_hands`, no prior).
    2. ``scale`` (``own``: stop here; else :func:`shared_scale`'s ``mean``): both hands get one
       metric size and are placed again; for ``best`` the size of the hand whose 3D shape fits
       its 2D keypoints better (RMS reprojection error / the hand's 2D extent), which keeps its
       placement. Their 2D fits do not change.
    3. ``same_depth``: the other hand is moved along its fitted wrist's ray (the wrist's
       projection stays) until its ``depth_point`` lies at the reference hand's (``best``), or
       both until their points lie at the geometric mean of the two depths. ``depth_point``
       (:data:`PAIR_DEPTH_POINTS`): ``pips``, the mean of the four fingers' PIP joints (the
       default), ``centroid``, the mean of all 21 keypoints, or ``wrist``. An interacting pair
       lies a few centimetres apart in depth, closer than the 2D sizes of a badly fitted hand
       tell, and closer at their PIPs than at their wrists; the moved hand's 2D fit gets worse
       by its depth change (``reprojection_px`` says how much). With ``depth_range`` (metres)
       a hand is moved only as far as needed for its point to lie within that depth of the
       target: a hand already that close keeps its 2D fit.

    A pair where a hand is missing, or either wrist is not in front of the camera, is placed
    as in step 1. Returns :class:`Placement` like :func:`place_hands`.
    """
    if scale not in ("own",) + SHARED_SCALE_MEANS:
        raise ValueError(f"scale must be one of {('own',) + SHARED_SCALE_MEANS}, got {scale!r}")
    if uv.dim() != 4 or uv.shape[1] != 2:
        raise ValueError(f"expected uv of shape (B, 2, J, 2), got {tuple(uv.shape)}")
    if depth_range is not None and not depth_range >= 0:
        raise ValueError(f"depth_range must be >= 0 metres or None, got {depth_range}")
    if depth_point not in PAIR_DEPTH_POINTS:
        raise ValueError(f"depth_point must be one of {tuple(PAIR_DEPTH_POINTS)}, got {depth_point!r}")
    own = place_hands(uv, rel, K, valid=valid, prior_weight=0.0, gn_steps=gn_steps)
    if scale == "own":
        return own
    dt = rel.dtype
    extent = (uv.amax(-2) - uv.amin(-2)).amax(-1).to(torch.float64).clamp(min=1e-9)  # (B, 2) pixels
    fit_error = own.reprojection_px.to(torch.float64) / extent
    f = shared_scale(rel, own.fitted, mean=scale, measure=measure, fit_error=fit_error).to(dt)  # (B, 2)
    rel = rel * f[..., None, None]
    placed = place_hands(uv, rel, K, valid=valid, prior_weight=0.0, gn_steps=gn_steps)
    if not same_depth:
        return placed
    T = placed.wrist.to(torch.float64)
    wz = T[..., 2]  # (B, 2) wrist depths
    lift = rel.to(torch.float64)[..., list(PAIR_DEPTH_POINTS[depth_point]), 2].mean(-1)  # (B, 2) point - wrist depth
    z = wz + lift  # (B, 2) depths of the points that get one depth
    both = placed.fitted.all(-1) & (wz > _MIN_DEPTH).all(-1) & (z > _MIN_DEPTH).all(-1) & torch.isfinite(z).all(-1)
    zs = z.clamp(min=_MIN_DEPTH)
    if scale == "best":
        target = zs.gather(1, _reference(fit_error)[:, None])[:, 0]
    else:
        target = zs.log().mean(-1).exp()
    new_z = target[:, None].expand_as(zs)
    if depth_range is not None:
        new_z = torch.minimum(torch.maximum(zs, new_z - depth_range), new_z + depth_range)
    new_wz = (new_z - lift).clamp(min=_MIN_DEPTH)
    T = torch.where(both[:, None, None], T * (new_wz / wz.clamp(min=_MIN_DEPTH))[..., None], T)
    P = rel.to(torch.float64) + T[:, :, None]
    proj = P @ K.to(torch.float64).transpose(-1, -2)[:, None]
    r = proj[..., :2] / proj[..., 2:].clamp(min=_MIN_DEPTH) - uv.to(torch.float64)
    rms = r.square().sum(-1).mean(-1).sqrt()
    rms = torch.where(placed.fitted, rms, torch.full_like(rms, float("nan")))
    return Placement(wrist=T.to(dt), keypoints=P.to(dt), reprojection_px=rms.to(dt), fitted=placed.fitted)
