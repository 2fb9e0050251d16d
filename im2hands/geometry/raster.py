"""Pure-torch z-buffer rasterizer and a small Lambert renderer (RGB, depth, object masks).

No system libraries, deterministic, runs on whatever device the inputs are on.

Conventions:

- **Camera frame**: OpenCV, metres: +x right, +y down, +z forward. ``K`` (3, 3) maps a point
  ``X`` to continuous pixel coordinates ``(u, v) = (K @ X)[:2] / z``; ``u`` runs along columns.
- **Pixel centres**: as in :mod:`im2hands.geometry.frames`, continuous pixel coordinates
  have their origin at the top-left pixel's *corner*: pixel ``(i, j)`` (row ``i``, column
  ``j``) spans ``[j, j + 1) x [i, i + 1)`` with its centre at ``(j + 0.5, i + 0.5)``, so a
  vertex projecting to ``(u, v)`` lands in pixel ``(floor(v), floor(u))``. ``pixel_center``
  (default 0.5) is that offset; 0.0 gives the integer-centre convention (pixel
  ``(round(v), round(u))``), for intrinsics calibrated that way.
- A pixel is covered when its centre lies inside or on the projected triangle. Edge
  functions are computed the same way for both triangles sharing an edge, so closed meshes
  have no cracks; pixels on a shared edge go to the nearer triangle, then the lower face id.
- **Culling**: both sides are drawn (the z-buffer decides). Triangles with any vertex at
  ``z <= near`` are skipped entirely (no clipping), as are zero-area projections.
- **Background**: ``face_id = -1``, ``object_id = -1``, ``depth = 0``, ``bary = 0``.

Algorithm: project the vertices; expand each triangle's pixel bounding box (clipped to the
image) to (triangle, pixel) candidate pairs; edge-function barycentrics, then
perspective-correct ones and depth ``z = 1 / sum(l_k / z_k)``; z-buffer by
``scatter_reduce(amin)``, then a second scatter for the face id and barycentrics. Pairs are
processed in chunks of at most ``max_pairs`` (whole triangles per chunk) to cap memory.

Example:
    >>> import torch
    >>> K = torch.tensor([[100.0, 0, 16.5], [0, 100.0, 16.5], [0, 0, 1]])
    >>> tri = torch.tensor([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]])
    >>> frags = rasterize(tri, torch.tensor([[0, 1, 2]]), K, (32, 32))
    >>> int(frags.face_id[16, 16]), float(frags.depth[16, 16])
    (0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from im2hands.typing import Bool, Float, Int, Tensor

__all__ = ["Fragments", "RenderOutput", "join_meshes", "rasterize", "rasterize_batch", "render", "vertex_normals"]


@dataclass
class Fragments:
    """Per-pixel rasterization result; a leading batch dim ``B`` when from :func:`rasterize_batch`.

    Attributes:
        face_id: (..., H, W) int64 index into the faces passed in, -1 for background.
        depth: (..., H, W) camera-frame z in metres of the visible surface, 0 for background.
        bary: (..., H, W, 3) perspective-correct barycentrics of the visible face, 0 for background.
        object_id: (..., H, W) int64 object of the visible face (``face_object``), -1 for
            background; None when no ``face_object`` was given.
        amodal_masks: (..., n, H, W) bool coverage of each object ``0..n-1`` ignoring occlusion
            by the others (``amodal=True`` with ``face_object``), else None.
    """

    face_id: Int[Tensor, "*B H W"]
    depth: Float[Tensor, "*B H W"]
    bary: Float[Tensor, "*B H W 3"]
    object_id: Int[Tensor, "*B H W"] | None = None
    amodal_masks: Bool[Tensor, "*B n H W"] | None = None

    @property
    def mask(self) -> Bool[Tensor, "*B H W"]:
        """Coverage: True where any face is visible."""
        return self.face_id >= 0


def join_meshes(
    meshes: Sequence[tuple[Tensor, Tensor]],
) -> tuple[Float[Tensor, "V 3"], Int[Tensor, "F 3"], Int[Tensor, "F"]]:
    """Concatenate meshes into one scene: (vertices (V, 3), faces (F, 3), face_object (F,)).

    ``face_object[f]`` is the position in ``meshes`` of the mesh face ``f`` came from.
    """
    if len(meshes) == 0:
        raise ValueError("join_meshes needs at least one mesh")
    verts, faces, objs, offset = [], [], [], 0
    for i, (v, f) in enumerate(meshes):
        v = torch.as_tensor(v)
        f = torch.as_tensor(f, device=v.device).long()
        verts.append(v)
        faces.append(f + offset)
        objs.append(torch.full((f.shape[0],), i, dtype=torch.long, device=v.device))
        offset += v.shape[0]
    return torch.cat(verts), torch.cat(faces), torch.cat(objs)


def _check_mesh(v: Tensor, f: Tensor) -> None:
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices_cam must have shape (V, 3), got {tuple(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(f.shape)}")


def _edge_setup(uvf: Tensor, f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per face and edge k (opposite vertex k): canonical start A, direction D and sign.

    Edge k joins vertices (k+1, k+2). It is stored from its lower to its higher vertex index,
    so two faces sharing an edge evaluate bit-identical edge functions (up to the sign).
    """
    a_loc = torch.tensor([1, 2, 0], device=f.device)
    b_loc = torch.tensor([2, 0, 1], device=f.device)
    ia, ib = f[:, a_loc], f[:, b_loc]  # (F, 3) global vertex ids of each edge's endpoints
    swap = ia > ib
    pa, pb = uvf[:, a_loc], uvf[:, b_loc]  # (F, 3, 2)
    start = torch.where(swap[..., None], pb, pa)
    end = torch.where(swap[..., None], pa, pb)
    sign = 1.0 - 2.0 * swap.to(uvf.dtype)  # (F, 3)
    return start, end - start, sign


def _pixel_ranges(uvf: Tensor, valid: Tensor, height: int, width: int, pixel_center: float):
    """First covered (col, row) index and (n_cols, n_rows) of each face's clipped pixel bbox."""
    lo = uvf.amin(dim=1) - pixel_center  # (F, 2) pixel j is a candidate iff lo <= j <= hi
    hi = uvf.amax(dim=1) - pixel_center
    lo = torch.where(valid[:, None], lo, torch.zeros_like(lo))
    hi = torch.where(valid[:, None], hi, torch.full_like(hi, -1.0))
    size = torch.tensor([width, height], device=uvf.device, dtype=uvf.dtype)
    # clamp before the integer cast: far off-image coordinates must not overflow int64
    first = torch.ceil(torch.minimum(torch.maximum(lo, torch.zeros_like(lo)), size)).long()  # (F, 2) (col, row)
    last = torch.floor(torch.maximum(torch.minimum(hi, size - 1), torch.full_like(hi, -1.0))).long()
    return first, (last - first + 1).clamp(min=0)


def _raster_core(uv, z, faces, face_image, n_images, height, width, near, pixel_center, max_pairs,
                 face_group=None, n_groups=0):
    """Rasterize packed faces into ``n_images`` images.

    Returns flat buffers over ``n_images * H * W`` pixels: depth (inf = empty), face id (-1)
    and barycentrics; plus, if ``face_group`` is given, a (n_groups, n_images * H * W) bool
    coverage of each group's faces regardless of occlusion (amodal masks), else None.
    """
    dev, dt = uv.device, uv.dtype
    n_pix = n_images * height * width
    zbuf = torch.full((n_pix,), float("inf"), device=dev, dtype=dt)
    fbuf = torch.full((n_pix,), -1, device=dev, dtype=torch.long)
    bbuf = torch.zeros((n_pix, 3), device=dev, dtype=dt)
    cover = None if face_group is None else torch.zeros(n_groups * n_pix, device=dev, dtype=torch.bool)
    if faces.shape[0] == 0:
        return zbuf, fbuf, bbuf, cover
    zf = z[faces]  # (F, 3)
    uvf = uv[faces]  # (F, 3, 2)
    d1, d2 = uvf[:, 1] - uvf[:, 0], uvf[:, 2] - uvf[:, 0]
    area2 = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]  # (F,) twice the signed screen area
    valid = (zf > near).all(dim=1) & (area2 != 0) & torch.isfinite(area2)
    first, extent = _pixel_ranges(uvf, valid, height, width, pixel_center)
    count = extent[:, 0] * extent[:, 1]  # (F,) candidate pixels per face
    live = torch.nonzero(count > 0).squeeze(1)
    if live.numel() == 0:
        return zbuf, fbuf, bbuf, cover
    start, dirs, sign = _edge_setup(uvf[live], faces[live])
    sign = sign * torch.sign(area2[live])[:, None]  # inside <=> all edge functions >= 0
    # one gather per pair: float table [A.x, A.y, D.x, D.y, sign, 1/z] x 3 edges/vertices
    ftab = torch.cat([start[..., 0], start[..., 1], dirs[..., 0], dirs[..., 1], sign, 1.0 / zf[live]], 1)  # (L, 18)
    count_l = count[live]
    cum = torch.cumsum(count_l, 0)
    base_pix = face_image[live] * (height * width) + first[live, 1] * width + first[live, 0]
    itab = torch.stack([cum - count_l, extent[live, 0], base_pix, live], 1)  # (L, 4)
    if face_group is not None:
        itab = torch.cat([itab, (face_group[live] * n_pix)[:, None]], 1)
    cum_cpu = cum.cpu()
    single = int(cum_cpu[-1]) <= max_pairs
    s0 = 0
    while s0 < live.numel():
        base = int(cum_cpu[s0 - 1]) if s0 > 0 else 0
        s1 = max(int(torch.searchsorted(cum_cpu, base + max_pairs, right=True)), s0 + 1)
        n_pairs = int(cum_cpu[s1 - 1]) - base
        pf = torch.repeat_interleave(torch.arange(s0, s1, device=dev), count_l[s0:s1], output_size=n_pairs)
        it = itab.index_select(0, pf)  # (P, 4 or 5)
        ft = ftab.index_select(0, pf)  # (P, 18)
        off = torch.arange(base, base + n_pairs, device=dev) - it[:, 0]
        drow, dcol = torch.div(off, it[:, 1], rounding_mode="floor"), torch.remainder(off, it[:, 1])
        pix = it[:, 2] + drow * width + dcol  # (P,) flat pixel index
        colrow = torch.stack([dcol, drow], 1) + first.index_select(0, it[:, 3])  # (P, 2)
        pc = colrow.to(dt) + pixel_center
        px, py = pc[:, :1], pc[:, 1:]  # (P, 1)
        e = ft[:, 12:15] * (ft[:, 6:9] * (py - ft[:, 3:6]) - ft[:, 9:12] * (px - ft[:, 0:3]))  # (P, 3)
        sel = torch.nonzero((e.amin(dim=1) >= 0) & (e.sum(dim=1) > 0)).squeeze(1)
        if cover is not None:
            cover[it.index_select(0, sel)[:, 4] + pix.index_select(0, sel)] = True
        pix, e, fid = pix[sel], e[sel], it[sel, 3]
        q = (e / e.sum(dim=1, keepdim=True)) * ft[sel, 15:18]  # screen barycentrics / z
        inv_z = q.sum(dim=1)
        depth = 1.0 / inv_z
        zc = torch.full((n_pix,), float("inf"), device=dev, dtype=dt)
        zc.scatter_reduce_(0, pix, depth, reduce="amin")
        win = torch.nonzero(depth == zc[pix]).squeeze(1)
        fc = torch.full((n_pix,), torch.iinfo(torch.long).max, device=dev, dtype=torch.long)
        fc.scatter_reduce_(0, pix[win], fid[win], reduce="amin")
        win = win[fid[win] == fc[pix[win]]]  # one winner per covered pixel
        bc = torch.zeros((n_pix, 3), device=dev, dtype=dt)
        bc[pix[win]] = q[win] / inv_z[win, None]  # perspective-correct barycentrics
        fc = torch.where(torch.isfinite(zc), fc, torch.full_like(fc, -1))
        if single:
            return zc, fc, bc, cover
        better = (zc < zbuf) | ((zc == zbuf) & (fc >= 0) & (fc < fbuf))
        zbuf = torch.where(better, zc, zbuf)
        fbuf = torch.where(better, fc, fbuf)
        bbuf = torch.where(better[:, None], bc, bbuf)
        s0 = s1
    return zbuf, fbuf, bbuf, cover


def _project(v: Tensor, K: Tensor, near: float) -> Tensor:
    z = v[:, 2:3]
    z_safe = torch.where(z > near, z, torch.ones_like(z))
    return ((v / z_safe) @ K.T)[:, :2]  # (V, 2) continuous pixel coords


def rasterize_batch(
    meshes: Sequence[tuple[Tensor, Tensor]],
    K: Float[Tensor, "*B 3 3"],
    image_size: tuple[int, int],
    face_objects: Sequence[Tensor] | None = None,
    amodal: bool = False,
    near: float = 0.01,
    pixel_center: float = 0.5,
    max_pairs: int = 1 << 21,
) -> Fragments:
    """Rasterize ``B`` independent scenes (different meshes, possibly different intrinsics) at once.

    Args:
        meshes: ``B`` pairs ``(vertices_cam (V_b, 3), faces (F_b, 3))``, OpenCV camera frame, metres.
        K: (3, 3) shared or (B, 3, 3) per-scene intrinsics.
        image_size: ``(H, W)`` in pixels.
        face_objects: optional ``B`` tensors (F_b,) of per-face object ids ``0..n-1`` (see
            :func:`join_meshes`), giving ``object_id``.
        amodal: with ``face_objects``, also return each object's occlusion-free coverage
            (``amodal_masks``, from the same pass at the cost of one scatter).
        near: triangles with a vertex at ``z <= near`` metres are skipped.
        pixel_center: offset of pixel centres, 0.5 (default) or 0.0; see the module docstring.
        max_pairs: cap on (triangle, pixel) candidate pairs per chunk (about 200 B per pair).

    Returns:
        :class:`Fragments` with a leading batch dim ``B``; ``face_id`` indexes each scene's own faces.
    """
    if len(meshes) == 0:
        raise ValueError("rasterize_batch needs at least one mesh")
    height, width = int(image_size[0]), int(image_size[1])
    n_img = len(meshes)
    v0 = torch.as_tensor(meshes[0][0])
    dev = v0.device
    dt = v0.dtype if v0.is_floating_point() else torch.float32
    K = torch.as_tensor(K, device=dev).to(dt)
    if K.shape == (3, 3):
        K = K.expand(n_img, 3, 3)
    if K.shape != (n_img, 3, 3):
        raise ValueError(f"K must be (3, 3) or (B, 3, 3) with B={n_img}, got {tuple(K.shape)}")
    uvs, zs, faces, face_img, face_first = [], [], [], [], []
    v_off, f_off = 0, 0
    for b, (v, f) in enumerate(meshes):
        v = torch.as_tensor(v, device=dev).to(dt)
        f = torch.as_tensor(f, device=dev).long()
        _check_mesh(v, f)
        uvs.append(_project(v, K[b], near))
        zs.append(v[:, 2])
        faces.append(f + v_off)
        face_img.append(torch.full((f.shape[0],), b, device=dev, dtype=torch.long))
        face_first.append(f_off)
        v_off, f_off = v_off + v.shape[0], f_off + f.shape[0]
    obj, n_obj = None, 0
    if face_objects is not None:
        obj = torch.cat([torch.as_tensor(o, device=dev).long() for o in face_objects])
        n_obj = int(obj.max()) + 1 if obj.numel() else 0
    zbuf, fbuf, bbuf, cover = _raster_core(
        torch.cat(uvs), torch.cat(zs), torch.cat(faces), torch.cat(face_img), n_img, height, width,
        near, pixel_center, max_pairs, face_group=obj if amodal else None, n_groups=n_obj,
    )
    shape = (n_img, height, width)
    hit = fbuf >= 0
    first = torch.tensor(face_first, device=dev, dtype=torch.long).repeat_interleave(height * width)
    face_id = torch.where(hit, fbuf - first, fbuf).view(shape)  # (B, H, W) per-scene face ids
    depth = torch.where(hit, zbuf, torch.zeros_like(zbuf)).view(shape)
    object_id = amodal_masks = None
    if obj is not None:
        object_id = torch.where(hit, obj[fbuf.clamp(min=0)], fbuf).view(shape)
        if cover is not None:
            amodal_masks = cover.view(n_obj, *shape).transpose(0, 1)  # (B, n, H, W)
    return Fragments(face_id, depth, bbuf.view(*shape, 3), object_id, amodal_masks)


def rasterize(
    vertices_cam: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    K: Float[Tensor, "3 3"],
    image_size: tuple[int, int],
    face_object: Int[Tensor, "F"] | None = None,
    amodal: bool = False,
    near: float = 0.01,
    pixel_center: float = 0.5,
    max_pairs: int = 1 << 21,
) -> Fragments:
    """Rasterize one mesh (or a scene joined with :func:`join_meshes`) with a z-buffer.

    Args:
        vertices_cam: (V, 3) vertices in the OpenCV camera frame, metres (+z forward).
        faces: (F, 3) int vertex indices; either winding (both sides are drawn).
        K: (3, 3) intrinsics in pixels.
        image_size: ``(H, W)`` in pixels.
        face_object: optional (F,) object id per face in ``0..n-1``, giving ``object_id``.
        amodal: with ``face_object``, also give ``amodal_masks`` (n, H, W).
        near: triangles with a vertex at ``z <= near`` metres are skipped (no clipping).
        pixel_center: offset of pixel centres, 0.5 (default) or 0.0; see the module docstring.
        max_pairs: cap on (triangle, pixel) candidate pairs per chunk.

    Returns:
        :class:`Fragments` with ``face_id`` (H, W), ``depth`` (H, W) metres (0 = background),
        ``bary`` (H, W, 3) perspective-correct, ``object_id`` (H, W) or None, ``amodal_masks``.
    """
    fr = rasterize_batch(
        [(vertices_cam, faces)], K, image_size, face_objects=None if face_object is None else [face_object],
        amodal=amodal, near=near, pixel_center=pixel_center, max_pairs=max_pairs,
    )
    return Fragments(*(None if t is None else t[0] for t in (fr.face_id, fr.depth, fr.bary, fr.object_id, fr.amodal_masks)))


# ----------------------------------------------------------------------------- shading


@dataclass
class RenderOutput:
    """Output of :func:`render` for one image with ``n`` objects.

    Attributes:
        rgb: (H, W, 3) float in [0, 1], shaded objects over the background.
        depth: (H, W) metres of the visible surface, 0 for background.
        object_id: (H, W) int64 index into the ``meshes`` list, -1 for background.
        masks: (n, H, W) bool visible (modal) mask of each object.
        amodal_masks: (n, H, W) bool silhouette of each object ignoring the others, or None when
            ``amodal=False``.
        fragments: the scene's :class:`Fragments` (faces indexed as in :func:`join_meshes`).
    """

    rgb: Float[Tensor, "H W 3"]
    depth: Float[Tensor, "H W"]
    object_id: Int[Tensor, "H W"]
    masks: Bool[Tensor, "n H W"]
    amodal_masks: Bool[Tensor, "n H W"] | None
    fragments: Fragments


def vertex_normals(vertices: Float[Tensor, "V 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "V 3"]:
    """Area-weighted unit vertex normals (outward for counter-clockwise-from-outside faces)."""
    tri = vertices[faces]  # (F, 3, 3)
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), |fn| = 2 area
    vn = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def render(
    meshes: Sequence[tuple[Tensor, Tensor, Tensor]],
    K: Float[Tensor, "3 3"],
    image_size: tuple[int, int],
    light_dir: Sequence[float] | Tensor = (0.0, 0.0, 1.0),
    ambient: float = 0.35,
    background: Float[Tensor, "H W 3"] | None = None,
    specular: float = 0.0,
    shininess: float = 32.0,
    amodal: bool = True,
    near: float = 0.01,
    pixel_center: float = 0.5,
) -> RenderOutput:
    """Render coloured meshes with Lambert shading, and their visible and amodal masks.

    Colour at a pixel: ``c * (ambient + (1 - ambient) * max(0, n . l)) + specular * max(0, n . h)^s``
    with ``c`` the interpolated vertex colour, ``n`` the interpolated vertex normal turned to
    face the camera (both sides are lit), ``l = -light_dir`` and ``h`` the half vector (Blinn).

    Args:
        meshes: ``n`` triples ``(vertices_cam (V, 3) metres OpenCV camera frame, faces (F, 3),
            vertex_colors (V, 3) in [0, 1])``.
        K: (3, 3) intrinsics in pixels.
        image_size: ``(H, W)``.
        light_dir: (3,) direction the light travels, camera frame; the default (0, 0, 1) is a
            headlight shining along the optical axis.
        ambient: ambient fraction in [0, 1].
        background: optional (H, W, 3) image in [0, 1] behind the objects; black when None.
        specular: Blinn-Phong specular weight (0 = off).
        shininess: Blinn-Phong exponent.
        amodal: also rasterize every object alone for ``amodal_masks``.
        near: see :func:`rasterize`.
        pixel_center: see :func:`rasterize`.

    Returns:
        :class:`RenderOutput`.
    """
    if len(meshes) == 0:
        raise ValueError("render needs at least one mesh")
    height, width = int(image_size[0]), int(image_size[1])
    v, f, obj = join_meshes([(m[0], m[1]) for m in meshes])
    dev, dt = v.device, (v.dtype if v.is_floating_point() else torch.float32)
    v = v.to(dt)
    colors = torch.cat([torch.as_tensor(m[2], device=dev).to(dt) for m in meshes])  # (V, 3)
    frags = rasterize(v, f, K, (height, width), face_object=obj, amodal=amodal, near=near, pixel_center=pixel_center)

    if background is None:
        rgb = torch.zeros((height * width, 3), device=dev, dtype=dt)
    else:
        rgb = torch.as_tensor(background, device=dev).to(dt).reshape(height * width, 3).clone()
    pix = torch.nonzero(frags.face_id.reshape(-1) >= 0).squeeze(1)  # (P,) covered pixels only
    corners = f[frags.face_id.reshape(-1)[pix]]  # (P, 3) vertex ids of the visible face
    w = frags.bary.reshape(-1, 3)[pix, :, None]  # (P, 3, 1)
    normals = vertex_normals(v, f)  # joined meshes share no vertices
    n = (w * normals[corners]).sum(1)  # (P, 3)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    p = (w * v[corners]).sum(1)  # (P, 3) camera-frame surface point
    view = -p / p.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # towards the camera
    n = torch.where((n * view).sum(-1, keepdim=True) < 0, -n, n)  # light both sides
    light = -torch.as_tensor(light_dir, device=dev, dtype=dt)
    light = light / light.norm().clamp_min(1e-12)
    lambert = (n @ light).clamp(min=0)[:, None]  # (P, 1)
    shaded = (w * colors[corners]).sum(1) * (ambient + (1.0 - ambient) * lambert)
    if specular > 0:
        half = light + view
        half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        shaded = shaded + specular * (n * half).sum(-1, keepdim=True).clamp(min=0) ** shininess
    rgb[pix] = shaded.clamp(0.0, 1.0)

    masks = frags.object_id[None] == torch.arange(len(meshes), device=dev)[:, None, None]  # (n, H, W)
    return RenderOutput(rgb=rgb.view(height, width, 3), depth=frags.depth, object_id=frags.object_id,
                        masks=masks, amodal_masks=frags.amodal_masks, fragments=frags)
