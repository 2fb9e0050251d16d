"""Query-point samplers for occupancy training and IoU evaluation (HALO defaults).

HALO labels 100k points per hand: half uniform in a cube of side 1.1 in its palm-normalised
frame (units of 0.4 m, so **0.44 m** here) centred at the wrist, half on the surface plus
Gaussian noise of 0.01 normalised units (**4 mm**). We sample in metres directly.

Frames: ``center`` (3,) and ``rotation`` (3, 3) place the cube. The columns of ``rotation``
are the palm frame's axes expressed in the mesh's frame (camera or world), so a palm-frame
point ``u`` is ``center + rotation @ u`` there and the cube is axis-aligned in the palm frame.
From :mod:`im2hands.geometry.frames` (which maps ``p_palm = R (p - wrist)``) pass the
transpose: ``palm_rotation(keypoints)[b].T``, or ``palm_frame(..., scale=1)[b, :3, :3].T``
(orthogonal with det -1 for mirrored left hands, which is fine).

Randomness: every sampler draws from a ``torch.Generator`` (pass one, or an int ``seed`` where
accepted; ``None`` uses torch's global generator). Draws happen on the generator's device
(CPU by default) and are then moved to the inputs' device, so a seed gives the same points on
CPU and CUDA. Outputs are torch tensors on the device of the inputs.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> p = sample_box_uniform(4, torch.zeros(3), torch.eye(3), side=0.44, generator=g)
    >>> p.shape, bool((p.abs() <= 0.22).all())
    (torch.Size([4, 3]), True)
"""

from __future__ import annotations

import torch

from im2hands.geometry.inside import inside_mesh
from im2hands.typing import Bool, Float, Int, Tensor

__all__ = [
    "HALO_BOX_SIDE",
    "HALO_SIGMA",
    "as_generator",
    "sample_box_uniform",
    "sample_surface",
    "sample_near_surface",
    "sample_occupancy_points",
    "faces_near",
    "fixed_iou_points",
]

HALO_BOX_SIDE = 0.44
"""Side of the uniform-sampling cube in metres: 1.1 x HALO's 0.4 m normalisation."""
HALO_SIGMA = 0.004
"""Standard deviation of the near-surface Gaussian noise in metres (0.01 x 0.4 m)."""


def as_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """A ``torch.Generator`` from an int seed (new CPU generator), a generator (as is) or None."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def _rand(shape, generator, device, dtype, normal: bool = False) -> Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    fn = torch.randn if normal else torch.rand
    return fn(*shape, generator=generator, device=gdev, dtype=dtype).to(device)


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    for t in tensors:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def sample_box_uniform(
    n: int,
    center: Float[Tensor, "3"],
    rotation: Float[Tensor, "3 3"],
    side: float = HALO_BOX_SIDE,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "N 3"]:
    """Uniform points in a cube of side ``side`` centred at ``center``, axis-aligned in ``rotation``'s frame.

    Args:
        n: number of points.
        center: (3,) cube centre in the target frame (metres), e.g. the wrist.
        rotation: (3, 3) orthogonal, palm-frame axes as columns (``p = center + rotation @ u``).
        side: cube side in metres (default 0.44 = 1.1 x 0.4 m).
        generator: torch generator (see module docstring).

    Returns:
        (n, 3) points in the target frame, dtype of ``center`` (float32 if not floating).
    """
    center = torch.as_tensor(center)
    rotation = torch.as_tensor(rotation, device=center.device)
    if center.shape != (3,) or rotation.shape != (3, 3):
        raise ValueError(f"center must be (3,) and rotation (3, 3); got {tuple(center.shape)}, {tuple(rotation.shape)}")
    dtype = _float_dtype(center, rotation)
    u = (_rand((n, 3), generator, center.device, dtype) - 0.5) * side  # (n, 3) palm frame
    return center.to(dtype) + u @ rotation.to(dtype).T  # (n, 3) = center + rotation @ u


def _face_geometry(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    tri = vertices[faces]  # (F, 3, 3)
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3)
    area2 = cross.norm(dim=-1)  # (F,) twice the area
    return tri, cross / area2.clamp_min(torch.finfo(cross.dtype).tiny)[:, None], area2


def sample_surface(
    vertices: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """Area-weighted uniform samples on a triangle mesh, with the face normals there.

    Args:
        vertices: (V, 3) float (metres, any frame).
        faces: (F, 3) int, counter-clockwise from outside for outward normals.
        n: number of samples.
        generator: torch generator (see module docstring).

    Returns:
        points (n, 3) and unit normals (n, 3) of the sampled faces, same frame and dtype as
        ``vertices`` (float32 if not floating); differentiable in ``vertices`` (the faces and
        barycentric coordinates are drawn without gradient).
    """
    vertices = torch.as_tensor(vertices)
    vertices = vertices.to(_float_dtype(vertices))
    faces = torch.as_tensor(faces, device=vertices.device).long()
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3) and faces (F, 3); got {tuple(vertices.shape)}, {tuple(faces.shape)}")
    tri, normals, area2 = _face_geometry(vertices, faces)
    weights = area2.detach()  # the faces are drawn without gradient; the points follow ``vertices``
    if faces.shape[0] == 0 or float(weights.sum()) <= 0:
        raise ValueError("cannot sample the surface of a mesh with zero area")
    gdev = generator.device if generator is not None else torch.device("cpu")
    idx = torch.multinomial(weights.to(gdev, torch.float64), n, replacement=True, generator=generator)
    idx = idx.to(vertices.device)  # (n,)
    r = _rand((n, 2), generator, vertices.device, vertices.dtype)
    s = r[:, :1].sqrt()  # (n, 1)
    bary = torch.cat([1 - s, s * (1 - r[:, 1:]), s * r[:, 1:]], dim=1)  # (n, 3)
    points = (bary[:, :, None] * tri[idx]).sum(1)  # (n, 3)
    return points, normals[idx]


def sample_near_surface(
    vertices: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    n: int,
    sigma: float = HALO_SIGMA,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "N 3"]:
    """Area-weighted surface samples plus isotropic Gaussian noise of std ``sigma`` metres per axis.

    Args:
        vertices: (V, 3) float (metres, any frame).
        faces: (F, 3) int.
        n: number of points.
        sigma: noise standard deviation in metres (default 4 mm).
        generator: torch generator (see module docstring).

    Returns:
        (n, 3) points in the frame of ``vertices``.
    """
    points, _ = sample_surface(vertices, faces, n, generator=generator)
    return points + sigma * _rand((n, 3), generator, points.device, points.dtype, normal=True)


def sample_occupancy_points(
    vertices: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    center: Float[Tensor, "3"],
    rotation: Float[Tensor, "3 3"],
    n: int,
    uniform_ratio: float = 0.5,
    side: float = HALO_BOX_SIDE,
    sigma: float = HALO_SIGMA,
    seed: int | torch.Generator | None = None,
    focus: Float[Tensor, "K 3"] | None = None,
    focus_ratio: float = 0.0,
    focus_radius: float = 0.025,
) -> tuple[Float[Tensor, "N 3"], Bool[Tensor, "N"]]:
    """HALO-style labelled query points: uniform-in-cube then near-surface, with exact occupancy.

    Args:
        vertices: (V, 3) float, a closed mesh (metres; camera or world frame).
        faces: (F, 3) int.
        center: (3,) cube centre in the same frame (HALO: the wrist).
        rotation: (3, 3) orthogonal, palm-frame axes as columns; the cube is axis-aligned
            in the palm frame.
        n: total number of points; ``round(n * uniform_ratio)`` uniform ones come first.
        uniform_ratio: fraction of uniform points (HALO: 0.5).
        side: cube side in metres (default 0.44).
        sigma: near-surface noise std in metres (default 0.004).
        seed: int seed or ``torch.Generator``; the same seed gives the same points and labels.
        focus: (K, 3) points in the frame of ``vertices`` (e.g. the five fingertip keypoints),
            or None.
        focus_ratio: fraction of the near-surface points drawn only from the faces within
            ``focus_radius`` metres of a ``focus`` point (area-weighted there, same noise); they
            come last. 0 (default, HALO): every near-surface point is drawn from the whole mesh.
        focus_radius: radius in metres around each focus point (default 25 mm: about a distal
            phalanx, whose thin tips area weighting alone samples rarely).

    Returns:
        points (n, 3) in the frame of ``vertices`` and occupancy (n,) bool (winding-number
        inside test, :func:`im2hands.geometry.inside.inside_mesh`).
    """
    if not 0.0 <= uniform_ratio <= 1.0:
        raise ValueError(f"uniform_ratio must be in [0, 1], got {uniform_ratio}")
    if not 0.0 <= focus_ratio <= 1.0:
        raise ValueError(f"focus_ratio must be in [0, 1], got {focus_ratio}")
    generator = as_generator(seed)
    vertices = torch.as_tensor(vertices)
    vertices = vertices.to(_float_dtype(vertices))
    center = torch.as_tensor(center, device=vertices.device).to(vertices.dtype)
    n_uniform = int(round(n * uniform_ratio))
    parts = [sample_box_uniform(n_uniform, center, rotation, side=side, generator=generator)]
    n_surface = n - n_uniform
    n_focus = int(round(n_surface * focus_ratio)) if focus is not None else 0
    if n_surface - n_focus > 0:
        parts.append(sample_near_surface(vertices, faces, n_surface - n_focus, sigma=sigma, generator=generator))
    if n_focus > 0:
        near = faces_near(vertices, torch.as_tensor(faces), torch.as_tensor(focus), focus_radius)
        if near.numel() == 0:  # no face near any focus point: fall back to the whole mesh
            near = torch.as_tensor(faces)
        parts.append(sample_near_surface(vertices, near, n_focus, sigma=sigma, generator=generator))
    points = torch.cat(parts, dim=0)  # (n, 3)
    occupancy = inside_mesh(vertices, torch.as_tensor(faces), points)
    return points, occupancy


def faces_near(
    vertices: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    points: Float[Tensor, "K 3"],
    radius: float,
) -> Int[Tensor, "F2 3"]:
    """The faces whose centroid lies within ``radius`` metres of any of ``points`` (same frame).

    Returns:
        (F2, 3) the selected rows of ``faces``, in their order (possibly empty).
    """
    vertices = torch.as_tensor(vertices)
    faces = torch.as_tensor(faces, device=vertices.device).long()
    points = torch.as_tensor(points, device=vertices.device).to(vertices.dtype).reshape(-1, 3)
    centroids = vertices[faces].mean(1)  # (F, 3)
    keep = (torch.cdist(centroids, points) <= radius).any(dim=1)  # (F,)
    return faces[keep]


def fixed_iou_points(
    center: Float[Tensor, "3"],
    rotation: Float[Tensor, "3 3"],
    n: int = 100_000,
    side: float = HALO_BOX_SIDE,
    seed: int = 0,
) -> Float[Tensor, "N 3"]:
    """The fixed uniform evaluation set for volumetric IoU: ``n`` seeded points in the HALO cube.

    Args:
        center: (3,) cube centre (metres).
        rotation: (3, 3) orthogonal, palm-frame axes as columns.
        n: number of points (default 100k, as in HALO / Occupancy Networks).
        side: cube side in metres.
        seed: the set is a pure function of (center, rotation, n, side, seed).

    Returns:
        (n, 3) points in the frame of ``center``.
    """
    return sample_box_uniform(n, center, rotation, side=side, generator=as_generator(seed))
