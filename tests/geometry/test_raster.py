"""Pure-torch rasterizer: naive per-pixel references, analytic depth, z-order, masks, shading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from im2hands.geometry.raster import join_meshes, rasterize, rasterize_batch, render, vertex_normals

K = torch.tensor([[60.0, 0.0, 15.7], [0.0, 55.0, 12.2], [0.0, 0.0, 1.0]])
HW = (24, 32)


def _project_np(p, k=K):
    p = np.asarray(p, dtype=np.float64)
    q = p @ k.double().numpy().T
    return q[:, :2] / q[:, 2:]


def _naive_mask(tri_cam, image_size, pixel_center, k=K):
    """Point-in-triangle for every pixel centre with a Python loop (float64), plus the edge margin."""
    a, b, c = _project_np(tri_cam, k)
    mask = np.zeros(image_size, dtype=bool)
    margin = np.full(image_size, np.inf)

    def edge(p, q, x):
        return (q[0] - p[0]) * (x[1] - p[1]) - (q[1] - p[1]) * (x[0] - p[0])

    area = edge(a, b, c)
    for i in range(image_size[0]):
        for j in range(image_size[1]):
            x = (j + pixel_center, i + pixel_center)
            e = np.array([edge(b, c, x), edge(c, a, x), edge(a, b, x)]) / area
            mask[i, j] = (e >= 0).all()
            margin[i, j] = np.abs(e).min()
    return mask, margin


def _quad(z, half=1.0, center=(0.0, 0.0)):
    cx, cy = center
    v = torch.tensor([[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z],
                      [cx - half, cy + half, z]])
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("pixel_center", [0.0, 0.5])
@pytest.mark.parametrize("flip", [False, True])
def test_single_triangle_matches_naive_loop(pixel_center, flip):
    tri = torch.tensor([[-0.213, -0.171, 1.03], [0.191, -0.052, 0.87], [-0.023, 0.197, 1.21]])
    faces = torch.tensor([[0, 2, 1]] if flip else [[0, 1, 2]])  # back faces are drawn too
    frags = rasterize(tri, faces, K, HW, pixel_center=pixel_center)
    want, margin = _naive_mask(tri.numpy(), HW, pixel_center)
    got = frags.mask.numpy()
    sure = margin > 1e-5
    assert want.sum() > 50
    np.testing.assert_array_equal(got[sure], want[sure])
    assert (frags.face_id[frags.mask] == 0).all() and (frags.face_id[~frags.mask] == -1).all()


@pytest.mark.parametrize("pixel_center", [0.0, 0.5])
def test_vertex_projection_lands_in_its_pixel(pixel_center):
    """A tiny triangle around the ray through a pixel's centre covers exactly that pixel."""
    kinv = torch.linalg.inv(K.double())
    for i, j in [(0, 0), (5, 7), (23, 31), (12, 16)]:
        ray = kinv @ torch.tensor([j + pixel_center, i + pixel_center, 1.0], dtype=torch.float64)
        c = (ray * 0.8).float()  # a point at z = 0.8 on that ray
        d = 0.2 / 60.0 * 0.8  # 0.2 px
        tri = torch.stack([c + torch.tensor([-d, -d, 0.0]), c + torch.tensor([d, -d, 0.0]), c + torch.tensor([0.0, d, 0.0])])
        frags = rasterize(tri, torch.tensor([[0, 1, 2]]), K, HW, pixel_center=pixel_center)
        assert frags.mask.sum() == 1 and bool(frags.mask[i, j])


def test_plane_depth_exact_and_tilted_plane():
    v, f = _quad(2.5, half=10.0)  # larger than the image: bounding boxes are clipped
    frags = rasterize(v, f, K, HW)
    assert frags.mask.all()
    torch.testing.assert_close(frags.depth, torch.full(HW, 2.5), rtol=0, atol=1e-6)
    # tilted plane n . X = d through the quad's corners: z = d / (n . K^-1 [u, v, 1])
    v = torch.tensor([[-3.0, -3.0, 1.0], [3.0, -3.0, 1.0], [3.0, 3.0, 4.0], [-3.0, 3.0, 4.0]])
    frags = rasterize(v, f, K, HW)
    n = torch.tensor([0.0, -3.0, 6.0], dtype=torch.float64)  # normal of the plane z = 2.5 + 0.5 y
    d = float(n @ torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64))
    jj, ii = torch.meshgrid(torch.arange(HW[1]), torch.arange(HW[0]), indexing="xy")
    pix = torch.stack([jj + 0.5, ii + 0.5, torch.ones_like(ii)], -1).double()  # (H, W, 3) pixel centres
    rays = pix @ torch.linalg.inv(K.double()).T
    z = d / (rays @ n)
    m = frags.mask
    assert m.float().mean() > 0.5
    torch.testing.assert_close(frags.depth[m].double(), z[m], rtol=1e-5, atol=0)


def test_perspective_correct_barycentrics_reproduce_vertex_attributes():
    tri = torch.tensor([[-0.5, -0.4, 0.6], [0.6, -0.3, 1.9], [0.0, 0.7, 1.2]], dtype=torch.float64)
    frags = rasterize(tri, torch.tensor([[0, 1, 2]]), K.double(), HW)
    m = frags.mask
    assert m.sum() > 100
    p = frags.bary[m] @ tri  # (P, 3) interpolated camera-frame point
    torch.testing.assert_close(p[:, 2], frags.depth[m], rtol=1e-12, atol=1e-12)
    uv = (p / p[:, 2:]) @ K.double().T  # reprojects to the pixel centre
    ii, jj = torch.nonzero(m, as_tuple=True)
    torch.testing.assert_close(uv[:, 0], jj.double() + 0.5, rtol=0, atol=1e-9)
    torch.testing.assert_close(uv[:, 1], ii.double() + 0.5, rtol=0, atol=1e-9)
    assert (frags.bary[m] >= -1e-12).all() and torch.allclose(frags.bary[m].sum(-1), torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("near_first", [True, False])
def test_two_overlapping_squares_nearer_wins(near_first):
    near = _quad(1.0, half=0.2, center=(-0.05, 0.0))
    far = _quad(2.0, half=0.6, center=(0.1, 0.0))
    meshes = [near, far] if near_first else [far, near]
    v, f, obj = join_meshes(meshes)
    frags = rasterize(v, f, K, HW, face_object=obj, amodal=True)
    near_id = 0 if near_first else 1
    near_alone = rasterize(*near, K, HW).mask
    far_alone = rasterize(*far, K, HW).mask
    assert (near_alone & far_alone).sum() > 20
    assert (frags.object_id[near_alone] == near_id).all()
    torch.testing.assert_close(frags.depth[near_alone], torch.ones(int(near_alone.sum())))
    assert (frags.object_id[far_alone & ~near_alone] == 1 - near_id).all()
    torch.testing.assert_close(frags.amodal_masks[near_id], near_alone, rtol=0, atol=0)
    torch.testing.assert_close(frags.amodal_masks[1 - near_id], far_alone, rtol=0, atol=0)


def test_sphere_mask_area_matches_projected_disc():
    r, d, f_px = 0.1, 0.6, 200.0
    m = trimesh.creation.icosphere(subdivisions=4, radius=r)
    v = torch.tensor(m.vertices, dtype=torch.float32) + torch.tensor([0.0, 0.0, d])
    k = torch.tensor([[f_px, 0.0, 64.0], [0.0, f_px, 64.0], [0.0, 0.0, 1.0]])  # centre of a 128 px image
    frags = rasterize(v, torch.tensor(m.faces), k, (128, 128))
    # silhouette of a sphere on the optical axis: a disc of radius f r / sqrt(d^2 - r^2)
    disc = math.pi * (f_px * r / math.sqrt(d * d - r * r)) ** 2
    assert abs(frags.mask.sum().item() / disc - 1) < 0.02
    # a closed mesh leaves no cracks: the mask is a filled disc
    ii, jj = torch.nonzero(frags.mask, as_tuple=True)
    rad = torch.sqrt((ii - 63.5) ** 2 + (jj - 63.5) ** 2)  # pixel (63, 63) has its centre at 63.5
    inner = torch.sqrt((torch.arange(128)[:, None] - 63.5) ** 2 + (torch.arange(128)[None] - 63.5) ** 2) < rad.max() - 2
    assert frags.mask[inner].all()


def test_empty_scene_and_behind_camera():
    frags = rasterize(torch.zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long), K, HW)
    assert (frags.face_id == -1).all() and (frags.depth == 0).all() and (frags.bary == 0).all()
    behind = torch.tensor([[-0.5, -0.5, -1.0], [0.5, -0.5, -1.0], [0.0, 0.5, -1.0]])
    crossing = torch.tensor([[-0.5, -0.5, -1.0], [0.5, -0.5, 1.0], [0.0, 0.5, 1.0]])
    for tri in (behind, crossing):
        assert not rasterize(tri, torch.tensor([[0, 1, 2]]), K, HW).mask.any()


def test_chunking_and_batch_give_identical_results():
    m = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    v = torch.tensor(m.vertices, dtype=torch.float32) + torch.tensor([0.05, -0.02, 1.0])
    f = torch.tensor(m.faces)
    full = rasterize(v, f, K, HW)
    chunked = rasterize(v, f, K, HW, max_pairs=64)
    for a, b in [(full.face_id, chunked.face_id), (full.depth, chunked.depth), (full.bary, chunked.bary)]:
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    quad = _quad(0.9, half=0.1)
    k2 = K.clone()
    k2[0, 2] += 3.0
    batch = rasterize_batch([(v, f), quad], torch.stack([K, k2]), HW)
    assert batch.face_id.shape == (2, *HW)
    torch.testing.assert_close(batch.face_id[0], full.face_id, rtol=0, atol=0)
    torch.testing.assert_close(batch.face_id[1], rasterize(*quad, k2, HW).face_id, rtol=0, atol=0)


def test_render_shading_masks_and_background():
    plane = _quad(1.0, half=0.15)
    occluded = _quad(1.5, half=0.4, center=(0.2, 0.0))
    red = torch.tensor([0.8, 0.2, 0.1]).expand(4, 3)
    bg = torch.full((*HW, 3), 0.25)
    out = render([(*plane, red), (*occluded, red * 0.5)], K, HW, ambient=0.3, background=bg)
    assert out.rgb.shape == (*HW, 3) and out.rgb.min() >= 0 and out.rgb.max() <= 1
    assert (out.rgb[out.object_id == -1] == 0.25).all()
    # a plane facing the headlight: full colour at the optical axis
    torch.testing.assert_close(out.rgb[12, 16], red[0], rtol=0, atol=1e-3)
    assert out.masks.shape == (2, *HW) and not (out.masks[0] & out.masks[1]).any()
    assert (out.amodal_masks >= out.masks).all() and out.amodal_masks[1].sum() > out.masks[1].sum()
    torch.testing.assert_close(out.masks[0], out.amodal_masks[0], rtol=0, atol=0)
    # Lambert falls off with the angle to the light; back faces are lit like front faces
    tilted = render([(*plane, red)], K, HW, light_dir=(0.0, math.sin(1.0), math.cos(1.0)), ambient=0.0)
    torch.testing.assert_close(tilted.rgb[12, 16], red[0] * math.cos(1.0), rtol=0, atol=2e-3)
    flipped = render([(plane[0], plane[1][:, [0, 2, 1]], red)], K, HW)
    torch.testing.assert_close(flipped.rgb, render([(*plane, red)], K, HW).rgb)


def test_vertex_normals_sphere():
    m = trimesh.creation.icosphere(subdivisions=2)
    v = torch.tensor(m.vertices, dtype=torch.float64)
    n = vertex_normals(v, torch.tensor(m.faces))
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(len(v), dtype=torch.float64))
    assert (n * v).sum(-1).min() > 0.999  # within 2.6 degrees of the radial direction


@pytest.mark.gpu
def test_cuda_matches_cpu(device):
    m = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    v = torch.tensor(m.vertices, dtype=torch.float32) + torch.tensor([0.05, -0.02, 1.0])
    f = torch.tensor(m.faces)
    cpu = rasterize(v, f, K, HW)
    dev = rasterize(v.to(device), f.to(device), K.to(device), HW)
    assert dev.face_id.device.type == torch.device(device).type
    assert (dev.face_id.cpu() != cpu.face_id).float().mean() < 0.01
    out = render([(v.to(device), f.to(device), torch.ones_like(v).to(device))], K.to(device), HW)
    assert out.rgb.device.type == torch.device(device).type


def test_huge_and_near_plane_triangles_are_clipped_safely():
    # vertices just past the near plane project millions of pixels away
    tri = torch.tensor([[-5.0, -5.0, 0.0101], [5.0, -5.0, 0.0101], [0.0, 5.0, 3.0]])
    frags = rasterize(tri, torch.tensor([[0, 1, 2]]), K, HW, near=0.01)
    assert frags.mask.any() and torch.isfinite(frags.depth).all() and (frags.depth[frags.mask] > 0.01).all()
    far_off = torch.tensor([[1e6, 1e6, 1.0], [2e6, 1e6, 1.0], [1e6, 2e6, 1.0]])
    assert not rasterize(far_off, torch.tensor([[0, 1, 2]]), K, HW).mask.any()
